"""Running a plan's steps: one after the other here (``local``), or as SLURM job arrays (``slurm``).

Each step runs as its own process (``python -m cvd fit|test ...``), the very command a SLURM task
runs: a crash, an out-of-memory kill or a stuck GPU in one row ends that process, not the driver;
the GPU memory is returned between rows; and ``--gpus N`` is ``torch.distributed.run`` in front of
the same command. The output of each step goes to ``<out>/logs/<step>.log``.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from cvd.reproduce.plan import DONE, FAILED, INTERRUPTED, PENDING, RELEASE, RESULTS, Step, refresh, step_state

Report = Callable[[str], None]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def describe(step: Step) -> str:
    """``fit university1652_lpn-1a2b3c4d5e (table1: LPN)``: what a progress line names."""
    rows = ", ".join(
        f"table{row.table}: {row.label}" + (f" {row.group}" if row.group else "") for row in step.rows
    )
    return f"{step.kind} {step.name}" + (f" ({rows})" if rows else " (needed by a row)")


def run_local(
    steps: Sequence[Step],
    out: Path,
    gpus: int = 1,
    report: Report = _stderr,
    env: dict[str, str] | None = None,
) -> dict[str, int]:
    """Run every step that is not done, in order; returns how many steps ended in each state.

    A step whose data is missing, or which needs a step that failed, is left waiting; the others
    still run. The state of every step is read from its folder again before it would start, so a
    reproduce interrupted and started again continues where it stopped.
    """
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    total = len(steps)
    for number, step in enumerate(steps, start=1):
        if step.state != FAILED:
            step.state, step.detail = step_state(step)
        prefix = f"[{number}/{total}]"
        if step.state not in (PENDING, INTERRUPTED):
            report(
                f"{prefix} {step.state:<12} {describe(step)}" + (f": {step.detail}" if step.detail else "")
            )
            continue
        if any(need.state == FAILED for need in step.needs):
            step.detail = "a step it needs failed"
            report(f"{prefix} {'waiting':<12} {describe(step)}: {step.detail}")
            continue
        log = logs / f"{step.name}.log"
        verb = "resuming" if step.state == INTERRUPTED else "running"
        report(f"{prefix} {verb:<12} {describe(step)} (log: {log})")
        started = time.monotonic()
        code = _run(step.argv(gpus), log, env)
        minutes = (time.monotonic() - started) / 60
        if code == 0 and step.kind == "test" and not step.results.is_file():
            code = 1  # pragma: no cover - cvd test writes its --out or fails
        if code == 0:
            step.state, step.detail = step_state(step)
            report(f"{prefix} {step.state:<12} {describe(step)} in {minutes:.1f} min")
        else:
            step.state, step.detail = FAILED, f"exit status {code}; last lines of {log}:\n{_tail(log)}"
            report(f"{prefix} {FAILED:<12} {describe(step)}: {step.detail}")
    refresh(steps)
    counts: dict[str, int] = {}
    for step in steps:
        counts[step.state] = counts.get(step.state, 0) + 1
    return counts


def _run(argv: list[str], log: Path, env: dict[str, str] | None) -> int:
    with open(log, "a", encoding="utf-8") as handle:
        handle.write(f"$ {shlex.join(argv)}\n")
        handle.flush()
        process = subprocess.run(
            argv, stdout=handle, stderr=subprocess.STDOUT, env=env or os.environ.copy(), check=False
        )
    return process.returncode


def _tail(log: Path, lines: int = 8) -> str:
    text = log.read_text(encoding="utf-8", errors="replace").splitlines()
    return "\n".join(f"    {line}" for line in text[-lines:])


def phases(steps: Sequence[Step]) -> list[list[Step]]:
    """Steps by dependency depth: phase 0 needs nothing, phase k needs only phases before it."""
    depth: dict[str, int] = {}

    def level(step: Step) -> int:
        if step.digest not in depth:
            depth[step.digest] = 1 + max((level(need) for need in step.needs), default=-1)
        return depth[step.digest]

    grouped: dict[int, list[Step]] = {}
    for step in steps:
        grouped.setdefault(level(step), []).append(step)
    return [grouped[k] for k in sorted(grouped)]


def write_slurm(
    steps: Sequence[Step],
    out: Path,
    name: str,
    gpus: int = 1,
    sbatch_options: Sequence[str] = (),
    python: str | None = None,
) -> list[Path]:
    """One job-array script per dependency phase, and ``submit.sh`` chaining them (``afterok``).

    Each array task runs one step's command; a task whose step is complete exits at once, and an
    interrupted one continues from its checkpoint (``--resume``), so the scripts can be submitted
    again after a failure or a time-out. Nothing here needs SLURM installed: the scripts are text.
    """
    folder = out / "slurm"
    folder.mkdir(parents=True, exist_ok=True)
    (out / "logs").mkdir(parents=True, exist_ok=True)
    python = python or sys.executable
    written = []
    todo = [step for step in steps if step.state != DONE]
    for number, phase in enumerate(phases(todo)):
        cases = []
        for task, step in enumerate(phase):
            done_test = f"[ -f {shlex.quote(str(step.results))} ]"
            if step.kind == "fit":
                done_test += f" && [ -f {shlex.quote(str(step.folder / RELEASE))} ]"
            command = shlex.join(step.argv(gpus if step.kind == "fit" else 1, python))
            cases.append(
                f"  {task})  # {describe(step)}\n    if {done_test}; then echo 'done already'; exit 0; fi\n"
                f"    exec {command} ;;"
            )
        gres = gpus if any(step.kind == "fit" for step in phase) else 1
        options = [
            f"#SBATCH --job-name=cvd-{name}-{number}",
            f"#SBATCH --array=0-{len(phase) - 1}",
            f"#SBATCH --output={out / 'logs'}/slurm-{name}-{number}-%a.log",
            f"#SBATCH --gres=gpu:{gres}",
            f"#SBATCH --cpus-per-task={8 * gres}",
            *(f"#SBATCH {option}" for option in sbatch_options),
        ]
        script = folder / f"{name}-phase{number}.sbatch"
        script.write_text(
            "#!/bin/bash\n" + "\n".join(options) + "\n"
            f"# cvd reproduce {name}, phase {number}: {len(phase)} steps, one per array task.\n"
            f"# Written by cvd reproduce --launcher slurm; submit-{name}.sh submits the phases in order.\n"
            "set -euo pipefail\n"
            f"cd {shlex.quote(str(Path.cwd()))}\n"
            'case "$SLURM_ARRAY_TASK_ID" in\n' + "\n".join(cases) + "\n"
            '  *) echo "no step for task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;\nesac\n',
            encoding="utf-8",
        )
        written.append(script)
    submit = folder / f"submit-{name}.sh"
    lines = [
        "#!/bin/bash",
        f"# Submit the phases of cvd reproduce {name} in order (each after the last succeeded).",
        "set -euo pipefail",
        'cd "$(dirname "$0")"',
        "previous=",
    ]
    for script in written:
        lines.append(
            f"job=$(sbatch --parsable ${{previous:+--dependency=afterok:$previous}} {script.name}); "
            f'echo "{script.name}: job $job"; previous=${{job%%;*}}'
        )
    submit.write_text("\n".join(lines) + "\n", encoding="utf-8")
    submit.chmod(0o755)
    return [*written, submit]


__all__ = ["RESULTS", "describe", "phases", "run_local", "write_slurm"]
