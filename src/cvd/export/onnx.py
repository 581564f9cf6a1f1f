"""Export the retrieval embedder of released weights to ONNX, and prove it matches PyTorch.

Only `RetrievalModel.embedder(view)` is exported: backbone, content projection and head; no
viewpoint branch, no decoders (CVD adds nothing at inference). The batch dimension is dynamic,
the image size fixed to the model's evaluation size: tracing records size-dependent steps
(LPN/FSRA part partitions, pooling windows) as constants, so a graph with dynamic height/width
would run at other sizes and silently compute something else. A ViT's position embedding is
resampled to that size before tracing (`at_export_size`): timm resamples it on every forward
with an antialiased bicubic op the TorchScript exporter lacks.
The size is stored with the preprocessing; `OnnxEmbedder` (`cvd localize`, `cvd index build`)
resizes every image to it and names it when handed a tensor of another size.

An export is only written when onnxruntime reproduces PyTorch on structured images (aerial
renders of the toolkit's synthetic town, or the operator's own `check_images`) to within `atol`
(default 1e-4, max absolute difference over all embedding components): random-noise inputs can
hide differences that real image statistics expose (saturating activations, BatchNorm ranges).

The legacy TorchScript exporter is used (`dynamo=False`): the dynamo exporter needs onnxscript,
which is not a dependency, and the TorchScript path handles timm CNNs and ViTs at opset 17.
"""

from __future__ import annotations

import copy
import json
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from cvd.atomic import atomic_output
from cvd.errors import CVDError
from cvd.extras import require_extra
from cvd.geo.embedders import TorchEmbedder
from cvd.geo.field_images import read_rgb
from cvd.geo.onnx_embedder import METADATA_PREFIX, OnnxEmbedder

OPSET = 17
PARITY_ATOL = 1e-4
SAMPLE_SEED = 7  # the synthetic town rendered for the default parity check
SAMPLE_LOCATIONS = 2  # x (satellite + 2 drone views) = 6 images
SAMPLE_SIZE = 160


class ExportError(CVDError):
    """The exported model cannot be written or does not reproduce PyTorch."""


@dataclass
class ExportReport:
    path: Path
    view: str
    identity: str
    max_abs_diff: float
    min_cosine: float
    n_check_images: int
    check_source: str
    input_size: tuple[int, int, int]  # (channels, height, width) the graph accepts, fixed


def sample_images() -> list[Image.Image]:
    """Satellite and drone renders of a fixed synthetic town: no download, no extra dependency."""
    from cvd.data.synthetic import LocationRenderer, SynthOptions, World, plan_dataset

    options = SynthOptions()
    specs = plan_dataset("university1652", SAMPLE_LOCATIONS, 2, SAMPLE_SEED, options)
    renderer = LocationRenderer(World(SAMPLE_SEED, options), SAMPLE_SIZE, options)
    images = []
    for spec in specs[:SAMPLE_LOCATIONS]:
        rendered = renderer.render(spec, only={"satellite", "drone"})
        images.extend(Image.fromarray(rendered.images[key]).convert("RGB") for key in sorted(rendered.images))
    return images


