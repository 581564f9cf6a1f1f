"""The training loop behind ``cvd fit``: one loop for every dataset x baseline x CVD on/off.

Engine choice: plain PyTorch (``torchrun`` + ``DistributedDataParallel`` + ``torch.amp``) rather
than Lightning. The parts that matter for this project are ours either way -- the differentiable
cross-rank gather that the InfoNCE negatives and the independence permutation need, checkpoints
that hold the sampler position and RNG states and load with ``weights_only=True``, an exact
kill-and-resume -- and a Trainer would have to be bent around each of them, while torch's own
launcher, DDP and AMP are the well-kept pieces Lightning itself wraps (docs/engine.md).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from cvd import __version__
from cvd.atomic import atomic_write_text
from cvd.baselines import LossContext, get_recipe
from cvd.config import save_config
from cvd.engine.checkpoint import (
    capture_rng_state,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from cvd.engine.data import TrainData, build_train_data
from cvd.engine.distributed import (
    DistContext,
    all_reduce_sum,
    barrier,
    broadcast_object,
    gather_with_grad,
    init_distributed,
)
from cvd.engine.evaluate import evaluate_model, write_results
from cvd.engine.logging import RunLogger
from cvd.engine.objective import TrainingObjective
from cvd.engine.optim import build_optimizer, build_scheduler
from cvd.engine.runfolder import (
    RUN_FORMAT,
    check_resume_config,
    clean_temporaries,
    read_run_info,
    remove_corrupt,
    remove_run,
    run_artefacts,
)
from cvd.engine.runlock import RunLock
from cvd.errors import (
    CheckpointError,
    ConfigError,
    CVDError,
    ImageReadError,
    NonFiniteLossError,
    RunFolderError,
    RunLockedError,
)
from cvd.progress import progress_bar

LOGGER = logging.getLogger("cvd")


@dataclass
class FitResult:
    """Where a run's outputs are, and its final evaluation."""

    run_dir: Path
    steps: int
    results: list[dict[str, Any]] = field(default_factory=list)
    skipped: dict[str, Any] = field(default_factory=dict)  # what unreadable images cost (run_info.json)


def git_commit() -> str:
    """The source tree's commit (``+dirty`` when it has uncommitted changes), or ``unknown``."""
    source = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=source, capture_output=True, text=True, check=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=source,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "")


def run_directory(config: Mapping[str, Any]) -> Path:
    """``<output_dir>/<name>`` (the name is one folder: checked again here, whoever built the config)."""
    from cvd.config import check_run_name

    check_run_name(config.get("name"))
    return Path(config["output_dir"]) / str(config.get("name") or "run")


