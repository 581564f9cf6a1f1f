"""Evaluation of a model on a benchmark's splits, as ``cvd fit`` (each epoch) and ``cvd test`` do.

Each rank embeds its share of every image list; the shares are gathered and rank 0 computes the
metrics with the split's protocol (``cvd.evaluation``). An image that appears in several lists
(University-1652's satellites are queries of one direction and gallery of the other) is embedded
once.
"""

from __future__ import annotations

import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from cvd.atomic import atomic_write_text
from cvd.data import ImageDataset, ImageRecord, RetrievalSplit, collate_skipping
from cvd.data.records import JUNK_LABEL
from cvd.engine.distributed import DistContext, broadcast_object, gather_tensor
from cvd.errors import DatasetLayoutError
from cvd.evaluation import embed_dataset, evaluate_embeddings, summary_line

LOGGER = logging.getLogger("cvd")


def eval_splits(benchmark: Any, config: Mapping[str, Any]) -> list[RetrievalSplit]:
    """The benchmark's evaluation splits, with the configured gallery variant where it has one."""
    evaluation = config["eval"]
    kwargs: dict[str, Any] = dict(evaluation.get("options") or {})
    parameters = inspect.signature(benchmark.eval_splits).parameters
    if "gallery_variant" in parameters:
        kwargs.setdefault("gallery_variant", evaluation["gallery_variant"])
    return benchmark.eval_splits(**kwargs)


def eval_loader(
    records: Sequence[ImageRecord],
    view: str,
    config: Mapping[str, Any],
    data_config: Mapping[str, Any],
    *,
    batch_size: int | None = None,
    num_workers: int | None = None,
    strict: bool | None = None,
    pin_memory: bool = False,
) -> tuple[ImageDataset, DataLoader]:
    """``records`` of one view through the recipe's evaluation transform, in order, as every
    evaluation-time pass sees them (unreadable images skipped unless ``strict``)."""
    from cvd.baselines import get_recipe

    transform = get_recipe(config["model"]["baseline"])(config).eval_transform(config, data_config, view)
    if strict is None:
        strict = bool(config["data"].get("strict_images", False))
    dataset = ImageDataset(list(records), transform, strict=strict)
    loader = DataLoader(
        dataset,
        batch_size=int(config["data"]["eval_batch_size"]) if batch_size is None else batch_size,
        num_workers=int(config["data"]["num_workers"]) if num_workers is None else num_workers,
        collate_fn=collate_skipping,
        pin_memory=pin_memory,
    )
    return dataset, loader


class RecordEmbedder:
    """Embeds image records once each (cached by path and branch), sharded over ranks."""

    def __init__(
        self, model: nn.Module, config: Mapping[str, Any], data_config: Mapping[str, Any], dist: DistContext
    ) -> None:
        self.model = model
        self.config = config
        self.data_config = data_config
        self.dist = dist
        self.cache: dict[tuple[str, str], torch.Tensor] = {}

    def __call__(self, records: Sequence[ImageRecord], description: str) -> torch.Tensor:
        """(N, D) normalised embeddings of ``records`` in their order (the same on every rank)."""
        missing = [r for r in dict.fromkeys(records) if (str(r.path), r.view) not in self.cache]
        by_view: dict[str, list[ImageRecord]] = {}
        for record in missing:
            by_view.setdefault(record.view, []).append(record)
        for view, view_records in by_view.items():
            for record, embedding in zip(view_records, self._embed(view_records, view, description)):
                self.cache[(str(record.path), view)] = embedding
        return torch.stack([self.cache[(str(r.path), r.view)] for r in records])

    def _embed(self, records: list[ImageRecord], view: str, description: str) -> torch.Tensor:
        share = np.array_split(np.arange(len(records)), self.dist.world_size)[self.dist.rank]
        local = [records[i] for i in share]
        dataset, loader = eval_loader(
            local,
            view,
            self.config,
            self.data_config,
            strict=bool(self.config["data"]["strict_images"]),
            pin_memory=self.dist.device.type == "cuda",
        )
        if len(local):
            embeddings, _ = embed_dataset(
                self.model.embed,
                _with_skips(loader, dataset, description),
                view,
                flip_tta=bool(self.config["eval"]["flip_tta"]),
                device=self.dist.device,
            )
        else:
            embeddings = torch.zeros((0, int(self.model.embedding_dim)))
        if len(embeddings) != len(local):
            raise RuntimeError(f"{description}: {len(local) - len(embeddings)} images could not be read")
        return gather_tensor(embeddings.to(self.dist.device)).cpu()


