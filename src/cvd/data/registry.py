"""Benchmarks by name, so a config file can say `data.dataset: cvusa` and the engine build it.

A benchmark is a class that verifies its on-disk layout on construction (raising
`DatasetLayoutError` that names the missing paths) and answers the two questions the engine asks:
which (query, satellite) pairs to train on, and which retrieval splits to evaluate. Adding one is
`@register_dataset` on such a class with a `name` (checklist in docs/architecture.md); the
registry-driven tests then build it on its fake tree (tests/data/<name>/write_tree.py).
"""

from __future__ import annotations

from typing import Any, Protocol, TypeVar, runtime_checkable

from cvd.data.records import PairRecord, RetrievalSplit
from cvd.errors import ConfigError


@runtime_checkable
class Benchmark(Protocol):
    """What the engine needs of a dataset; its constructor takes `root` and the `data.options`."""

    def train_pairs(self) -> list[PairRecord]:
        """The training pairs, labels contiguous from 0."""
        ...

    def eval_splits(self) -> list[RetrievalSplit]:
        """The evaluation directions with their protocol (defaults of the benchmark's options)."""
        ...


DATASETS: dict[str, type[Benchmark]] = {}

B = TypeVar("B", bound=type)


def register_dataset(cls: B) -> B:
    """Class decorator: make a benchmark buildable by `data.dataset: <cls.name>` (as recipes are)."""
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"dataset class {cls.__name__} needs a class attribute `name`")
    required = ("train_pairs", "eval_splits")
    missing = [method for method in required if not callable(getattr(cls, method, None))]
    if missing:
        raise TypeError(f"dataset {name!r} ({cls.__name__}) lacks {', '.join(missing)}")
    if name in DATASETS and DATASETS[name] is not cls:
        raise ValueError(f"dataset name {name!r} is taken by {DATASETS[name].__name__}")
    DATASETS[name] = cls
    return cls


def build_dataset(name: str, **kwargs: Any) -> Benchmark:
    """Construct a benchmark by registry name (its layout is verified on construction)."""
    try:
        cls = DATASETS[name]
    except KeyError:
        raise ConfigError(f"unknown dataset {name!r}; known: {', '.join(sorted(DATASETS))}") from None
    try:
        return cls(**kwargs)
    except TypeError as error:
        raise ConfigError(f"dataset {name!r}: {error}") from error