def precision_settings(precision: str, device: torch.device) -> tuple[torch.dtype | None, bool]:
    """(autocast dtype or None, use a GradScaler) for ``train.precision``."""
    if precision == "auto":
        precision = "fp16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return None, False
    if precision == "bf16":
        return torch.bfloat16, False
    return torch.float16, device.type == "cuda"


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all ranks alike: DDP also broadcasts the initial weights)."""
    import random

    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def step_generator(seed: int, step: int) -> torch.Generator:
    """The same generator on every rank for a step: shared random projections and permutations."""
    generator = torch.Generator()
    generator.manual_seed((seed * 1_000_003 + step) % 2**63)
    return generator


class Trainer:
    """Builds everything from a resolved config and runs (or resumes) training and evaluation."""

    def __init__(self, config: dict[str, Any], resume: bool = False, overwrite: bool = False) -> None:
        self.config = config
        self.resume = resume
        self.dist: DistContext = init_distributed(config["train"]["device"])
        self.run_dir = run_directory(config)
        self.checkpoint_dir = self.run_dir / "checkpoints"
        self.lock = RunLock(self.run_dir)
        self.resume_changes: dict[str, tuple[Any, Any]] = {}
        _on_every_rank(self._claim, overwrite)
        if config.get("deterministic"):
            torch.use_deterministic_algorithms(True, warn_only=True)
            os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        set_seed(int(config["seed"]))

        self.recipe = get_recipe(config["model"]["baseline"])(config)
        self.data: TrainData = build_train_data(config, self.recipe, self.dist)
        config["model"]["num_classes"] = self.data.num_locations

        model = self.recipe.build_model(config)
        criterion = self.recipe.build_criterion(config)
        self.objective = TrainingObjective(model, criterion, config["cvd"], self.recipe.contrastive)
        self.objective.to(self.dist.device)
        if config["model"].get("channels_last", True):
            self.objective.to(memory_format=torch.channels_last)
        if self.dist.distributed and config["train"].get("sync_bn"):
            self.objective = nn.SyncBatchNorm.convert_sync_batchnorm(self.objective)
        self.model = self.objective.model
        self.data.attach_model(self.model)

        self.engine: nn.Module = self.objective
        if self.dist.distributed:
            device_ids = [self.dist.device.index] if self.dist.device.type == "cuda" else None
            self.engine = DistributedDataParallel(self.objective, device_ids=device_ids)

        self.accumulate = max(1, int(config["optim"]["accumulate"]))
        self.steps_per_epoch = max(1, self.data.batches_per_epoch // self.accumulate)
        epochs = math.ceil(float(config["schedule"]["epochs"]))
        total = self.steps_per_epoch * epochs
        max_steps = config["schedule"].get("max_steps")
        self.total_steps = min(total, int(max_steps)) if max_steps else total
        self.epochs = epochs
        self.planned_batches = self.total_steps * self.accumulate
        self.optimizer = build_optimizer(self.objective, config["optim"], config["cvd"])
        self.scheduler = build_scheduler(
            self.optimizer, config["schedule"], self.steps_per_epoch, self.total_steps
        )
        self.autocast_dtype, use_scaler = precision_settings(config["train"]["precision"], self.dist.device)
        self.sam = build_sam(self.optimizer, config["optim"], use_scaler, self.accumulate)
        if config["model"].get("init_from"):
            load_initial_weights(self.model, Path(config["model"]["init_from"]))
        self.scaler = torch.amp.GradScaler(self.dist.device.type, enabled=use_scaler)
        self.logger = RunLogger(self.run_dir, enabled=self.dist.is_main)
        self.step = 0
        self.epoch = 0
        self.batch_in_epoch = 0

    # ------------------------------------------------------------------ set-up and state
    def _claim(self, overwrite: bool) -> None:
        """Rank 0: lock the folder, then check it can be used as asked (fresh, overwrite, resume).

        The lock comes first: nothing is read, compared or deleted while another process may be
        writing. A resume then removes what a killed write left behind (only the lock holder can
        know those temporaries are stale)."""
        try:
            self.lock.acquire()
        except OSError as error:  # an unwritable output_dir: the user's to fix, one line
            raise RunFolderError(
                f"output_dir={self.config['output_dir']}: cannot create the run folder {self.run_dir} "
                f"({error.strerror or error}: {error.filename}); choose a writable output_dir= "
                "or fix the folder's permissions"
            ) from error
        if self.resume:
            self.resume_changes = check_resume_config(self.run_dir, self.config)
            for path in clean_temporaries(self.run_dir):
                LOGGER.info("removed %s (left by an interrupted write)", path)
        else:
            claim_run_dir(self.run_dir, overwrite)

    def close(self) -> None:
        """Release the run folder (also done by the OS when the process ends, however it ends)."""
        self.logger.close()
        self.lock.release()

    def prepare_run_dir(self) -> None:
        """Write the resolved config and the run's identity (version, commit, command, world).

        A resumed run keeps its original identity and appends one entry to ``resumes``: when, at
        which step, by which command and commit, and which (allowed) config keys changed."""
        if not self.dist.is_main:
            return
        self.run_dir.mkdir(parents=True, exist_ok=True)
        save_config(self.config, self.run_dir / "config.yaml")
        previous = read_run_info(self.run_dir) if self.resume else None
        if previous is not None:
            previous["format"] = RUN_FORMAT
            previous.setdefault("resumes", []).append(
                {
                    "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                    "from_step": self.step,
                    "command": sys.argv,
                    "git_commit": git_commit(),
                    "world_size": self.dist.world_size,
                    "device": str(self.dist.device),
                    "changed": {
                        key: {"old": old, "new": new} for key, (old, new) in self.resume_changes.items()
                    },
                }
            )
            atomic_write_text(self.run_dir / "run_info.json", json.dumps(previous, indent=2))
            return
        info = {
            "format": RUN_FORMAT,
            "cvd_version": __version__,
            "git_commit": git_commit(),
            "command": sys.argv,
            "world_size": self.dist.world_size,
            "device": str(self.dist.device),
            "torch": torch.__version__,
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "resumed": self.resume,
            "train_pairs": len(self.data.dataset),
            "train_locations": self.data.num_locations,
            "steps_per_epoch": self.steps_per_epoch,
            "total_steps": self.total_steps,
        }
        atomic_write_text(self.run_dir / "run_info.json", json.dumps(info, indent=2))

    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed run needs (see cvd.engine.checkpoint)."""
        return {
            "model": self.objective.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "step": self.step,
            "epoch": self.epoch,
            "batch_in_epoch": self.batch_in_epoch,
            "sampler": self.data.sampler_state(),
            "skipped": self.data.skipped_state(),
            "rng": capture_rng_state(),
            "cvd_version": __version__,
        }

    def load_state(self, state: Mapping[str, Any]) -> None:
        """Restore a checkpoint written by :meth:`state_dict` (strictly: same model and recipe)."""
        try:
            self.objective.load_state_dict(state["model"], strict=True)
        except RuntimeError as error:
            raise CVDError(
                f"the checkpoint in {self.checkpoint_dir} does not match this config's model: {error}"
            ) from error
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        self.epoch = int(state["epoch"])
        self.batch_in_epoch = int(state["batch_in_epoch"])
        self.data.load_sampler_state(state.get("sampler") or {})
        self.data.load_skipped_state(state.get("skipped") or {})
        restore_rng_state(state["rng"])

    def save(self) -> None:
        """Checkpoint the current state, never one with non-finite weights (it could not be
        resumed, yet it would be the newest and be named the last good one)."""
        self._check_finite_weights("checkpoint")
        if self.dist.is_main:
            try:
                save_checkpoint(
                    self.state_dict(),
                    self.checkpoint_dir,
                    self.step,
                    int(self.config["checkpoint"]["keep_last"]),
                )
            except (OSError, RuntimeError) as error:  # torch reports a full disk as a RuntimeError
                kept = self._last_checkpoint_phrase()
                raise CheckpointError(
                    f"cannot write the checkpoint of step {self.step} in {self.checkpoint_dir} "
                    f"({' '.join(str(error).split())}; disk full?); nothing half-written was left, "
                    f"{kept}: free space, then continue with --resume"
                ) from error
        barrier()

    def try_resume(self) -> None:
        """Continue from the newest checkpoint that reads back (a damaged one is set aside, with a
        warning, and the one before it is used); the logs lose every row after that step."""
        if not self.resume:
            return
        state, path = None, None
        for candidate in reversed(list_checkpoints(self.checkpoint_dir)):
            try:
                state = load_checkpoint(candidate, map_location=self.dist.device)
            except CheckpointError as error:
                barrier()  # every rank has tried it before rank 0 moves it
                if self.dist.is_main:
                    moved = remove_corrupt(candidate)
                    LOGGER.warning("--resume: %s; set aside as %s, trying the one before", error, moved.name)
                barrier()
                continue
            path = candidate
            break
        if state is None:
            LOGGER.warning(
                "--resume: no complete checkpoint in %s; starting from scratch", self.checkpoint_dir
            )
            self.logger.truncate_after(0)
            return
        self.load_state(state)
        self.logger.truncate_after(self.step)
        if self.dist.is_main:
            LOGGER.info("resumed from %s (epoch %d, step %d)", path, self.epoch, self.step)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> FitResult:
        """Train to the end of the schedule, evaluating as configured; returns the final results."""
        self.try_resume()
        self.prepare_run_dir()
        every = int(self.config["eval"]["every_epochs"])
        every_steps = int(self.config["checkpoint"]["every_steps"])
        results: list[dict[str, Any]] = []
        try:
            while self.epoch < self.epochs and self.step < self.total_steps:
                finished_epoch = self._train_epoch(every_steps)
                if not finished_epoch:  # schedule.max_steps reached inside the epoch
                    self.save()
                    break
                self.epoch += 1
                self.batch_in_epoch = 0
                last = self.epoch >= self.epochs or self.step >= self.total_steps
                if every > 0 and self.epoch % every == 0 and not last:
                    self.evaluate()
                if not last:
                    self.data.on_epoch_end(self.model, self.epoch)
                self.save()
            self.calibrate()
            results = self.evaluate(final=True)
            self.release()
            skipped = self.report_skipped()
        except BaseException:
            # Ctrl-C, SIGTERM, a full disk: no temporary may outlive the run, whatever the instant
            # it was stopped at (this process holds the lock: every temporary here is its own)
            if self.dist.is_main and self.lock.held:
                clean_temporaries(self.run_dir)
            raise
        finally:
            self.close()
        return FitResult(self.run_dir, self.step, results, skipped)

    def _micro_batches(self) -> Iterator[dict[str, Any]]:
        loader = self.data.loader(self.epoch, skip_batches=self.batch_in_epoch)
        yield from loader

    def _train_epoch(self, every_steps: int) -> bool:
        """One epoch (or what is left of it after a resume). False when max_steps ended it early."""
        self.engine.train()
        remaining = self.data.batches_per_epoch - self.batch_in_epoch
        progress = progress_bar(
            total=remaining,
            desc=f"epoch {self.epoch + 1}/{self.epochs}",
            enabled=self.dist.is_main,
            leave=False,
            dynamic_ncols=True,
        )
        started = time.perf_counter()
        for batch in self._micro_batches():
            if batch is None:  # every rank dropped it: an image became unreadable during the run
                self.batch_in_epoch += 1
                progress.update(1)
                if self.batch_in_epoch % self.accumulate == 0:
                    # the group's last micro-batch (the one DDP syncs gradients on) is gone, and so
                    # is the group's step: what the group had accumulated is discarded on every rank
                    self.optimizer.zero_grad(set_to_none=True)
                self._check_skipped()
                continue
            batch = _to_device(batch, self.dist.device)
            accumulating = (self.batch_in_epoch + 1) % self.accumulate != 0
            sync = (
                self.engine.no_sync()
                if accumulating and isinstance(self.engine, DistributedDataParallel)
                else contextlib.nullcontext()
            )
            context = LossContext(
                gather=gather_with_grad,
                generator=step_generator(int(self.config["seed"]), self.step),
                step=self.step,
            )
            with sync:
                with self._autocast():
                    terms = self.engine(batch, context)
                self._check_finite(terms)
                self.scaler.scale(terms["total"] / self.accumulate).backward()
            self.batch_in_epoch += 1
            progress.update(1)
            if accumulating:
                continue
            if self.sam is not None:
                self._sharpness_aware_second_pass(batch, context)
            self._optimizer_step()
            self.step += 1
            # one device-to-host transfer for all terms, not one sync per term
            stacked = torch.stack([v.detach().float().reshape(()) for v in terms.values()])
            values = dict(zip(terms, stacked.tolist(), strict=True))
            progress.set_postfix(loss=f"{values['total']:.4f}")
            if self.step % int(self.config["train"]["log_every"]) == 0 or self.step == 1:
                values["lr"] = self.optimizer.param_groups[0]["lr"]
                values["epoch"] = self.epoch + self.batch_in_epoch / self.data.batches_per_epoch
                values["images_per_s"] = (
                    2 * self.data.global_batch * self.accumulate / max(1e-9, time.perf_counter() - started)
                )
                self.logger.log_train(self.step, values)
            started = time.perf_counter()
            if every_steps > 0 and self.step % every_steps == 0:
                self.save()
            if self.step >= self.total_steps:
                progress.close()
                return self.batch_in_epoch >= self.data.batches_per_epoch
        progress.close()
        return True

    def skipped_summary(self) -> dict[str, Any]:
        """What unreadable images cost the run so far (the record in run_info.json)."""
        data = self.data
        return {
            "max_skipped_share": data.max_skipped_share,
            "train_pairs_found": data.pairs_found,
            "train_pairs_removed": data.pairs_found - len(data.dataset.pairs),
            "unreadable_before_training": data.unreadable_before,
            "batches_planned": self.planned_batches,
            "batches_dropped": data.dropped_batches,
            "unreadable_during_training": list(data.unreadable_during),
            "steps_planned": self.total_steps,
            "steps_done": self.step,
        }

    def report_skipped(self) -> dict[str, Any]:
        """The closing summary of skipped items: one stderr line, and ``skipped`` in run_info.json."""
        summary = self.skipped_summary()
        if not self.dist.is_main:
            return summary
        removed, found = summary["train_pairs_removed"], summary["train_pairs_found"]
        dropped, planned = summary["batches_dropped"], summary["batches_planned"]
        if not removed and not dropped:
            LOGGER.info("skipped items: none (every training image was read)")
        else:
            LOGGER.warning(
                "skipped items: %d of %d training pairs removed before training (unreadable images), "
                "%d of %d planned training batches dropped during it (%d image(s) became unreadable); "
                "data.max_skipped_share=%g; listed under 'skipped' in %s",
                removed, found, dropped, planned, len(summary["unreadable_during_training"]),
                summary["max_skipped_share"], self.run_dir / "run_info.json",
            )  # fmt: skip
        info = read_run_info(self.run_dir)
        if info is not None:
            info["skipped"] = summary
            atomic_write_text(self.run_dir / "run_info.json", json.dumps(info, indent=2))
        return summary

    def _check_skipped(self) -> None:
        """Stop (every rank alike: the count is the same) once the dropped micro-batches exceed
        ``data.max_skipped_share`` of the planned ones: the run could no longer be what was asked."""
        dropped, planned = self.data.dropped_batches, self.planned_batches
        share = self.data.max_skipped_share
        if dropped <= share * planned:
            return
        self.report_skipped()
        paths = list(self.data.unreadable_during)
        example = f", e.g. {paths[0]}" if paths else ""
        kept = self._last_checkpoint_phrase()
        raise ImageReadError(
            f"{dropped} of {planned} planned training batches ({100 * dropped / planned:.1f}%) were "
            f"dropped because images became unreadable during the run ({len(paths)} file(s){example}), "
            f"more than data.max_skipped_share={share:g} allows; {kept}: restore the files and continue "
            "with --resume, or raise data.max_skipped_share"
        )

    def _sharpness_aware_second_pass(self, batch: Mapping[str, Any], context: LossContext) -> None:
        """(A)SAM: move to the worst-case neighbour, and take the gradient there (same batch, same
        random projections); :meth:`_optimizer_step` then steps from the original weights."""
        self.sam.first_step(zero_grad=True)
        with self._autocast():
            terms = self.engine(batch, context)
        self._check_finite(terms)
        terms["total"].backward()

    def _autocast(self) -> torch.autocast:
        """The forward passes' precision (the SAM second pass must match the first)."""
        return torch.autocast(
            self.dist.device.type,
            dtype=self.autocast_dtype or torch.float32,
            enabled=self.autocast_dtype is not None,
        )

    def _optimizer_step(self) -> None:
        clip = self.config["optim"].get("clip_grad")
        if clip:
            self.scaler.unscale_(self.optimizer)
            torch.nn.utils.clip_grad_norm_(self.objective.parameters(), float(clip))
        if self.sam is not None:
            self.sam.second_step(zero_grad=True)  # restores the weights, then the optimiser steps
        else:
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
        self.scheduler.step()

    def _last_checkpoint_phrase(self) -> str:
        """Where a stopped run can continue from, for its one-line error (every stop says it)."""
        last = latest_checkpoint(self.checkpoint_dir)
        return f"the last complete checkpoint is {last}" if last else "no checkpoint was written yet"

    def _check_finite(self, terms: Mapping[str, torch.Tensor]) -> None:
        bad = 0.0 if torch.isfinite(terms["total"].detach()).item() else 1.0
        if all_reduce_sum(bad, self.dist.device) > 0:
            described = ", ".join(f"{k}={float(v.detach()):.6g}" for k, v in terms.items())
            kept = self._last_checkpoint_phrase()
            raise NonFiniteLossError(
                f"non-finite loss at epoch {self.epoch + 1}, optimiser step {self.step + 1} "
                f"(micro-batch {self.batch_in_epoch + 1}): {described}; {kept}. "
                f"Lower optim.lr, enable optim.clip_grad, or use train.precision=fp32."
            )

    def _check_finite_weights(self, what: str) -> None:
        """Stop (every rank alike) when a weight is NaN or infinite: a finite loss does not prove
        the step after it was finite (``optim.lr=inf`` gives a finite first loss, NaN weights)."""
        bad = [
            name
            for name, tensor in self.objective.state_dict().items()
            if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
        ]
        if all_reduce_sum(float(bool(bad)), self.dist.device) > 0:
            kept = self._last_checkpoint_phrase()
            shown = ", ".join(bad[:5]) + (" ..." if len(bad) > 5 else "")
            raise NonFiniteLossError(
                f"non-finite weights after optimiser step {self.step} (epoch {self.epoch + 1}): "
                f"{len(bad)} tensor(s) hold NaN or inf ({shown or 'on another rank'}); no {what} was "
                f"written; {kept}. Lower optim.lr, enable optim.clip_grad, or use train.precision=fp32."
            )

    # ------------------------------------------------------------------ evaluation and release
    def calibrate(self) -> None:
        """The view means a ``cvd.centre: inference`` model removes, measured on the training
        images under the final weights (:mod:`cvd.engine.calibration`)."""
        from cvd.engine.calibration import calibrate_view_means
        from cvd.engine.validation import query_view_of

        counts = calibrate_view_means(
            self.model, self.data.dataset.pairs, query_view_of(self.data.benchmark), self.config, self.dist
        )
        if counts and self.dist.is_main:
            LOGGER.info("view means measured on %s training images", counts)

    def evaluate(self, final: bool = False) -> list[dict[str, Any]]:
        """Evaluate every split of the dataset; results logged and, at the end, written as JSON."""
        results = evaluate_model(self.model, self.data, self.config, self.dist)
        if self.dist.is_main:
            for result in results:
                self.logger.log_eval(self.step, result["split"], _scalars(result))
                LOGGER.info(result.get("summary", ""))
            write_results(
                results, self.run_dir / ("results.json" if final else f"eval/step-{self.step}.json")
            )
        barrier()
        return results

    def release(self) -> None:
        """Safetensors weights and the config that rebuilds the model, for users and `cvd test`."""
        self._check_finite_weights("release")
        if self.dist.is_main:
            from cvd.models import save_release

            save_release(self.model, self.config, self.run_dir / "release")
        barrier()


