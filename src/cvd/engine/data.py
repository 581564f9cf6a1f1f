"""Training data of a run: benchmark -> pairs -> paired transform -> sampler -> loader.

Augmentation randomness is drawn from a generator seeded by (seed, epoch, item), not from a
worker's running RNG, so a run resumed mid-epoch sees exactly the images it would have seen
(whatever the number of workers), which the kill-and-resume guarantee needs.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from cvd.baselines.base import Recipe
from cvd.data import PairDataset, build_dataset, build_sampler, collate_skipping
from cvd.engine.distributed import DistContext, all_reduce_sum
from cvd.engine.validation import hold_out, query_view_of, validation_splits
from cvd.errors import ConfigError, ImageReadError, OptionError
from cvd.schema import OPTIONS, check_value

LOGGER = logging.getLogger("cvd")


def max_skipped_share(config: Mapping[str, Any]) -> float:
    """``data.max_skipped_share``: the share of training pairs, and of planned training batches,
    that unreadable images may cost a run before it fails (0.01 where an older saved config lacks
    it); checked against its declaration also for a config built without ``load_config``."""
    value = config["data"].get("max_skipped_share", 0.01)
    check_value("data.max_skipped_share", value, OPTIONS["data.max_skipped_share"])
    return float(value)


def dataset_from_config(config: Mapping[str, Any]) -> Any:
    """The benchmark object named by ``data.dataset`` (its constructor checks the layout)."""
    data = config["data"]
    if data.get("root") is None:
        raise ConfigError(
            f"data.root is not set: point it at your copy of {data['dataset']!r} "
            "(e.g. data.root=/data/University-Release); see docs/datasets.md"
        )
    options = dict(data.get("options") or {})
    options.setdefault("strict", bool(data.get("strict_images", False)))
    try:
        return build_dataset(data["dataset"], root=data["root"], **options)
    except OptionError as error:  # the dataset names its own option; the user wrote data.options.<key>
        raise ConfigError(f"data.options.{error.key}={error.value!r}: {error.reason}") from None


class SeededItems(Dataset):
    """Runs the wrapped dataset's ``__getitem__`` under a torch RNG seeded by (seed, epoch, index)."""

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> Any:
        item_seed = int(np.random.SeedSequence([self.seed, self.epoch, index]).generate_state(1)[0])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(item_seed)
            return self.dataset[index]


