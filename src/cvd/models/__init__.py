"""Models: timm backbones with offline weights, the CVD plug-in, retrieval heads, the model builder
and released-weights I/O."""

from cvd.models.backbones import Backbone
from cvd.models.cvd import CVD, Decoder, SplitProjection, reconstruction_size
from cvd.models.heads import HEADS, GapHead, GemHead, Head, build_head, register_head
from cvd.models.model import (
    CVD_DEFAULTS,
    BranchEmbedder,
    RetrievalModel,
    branch_of,
    build_retrieval_model,
    resolve_cvd_config,
)
from cvd.models.release import save_release

__all__ = [
    "CVD",
    "CVD_DEFAULTS",
    "HEADS",
    "Backbone",
    "BranchEmbedder",
    "Decoder",
    "GapHead",
    "GemHead",
    "Head",
    "RetrievalModel",
    "SplitProjection",
    "branch_of",
    "build_head",
    "build_retrieval_model",
    "reconstruction_size",
    "register_head",
    "resolve_cvd_config",
    "save_release",
]