def build_sam(
    optimizer: torch.optim.Optimizer, optim_config: Mapping[str, Any], use_scaler: bool, accumulate: int
) -> Any:
    """The (A)SAM wrapper when ``optim.sam`` is set (TransGeo), else None."""
    options = optim_config.get("sam")
    if not options:
        return None
    if not isinstance(options, Mapping):
        raise ConfigError("optim.sam must be a mapping such as {rho: 2.5, adaptive: true} or null")
    if use_scaler:
        raise ConfigError("optim.sam does not work with fp16 loss scaling: set train.precision=bf16 or fp32")
    if accumulate > 1:
        raise ConfigError("optim.sam needs optim.accumulate=1 (both passes must see the same batch)")
    from cvd.engine.sam import SharpnessAwareMinimizer

    unknown = sorted(set(options) - {"rho", "adaptive", "eta"})
    if unknown:
        raise ConfigError(f"optim.sam: unknown option(s) {unknown}; known: adaptive, eta, rho")
    return SharpnessAwareMinimizer(
        optimizer,
        rho=float(options.get("rho", 0.05)),
        adaptive=bool(options.get("adaptive", False)),
        eta=float(options.get("eta", 0.0)),
    )


def load_initial_weights(model: nn.Module, path: Path) -> None:
    """Start from released weights (a run folder, a release folder or a .safetensors file), strictly."""
    from cvd.models.release import read_weights, release_weights

    try:
        weights = release_weights(path)
        state = read_weights(weights)
    except CheckpointError as error:
        raise CheckpointError(f"model.init_from: {error}") from error
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"model.init_from: {weights} does not fit this model: {error}") from error
    LOGGER.info("initialised the model from %s", weights)