def _with_skips(loader: DataLoader, dataset: ImageDataset, description: str) -> Any:
    for batch in loader:
        if dataset.update_skipped(batch):
            LOGGER.warning("%s: unreadable images %s", description, batch.get("skipped"))
        if "image" in batch:
            yield batch


def evaluate_model(
    model: nn.Module,
    data: Any,
    config: Mapping[str, Any],
    dist: DistContext,
) -> list[dict[str, Any]]:
    """Metrics of every evaluation split of ``data.benchmark``, and of the validation splits a
    training run holds out (``data.val_fraction``), the same list on every rank."""
    splits = eval_splits(data.benchmark, config) + list(getattr(data, "val_splits", []))
    embedder = RecordEmbedder(model, config, model.data_config, dist)
    evaluation = config["eval"]
    max_queries = evaluation.get("max_queries")
    results: list[dict[str, Any]] = []
    unreadable = _unreadable_paths(splits, config)
    strict = bool(config["data"]["strict_images"])
    for split in splits:
        readable_queries = _drop_unreadable(split.queries, unreadable)
        gallery = _drop_unreadable(split.gallery, unreadable)
        queries = readable_queries[: int(max_queries)] if max_queries else readable_queries
        reduced = reduced_set(split, readable_queries, queries, gallery, unreadable)
        report_reduced(split.name, reduced, strict)
        query_emb = embedder(queries, f"{split.name} queries")
        gallery_emb = embedder(gallery, f"{split.name} gallery")
        if not dist.is_main:
            continue
        protocol = split.protocol if evaluation["protocol"] == "auto" else evaluation["protocol"]
        result = evaluate_embeddings(
            query_emb,
            [r.label for r in queries],
            gallery_emb,
            [r.label for r in gallery],
            protocol=protocol,
            chunk_size=int(evaluation["chunk_size"]),
            gallery_variant=split.gallery_variant,
            flip_tta=bool(evaluation["flip_tta"]),
            split=split.name,
            metadata={
                "dataset": config["data"]["dataset"],
                "baseline": config["model"]["baseline"],
                "cvd": bool(config["cvd"]["enabled"]),
                "unreadable_skipped": reduced["queries_dropped_unreadable"]
                + reduced["gallery_dropped_unreadable"],
            },
        )
        result["reduced"] = reduced
        result["summary"] = summary_line(result)
        results.append(result)
    return broadcast_object(results)  # type: ignore[return-value]


def _unreadable_paths(splits: list[Any], config: Mapping[str, Any]) -> set[Path]:
    """Decode-check every image of every split once: splits share their galleries (University-1652's
    two variants, SUES-200's altitudes), which would otherwise be decoded again per split."""
    unique = {Path(r.path): r for split in splits for r in (*split.queries, *split.gallery)}
    strict = bool(config["data"]["strict_images"])
    dataset = ImageDataset(list(unique.values()), None, strict=strict, verify=True)
    return set(dataset.skipped)


def _drop_unreadable(records: list[ImageRecord], unreadable: set[Path]) -> list[ImageRecord]:
    """Drop unreadable images before embedding, so every rank's share stays aligned
    (`reduced_set` counts them for the report)."""
    return [record for record in records if Path(record.path) not in unreadable]


MAX_LISTED = 10  # paths and locations listed in results.json per split


