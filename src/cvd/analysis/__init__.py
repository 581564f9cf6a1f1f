"""Diagnostics of a trained model's disentanglement (``cvd analyze``): dependence between the
factors by estimators that are not the training loss, linear probes, reconstruction checks, and
the paper's Figures 3 and 4."""

from cvd.analysis.dependence import (
    DependenceResult,
    distance_correlation,
    distance_correlation_test,
    hsic,
    hsic_test,
    normalised_hsic,
)
from cvd.analysis.probes import ridge_probe

__all__ = [
    "DependenceResult",
    "distance_correlation",
    "distance_correlation_test",
    "hsic",
    "hsic_test",
    "normalised_hsic",
    "ridge_probe",
]