def _scalars(result: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in result.items() if isinstance(v, int | float | str) and k != "summary"}


def _to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    moved: dict[str, Any] = {}
    for key, value in batch.items():
        if isinstance(value, torch.Tensor):
            value = value.to(device, non_blocking=True)
            if value.ndim == 4:
                value = value.contiguous(memory_format=torch.channels_last)
        moved[key] = value
    return moved


def fit(config: dict[str, Any], resume: bool = False, overwrite: bool = False) -> FitResult:
    """Train and evaluate one config; the entry point of ``cvd fit``."""
    return Trainer(config, resume=resume, overwrite=overwrite).fit()


def _on_every_rank(claim: Any, *args: Any) -> None:
    """Run ``claim`` on rank 0 and raise its error (same type, same message) on every rank: the
    other ranks must not train on, nor wait at a barrier for, a folder rank 0 was refused."""
    failure: tuple[str, str] | None = None
    error: CVDError | None = None
    try:
        if _is_main():
            claim(*args)
    except CVDError as caught:
        error = caught
        failure = (type(caught).__name__, str(caught))
    failure = broadcast_object(failure)  # type: ignore[assignment]
    if error is not None:
        raise error
    if failure is not None:
        kinds = {cls.__name__: cls for cls in (ConfigError, RunFolderError, RunLockedError)}
        raise kinds.get(failure[0], CVDError)(failure[1])


def _is_main() -> bool:
    import torch.distributed as dist

    return not dist.is_initialized() or dist.get_rank() == 0


def claim_run_dir(run_dir: Path, overwrite: bool) -> None:
    """Refuse to start a fresh run where another one lives, unless ``overwrite``: then clear it.

    A fresh run must not start on top of another (its log rows would follow the old ones, and a
    later --resume could pick up the old run's last checkpoint). ``overwrite`` removes only the
    toolkit's own files of a folder marked as a run (:func:`cvd.engine.runfolder.remove_run`).
    """
    found = run_artefacts(run_dir)
    if not found:
        return
    if not overwrite:
        raise ConfigError(
            f"run folder {run_dir} already holds a run ({', '.join(found)}): pass --resume to "
            "continue it, --overwrite to start it again from scratch, or choose another name=/output_dir="
        )
    remove_run(run_dir)
