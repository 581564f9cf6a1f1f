"""Declared options (cvd.schema): every section of every shipped config is checked before anything
runs, so `cvd fit ... --print-config` is a full dry run, and a typo or an out-of-range value is one
line naming the key, where it was set and (for a typo) the likely key."""

from __future__ import annotations

from pathlib import Path

import pytest

from cvd.baselines import RECIPES, get_recipe
from cvd.cli import main
from cvd.config import get_dotted, load_config, packaged_config_path, resolve_config
from cvd.errors import ConfigError
from cvd.schema import OPTIONS, open_sections

REPO = Path(__file__).resolve().parents[2]
SHIPPED = sorted(p for p in (REPO / "configs").rglob("*.yaml") if "_base" not in p.parts)


def representatives() -> list[Path]:
    """One shipped config per (folder, recipe, CVD on/off): every base chain, without all 120."""
    chosen: dict[tuple[str, str, bool], Path] = {}
    for path in SHIPPED:
        config = load_config(path)
        key = (path.parent.name, config["model"]["baseline"], bool(config["cvd"]["enabled"]))
        chosen.setdefault(key, path)
    return sorted(chosen.values())


def cli_error(capsys: pytest.CaptureFixture[str], *args: str) -> str:
    """Run `cvd fit ... --print-config`: it must fail with exit 2 and exactly one line on stderr."""
    assert main(["fit", *args, "--print-config"]) == 2, args
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1, captured.err
    return captured.err


def typo(name: str) -> str:
    return name[:-1] if len(name) > 3 else name + "x"


def section_cases(config: dict) -> dict[str, tuple[str, str, str | None]]:
    """Per section: (typo override, the key it should suggest, an out-of-range override or None)."""
    cases: dict[str, tuple[str, str, str | None]] = {
        "top level": ("sed=1", "seed", "seed=-1"),
        "data": ("data.batch_sise=8", "data.batch_size", "data.batch_size=0"),
        "model": ("model.share_weight=true", "model.share_weights", "model.num_classes=0"),
        "cvd": ("cvd.alpah=0.3", "cvd.alpha", "cvd.alpha=1.5"),
        "optim": ("optim.lrr=0.1", "optim.lr", "optim.lr=-1"),
        "schedule": ("schedule.epoch=2", "schedule.epochs", "schedule.epochs=-1"),
        "train": ("train.log_evry=5", "train.log_every", "train.log_every=0"),
        "eval": ("eval.chunk_sise=5", "eval.chunk_size", "eval.chunk_size=0"),
        "checkpoint": ("checkpoint.keep_lst=2", "checkpoint.keep_last", "checkpoint.keep_last=-1"),
    }
    for section in open_sections(config):
        known = sorted(section.options)
        if not known:
            cases[section.key] = (f"{section.key}.bogus=1", "", None)
            continue
        name = known[0]
        ranged = [k for k in known if section.options[k].low is not None]
        out_of_range = f"{section.key}.{ranged[0]}=-1" if ranged else None
        cases[section.key] = (f"{section.key}.{typo(name)}=1", f"{section.key}.{name}", out_of_range)
    return cases


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_shipped_config_passes_the_full_check(path):
    config, _ = resolve_config(path, strict=True)
    assert config["model"]["baseline"] in RECIPES