def at_export_size(module: torch.nn.Module, images: torch.Tensor) -> torch.nn.Module:
    """A copy of `module` whose timm ViTs hold their position embedding at the grid of `images`.

    A ViT built with ``dynamic_img_size`` resamples its position embedding to the patch grid on
    every forward, except at its own grid, with ``aten::_upsample_bicubic2d_aa``, which the
    TorchScript exporter lacks. At a fixed export size that resampling gives one constant: it is
    done here once, by the same function (timm's ``set_input_size``), so the graph holds no
    resampling and computes what the module does. `module` itself is left as it is. (timm >= 1.0.29
    returns the embedding unchanged at its own grid when that grid is not square; older versions
    resample it anyway, hence the bound in pyproject.toml.)
    """
    from timm.models.vision_transformer import VisionTransformer

    def vits(root: torch.nn.Module) -> list[VisionTransformer]:
        return [m for m in root.modules() if isinstance(m, VisionTransformer) and m.pos_embed is not None]

    grids: list[tuple[int, int] | None] = [None] * len(vits(module))
    if not grids:
        return module

    def recorder(number: int) -> Callable[..., None]:
        def record(patch_embed: torch.nn.Module, args: tuple, _output: torch.Tensor) -> None:
            grids[number] = tuple(patch_embed.dynamic_feat_size(tuple(args[0].shape[-2:])))

        return record

    hooks = [vit.patch_embed.register_forward_hook(recorder(n)) for n, vit in enumerate(vits(module))]
    try:
        with torch.no_grad():
            module(images)
    finally:
        for hook in hooks:
            hook.remove()
    fixed = copy.deepcopy(module)
    for vit, grid in zip(vits(fixed), grids, strict=True):
        if grid is not None and tuple(grid) != tuple(vit.patch_embed.grid_size):
            patch = vit.patch_embed.patch_size
            vit.set_input_size(img_size=(grid[0] * patch[0], grid[1] * patch[1]))
    return fixed


def export_onnx(
    model_path: str | os.PathLike,
    out: str | os.PathLike,
    view: str = "drone",
    check_images: Sequence[str | os.PathLike] | None = None,
    atol: float = PARITY_ATOL,
    opset: int = OPSET,
) -> ExportReport:
    """Write `out` (.onnx) for `view`'s branch of released weights, after a parity check."""
    onnx = require_extra("onnx", "onnx", "cvd export")
    require_extra("onnxruntime", "onnx", "cvd export (its parity check)")

    torch_embedder = TorchEmbedder.from_release(model_path, view)
    if check_images:
        images = [read_rgb(path)[0] for path in check_images]
        source = f"{len(images)} given image(s)"
    else:
        images = sample_images()
        source = f"{len(images)} renders of synthetic town {SAMPLE_SEED}"
    batch = torch.stack([torch_embedder.transform(image) for image in images])
    module = torch_embedder.module.eval()
    out = Path(out)
    # Written beside `out` and renamed only once onnxruntime agrees with PyTorch: a failed or
    # diverging export leaves nothing (and never half a file) under the name.
    with atomic_output(out) as temporary:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the TorchScript exporter warns about tracing internals
                torch.onnx.export(
                    at_export_size(module, batch[:1]),
                    (batch[:1],),
                    str(temporary),
                    input_names=["images"],
                    output_names=["embedding"],
                    dynamic_axes={"images": {0: "batch"}, "embedding": {0: "batch"}},
                    opset_version=opset,
                    dynamo=False,
                )
            module.eval()  # the exporter restores the module's previous mode; keep inference mode
            graph = onnx.load(str(temporary))
            metadata = {
                "identity": torch_embedder.identity,
                "view": view,
                "source": torch_embedder.source,
                "data_config": json.dumps(torch_embedder.data_config),
                "embedding_dim": str(torch_embedder.embedding_dim),
            }
            for key, value in metadata.items():
                entry = graph.metadata_props.add()
                entry.key, entry.value = METADATA_PREFIX + key, value
            graph.producer_name = "cvd"
            onnx.checker.check_model(graph)
            onnx.save(graph, str(temporary))
            expected = torch_embedder.embed(batch)
            actual = OnnxEmbedder(temporary, view).embed(batch)
        except CVDError:
            raise
        except Exception as error:
            raise ExportError(f"{out}: ONNX export failed: {type(error).__name__}: {error}") from error
        max_abs_diff = float(np.abs(expected - actual).max())
        min_cosine = float((expected * actual).sum(axis=1).min())
        if not max_abs_diff < atol:
            raise ExportError(
                f"{out}: onnxruntime differs from PyTorch by up to {max_abs_diff:.2e} "
                f"(allowed {atol:.0e}) on {source}; not written"
            )
    input_size = (int(batch.shape[1]), int(batch.shape[2]), int(batch.shape[3]))
    return ExportReport(
        out, view, torch_embedder.identity, max_abs_diff, min_cosine, len(images), source, input_size
    )