class TrainData:
    """Everything the trainer needs from the data side; the transform waits for the model."""

    def __init__(self, config: Mapping[str, Any], recipe: Recipe, dist: DistContext) -> None:
        self.config = config
        self.recipe = recipe
        self.dist = dist
        data = config["data"]
        self.benchmark = dataset_from_config(config)
        fraction, val_seed = float(data.get("val_fraction") or 0.0), int(data.get("val_seed") or 0)
        pairs, held_out = hold_out(self.benchmark.train_pairs(), fraction, val_seed)
        protocol = str(getattr(self.benchmark, "protocol", "university1652"))
        self.val_splits = validation_splits(held_out, query_view_of(self.benchmark), protocol)
        # Unreadable images are found before training (a cheap draft decode), so every batch of
        # every rank has the same size: the cross-rank gather needs it.
        self.dataset = PairDataset(pairs, None, strict=bool(data["strict_images"]), verify=True)
        self.max_skipped_share = max_skipped_share(config)
        self.pairs_found = len(pairs)
        self.unreadable_before = [str(path) for path in self.dataset.skipped]
        removed = self.pairs_found - len(self.dataset.pairs)
        if self.unreadable_before:
            LOGGER.warning(
                "%d unreadable training images skipped (%d of %d training pairs removed), e.g. %s",
                len(self.unreadable_before), removed, self.pairs_found, self.unreadable_before[0],
            )  # fmt: skip
        if removed > self.max_skipped_share * self.pairs_found:
            raise ImageReadError(
                f"{removed} of {self.pairs_found} training pairs ({100 * removed / self.pairs_found:.1f}%) "
                f"have unreadable images ({len(self.unreadable_before)} files, e.g. "
                f"{self.unreadable_before[0]}), more than data.max_skipped_share={self.max_skipped_share:g} "
                "allows: repair or remove those files, or raise data.max_skipped_share"
            )
        # micro-batches dropped because an image became unreadable during the run, and those images
        self.dropped_batches = 0
        self.unreadable_during: dict[str, None] = {}
        self.num_locations = len({pair.label for pair in self.dataset.pairs})
        self.global_batch = int(data["batch_size"])
        if self.global_batch % dist.world_size:
            raise ConfigError(
                f"data.batch_size = {self.global_batch} (the global batch) must be divisible by the "
                f"number of processes ({dist.world_size})"
            )
        self.batch_size = self.global_batch // dist.world_size
        sampler_name = data["sampler"]
        if sampler_name == "auto":
            sampler_name = recipe.default_sampler
        self.sampler_name = sampler_name
        self.sampler = build_sampler(
            sampler_name,
            self.dataset.pairs,
            self.batch_size,
            seed=int(config["seed"]),
            num_replicas=dist.world_size,
            rank=dist.rank,
            drop_last=True,
            **dict(data.get("sampler_options") or {}),
        )
        if len(self.sampler) < self.batch_size:
            raise ConfigError(
                f"data.batch_size = {self.global_batch} is larger than one epoch allows with "
                f"{self.num_locations} training locations and sampler {sampler_name!r}"
            )
        self.items = SeededItems(self.dataset, int(config["seed"]))

    @property
    def batches_per_epoch(self) -> int:
        """Micro-batches of one rank in one epoch."""
        return len(self.sampler) // self.batch_size

    def attach_model(self, model: nn.Module) -> None:
        """Build the recipe's paired transform with the model's normalisation."""
        self.data_config = dict(model.data_config)
        self.dataset.transform = self.recipe.train_transform(self.config, self.data_config)

    def loader(self, epoch: int, skip_batches: int = 0) -> Iterator[dict[str, Any] | None]:
        """The micro-batches of ``epoch`` from ``skip_batches`` on (a resumed run skips what it did).

        A micro-batch dropped for an unreadable image comes as None: it still takes its place in
        the epoch (the sampler's position, which a resume and gradient accumulation count on)."""
        self.sampler.set_epoch(epoch, skip_batches=skip_batches)
        self.items.epoch = epoch
        workers = int(self.config["data"]["num_workers"])
        loader = DataLoader(
            self.items,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=workers,
            collate_fn=collate_skipping,
            pin_memory=self.dist.device.type == "cuda",
            drop_last=True,
            persistent_workers=False,
        )
        for batch in loader:
            skipped = self.dataset.update_skipped(batch)
            # An image that became unreadable during the run: every rank drops this micro-batch,
            # since the ranks' batches must stay the same size for the gather.
            if all_reduce_sum(float(skipped), self.dist.device) > 0:
                LOGGER.warning("dropped a micro-batch with unreadable images: %s", batch.get("skipped"))
                self.dropped_batches += 1
                for path in batch.get("skipped", []):
                    self.unreadable_during.setdefault(str(path), None)
                yield None
                continue
            yield batch

    def skipped_state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the dropped micro-batches: a resumed run goes on counting."""
        return {"batches": self.dropped_batches, "paths": list(self.unreadable_during)}

    def load_skipped_state(self, state: Mapping[str, Any]) -> None:
        self.dropped_batches = int(state.get("batches", 0))
        self.unreadable_during = dict.fromkeys(str(path) for path in state.get("paths", []))

    def sampler_state(self) -> dict[str, Any]:
        """What resuming needs of the sampler beyond (seed, epoch, position): mined neighbours."""
        neighbours = getattr(self.sampler, "neighbours", None)
        if neighbours is None:
            return {}
        return {"neighbours": {int(k): torch.as_tensor(np.asarray(v)) for k, v in neighbours.items()}}

    def load_sampler_state(self, state: Mapping[str, Any]) -> None:
        if state.get("neighbours") and hasattr(self.sampler, "update_neighbours"):
            self.sampler.update_neighbours({int(k): v.numpy() for k, v in state["neighbours"].items()})

    def on_epoch_end(self, model: nn.Module, epoch: int) -> None:
        """Hard-negative mining for the similarity sampler (Sample4Geo on CVUSA/CVACT)."""
        if self.sampler_name != "similarity":
            return
        from cvd.engine.evaluate import mine_neighbours

        self.sampler.update_neighbours(mine_neighbours(model, self, self.dist))


def build_train_data(config: Mapping[str, Any], recipe: Recipe, dist: DistContext) -> TrainData:
    """The run's training data (layout checked, unreadable images found, sampler built)."""
    return TrainData(config, recipe, dist)