def test_every_section_of_every_shipped_config_rejects_a_typo_and_an_out_of_range_value(capsys):
    paths = representatives()
    assert len(paths) >= 20  # every recipe, with and without CVD, on each benchmark folder
    seen_sections: set[str] = set()
    for path in paths:
        for section, (bad_key, suggestion, out_of_range) in section_cases(load_config(path)).items():
            seen_sections.add(section)
            err = cli_error(capsys, "--config", str(path), bad_key)
            assert repr(bad_key.split("=")[0]) in err and "command-line override" in err, (path, err)
            if suggestion:
                assert f"did you mean '{suggestion}'" in err, (path, err)
            if out_of_range:
                err = cli_error(capsys, "--config", str(path), out_of_range)
                assert repr(out_of_range.split("=")[0]) in err and "must be" in err, (path, err)
    assert {
        "loss",
        "data.options",
        "data.augment",
        "eval.options",
        "model.backbone.kwargs",
        "model.head.kwargs",
        "data.sampler_options",
    } <= seen_sections


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            "schedule.epochs=-1",
            "'schedule.epochs' (set in command-line override 'schedule.epochs=-1') = -1 "
            "is out of range: must be an integer >= 1",
        ),
        ("optim.lr=-1", "'optim.lr' (set in command-line override 'optim.lr=-1') = -1 is out of range"),
        (
            "data.query_size=[64]",
            "'data.query_size' (set in command-line override 'data.query_size=[64]') "
            "= [64] must be an integer or [height, width]",
        ),
        (
            "data.num_workers=-1",
            "'data.num_workers' (set in command-line override 'data.num_workers=-1') "
            "= -1 is out of range: must be an integer >= 0",
        ),
        ("cvd.alpha=1.5", "'cvd.alpha' (set in command-line override 'cvd.alpha=1.5') = 1.5 is out of range"),
    ],
)
def test_runtime_values_are_refused_at_validation(capsys, override, message):
    path = REPO / "configs" / "university1652" / "sample4geo.yaml"
    assert message in cli_error(capsys, "--config", str(path), override)


@pytest.mark.parametrize(
    ("config", "override", "suggestion"),
    [
        ("university1652/sample4geo.yaml", "loss={label_smothing: 0.1}", "loss.label_smoothing"),
        ("university1652/game4loc.yaml", "loss.weigthed=false", "loss.weighted"),
        ("cvusa/geodtr.yaml", "loss.cf_alpah=2", "loss.cf_alpha"),
        ("cvusa/transgeo.yaml", "loss.alpah=2", "loss.alpha"),
        (
            "university1652/sample4geo.yaml",
            "eval.options.galery_variant=official",
            "eval.options.gallery_variant",
        ),
        ("sues200/sample4geo_150.yaml", "data.options.altitud=200", "data.options.altitude"),
        ("university1652/sample4geo.yaml", "data.augment.flip_prop=0.5", "data.augment.flip_prob"),
        ("cvusa/geodtr.yaml", "data.augment.layout_simulaton=weak", "data.augment.layout_simulation"),
        ("university1652/mccg.yaml", "data.augment.query_erasing=0.5", "data.augment.query_erasing_prob"),
        (
            "university1652/sample4geo.yaml",
            "model.backbone.kwargs.drop_path_rat=0.1",
            "model.backbone.kwargs.drop_path_rate",
        ),
    ],
)
def test_loss_and_options_typos_are_caught_with_the_likely_key(capsys, config, override, suggestion):
    err = cli_error(capsys, "--config", str(REPO / "configs" / config), override)
    assert f"did you mean '{suggestion}'" in err


@pytest.mark.parametrize(
    ("config", "override", "message"),
    [
        # declared beside the code that reads them: the recipe's transform, timm, heads, datasets
        ("university1652/sample4geo.yaml", "data.augment.flip_prob=1.5", "must be a number in [0, 1]"),
        ("university1652/lpn.yaml", "data.augment.pad=2.5", "must be an integer >= 0"),
        ("university1652/mccg.yaml", "data.augment.query_erasing_prob=2", "must be a number in [0, 1]"),
        ("cvusa/geodtr.yaml", "data.augment.layout_simulation=strog", "(did you mean 'strong'?)"),
        ("university1652/sample4geo.yaml", "data.augment.interpolation=bicubik", "(did you mean 'bicubic'?)"),
        (
            "university1652/sample4geo.yaml",
            "model.backbone.kwargs.drop_path_rate=1",
            "must be a number in [0, 1)",
        ),
        ("cvusa/geodtr.yaml", "model.backbone.kwargs.output_stride=12", "choose one of: 8, 16, 32"),
        ("university1652/lpn.yaml", "model.head.kwargs.dropout=abc", "must be a number in [0, 1)"),
        ("university1652/lpn.yaml", "model.head.kwargs.blocks=0", "must be an integer >= 1"),
        ("university1652/lpn.yaml", "model.head.kwargs.pool=mean", "choose one of: avg, max"),
        ("university1652/sample4geo.yaml", "model.head.kwargs.norm=3", "must be true or false"),
        ("university1652/sample4geo.yaml", "data.options.query_view=stret", "(did you mean 'street'?)"),
        ("cvact/sample4geo.yaml", "data.options.split=tset", "(did you mean 'test'?)"),
        ("sues200/sample4geo_150.yaml", "eval.options.gallery_variant=offical", "(did you mean 'official'?)"),
        ("university1652/sample4geo.yaml", "model.backbone.name=convnext_bsae", "is not a timm model"),
    ],
)
def test_values_of_the_open_mappings_are_checked_against_their_declarations(
    capsys, config, override, message
):
    err = cli_error(capsys, "--config", str(REPO / "configs" / config), override)
    assert message in err, err


