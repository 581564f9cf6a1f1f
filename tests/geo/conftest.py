"""Helpers of the localization tests: tiny images, a hand-made embedder, a tiny released model."""

from __future__ import annotations

import os

# faiss bundles its own OpenMP runtime, initialised on first import: passive waiting keeps its
# threads from spinning against the other test worker on a 2-core machine
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from cvd.geo.gallery import GalleryTile

TINY_CONFIG = {
    "model": {"backbone": {"name": "tf_efficientnet_lite0", "pretrained": False}, "head": {"name": "gap"}},
    "cvd": {"enabled": True},
    "data": {"query_size": 64, "satellite_size": 64},
}


def save_png(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)
    return path


def pattern(seed: int, size: int = 48) -> np.ndarray:
    """A distinct, smooth-ish RGB pattern per seed (so embeddings of different seeds differ)."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(4, 4, 3)).astype(np.uint8)
    return np.asarray(Image.fromarray(coarse).resize((size, size), Image.Resampling.BILINEAR))


class HandEmbedder:
    """A model-free embedder: the image at 8x8, centred, times a fixed random projection.

    Same image in -> same vector out, different patterns -> different vectors, which is all the
    index and localization logic needs; `calls` counts embed() batches (to test resuming).
    """

    def __init__(self, identity: str = "sha256:hand", dim: int = 16, fail_after: int | None = None) -> None:
        self.identity = identity
        self.source = "hand-made"
        self.view = "satellite"
        self.embedding_dim = dim
        self.data_config = {"input_size": [3, 8, 8], "mean": [0.5] * 3, "std": [0.5] * 3}
        self.projection = torch.from_numpy(
            np.random.default_rng(7).standard_normal((192, dim)).astype(np.float32)
        )
        self.calls = 0
        self.fail_after = fail_after

    def transform(self, image: Image.Image) -> torch.Tensor:
        array = np.asarray(image.convert("RGB").resize((8, 8), Image.Resampling.BILINEAR), dtype=np.float32)
        return torch.from_numpy((array / 127.5 - 1.0).transpose(2, 0, 1).copy())

    def embed(self, images: torch.Tensor) -> np.ndarray:
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("simulated interruption")
        self.calls += 1
        flat = images.reshape(len(images), -1)
        flat = flat - flat.mean(dim=1, keepdim=True)
        out = torch.nn.functional.normalize(flat @ self.projection, dim=1)
        return out.numpy()


def grid_tiles(folder: Path, n: int, spacing_deg: float = 0.001, origin=(47.0, 8.0)) -> list[GalleryTile]:
    """n tiles with distinct patterns on a row-major grid (10 per row) near `origin`."""
    tiles = []
    for i in range(n):
        path = save_png(folder / f"tile_{i:04d}.png", pattern(i))
        lat = origin[0] - (i // 10) * spacing_deg
        lon = origin[1] + (i % 10) * spacing_deg
        tiles.append(GalleryTile(f"t{i:04d}", path, lat, lon))
    return tiles


@pytest.fixture(autouse=True, scope="module")
def _one_thread_per_worker():
    """One torch and one faiss thread while these tests run (pytest -n 2 on 2 cores).

    With more threads than free cores, OpenMP's spinning threads slow small models down by
    30x or more on a busy machine; the previous torch setting is restored afterwards.
    """
    import faiss

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture()
def hand_embedder() -> HandEmbedder:
    return HandEmbedder()


@pytest.fixture(scope="session")
def helpers() -> SimpleNamespace:
    """The helpers above, as a fixture (test modules cannot import conftest)."""
    return SimpleNamespace(
        save_png=save_png, pattern=pattern, HandEmbedder=HandEmbedder, grid_tiles=grid_tiles
    )


@pytest.fixture(scope="session")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A released tf_efficientnet_lite0 + CVD model (random weights, 64 px), in a run folder."""
    from cvd.factory import build_model
    from cvd.models import save_release

    torch.manual_seed(0)
    model = build_model(TINY_CONFIG).eval()
    run_dir = tmp_path_factory.mktemp("run")
    save_release(model, TINY_CONFIG, run_dir / "release")
    return run_dir
