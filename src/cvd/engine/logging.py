"""Run logs: CSV always, TensorBoard when installed, console lines; rank 0 only.

CSV is the format every tool reads and survives a crash line by line (each row is flushed);
TensorBoard is optional (``pip install cvd[tensorboard]``).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from cvd.atomic import atomic_output
from cvd.errors import MissingExtraError
from cvd.extras import require_extra

LOGGER = logging.getLogger("cvd")


class CSVLog:
    """Append rows to a CSV file; new columns extend the header by rewriting the file once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fields: list[str] = []
        if path.is_file():
            with path.open(newline="", encoding="utf-8") as handle:
                reader = csv.reader(handle)
                self.fields = next(reader, [])

    def write(self, row: Mapping[str, Any]) -> None:
        new_fields = [key for key in row if key not in self.fields]
        if new_fields:
            rows = self.read()
            self.fields.extend(new_fields)
            self._rewrite(rows)
        with self.path.open("a", newline="", encoding="utf-8") as handle:
            csv.DictWriter(handle, fieldnames=self.fields).writerow(dict(row))

    def read(self) -> list[dict[str, str]]:
        if not self.path.is_file():
            return []
        with self.path.open(newline="", encoding="utf-8") as handle:
            return list(csv.DictReader(handle))

    def truncate_after(self, step: int) -> None:
        """Drop rows logged after ``step`` (a resumed run re-does them); 0 keeps the header only."""
        if not self.path.is_file():
            return
        rows = [row for row in self.read() if not row.get("step") or int(float(row["step"])) <= step]
        self._rewrite(rows)

    def _rewrite(self, rows: list[dict[str, str]]) -> None:
        # atomic: a kill during a resume's truncation must not wipe the run's log
        with (
            atomic_output(self.path) as temporary,
            temporary.open("w", newline="", encoding="utf-8") as handle,
        ):
            writer = csv.DictWriter(handle, fieldnames=self.fields)
            writer.writeheader()
            writer.writerows(rows)


class RunLogger:
    """Training and evaluation scalars of one run; does nothing on ranks other than 0."""

    def __init__(self, run_dir: Path, enabled: bool = True) -> None:
        self.enabled = enabled
        self.train = CSVLog(run_dir / "train_log.csv") if enabled else None
        self.eval = CSVLog(run_dir / "eval_log.csv") if enabled else None
        self.tensorboard = None
        if enabled:
            try:
                board = require_extra("torch.utils.tensorboard", "tensorboard", "TensorBoard logging")
            except MissingExtraError as error:  # optional: the CSV logs hold the same numbers
                LOGGER.debug("%s; logging to CSV only", error)
            else:
                self.tensorboard = board.SummaryWriter(log_dir=str(run_dir / "tensorboard"))

    def log_train(self, step: int, values: Mapping[str, float]) -> None:
        if not self.enabled:
            return
        self.train.write({"step": step, **values})
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"train/{key}", value, step)

    def log_eval(self, step: int, split: str, values: Mapping[str, Any]) -> None:
        if not self.enabled:
            return
        self.eval.write({"step": step, "split": split, **values})
        if self.tensorboard is not None:
            for key, value in values.items():
                if isinstance(value, int | float):
                    self.tensorboard.add_scalar(f"eval/{split}/{key}", value, step)

    def truncate_after(self, step: int) -> None:
        if self.enabled:
            self.train.truncate_after(step)
            self.eval.truncate_after(step)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
