"""What a run folder promises (docs/engine.md, "Guarantees"): whose it is, what a resume may change,
and what ``--overwrite`` may delete.

- ``run_info.json`` carries ``format: cvd-run/1``: the marker that the folder was made by
  ``cvd fit``. ``--overwrite`` deletes nothing in a folder without it, and in a folder with it only
  the files the toolkit writes (by name), never a user's.
- ``--resume`` compares the config it is given with the run's saved ``config.yaml``: a change that
  alters the training trajectory is refused (naming keys, old and new values); the few keys that
  cannot (``RESUMABLE_KEYS``) may change, and each change is recorded in ``run_info.json``.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from cvd.atomic import stale_temporaries
from cvd.config import _yaml_load, dump_yaml, packaged_config_path, read_yaml
from cvd.errors import ConfigError, RunFolderError

LOGGER = logging.getLogger("cvd")

RUN_FORMAT = "cvd-run/1"
RUN_INFO = "run_info.json"

# Keys a resumed run may change: where it runs and how it reports, never what it computes.
RESUMABLE_KEYS: tuple[str, ...] = (
    "output_dir",  # the folder was moved: the run is found by output_dir/name either way
    "meta",  # provenance text
    "train.device",
    "train.log_every",
    "data.num_workers",  # augmentation is seeded per item: the images do not depend on workers
    "data.eval_batch_size",
    "data.max_skipped_share",  # when to give up on unreadable images, not what is trained
    "eval.chunk_size",
    "checkpoint.every_steps",
    "checkpoint.keep_last",
)
# Keys set by the engine itself once the data is read: not the user's to change.
DERIVED_KEYS: tuple[str, ...] = ("model.num_classes",)
# Path values: the same folder written another way (relative / absolute) is no change.
PATH_KEYS: tuple[str, ...] = ("data.root", "model.init_from")

# What the toolkit writes in a run folder: file names at the top, and (folder, file pattern).
OWNED_FILES: tuple[str, ...] = (
    "config.yaml",
    RUN_INFO,
    "train_log.csv",
    "eval_log.csv",
    "results.json",
)
OWNED_FOLDERS: dict[str, re.Pattern[str]] = {
    "checkpoints": re.compile(r"^step-\d+\.ckpt(\.corrupt)?$"),
    "eval": re.compile(r"^step-\d+\.json$"),
    "release": re.compile(r"^(model\.safetensors|config\.yaml)$"),
    "tensorboard": re.compile(r"^events\.out\.tfevents\..+$"),
    "test": re.compile(r"^[A-Za-z0-9_]+-(official|sample4geo)\.json$"),
}


def run_artefacts(run_dir: Path) -> list[str]:
    """Names of the toolkit's files and folders present in ``run_dir``."""
    return [name for name in (*OWNED_FILES, *OWNED_FOLDERS) if (run_dir / name).exists()]


def read_run_info(run_dir: Path) -> dict[str, Any] | None:
    """``run_info.json`` as a mapping, or None when absent or not a toolkit's file."""
    path = run_dir / RUN_INFO
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return info if isinstance(info, dict) else None


# run_info.json of runs written before the marker had these keys (and users' files do not)
LEGACY_RUN_KEYS = frozenset({"cvd_version", "git_commit", "steps_per_epoch", "total_steps", "train_pairs"})


def is_cvd_run(run_dir: Path) -> bool:
    """Whether ``run_dir`` carries this toolkit's run marker (or is a run from before the marker)."""
    info = read_run_info(run_dir)
    if not info:
        return False
    return str(info.get("format", "")).startswith("cvd-run/") or set(info) >= LEGACY_RUN_KEYS