def test_the_error_names_the_base_file_that_set_the_value(tmp_path, capsys):
    base = tmp_path / "base.yaml"
    base.write_text("schedule: {epochs: 0}\n")
    experiment = tmp_path / "exp.yaml"
    experiment.write_text("base: base.yaml\noptim: {lr: 0.1}\n")
    err = cli_error(capsys, "--config", str(experiment))
    assert f"'schedule.epochs' (set in {base.resolve()}) = 0" in err


def test_choices_come_from_the_registries(monkeypatch):
    from cvd.data import samplers
    from cvd.evaluation import protocols

    assert OPTIONS["data.sampler"].allowed_choices() == ["auto", *sorted(samplers.SAMPLERS)]
    assert OPTIONS["eval.protocol"].allowed_choices() == ["auto", *sorted(protocols.PROTOCOLS)]
    monkeypatch.setitem(samplers.SAMPLERS, "my_sampler", samplers.UniqueLocationSampler)
    assert load_config(None, ["data.sampler=my_sampler"])["data"]["sampler"] == "my_sampler"


def test_a_recipes_loss_defaults_live_in_its_declaration():
    config = load_config(None, ["model.baseline=sample4geo"])
    assert config["loss"] == {}
    recipe = get_recipe("sample4geo")(config)
    assert recipe.loss_options["label_smoothing"] == recipe.loss_schema["label_smoothing"].default == 0.1
    assert get_recipe("game4loc")(config).loss_options["label_smoothing"] == 0.0


def test_explain_prints_value_declaration_and_source(capsys):
    path = REPO / "configs" / "university1652" / "sample4geo_cvd.yaml"
    args = ["fit", "--config", str(path), "optim.lr=2e-4"]
    assert (
        main([*args, "--explain", "optim.lr", "--explain", "loss.label_smoothing", "--explain", "cvd.alpha"])
        == 0
    )
    out = capsys.readouterr().out
    assert "optim.lr: 0.0002\n  allowed: a number > 0\n  help: learning rate\n  default: 0.001\n" in out
    assert "set in: command-line override 'optim.lr=2e-4'" in out
    assert f"set in: {(REPO / 'configs' / '_base' / 'sample4geo.yaml').resolve()}" in out
    assert "declared by recipe 'sample4geo'" in out
    assert "cvd.alpha: 0.5" in out and "set in: cvd_variants.yaml (cvd.variant=toolkit)" in out
    assert main([*args, "--explain", "optim.lrr"]) == 2
    assert "did you mean 'optim.lr'" in capsys.readouterr().err


def test_every_key_of_the_default_file_is_declared():
    from cvd.config import OPEN_KEYS, _flatten_keys, read_yaml

    default = read_yaml(packaged_config_path())
    leaves = [
        key
        for key in _flatten_keys(default)
        if key not in OPEN_KEYS and not isinstance(get_dotted(default, key), dict)
    ]
    assert [key for key in leaves if key not in OPTIONS] == []


def test_an_old_saved_config_without_a_newer_key_still_validates():
    config = load_config(None)
    del config["data"]["val_fraction"]
    from cvd.config import check_declared

    check_declared(config)


def test_library_loading_stays_lenient_for_open_mappings():
    with pytest.raises(ConfigError, match=r"did you mean 'loss\.label_smoothing'"):
        load_config(None, ["loss.label_smothing=0.1"], strict=True)
    assert load_config(None, ["loss.label_smothing=0.1"])["loss"] == {"label_smothing": 0.1}
