"""Fault injection on run folders (issue 13): provoke each failure through the real `cvd` command on
a tiny synthetic world and print what happened, one row per case (case, expected, observed, pass).

Cases: kill -9 mid-run then --resume; a second process on a folder in use; SIGTERM; a truncated
newest checkpoint; a full disk (a small tmpfs: needs root and mount(8); skipped with a note
otherwise). The resumed runs are compared bit for bit with an uninterrupted one (CPU,
``deterministic: true``). Not a test: it takes about two minutes on two cores.

    python benchmarks/fault_injection.py [--work DIR] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import yaml
from safetensors.torch import load_file


@dataclass
class Outcome:
    case: str
    expected: str
    observed: str
    passed: bool


def cvd(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cvd", *args], capture_output=True, text=True, timeout=900, check=False
    )


def start(log: Path, *args: str) -> subprocess.Popen:
    with log.open("w") as handle:
        return subprocess.Popen(
            [sys.executable, "-m", "cvd", *args], stdout=subprocess.DEVNULL, stderr=handle
        )


def wait_for(condition: Callable[[], bool], process: subprocess.Popen, timeout: float = 300) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:150] if lines else ""


class World:
    """The synthetic dataset and one config file per run (names are folders under runs/)."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.root = work / "world"
        if not (self.root / "train").is_dir():
            made = cvd(
                "synth", "--layout", "university1652", "--locations", "8", "--views-per-location", "2",
                "--size", "32", "--seed", "0", "--out", str(self.root), "--no-progress",
            )  # fmt: skip
            if made.returncode != 0:
                raise SystemExit(f"cvd synth failed: {made.stderr}")

    def config(self, name: str, output_dir: Path | None = None, epochs: int = 3) -> Path:
        values = {
            "name": name,
            "output_dir": str(output_dir or self.work / "runs"),
            "deterministic": True,
            "data": {
                "dataset": "university1652",
                "root": str(self.root),
                "query_size": [32, 32],
                "satellite_size": [32, 32],
                "batch_size": 4,
                "eval_batch_size": 8,
                "num_workers": 0,
            },
            "model": {"backbone": {"name": "test_convnext", "pretrained": False}},
            "cvd": {"enabled": True, "recon_size": 8, "decoder_channels": 8, "n_projections": 16},
            "optim": {"lr": 0.001},
            "schedule": {"epochs": epochs, "warmup_epochs": 0.5},
            "train": {"log_every": 1},
            "eval": {"every_epochs": 0, "max_queries": 4},
            "checkpoint": {"every_steps": 1, "keep_last": 2},
        }
        path = self.work / f"{name}.yaml"
        path.write_text(yaml.safe_dump(values))
        return path

    def folder(self, config: Path) -> Path:
        values = yaml.safe_load(config.read_text())
        return Path(values["output_dir"]) / values["name"]


def same_weights(a: Path, b: Path) -> bool:
    first, second = load_file(str(a)), load_file(str(b))
    return first.keys() == second.keys() and all(torch.equal(first[k], second[k]) for k in first)


def has_checkpoint(folder: Path, at_least: int) -> Callable[[], bool]:
    """A condition: a checkpoint of step >= at_least exists (older ones are pruned as it runs)."""

    def check() -> bool:
        steps = [int(p.name[5:13]) for p in (folder / "checkpoints").glob("step-*.ckpt")]
        return any(step >= at_least for step in steps)

    return check


def temporaries(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.name.endswith(".tmp")]


def logged_steps(folder: Path) -> list[int]:
    lines = (folder / "train_log.csv").read_text().splitlines()[1:]
    return [int(line.split(",")[0]) for line in lines]


def case_kill_and_resume(world: World, reference: Path) -> Outcome:
    config = world.config("killed")
    folder = world.folder(config)
    process = start(world.work / "killed.err", "fit", "--config", str(config))
    reached = wait_for(has_checkpoint(folder, 3), process)
    process.send_signal(signal.SIGKILL)
    process.wait()
    resumed = cvd("fit", "--config", str(config), "--resume")
    ok = (
        reached
        and resumed.returncode == 0
        and same_weights(folder / "release" / "model.safetensors", reference)
        and not temporaries(folder)
        and logged_steps(folder) == [1, 2, 3, 4, 5, 6]
    )
    observed = (
        f"resume exit {resumed.returncode}; weights "
        f"{'identical' if resumed.returncode == 0 and same_weights(folder / 'release' / 'model.safetensors', reference) else 'DIFFER'}; "  # noqa: E501
        f"log steps {logged_steps(folder)}; {len(temporaries(folder))} .tmp left"
    )
    return Outcome(
        "kill -9 mid-run, --resume",
        "exit 0, weights = uninterrupted run, log steps 1..6 once, no .tmp",
        observed,
        ok,
    )


def case_concurrent(world: World) -> Outcome:
    config = world.config("busy", epochs=5000)
    folder = world.folder(config)
    holder = start(world.work / "busy.err", "fit", "--config", str(config))
    try:
        wait_for(has_checkpoint(folder, 1), holder)
        second = cvd("fit", "--config", str(config), "--resume")
        fresh = cvd("fit", "--config", str(config), "--overwrite")
    finally:
        holder.kill()
        holder.wait()
    named = f"pid {holder.pid} on host" in second.stderr and f"pid {holder.pid} on host" in fresh.stderr
    ok = second.returncode == 2 and fresh.returncode == 2 and named
    return Outcome(
        "2nd `cvd fit` on a folder in use",
        "--resume and --overwrite both exit 2 naming the holder's pid/host/start",
        f"exit {second.returncode}/{fresh.returncode}: {last_line(second.stderr)}",
        ok,
    )


