"""The steps a table needs, in order, each tied to its resolved config by a hash in its folder name.

A step is one ``cvd fit`` (a row, or a model a row needs: a first stage, the Table 1 model that a
Table 7 row tests) or one ``cvd test``. Its folder is ``<out>/runs/<config name>-<hash>``, the hash
taken over the resolved config (overrides and data root included; where it runs and how it
reports excluded), so a changed override makes a new folder instead of resuming or mixing with
another config's run. A complete run of the same hash in another table's folder next to ``<out>``
(``runs/reproduce/table1`` for ``table7``) is used as it is: the same training is never run twice.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvd.config import load_config
from cvd.engine.runfolder import RESUMABLE_KEYS, config_leaves, covered_by
from cvd.errors import ConfigError, RunFolderError, RunLockedError
from cvd.reproduce.tables import ConfigInfo, Row

# Keys left out of the hash: where a run lives and how it reports, never what it computes
# (the ones the engine lets a resume change).
UNHASHED_KEYS = ("name", *RESUMABLE_KEYS)
TEST_KEYS = ("data.", "eval.", "train.device")
"""The overrides a ``cvd test`` step takes (the model's own sections come from its run)."""
RESULTS = "results.json"
RELEASE = Path("release") / "model.safetensors"  # cvd.models.release (not imported: it loads timm)

DONE, INTERRUPTED, PENDING, RUNNING = "done", "interrupted", "pending", "running"
WAITING_DATA, WAITING, CONFLICT, FAILED = "waiting on data", "waiting", "conflict", "failed"


@dataclass
class Step:
    """One command of the plan: its config, overrides, folder and (when known) state."""

    kind: str  # fit | test
    config: ConfigInfo
    overrides: list[str]
    folder: Path
    digest: str
    data_root: str | None
    rows: list[Row] = field(default_factory=list)
    needs: list[Step] = field(default_factory=list)
    model: Step | None = None  # the trained model a test step evaluates
    state: str = PENDING
    detail: str = ""

    @property
    def name(self) -> str:
        """The step's folder name (``<config name>-<hash>``)."""
        return self.folder.name

    @property
    def results(self) -> Path:
        """Where the step's metrics are (``results.json`` in its folder)."""
        return self.folder / RESULTS

    def argv(self, gpus: int = 1, python: str | None = None) -> list[str]:
        """The command that runs (or continues) the step; ``--resume`` also starts a fresh run."""
        python = python or sys.executable
        launcher = [python, "-m", "cvd"]
        if gpus > 1 and self.kind == "fit":
            launcher = [python, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", "-m", "cvd"]
        config = _display(self.config.path)
        if self.kind == "test":
            assert self.model is not None
            return [*launcher, "test", "--model", str(self.model.folder), "--data-config", config,
                    "--out", str(self.results), *self.overrides]  # fmt: skip
        return [*launcher, "fit", "--config", config, "--resume", "--no-progress", *self.overrides]


def _display(path: Path) -> str:
    """A config path relative to the working directory where it lies below it (shorter commands)."""
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return str(path)


def config_digest(config: Mapping[str, Any]) -> str:
    """10 hex digits of what a resolved config sets away from the toolkit's defaults.

    Keys that do not change what is computed (UNHASHED_KEYS) are left out, and so is every key at
    its packaged default: a toolkit update that adds a key (at a default that keeps the old
    behaviour) does not move the rows to new folders. A changed default that does change the
    training is caught when the folder is reused: the engine's own comparison of the run's saved
    config with the resolved one (a row in "conflict", never resumed nor collected).
    """
    from cvd.config import packaged_config_path, read_yaml

    data = json.loads(json.dumps(config, default=str))
    root = (data.get("data") or {}).get("root")
    if isinstance(root, str):
        data["data"]["root"] = str(Path(root).expanduser().resolve())
    defaults = dict(config_leaves(json.loads(json.dumps(read_yaml(packaged_config_path()), default=str))))
    missing = object()
    kept = {
        key: value
        for key, value in config_leaves(data)
        if not covered_by(key, UNHASHED_KEYS) and defaults.get(key, missing) != value
    }
    text = json.dumps(kept, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:10]


@dataclass
class PlanOptions:
    """What the command line sets for every step of a plan."""

    out: Path
    data_roots: dict[str, str] = field(default_factory=dict)
    overrides: list[str] = field(default_factory=list)
    row_overrides: Callable[[ConfigInfo], list[str]] | None = None  # per-config additions (synthetic)
    configs_root: Path | None = None


def parse_data_roots(items: Iterable[str]) -> dict[str, str]:
    """``DATASET=PATH`` pairs of ``--data-root`` -> ``{dataset: path}``."""
    from cvd.data import DATASETS

    roots: dict[str, str] = {}
    for item in items:
        dataset, sep, path = item.partition("=")
        if not sep or not dataset or not path:
            raise ConfigError(f"--data-root {item!r}: expected DATASET=PATH, e.g. university1652=/data/U1652")
        if dataset not in DATASETS:
            raise ConfigError(
                f"--data-root {item!r}: unknown dataset {dataset!r}; choose one of {', '.join(DATASETS)}"
            )
        roots[dataset] = path
    return roots


class Planner:
    """Builds the steps of one or more tables into one folder, sharing steps of the same hash."""

    def __init__(self, options: PlanOptions) -> None:
        self.options = options
        self.steps: dict[str, Step] = {}  # by digest, in order of first need

    def _overrides(self, info: ConfigInfo) -> list[str]:
        extra = list(self.options.row_overrides(info)) if self.options.row_overrides else []
        root = self.options.data_roots.get(info.dataset)
        return [*([f"data.root={root}"] if root else []), *extra, *self.options.overrides]

    def fit_step(self, info: ConfigInfo) -> Step:
        """The training of ``info`` (with the steps it starts from), shared by every row that needs it."""
        needs = []
        overrides = self._overrides(info)
        if info.init_from:
            first = self._known_first_stage(info)
            if first is not None:
                stage = self.fit_step(first)
                needs.append(stage)
                overrides.append(f"model.init_from={stage.folder}")
        config = load_config(info.path, overrides)
        digest = config_digest(config)
        if digest in self.steps:
            return self.steps[digest]
        folder = self._folder(info.name, digest)
        overrides += [f"output_dir={folder.parent}", f"name={folder.name}"]
        step = Step("fit", info, overrides, folder, digest, config["data"].get("root"), needs=needs)
        self.steps[digest] = step
        return step

    def test_step(self, row: Row) -> Step:
        """The evaluation of the model ``row.test_of`` on ``row``'s benchmark (``cvd test``)."""
        assert row.test_of is not None
        model = self.fit_step(row.test_of)
        overrides = [o for o in self._overrides(row.config) if o.startswith(TEST_KEYS)]
        config = load_config(row.config.path, overrides)
        tested = {"model": model.digest, "data": config["data"], "eval": config["eval"]}
        digest = config_digest(tested)
        if digest in self.steps:
            return self.steps[digest]
        folder = self._folder(row.config.name, digest)
        step = Step("test", row.config, overrides, folder, digest, config["data"].get("root"),
                    needs=[model], model=model)  # fmt: skip
        self.steps[digest] = step
        return step

    def add_rows(self, rows: Sequence[Row]) -> None:
        """Plan ``rows`` (and what they need); each step records the rows it serves."""
        for row in rows:
            step = self.test_step(row) if row.kind == "test" else self.fit_step(row.config)
            step.rows.append(row)

    def _known_first_stage(self, info: ConfigInfo) -> ConfigInfo | None:
        from cvd.reproduce.tables import configs

        return configs(self.options.configs_root).get(Path(str(info.init_from)).name)

    def _folder(self, name: str, digest: str) -> Path:
        """``<out>/runs/<name>-<digest>``, or a complete run of that digest in a sibling table's folder."""
        own = self.options.out / "runs" / f"{name}-{digest}"
        if own.exists():
            return own
        parent = self.options.out.parent
        for candidate in sorted(parent.glob(f"*/runs/*-{digest}")):
            if candidate.parent.parent != self.options.out and (candidate / RESULTS).is_file():
                return candidate
        return own

    def ordered(self) -> list[Step]:
        """Every step after the steps it needs (training rows, then what depends on them)."""
        order: list[Step] = []
        seen: set[str] = set()

        def visit(step: Step) -> None:
            if step.digest in seen:
                return
            for need in step.needs:
                visit(need)
            seen.add(step.digest)
            order.append(step)

        for step in sorted(self.steps.values(), key=lambda s: (s.kind == "test", bool(s.needs))):
            visit(step)
        return order


def step_state(step: Step) -> tuple[str, str]:
    """(state, detail) of a step from its folder: done, interrupted, pending, running, conflict, waiting."""
    folder = step.folder
    if step.kind == "test":
        if step.results.is_file():
            return DONE, ""
        assert step.model is not None
        if not _complete(step.model.folder):
            return WAITING, f"on {step.model.name}"
    else:
        if folder.is_dir() and _locked(folder):
            return RUNNING, "another process holds its lock"
        conflict = _conflict(step)
        if conflict:
            return CONFLICT, conflict
        if _complete(folder):
            return DONE, ""
        for need in step.needs:
            if not _complete(need.folder):
                return WAITING, f"on {need.name}"
    if step.data_root and not Path(step.data_root).expanduser().exists():
        return (
            WAITING_DATA,
            f"{step.config.dataset} not at {step.data_root} (--data-root {step.config.dataset}=PATH)",
        )
    if step.kind == "fit" and folder.is_dir():
        return INTERRUPTED, "continues from its last checkpoint (--resume)"
    return PENDING, ""


def _complete(folder: Path) -> bool:
    return (folder / RESULTS).is_file() and (folder / RELEASE).is_file()


def _locked(folder: Path) -> bool:
    from cvd.engine.runlock import LOCK_NAME, RunLock

    if not (folder / LOCK_NAME).exists():
        return False
    lock = RunLock(folder)
    try:
        lock.acquire()
    except RunLockedError:
        return True
    lock.release()
    return False


def _conflict(step: Step) -> str:
    """Why the step's folder holds another config's run (empty when it holds this one, or nothing)."""
    from cvd.engine.runfolder import check_resume_config

    saved = step.folder / "config.yaml"
    if not saved.is_file():
        return ""
    config = load_config(step.config.path, step.overrides)
    config["output_dir"], config["name"] = str(step.folder.parent), step.folder.name
    try:
        check_resume_config(step.folder, config)
    except RunFolderError as error:
        return str(error).split(". Resume with")[0]
    return ""


def refresh(steps: Iterable[Step]) -> None:
    """Set every step's state from its folder (failures recorded by a launcher are kept)."""
    for step in steps:
        if step.state == FAILED:
            continue
        step.state, step.detail = step_state(step)


def write_manifest(out: Path, tables: Mapping[int, Sequence[Row]], steps: Sequence[Step]) -> Path:
    """``<out>/plan.json``: each step's command, folder and state, and the rows it serves."""
    from cvd.atomic import atomic_write_text

    payload = {
        "tables": {str(t): [row.key for row in rows] for t, rows in tables.items()},
        "steps": [
            {
                "kind": step.kind,
                "config": _display(step.config.path),
                "folder": str(step.folder),
                "state": step.state,
                "detail": step.detail,
                "rows": [f"table{row.table}:{row.key}" for row in step.rows],
                "command": step.argv(python="python"),
            }
            for step in steps
        ],
    }
    out.mkdir(parents=True, exist_ok=True)
    path = out / "plan.json"
    atomic_write_text(path, json.dumps(payload, indent=1))
    return path
