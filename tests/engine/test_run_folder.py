"""Run folders that cannot be corrupted (issue 13), through the real `cvd` command: one process per
folder, resumes that cannot change the trajectory, --overwrite that deletes only the toolkit's
files, names that stay inside output_dir, SIGTERM, damaged or non-finite checkpoints, file modes,
and releases whose config is bound to their weights."""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from tests.engine.conftest import run_cvd


def cvd(*args: str, umask: int | None = None) -> subprocess.CompletedProcess:
    return run_cvd(*args, preexec_fn=(lambda: os.umask(umask)) if umask is not None else None)


def start(*args: str, stderr: Path) -> subprocess.Popen:
    with stderr.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "cvd", *args], stdout=subprocess.DEVNULL, stderr=handle
        )


def run_dir(config: Path) -> Path:
    values = yaml.safe_load(config.read_text())
    return Path(values["output_dir"]) / values["name"]


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"the run ended before {what}"
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def quick(tiny_config, **sections):
    """Two optimiser steps, no evaluation during training: a finished run in a few seconds."""
    sections.setdefault("schedule", {"epochs": 1, "max_steps": 2})
    sections.setdefault("eval", {"every_epochs": 0})
    return tiny_config(**sections)


def long_running(tiny_config, **sections):
    """A run that cannot end before it is caught in the act, however loaded the machine (it is
    always killed)."""
    return tiny_config(schedule={"epochs": 5000}, eval={"every_epochs": 0}, **sections)


def has_checkpoint(folder: Path, at_least: int = 1):
    """A condition: a checkpoint of step >= at_least exists (older ones are pruned as it runs)."""

    def check() -> bool:
        steps = [int(p.name[5:13]) for p in (folder / "checkpoints").glob("step-*.ckpt")]
        return any(step >= at_least for step in steps)

    return check


# 1 ------------------------------------------------------------------------------------------
def test_a_second_process_is_refused_naming_the_holder_and_a_stale_lock_does_not_block(tiny_config, tmp_path):
    config = long_running(tiny_config)
    folder = run_dir(config)
    first = start("fit", "--config", str(config), stderr=tmp_path / "first.err")
    try:
        wait_for(has_checkpoint(folder), first, "a checkpoint")
        rows = len((folder / "train_log.csv").read_text().splitlines())
        for extra in (["--resume"], ["--overwrite"]):
            second = cvd("fit", "--config", str(config), *extra)
            assert second.returncode == 2, second.stderr
            assert "in use by another cvd process" in second.stderr, second.stderr
            assert f"pid {first.pid} on host " in second.stderr and "started 20" in second.stderr
            assert "Traceback" not in second.stderr
        assert first.poll() is None  # refused while the holder was still at work
        assert len((folder / "train_log.csv").read_text().splitlines()) >= rows  # not cleared
    finally:
        first.kill()  # kill -9: the lock file stays, the lock goes with the process
        first.wait()
    assert (folder / "run.lock").is_file()
    resumed = start("fit", "--config", str(config), "--resume", stderr=tmp_path / "resumed.err")
    try:
        wait_for(lambda: "resumed from" in (tmp_path / "resumed.err").read_text(), resumed, "the resume")
    finally:
        resumed.kill()
        resumed.wait()


# 2 ------------------------------------------------------------------------------------------
def test_resume_refuses_a_changed_trajectory_and_records_allowed_changes(tiny_config):
    config = quick(tiny_config)
    folder = run_dir(config)
    assert cvd("fit", "--config", str(config)).returncode == 0
    saved = (folder / "config.yaml").read_text()

    refused = cvd("fit", "--config", str(config), "--resume", "optim.lr=0.05", "data.batch_size=2")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "optim.lr: 0.001 -> 0.05" in refused.stderr and "data.batch_size: 4 -> 2" in refused.stderr
    assert (folder / "config.yaml").read_text() == saved

    allowed = cvd("fit", "--config", str(config), "--resume", "data.eval_batch_size=3", "train.log_every=5")
    assert allowed.returncode == 0, allowed.stderr
    info = json.loads((folder / "run_info.json").read_text())
    assert info["format"] == "cvd-run/1" and len(info["resumes"]) == 1
    assert info["resumes"][0]["changed"] == {
        "data.eval_batch_size": {"old": 8, "new": 3},
        "train.log_every": {"old": 1, "new": 5},
    }
    assert info["resumes"][0]["from_step"] == 2


# 3 ------------------------------------------------------------------------------------------
def test_overwrite_deletes_only_a_marked_run_and_only_the_toolkits_files(tiny_config, tmp_path):
    project = tmp_path / "project"
    (project / "test").mkdir(parents=True)
    (project / "test" / "test_core.py").write_text("def test(): pass\n")
    (project / "config.yaml").write_text("mine: true\n")
    config = quick(tiny_config, output_dir=str(tmp_path), name="project")
    refused = cvd("fit", "--config", str(config), "--overwrite")
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert "--overwrite refused" in refused.stderr and str(project) in refused.stderr
    assert (project / "test" / "test_core.py").is_file() and (project / "config.yaml").is_file()

    run = quick(tiny_config, name="run")
    folder = run_dir(run)
    assert cvd("fit", "--config", str(run)).returncode == 0
    (folder / "release" / "NOTES.md").write_text("mine")
    (folder / "checkpoints" / "keep.txt").write_text("mine")
    again = cvd("fit", "--config", str(run), "--overwrite", "schedule.max_steps=1")
    assert again.returncode == 0, again.stderr
    assert (folder / "release" / "NOTES.md").read_text() == "mine"
    assert (folder / "checkpoints" / "keep.txt").read_text() == "mine"
    assert sorted(p.name for p in (folder / "checkpoints").iterdir()) == ["keep.txt", "step-00000001.ckpt"]