def case_sigterm(world: World, reference: Path) -> Outcome:
    config = world.config("terminated")
    folder = world.folder(config)
    log = world.work / "terminated.err"
    process = start(log, "fit", "--config", str(config))
    wait_for(has_checkpoint(folder, 2), process)
    process.send_signal(signal.SIGTERM)
    code = process.wait(timeout=120)
    message = log.read_text()
    left = temporaries(folder)
    resumed = cvd("fit", "--config", str(config), "--resume")
    identical = resumed.returncode == 0 and same_weights(folder / "release" / "model.safetensors", reference)
    ok = code == 143 and "Traceback" not in message and not left and identical
    return Outcome(
        "SIGTERM mid-run, then --resume",
        "exit 143, one-line message, no .tmp; resume = uninterrupted run",
        f"exit {code}: {last_line(message)}; {len(left)} .tmp; resume exit {resumed.returncode}, "
        f"weights {'identical' if identical else 'DIFFER'}",
        ok,
    )


def case_truncated(world: World, reference: Path) -> Outcome:
    config = world.config("truncated")
    folder = world.folder(config)
    finished = cvd("fit", "--config", str(config))
    newest = folder / "checkpoints" / "step-00000006.ckpt"
    if finished.returncode != 0 or not newest.is_file():
        return Outcome(
            "truncated newest checkpoint", "-", f"setup failed: {last_line(finished.stderr)}", False
        )
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 3])
    resumed = cvd("fit", "--config", str(config), "--resume")
    fell_back = "set aside" in resumed.stderr and "step-00000005.ckpt" in resumed.stderr
    identical = resumed.returncode == 0 and same_weights(folder / "release" / "model.safetensors", reference)
    ok = fell_back and identical
    return Outcome(
        "truncated newest checkpoint, --resume",
        "warns, uses step 5, exit 0, weights = uninterrupted run",
        f"exit {resumed.returncode}; fallback {'announced' if fell_back else 'NOT announced'}; "
        f"weights {'identical' if identical else 'DIFFER'}",
        ok,
    )


def case_disk_full(world: World, reference: Path, checkpoint_size: int) -> Outcome:
    name = "disk full (tmpfs), free space, --resume"
    expected = "exit 2 naming the step, no .tmp, older checkpoints intact; resume = uninterrupted run"
    mount = world.work / "small_disk"
    mount.mkdir(exist_ok=True)
    size_kib = int(checkpoint_size * 2.5) // 1024  # room for two checkpoints, not the third's temporary
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return Outcome(name, expected, "SKIPPED: needs root and mount(8) for a small tmpfs", True)
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        return Outcome(name, expected, f"SKIPPED: cannot mount a tmpfs ({last_line(mounted.stderr)})", True)
    try:
        config = world.config("full", output_dir=mount)
        folder = world.folder(config)
        failed = cvd("fit", "--config", str(config))
        left = temporaries(folder)
        remaining = sorted(p.name for p in (folder / "checkpoints").glob("*.ckpt"))
        readable = all(
            isinstance(torch.load(folder / "checkpoints" / n, weights_only=True), dict) for n in remaining
        )
        subprocess.run(["mount", "-o", "remount,size=256m", str(mount)], check=True)
        resumed = cvd("fit", "--config", str(config), "--resume")
        identical = resumed.returncode == 0 and same_weights(
            folder / "release" / "model.safetensors", reference
        )
        ok = failed.returncode == 2 and not left and readable and bool(remaining) and identical
        observed = (
            f"exit {failed.returncode}: {last_line(failed.stderr)[:90]}...; {len(left)} .tmp; kept "
            f"{remaining}; resume exit {resumed.returncode}, weights {'identical' if identical else 'DIFFER'}"
        )
        return Outcome(name, expected, observed, ok)
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the working folder")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="cvd-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        world = World(work)
        reference_config = world.config("reference")
        made = cvd("fit", "--config", str(reference_config))
        if made.returncode != 0:
            raise SystemExit(f"the reference run failed: {made.stderr}")
        reference = world.folder(reference_config) / "release" / "model.safetensors"
        checkpoint_size = max(
            p.stat().st_size for p in (world.folder(reference_config) / "checkpoints").iterdir()
        )
        outcomes = [
            case_kill_and_resume(world, reference),
            case_concurrent(world),
            case_sigterm(world, reference),
            case_truncated(world, reference),
            case_disk_full(world, reference, checkpoint_size),
        ]
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    print("| case | expected | observed | result |")
    print("|---|---|---|---|")
    for outcome in outcomes:
        verdict = "pass" if outcome.passed else "FAIL"
        print(f"| {outcome.case} | {outcome.expected} | {outcome.observed} | {verdict} |")
    print(f"\n{sum(o.passed for o in outcomes)}/{len(outcomes)} pass, {time.perf_counter() - started:.0f} s")
    return 0 if all(o.passed for o in outcomes) else 1


if __name__ == "__main__":
    sys.exit(main())
