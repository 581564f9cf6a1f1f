"""Config resolution: default <- experiment (with bases) <- overrides, and errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from cvd.config import load_config, packaged_config_path, parse_override, read_yaml
from cvd.errors import ConfigError


def write(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))
    return path


def test_default_is_complete_and_valid():
    config = load_config()
    default = read_yaml(packaged_config_path())
    variant = read_yaml(packaged_config_path("cvd_variants.yaml"))[default["cvd"]["variant"]]
    # every key the variant defines is null in the default and filled from the variant on loading
    assert all(default["cvd"][key] is None for key in variant)
    assert config == {**default, "cvd": {**default["cvd"], **variant}}
    assert config["cvd"]["tau"] == 0.05


def test_variant_fills_only_what_is_not_set():
    config = load_config(overrides=["cvd.variant=paper", "cvd.alpha=0.25"])
    assert config["cvd"]["lambda"] == [10.0, 0.2, 1.0]  # the paper's eq. 7 weights
    assert config["cvd"]["split"] == "conv" and config["cvd"]["kernel_size"] == 3
    assert config["cvd"]["alpha"] == 0.25  # set explicitly: the variant does not override it
    with pytest.raises(ConfigError, match=r"cvd\.variant"):
        load_config(overrides=["cvd.variant=papr"])


def test_merge_order_default_base_experiment_overrides(tmp_path):
    write(tmp_path / "base.yaml", {"optim": {"lr": 0.5, "name": "sgd"}, "seed": 3})
    experiment = write(
        tmp_path / "exp" / "run.yaml",
        {"base": "../base.yaml", "optim": {"lr": 0.25}, "cvd": {"enabled": True}},
    )
    config = load_config(experiment, ["optim.lr=1e-4", "cvd.lambda=[1, 2, 3]"])
    assert config["optim"]["lr"] == pytest.approx(1e-4)  # override beats experiment beats base
    assert config["optim"]["name"] == "sgd"  # from base, untouched by the experiment
    assert config["seed"] == 3
    assert config["cvd"]["enabled"] is True
    assert config["cvd"]["lambda"] == [1, 2, 3]
    assert config["cvd"]["alpha"] == 0.5  # default kept
    assert config["name"] == "exp_run"  # from the folder and file names


def test_unknown_key_is_named_with_a_suggestion(tmp_path):
    experiment = write(tmp_path / "typo.yaml", {"optim": {"lrr": 0.1}})
    with pytest.raises(ConfigError) as error:
        load_config(experiment)
    message = str(error.value)
    assert "'optim.lrr'" in message
    assert str(experiment) in message
    assert "did you mean 'optim.lr'" in message


def test_unknown_override_key_is_named():
    with pytest.raises(ConfigError, match=r"'cvd\.alpah'.*command-line override"):
        load_config(None, ["cvd.alpah=0.3"])


def test_value_not_in_choices_lists_allowed_values():
    with pytest.raises(ConfigError) as error:
        load_config(None, ["optim.name=adamm"])
    message = str(error.value)
    assert "'optim.name'" in message and "adamw" in message and "sgd" in message


def test_wrong_type_is_named():
    with pytest.raises(ConfigError, match=r"'cvd\.enabled'.*wrong type"):
        load_config(None, ["cvd.enabled=sure"])


def test_open_mappings_accept_free_keys():
    config = load_config(None, ["data.options.altitude=150", "model.head.kwargs.blocks=4"])
    assert config["data"]["options"] == {"altitude": 150}
    assert config["model"]["head"]["kwargs"] == {"blocks": 4}


def test_base_loop_is_reported(tmp_path):
    write(tmp_path / "a.yaml", {"base": "b.yaml"})
    write(tmp_path / "b.yaml", {"base": "a.yaml"})
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")


def test_malformed_override():
    with pytest.raises(ConfigError, match=r"key\.sub=value"):
        parse_override("optim.lr")