def remove_run(run_dir: Path) -> list[Path]:
    """Delete the toolkit's own files of a marked run; returns what was left (a user's files).

    Refuses (naming the folder) when ``run_dir`` does not carry the run marker.
    """
    if not is_cvd_run(run_dir):
        found = ", ".join(run_artefacts(run_dir))
        raise RunFolderError(
            f"--overwrite refused: {run_dir} holds {found} but is not a run made by cvd fit (no "
            f"{RUN_INFO} with format '{RUN_FORMAT}'), and --overwrite deletes only such runs; "
            "move its files away yourself or choose another name=/output_dir="
        )
    for path in stale_temporaries(run_dir):
        path.unlink(missing_ok=True)
    for name in OWNED_FILES:
        (run_dir / name).unlink(missing_ok=True)
    kept: list[Path] = []
    for folder, pattern in OWNED_FOLDERS.items():
        directory = run_dir / folder
        if not directory.is_dir():
            continue
        for path in directory.iterdir():
            owned = pattern.match(path.name) or (
                path.name.startswith(".") and path.name.endswith(".tmp") and path.is_file()
            )
            if owned and path.is_file():
                path.unlink()
            else:
                kept.append(path)
        if not any(directory.iterdir()):
            directory.rmdir()
    if kept:
        LOGGER.warning(
            "--overwrite kept files cvd fit did not write: %s", ", ".join(str(path) for path in kept)
        )
    return kept


def clean_temporaries(run_dir: Path) -> list[Path]:
    """Remove what a killed write left (``.NAME.*.tmp``); only safe while holding the run's lock."""
    removed = []
    for folder in (run_dir, *(run_dir / name for name in OWNED_FOLDERS)):
        for path in stale_temporaries(folder):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _normalised(config: Mapping[str, Any]) -> dict[str, Any]:
    """A config as it reads back from config.yaml (lists not tuples, plain scalars)."""
    return _yaml_load(dump_yaml(config)) or {}


def config_leaves(node: Any, prefix: str = "") -> Iterable[tuple[str, Any]]:
    """(dotted key, value) of every leaf of a config; an empty mapping is a leaf."""
    if isinstance(node, Mapping) and node:
        for key, value in node.items():
            yield from config_leaves(value, f"{prefix}{key}.")
    else:
        yield prefix[:-1], node


def covered_by(key: str, prefixes: Iterable[str]) -> bool:
    """Whether `key` is one of `prefixes` or lies below one."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def _same_path(old: Any, new: Any) -> bool:
    if not isinstance(old, str) or not isinstance(new, str):
        return old == new
    return Path(old).expanduser().resolve() == Path(new).expanduser().resolve()


def config_changes(saved: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """``{key: (saved value, given value)}`` for every leaf that differs (derived keys excepted)."""
    old = dict(config_leaves(_normalised(saved)))
    new = dict(config_leaves(_normalised(given)))
    defaults = dict(config_leaves(read_yaml(packaged_config_path())))
    changes: dict[str, tuple[Any, Any]] = {}
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if key not in old and key in defaults and after == defaults[key]:
            continue  # a key added to the toolkit since the run started, at its default
        if covered_by(key, DERIVED_KEYS) and after is None:
            continue
        if key in PATH_KEYS and _same_path(before, after):
            continue
        if before != after:
            changes[key] = (before, after)
    return changes


def check_resume_config(run_dir: Path, config: Mapping[str, Any]) -> dict[str, tuple[Any, Any]]:
    """The allowed changes of a resume (empty when none); refuses one that alters the trajectory.

    A run without a saved config.yaml (killed before writing it) has nothing to compare with.
    """
    saved_path = run_dir / "config.yaml"
    if not saved_path.is_file():
        return {}
    try:
        saved = read_yaml(saved_path)
    except ConfigError as error:
        raise RunFolderError(f"--resume: cannot read the run's saved config: {error}") from error
    changes = config_changes(saved, config)
    refused = {key: change for key, change in changes.items() if not covered_by(key, RESUMABLE_KEYS)}
    if refused:
        listed = "; ".join(f"{key}: {old!r} -> {new!r}" for key, (old, new) in refused.items())
        raise RunFolderError(
            f"--resume refused: the config differs from the run's {saved_path} in keys that change "
            f"what is trained ({listed}). Resume with the run's own config (cvd fit --config "
            f"{saved_path} --resume), or start a new run (another name=, or --overwrite). Keys a "
            f"resume may change: {', '.join(RESUMABLE_KEYS)}"
        )
    return changes


def remove_corrupt(path: Path) -> Path:
    """Set a damaged checkpoint aside (kept for a look, never loaded nor named as good again)."""
    target = path.with_name(path.name + ".corrupt")
    shutil.move(str(path), str(target))
    return target
