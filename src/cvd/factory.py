"""Models by config, built by their baseline's recipe: the one module above `models` and `baselines`.

Recipes build on `cvd.models` (backbones, heads, the CVD plug-in) and may build their own model
class (LPN's part model, TransGeo's cropping head), so rebuilding a model from a config (released
weights, `cvd test`, `cvd export`) must go through the recipe. The lookup lives here, above both
packages, so that imports run one way: `baselines` -> `models`, and this module -> both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from torch import nn

from cvd.baselines import get_recipe
from cvd.models.model import build_retrieval_model
from cvd.models.release import read_release


def build_model(config: Mapping[str, Any]) -> nn.Module:
    """The model a config describes, built by its baseline's recipe (``model.baseline``).

    Without ``model.baseline`` the generic :func:`cvd.models.build_retrieval_model` is used.
    """
    baseline = (config.get("model") or {}).get("baseline")
    if not baseline:
        return build_retrieval_model(config)
    return get_recipe(str(baseline))(config).build_model(config)


def load_release(path: str | os.PathLike[str]) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild released weights' model through its recipe and load it strictly (eval mode).

    ``path``: a run folder, a release folder or a .safetensors file.
    """
    return read_release(path, build_model)
