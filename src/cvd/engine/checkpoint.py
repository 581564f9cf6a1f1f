"""Training checkpoints: atomic writes, the last N kept, full state for an exact resume.

A checkpoint holds everything a resumed run needs to continue as if never stopped: model
(with the loss's own parameters), optimiser, scheduler, gradient scaler, the position in the
epoch, and the RNG states. It is written to a temporary file and renamed, so a kill never leaves
a half-written file under a checkpoint's name; it is read back with ``weights_only=True``, so a
checkpoint file cannot run code. Released weights (for users) are safetensors; see
``cvd.models.save_release``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cvd.atomic import atomic_output
from cvd.errors import CheckpointError

CHECKPOINT_PATTERN = re.compile(r"^step-(\d+)\.ckpt$")


def checkpoint_path(directory: Path, step: int) -> Path:
    """Name of the checkpoint written after optimiser step ``step``."""
    return directory / f"step-{step:08d}.ckpt"


def list_checkpoints(directory: Path) -> list[Path]:
    """Complete checkpoints in ``directory``, oldest first (temporary files are ignored)."""
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def latest_checkpoint(directory: Path) -> Path | None:
    """The most recent complete checkpoint, or None."""
    checkpoints = list_checkpoints(directory)
    return checkpoints[-1] if checkpoints else None


def atomic_torch_save(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file in the same folder, then ``os.replace`` onto ``path``."""
    with atomic_output(path) as temporary:
        torch.save(obj, temporary)


def save_checkpoint(state: dict[str, Any], directory: Path, step: int, keep_last: int) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step`` and prune all but the last ``keep_last``."""
    path = checkpoint_path(directory, step)
    atomic_torch_save(state, path)
    if keep_last > 0:
        for old in list_checkpoints(directory)[:-keep_last]:
            old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``); a damaged file is named in the error."""
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # torch raises several types for truncated or foreign files
        raise CheckpointError(f"cannot read checkpoint {path}: {error}") from error
    if not isinstance(state, dict) or "model" not in state:
        raise CheckpointError(f"{path} is not a cvd training checkpoint (no 'model' entry)")
    return state


def capture_rng_state() -> dict[str, Any]:
    """RNG states of Python, NumPy and torch, as tensors and plain types (loadable with weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`."""
    python_state = state["python"]
    random.setstate((python_state[0], tuple(python_state[1]), python_state[2]))
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            numpy_state["kind"],
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
