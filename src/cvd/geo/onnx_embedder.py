"""Run an exported embedder with onnxruntime (CPU): no PyTorch model code, same embeddings.

The ONNX file carries what a runtime needs besides the graph, as metadata properties written by
`cvd export`: the identity of the release it came from (so it can query an index built with
the PyTorch model), the view it embeds, and its preprocessing (input size, mean, std,
interpolation). Preprocessing reuses `cvd.data.transforms.transform_from_data_config`, the very
function evaluation uses, so images reach both runtimes identically.

It lives with the localization tool (an `Embedder` beside `TorchEmbedder`), not with the exporter:
`cvd.export` writes the files and builds on `cvd.geo`, never the other way round.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from cvd.errors import CheckpointError, ConfigError
from cvd.extras import require_extra

METADATA_PREFIX = "cvd."


def onnx_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The cvd metadata of an exported file: identity, view, data_config, embedding_dim, source."""
    onnx = require_extra("onnx", "onnx", "reading an .onnx model")
    path = Path(path)
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as error:  # onnx raises DecodeError, OSError, ValueError...
        raise CheckpointError(f"{path}: not a readable ONNX file ({error})") from None
    props = {
        p.key[len(METADATA_PREFIX) :]: p.value
        for p in model.metadata_props
        if p.key.startswith(METADATA_PREFIX)
    }
    missing = [key for key in ("identity", "view", "data_config") if key not in props]
    if missing:
        raise CheckpointError(
            f"{path}: lacks cvd metadata ({', '.join(METADATA_PREFIX + key for key in missing)}); "
            "export it with `cvd export`"
        )
    return {
        "identity": props["identity"],
        "view": props["view"],
        "source": props.get("source", ""),
        "data_config": json.loads(props["data_config"]),
        "embedding_dim": int(props.get("embedding_dim", 0)),
    }


class OnnxEmbedder:
    """`cvd.geo.embedders.Embedder` backed by onnxruntime on CPU."""

    def __init__(self, path: str | os.PathLike, view: str | None = None, threads: int | None = None) -> None:
        from cvd.data.transforms import transform_from_data_config

        self.path = Path(path)
        meta = onnx_metadata(self.path)
        if view is not None and _branch(view) != _branch(meta["view"]):
            raise CheckpointError(
                f"{self.path}: exported for the {meta['view']!r} view ({_branch(meta['view'])} branch), "
                f"cannot embed {view!r} images; export the {_branch(view)} branch "
                f"with `cvd export --view {view}` and pass that file as --model"
            )
        ort = require_extra("onnxruntime", "onnx", "running an .onnx model")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as error:  # onnxruntime raises its own Fail/InvalidGraph types
            raise CheckpointError(f"{self.path}: onnxruntime cannot load it ({error})") from None
        graph_input = self.session.get_inputs()[0]
        self.input_name = graph_input.name
        # (channels, height, width) the graph was traced at: it accepts no other size
        self.input_shape = tuple(graph_input.shape[1:])
        self.identity = meta["identity"]
        self.source = str(self.path.resolve())
        self.view = meta["view"]
        self.data_config = meta["data_config"]
        self.embedding_dim = meta["embedding_dim"]
        self._transform = transform_from_data_config(self.data_config)

    def transform(self, image: Image.Image) -> torch.Tensor:
        return self._transform(image)

    def embed(self, images: torch.Tensor | NDArray) -> NDArray[np.float32]:
        array = images.numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        fixed = [(got, want) for got, want in zip(array.shape[1:], self.input_shape) if isinstance(want, int)]
        if array.ndim != 4 or any(got != want for got, want in fixed):
            size = "x".join(str(v) for v in self.input_shape)
            raise ConfigError(
                f"{self.path}: takes images of {size} (its fixed export size), "
                f"got a batch of shape {tuple(array.shape)}; resize them with its transform(), "
                "as cvd localize does"
            )
        (output,) = self.session.run(None, {self.input_name: np.ascontiguousarray(array, dtype=np.float32)})
        norms = np.linalg.norm(output, axis=1, keepdims=True)
        return (output / np.maximum(norms, 1e-12)).astype(np.float32)


def _branch(view: str) -> str:
    return "satellite" if view == "satellite" else "query"