# 4 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["../../escape", "/tmp/abs", "a/b", "..", ""])
def test_a_run_name_must_be_one_folder_inside_output_dir(tiny_config, name):
    result = cvd("fit", "--config", str(tiny_config()), f"name='{name}'", "--print-config")
    assert result.returncode == 2, result.stdout
    assert "config key 'name'" in result.stderr and "one folder name" in result.stderr
    assert "Traceback" not in result.stderr


# 5 ------------------------------------------------------------------------------------------
def test_resume_without_checkpoint_truncates_logs_and_removes_stale_temporaries(tiny_config):
    config = quick(tiny_config)
    folder = run_dir(config)
    assert cvd("fit", "--config", str(config)).returncode == 0
    for checkpoint in (folder / "checkpoints").iterdir():  # as if killed before the first one
        checkpoint.unlink()
    stale = folder / "checkpoints" / ".step-00000001.ckpt.k1ll3d.tmp"
    stale.write_bytes(b"half a checkpoint")
    resumed = cvd("fit", "--config", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    steps = [line.split(",")[0] for line in (folder / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2"]
    assert not stale.exists()


def test_sigterm_exits_143_cleanly_and_leaves_no_temporaries(tiny_config, tmp_path):
    config = long_running(tiny_config)
    folder = run_dir(config)
    process = start("fit", "--config", str(config), stderr=tmp_path / "err")
    wait_for(has_checkpoint(folder, 2), process, "a checkpoint")
    os.kill(process.pid, signal.SIGTERM)
    assert process.wait(timeout=60) == 143
    error = (tmp_path / "err").read_text()
    assert "terminated (SIGTERM)" in error and "--resume" in error and "Traceback" not in error
    leftovers = [p for p in folder.rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


# 6 ------------------------------------------------------------------------------------------
def test_a_truncated_newest_checkpoint_falls_back_to_the_one_before(tiny_config):
    config = quick(tiny_config)
    folder = run_dir(config)
    assert cvd("fit", "--config", str(config)).returncode == 0
    newest = folder / "checkpoints" / "step-00000002.ckpt"
    newest.write_bytes(newest.read_bytes()[:1000])
    resumed = cvd("fit", "--config", str(config), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "step-00000002.ckpt" in resumed.stderr and "set aside" in resumed.stderr
    assert "resumed from" in resumed.stderr and "step-00000001.ckpt" in resumed.stderr
    steps = [line.split(",")[0] for line in (folder / "train_log.csv").read_text().splitlines()[1:]]
    assert steps == ["1", "2"]
    torch.load(newest, weights_only=True)  # step 2 was written again, complete


# 7 ------------------------------------------------------------------------------------------
def test_non_finite_weights_are_never_checkpointed_nor_named_good(tiny_config):
    config = quick(tiny_config)
    result = cvd("fit", "--config", str(config), "optim.lr=.inf")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "non-finite" in result.stderr
    for path in (run_dir(config) / "checkpoints").glob("*.ckpt"):
        state = torch.load(path, weights_only=True)["model"]
        assert all(torch.isfinite(v).all() for v in state.values() if v.is_floating_point()), path
        assert path.name not in result.stderr.split("last complete checkpoint")[-1]
    assert not (run_dir(config) / "release").exists()


# 8 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o077, 0o600)])
def test_outputs_get_the_mode_the_umask_gives(tiny_config, umask, mode):
    config = quick(tiny_config, schedule={"epochs": 1, "max_steps": 1})
    assert cvd("fit", "--config", str(config), umask=umask).returncode == 0
    folder = run_dir(config)
    for path in (
        folder / "release" / "model.safetensors",
        folder / "release" / "config.yaml",
        folder / "config.yaml",
        folder / "results.json",
        folder / "checkpoints" / "step-00000001.ckpt",
    ):
        assert stat.S_IMODE(path.stat().st_mode) == mode, path


def test_atomic_writes_follow_the_umask(tmp_path):
    from cvd.atomic import atomic_write_text

    previous = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.txt", "x")
        os.umask(0o077)
        atomic_write_text(tmp_path / "b.txt", "x")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b.txt").stat().st_mode) == 0o600


# 9 ------------------------------------------------------------------------------------------
def test_a_release_with_an_edited_config_is_refused(tiny_config):
    config = quick(tiny_config, schedule={"epochs": 1, "max_steps": 1})
    folder = run_dir(config)
    assert cvd("fit", "--config", str(config)).returncode == 0
    assert cvd("test", "--model", str(folder)).returncode == 0  # unedited: loads
    release_config = folder / "release" / "config.yaml"
    edited = yaml.safe_load(release_config.read_text())
    edited["data"]["query_size"] = [24, 24]  # preprocessing only: the weights still fit
    release_config.write_text(yaml.safe_dump(edited, sort_keys=False))
    tested = cvd("test", "--model", str(folder))
    assert tested.returncode == 2 and "Traceback" not in tested.stderr
    assert str(release_config) in tested.stderr and "changed since the release" in tested.stderr
