"""Runtime failures that must read as one line, not a traceback (issue 13, item 15): an output
folder the user cannot write (`cvd fit`'s output_dir, `--out` of test / index build / export /
synth), a bad `model.init_from`, and a disk that fills up during a checkpoint write.

The folder is made unwritable with chmod 0555. Root ignores that (CAP_DAC_OVERRIDE), so as root
the commands run with that capability dropped from their bounding set: the kernel then refuses
root's writes there with EACCES too, as it refuses any user's.
"""

from __future__ import annotations

import ctypes
import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests.engine.conftest import run_cvd, write_tiny_config

PR_CAPBSET_DROP = 24
CAP_DAC_OVERRIDE = 1


def _drop_dac_override() -> None:
    """In the child, before exec: root loses the right to write where the modes forbid it."""
    if os.geteuid() == 0:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE, 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)")


def cvd(*args: str) -> subprocess.CompletedProcess:
    return run_cvd(*args, preexec_fn=_drop_dac_override)


@pytest.fixture
def read_only(tmp_path: Path) -> Path:
    """A folder (mode 0555) the commands cannot write into; skipped where that cannot be arranged."""
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        probe = subprocess.run(
            [sys.executable, "-c", f"open({str(folder / 'probe')!r}, 'w')"],
            capture_output=True,
            text=True,
            check=False,
            preexec_fn=_drop_dac_override,
        )
    except subprocess.SubprocessError as error:  # prctl refused (no CAP_SETPCAP in this container)
        pytest.skip(f"running as root and cannot drop CAP_DAC_OVERRIDE ({error}): chmod 0555 blocks nothing")
    if probe.returncode == 0:
        pytest.skip("a chmod 0555 folder is writable here (root with CAP_DAC_OVERRIDE): nothing to test")
    yield folder
    folder.chmod(0o755)


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory, tiny_world: Path) -> Path:
    """A finished one-step tiny run (its release is what test / index / export read)."""
    directory = tmp_path_factory.mktemp("trained")
    config = write_tiny_config(
        directory, tiny_world, schedule={"epochs": 1, "max_steps": 1}, eval={"every_epochs": 0}
    )
    result = run_cvd("fit", "--config", str(config))
    assert result.returncode == 0, result.stderr
    return directory / "runs" / "tiny"


def assert_one_line_error(result: subprocess.CompletedProcess, command: str, *named: str) -> str:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith(f"cvd {command}: error:")]
    assert len(lines) == 1, result.stderr
    for text in named:
        assert text in lines[0], lines[0]
    return lines[0]


def test_fit_into_an_unwritable_output_dir_names_it(tiny_config, read_only):
    config = tiny_config(schedule={"epochs": 1, "max_steps": 1}, eval={"every_epochs": 0})
    result = cvd("fit", "--config", str(config), f"output_dir={read_only / 'runs'}")
    line = assert_one_line_error(result, "fit", f"output_dir={read_only / 'runs'}", "Permission denied")
    assert "run folder" in line


@pytest.mark.parametrize("command", ["test", "index", "export", "synth"])
def test_an_unwritable_out_is_one_line_naming_it(command, trained, tmp_path, read_only):
    out = (
        read_only / {"test": "results.json", "index": "index", "export": "m.onnx", "synth": "world"}[command]
    )
    if command == "test":
        args = ["test", "--model", str(trained), "--out", str(out)]
    elif command == "index":
        world = yaml.safe_load((trained / "config.yaml").read_text())["data"]["root"]
        tiles = sorted((Path(world) / "test" / "gallery_satellite").rglob("*.jpg"))
        csv = tmp_path / "tiles.csv"
        rows = [f"{path},{47 + i / 1000},{8 + i / 1000}" for i, path in enumerate(tiles)]
        csv.write_text("path,lat,lon\n" + "\n".join(rows) + "\n")
        args = [
            "index",
            "build",
            "--model",
            str(trained),
            "--tiles",
            str(csv),
            "--out",
            str(out),
            "--no-progress",
        ]
    elif command == "export":
        args = ["export", "--model", str(trained), "--out", str(out)]
    else:
        args = ["synth", "--layout", "university1652", "--locations", "2", "--views-per-location", "1"]
        args += ["--size", "32", "--out", str(out), "--no-progress"]
    result = cvd(*args)
    assert_one_line_error(result, command, str(out), "Permission denied")


def test_init_from_a_corrupt_safetensors_file_names_it(tiny_config, tmp_path):
    garbage = tmp_path / "weights.safetensors"
    garbage.write_bytes(b"this is not a safetensors file")
    config = tiny_config(schedule={"epochs": 1, "max_steps": 1}, eval={"every_epochs": 0})
    result = cvd("fit", "--config", str(config), f"model.init_from={garbage}")
    assert_one_line_error(result, "fit", "model.init_from", str(garbage))


def test_init_from_a_missing_path_names_it(tiny_config, tmp_path):
    missing = tmp_path / "no-such-run" / "model.safetensors"
    config = tiny_config(schedule={"epochs": 1, "max_steps": 1}, eval={"every_epochs": 0})
    result = cvd("fit", "--config", str(config), f"model.init_from={missing}")
    assert_one_line_error(result, "fit", "model.init_from", str(missing))


def test_a_disk_full_during_a_checkpoint_write_is_one_line(tiny_config, monkeypatch, capsys):
    """The write fails as a full disk makes torch.save fail; the run stops naming the step."""
    from cvd import cli
    from cvd.engine import checkpoint

    def full_disk(obj: object, path: object, *args: object, **kwargs: object) -> None:
        Path(path).write_bytes(b"half a checkpoint")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(checkpoint.torch, "save", full_disk)
    config = tiny_config(schedule={"epochs": 1, "max_steps": 1}, eval={"every_epochs": 0})
    assert cli.main(["fit", "--config", str(config), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error
    assert "cvd fit: error: cannot write the checkpoint of step 1" in error and "disk full?" in error
    folder = Path(yaml.safe_load(config.read_text())["output_dir"]) / "tiny" / "checkpoints"
    assert [p.name for p in folder.iterdir()] == [], "a half-written checkpoint or temporary was left"