def reduced_set(
    split: RetrievalSplit,
    readable_queries: list[ImageRecord],
    queries: list[ImageRecord],
    gallery: list[ImageRecord],
    unreadable: set[Path],
) -> dict[str, Any]:
    """How a split's evaluated set falls short of the benchmark's, and why (recorded in
    results.json as ``reduced``; all zeros for a complete set).

    Unreadable queries and gallery items are dropped; a query whose location has no (readable)
    gallery item is kept and scores as a miss, as the benchmarks' scripts count it, but a
    number computed so is not the benchmark's and must say so. ``eval.max_queries`` is a
    reduction asked for and is counted apart.
    """
    dropped = [str(r.path) for r in (*split.queries, *split.gallery) if Path(r.path) in unreadable]
    matched = {record.label for record in gallery if record.label != JUNK_LABEL}
    orphans = [record for record in queries if record.label not in matched]
    locations = sorted({str(record.location) for record in orphans})
    return {
        "queries_dropped_unreadable": len(split.queries) - len(readable_queries),
        "gallery_dropped_unreadable": len(split.gallery) - len(gallery),
        "queries_without_gallery_match": len(orphans),
        "queries_beyond_max_queries": len(readable_queries) - len(queries),
        "unreadable": list(dict.fromkeys(dropped))[:MAX_LISTED],
        "locations_without_gallery_match": locations[:MAX_LISTED],
    }


def is_reduced(reduced: Mapping[str, Any]) -> bool:
    """Whether images of the benchmark's set are missing from the evaluation (not max_queries)."""
    return bool(
        reduced["queries_dropped_unreadable"]
        or reduced["gallery_dropped_unreadable"]
        or reduced["queries_without_gallery_match"]
    )


def report_reduced(name: str, reduced: Mapping[str, Any], strict: bool) -> None:
    """Warn (stderr) that split ``name`` is evaluated on a reduced set, saying why; under
    ``data.strict_images`` a reduced set is an error instead: its numbers are not the benchmark's."""
    if not is_reduced(reduced):
        return
    reasons = []
    if reduced["queries_dropped_unreadable"] or reduced["gallery_dropped_unreadable"]:
        reasons.append(
            f"{reduced['queries_dropped_unreadable']} queries and {reduced['gallery_dropped_unreadable']} "
            f"gallery items dropped as unreadable (first: {reduced['unreadable'][0]})"
        )
    if reduced["queries_without_gallery_match"]:
        locations = reduced["locations_without_gallery_match"]
        reasons.append(
            f"{reduced['queries_without_gallery_match']} queries have no gallery item of their location "
            f"and score as misses (locations {', '.join(locations)}"
            f"{', ...' if len(locations) == MAX_LISTED else ''})"
        )
    message = f"{name}: evaluated on a reduced set: {'; '.join(reasons)}"
    if strict:
        raise DatasetLayoutError(
            f"{message}; data.strict_images=true refuses a reduced evaluation set "
            "(repair the dataset, or set data.strict_images=false to evaluate what is there)"
        )
    LOGGER.warning("%s (recorded as 'reduced' in the results)", message)


def mine_neighbours(model: nn.Module, data: Any, dist: DistContext) -> dict[int, np.ndarray]:
    """Hard negatives for the similarity sampler: for each training location, the locations whose
    satellite embeddings are most similar to its query's (Sample4Geo's sim-sampling)."""
    from cvd.data import neighbours_from_embeddings

    embedder = RecordEmbedder(model, data.config, model.data_config, dist)
    pairs = data.dataset.pairs
    first = {}
    for pair in pairs:
        first.setdefault(pair.label, pair)
    locations = sorted(first)
    queries = [ImageRecord(first[k].query, k, first[k].location, "street") for k in locations]
    satellites = [ImageRecord(first[k].satellite, k, first[k].location, "satellite") for k in locations]
    query_emb = embedder(queries, "mining queries")
    satellite_emb = embedder(satellites, "mining satellites")
    k = int(getattr(data.sampler, "neighbour_range", 128))
    return neighbours_from_embeddings(query_emb, satellite_emb, locations, k=k)


def write_results(results: list[Mapping[str, Any]], path: Path) -> None:
    """All splits' metrics in one JSON file (atomic)."""
    payload = [{k: _jsonable(v) for k, v in result.items()} for result in results]
    atomic_write_text(path, json.dumps(payload, indent=2))


def _jsonable(value: Any) -> Any:
    if isinstance(value, torch.Tensor | np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    return value
