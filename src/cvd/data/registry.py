"""Benchmarks by name, so a config file can say `data.name: cvusa` and the engine build it."""

from __future__ import annotations

from typing import Any

from cvd.data.cvact import CVACT
from cvd.data.cvusa import CVUSA
from cvd.data.geotagged import GeoTaggedFolder
from cvd.data.sues200 import SUES200
from cvd.data.university1652 import University1652
from cvd.errors import ConfigError

DATASETS: dict[str, type] = {
    "university1652": University1652,
    "sues200": SUES200,
    "cvusa": CVUSA,
    "cvact": CVACT,
    "geotagged": GeoTaggedFolder,
}


def build_dataset(name: str, **kwargs: Any) -> Any:
    """Construct a benchmark by registry name (its layout is verified on construction)."""
    try:
        cls = DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"dataset {name!r}: {error}") from error
