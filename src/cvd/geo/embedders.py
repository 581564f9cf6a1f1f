"""Embedders: images -> L2-normalised retrieval embeddings, from released weights or ONNX.

Indexing and localization only need "an image goes in, a unit vector comes out", plus what
identifies the model (so an index is never queried by a model it was not built with) and how
images are preprocessed. `Embedder` is that contract; `TorchEmbedder` wraps a released PyTorch
model, `cvd.export.OnnxEmbedder` an exported ONNX file, and `load_embedder` picks by path.

Model identity is the SHA-256 of the release's weights file and config file together: the same
release gives the same identity on every machine, and an ONNX export carries the identity of
the release it came from, so either runtime can query an index built by the other.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from cvd.errors import CheckpointError


class Embedder(Protocol):
    """What the gallery index and `localize` need from a model."""

    identity: str
    source: str
    view: str
    embedding_dim: int
    data_config: dict[str, Any]

    def transform(self, image: Image.Image) -> torch.Tensor:
        """RGB PIL image -> normalised (3, H, W) float tensor, as the model was evaluated with."""
        ...

    def embed(self, images: torch.Tensor) -> NDArray[np.float32]:
        """(B, 3, H, W) preprocessed images -> (B, D) unit rows."""
        ...


def release_identity(path: str | os.PathLike) -> str:
    """Identity of released weights: SHA-256 over the weights file and its config file."""
    from cvd.models.release import release_paths  # not at import: cvd.models loads timm

    digest = hashlib.sha256()
    for tag, file in zip((b"weights", b"config"), release_paths(path)):
        digest.update(tag)  # fixed tags: renaming a file does not change the model
        with open(file, "rb") as handle:
            while block := handle.read(1 << 24):
                digest.update(block)
    return f"sha256:{digest.hexdigest()}"


def plain_data_config(data_config: dict[str, Any], input_size: Sequence[int]) -> dict[str, Any]:
    """The preprocessing facts worth recording (JSON-safe): size, mean, std, interpolation."""
    return {
        "input_size": [3, int(input_size[-2]), int(input_size[-1])],
        "mean": [float(v) for v in data_config["mean"]],
        "std": [float(v) for v in data_config["std"]],
        "interpolation": str(data_config.get("interpolation", "bilinear")),
    }


class TorchEmbedder:
    """A PyTorch images -> embedding module with its preprocessing and identity."""

    def __init__(
        self,
        module: torch.nn.Module,
        transform: Callable[[Image.Image], torch.Tensor],
        identity: str,
        source: str,
        view: str,
        embedding_dim: int,
        data_config: dict[str, Any],
        device: str | torch.device = "cpu",
    ) -> None:
        self.module = module.eval().to(device)
        self._transform = transform
        self.identity = identity
        self.source = source
        self.view = view
        self.embedding_dim = embedding_dim
        self.data_config = data_config
        self.device = torch.device(device)

    @classmethod
    def from_release(
        cls, path: str | os.PathLike, view: str, device: str | torch.device = "cpu"
    ) -> TorchEmbedder:
        """Embedder of `view`'s branch of released weights (a release, .safetensors or run folder)."""
        from cvd.data.transforms import build_eval_transform
        from cvd.factory import load_release
        from cvd.models.release import release_paths

        weights, _ = release_paths(path)
        model, config = load_release(weights)
        transform = build_eval_transform(config, model.data_config, view)
        probe = transform(Image.new("RGB", (64, 64)))
        return cls(
            model.embedder(view),
            transform,
            release_identity(weights),
            str(weights.parent.resolve()),
            view,
            int(model.embedding_dim),
            plain_data_config(model.data_config, probe.shape),
            device,
        )

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor) -> NDArray[np.float32]:
        output = self.module(images.to(self.device, dtype=torch.float32))
        output = torch.nn.functional.normalize(output.float(), dim=-1)
        return output.cpu().numpy()


def load_embedder(path: str | os.PathLike, view: str, device: str | torch.device = "cpu") -> Embedder:
    """Embedder from a release / run folder / .safetensors (PyTorch) or an .onnx file (onnxruntime)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path}: model not found")
    if path.suffix == ".onnx":
        from cvd.geo.onnx_embedder import OnnxEmbedder

        return OnnxEmbedder(path, view)
    return TorchEmbedder.from_release(path, view, device)
