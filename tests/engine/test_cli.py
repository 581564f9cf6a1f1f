"""Smoke tests through the real `cvd` command: fit a few steps, test, resume, errors."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import yaml
from safetensors.torch import load_file
from tests.engine.conftest import run_cvd

cvd = run_cvd


def test_fit_test_and_resume_through_the_command(tiny_config):
    config = tiny_config(schedule={"epochs": 2, "max_steps": 2}, eval={"every_epochs": 0})
    fitted = cvd("fit", "--config", str(config))
    assert fitted.returncode == 0, fitted.stderr
    run = Path(yaml.safe_load(config.read_text())["output_dir"]) / "tiny"
    # The run folder is self-describing: resolved config, identity, logs, checkpoints, release.
    resolved = yaml.safe_load((run / "config.yaml").read_text())
    assert resolved["cvd"]["enabled"] is True and resolved["model"]["num_classes"] == 4
    info = json.loads((run / "run_info.json").read_text())
    assert info["cvd_version"] and info["git_commit"]
    log = (run / "train_log.csv").read_text().splitlines()
    assert log[0].startswith("step,") and len(log) == 3  # header + 2 optimiser steps
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == [
        "step-00000001.ckpt",
        "step-00000002.ckpt",
    ]
    results = json.loads((run / "results.json").read_text())
    assert [r["split"] for r in results] == ["drone->satellite", "satellite->drone"]
    assert all(r["protocol"] == "university1652" and r["num_queries"] > 0 for r in results)
    assert (
        set(load_file(run / "release" / "model.safetensors")) and (run / "release" / "config.yaml").is_file()
    )

    tested = cvd("test", "--model", str(run), "eval.gallery_variant=official")
    assert tested.returncode == 0, tested.stderr
    assert "gallery=official" in tested.stdout
    official = json.loads((run / "test" / "university1652-official.json").read_text())
    # The official variant ranks the distractors too: more gallery items than sample4geo's.
    assert official[0]["num_gallery_ranked"] > results[0]["num_gallery_ranked"]

    # A resume continues the same trajectory: a longer cosine schedule (max_steps) is another run.
    extended = cvd("fit", "--config", str(config), "--resume", "schedule.max_steps=3")
    assert extended.returncode == 2 and "schedule.max_steps: 2 -> 3" in extended.stderr
    resumed = cvd("fit", "--config", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert len((run / "train_log.csv").read_text().splitlines()) == 3  # steps 1, 2 kept, none redone

    # A fresh run never starts on top of another: its log rows would follow the old ones.
    (run / "notes.txt").write_text("mine")
    refused = cvd("fit", "--config", str(config))
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert str(run) in refused.stderr and "--resume" in refused.stderr and "--overwrite" in refused.stderr
    assert len((run / "train_log.csv").read_text().splitlines()) == 3
    restarted = cvd("fit", "--config", str(config), "--overwrite", "schedule.max_steps=1")
    assert restarted.returncode == 0, restarted.stderr
    assert len((run / "train_log.csv").read_text().splitlines()) == 2  # header + the new run's step
    assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001.ckpt"]
    assert (run / "notes.txt").read_text() == "mine"  # only the run's own files are removed


def test_config_error_names_the_key(tiny_config):
    result = cvd("fit", "--config", str(tiny_config()), "optim.lrr=0.1")
    assert result.returncode == 2
    assert "'optim.lrr'" in result.stderr and "did you mean 'optim.lr'" in result.stderr
    assert "Traceback" not in result.stderr


def test_missing_dataset_lists_missing_paths(tmp_path, tiny_config):
    result = cvd("fit", "--config", str(tiny_config()), f"data.root={tmp_path / 'nowhere'}")
    assert result.returncode == 2
    assert str(tmp_path / "nowhere" / "train" / "drone") in result.stderr
    assert "Traceback" not in result.stderr


def test_help_documents_every_subcommand():
    top = cvd("--help")
    assert top.returncode == 0
    for name in ("synth", "fit", "test", "demo", "index", "localize", "export"):
        assert name in top.stdout
        sub = cvd(name, "--help")
        assert sub.returncode == 0 and "usage: cvd " + name in sub.stdout


def test_every_option_of_every_command_has_help_text():
    import argparse

    from cvd.cli import build_parser

    missing = []

    def walk(parser: argparse.ArgumentParser, path: list[str]) -> None:
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    walk(sub, [*path, name])
            elif action.help is None:
                missing.append(f"cvd {' '.join(path)} {'/'.join(action.option_strings) or action.dest}")

    walk(build_parser(), [])
    assert not missing, missing


def test_test_json_prints_the_results_file_and_nothing_else(tiny_config, tmp_path):
    import torch

    from cvd.config import load_config
    from cvd.factory import build_model
    from cvd.models import save_release

    config = load_config(str(tiny_config()), [])
    torch.manual_seed(0)
    save_release(build_model(config).eval(), config, tmp_path / "release")
    out = tmp_path / "results.json"
    tested = cvd("test", "--model", str(tmp_path / "release"), "--json", "--out", str(out))
    assert tested.returncode == 0, tested.stderr
    printed = json.loads(tested.stdout)  # the whole of stdout is one JSON document
    assert printed == json.loads(out.read_text())
    assert [r["split"] for r in printed] == ["drone->satellite", "satellite->drone"]
    assert f"results: {out}" in tested.stderr


def test_bad_data_option_names_the_key_and_value_in_one_line(tiny_config, tiny_world, capsys):
    from cvd.cli import main

    assert main(["fit", "--config", str(tiny_config()), "data.options.query_view=sky"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    # refused at validation, before any data is read, by the dataset's declared choices
    assert "'data.options.query_view' (set in command-line override 'data.options.query_view=sky')" in err
    assert "= 'sky' is not allowed; choose one of: drone, street" in err

    # the dataset's own check (library use, no validation first) says the same in its words
    from cvd.data import DATASETS
    from cvd.errors import OptionError

    with pytest.raises(OptionError, match=r"query_view='sky': must be 'drone' or 'street'"):
        DATASETS["university1652"](tiny_world, query_view="sky")


def test_test_on_a_reduced_set_says_so_and_strict_images_refuses_it(tiny_config, tiny_world, tmp_path):
    # An unreadable query and a test building without its gallery image used to pass without a
    # word in the summary: the run exited 0 with figures that were not the benchmark's.
    import shutil

    import torch

    from cvd.config import load_config
    from cvd.factory import build_model
    from cvd.models import save_release

    config = load_config(str(tiny_config()), [])
    torch.manual_seed(0)
    save_release(build_model(config).eval(), config, tmp_path / "release")
    world = tmp_path / "world"
    shutil.copytree(tiny_world, world)
    buildings = sorted(p.name for p in (world / "test" / "query_drone").iterdir())
    unreadable = sorted((world / "test" / "query_drone" / buildings[0]).iterdir())[0]
    original = unreadable.read_bytes()
    unreadable.unlink()  # (never write through a hard link shared with the gallery copy)
    unreadable.write_bytes(b"not a jpeg")
    shutil.rmtree(world / "test" / "gallery_satellite" / buildings[1])
    out = tmp_path / "results.json"

    def test(*overrides: str) -> subprocess.CompletedProcess:
        model = str(tmp_path / "release")
        return cvd("test", "--model", model, "--out", str(out), f"data.root={world}", *overrides)

    tested = test()
    assert tested.returncode == 0, tested.stderr
    summary = tested.stdout.splitlines()[0]
    assert summary.startswith("university1652 [drone->satellite")
    assert (
        "[REDUCED SET: 1 queries + 0 gallery unreadable, dropped; 2 queries without a gallery match]"
        in summary
    )
    assert (
        "drone->satellite: evaluated on a reduced set: 1 queries and 0 gallery items dropped" in tested.stderr
    )
    assert str(unreadable) in tested.stderr and f"(locations {buildings[1]})" in tested.stderr
    reduced = json.loads(out.read_text())[0]["reduced"]
    assert reduced == {
        "queries_dropped_unreadable": 1,
        "gallery_dropped_unreadable": 0,
        "queries_without_gallery_match": 2,
        "queries_beyond_max_queries": 0,
        "unreadable": [str(unreadable)],
        "locations_without_gallery_match": [buildings[1]],
    }

    refused = test("data.strict_images=true")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1
    assert f"cvd test: error: cannot read image {unreadable}" in refused.stderr
    unreadable.write_bytes(original)
    refused = test("data.strict_images=true")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "drone->satellite: evaluated on a reduced set: 2 queries have no gallery item" in refused.stderr
    assert "data.strict_images=true refuses a reduced evaluation set" in refused.stderr

    complete = cvd("test", "--model", str(tmp_path / "release"), "--out", str(out), f"data.root={tiny_world}")
    assert complete.returncode == 0 and "REDUCED" not in complete.stdout + complete.stderr
    assert not any(
        json.loads(out.read_text())[0]["reduced"][key]
        for key in ("unreadable", "queries_without_gallery_match")
    )
