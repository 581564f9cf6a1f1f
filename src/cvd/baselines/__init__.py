"""Baseline recipes, registered by name: ``RECIPES[config.model.baseline]``.

A recipe supplies what makes a baseline itself: its head on the (content) feature map, its own
losses, its sampler and its transforms. The CVD switch (``cvd.enabled``) adds the CVD module and
losses on top and changes nothing else (see docs/baselines.md).
"""

from cvd.baselines import (
    fsra,  # noqa: F401  (registers itself)
    game4loc,  # noqa: F401  (registers itself)
    geodtr,  # noqa: F401  (registers itself)
    lpn,  # noqa: F401  (registers itself)
    mbf,  # noqa: F401  (registers itself)
    mccg,  # noqa: F401  (registers itself)
    sample4geo,  # noqa: F401  (registers itself)
    sdpl,  # noqa: F401  (registers itself)
    transgeo,  # noqa: F401  (registers itself)
)
from cvd.baselines.base import RECIPES, LossContext, Recipe, get_recipe, register_recipe

__all__ = ["RECIPES", "LossContext", "Recipe", "get_recipe", "register_recipe"]
