"""The paper's tables as rows of configs: which config reproduces which row, in the paper's order.

Every config under ``configs/`` whose ``meta`` names a ``table`` is one row of that table; its
``meta.paper`` holds the paper's numbers. This module is the one place that enumerates them, for
``cvd reproduce`` and for ``scripts/reproduce_doc.py`` (docs/reproduce.md) alike.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from cvd.config import get_dotted, load_config
from cvd.errors import ConfigError

TABLES: dict[int, str] = {
    1: "Table 1: University-1652 (drone <-> satellite)",
    2: "Table 2: SUES-200, per altitude",
    3: "Table 3: CVUSA and CVACT_val (street -> satellite)",
    4: "Table 4: ablation of CVD's components (University-1652, ResNet-50)",
    5: "Table 5: content-viewpoint ratio alpha (LPN, University-1652)",
    6: "Table 6: InfoNCE temperature (LPN, University-1652)",
    7: "Table 7: trained on University-1652, tested on SUES-200 without fine-tuning",
}
METRICS = ("AP", "R@1", "R@5", "R@10", "R@1%")
"""The paper's metric columns, in its order (a table shows those its rows report)."""


def default_configs_root() -> Path:
    """``./configs`` when run from a checkout or a copy of it, else the repository's own."""
    here = Path.cwd() / "configs"
    if here.is_dir():
        return here
    return Path(__file__).resolve().parents[3] / "configs"


@dataclass(frozen=True)
class ConfigInfo:
    """What the plan needs of one config file: its path, run name, dataset and metadata."""

    path: Path
    name: str
    dataset: str
    meta: dict[str, Any]
    init_from: str | None
    eval_protocol: dict[str, Any]
    group: str = ""


@dataclass(frozen=True)
class Row:
    """One row of one table: the config that reproduces it and the paper's numbers for it.

    ``needs`` are the configs that must be trained first: the Table 1 model a Table 7 row tests
    (``meta.test_of``), or the first stage a two-stage row starts from (``model.init_from``).
    """

    table: int
    index: int
    label: str
    config: ConfigInfo
    paper: dict[str, dict[str, float]]
    note: str
    test_of: ConfigInfo | None = None
    needs: tuple[ConfigInfo, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        """The row's id on the command line (``--rows``): its config's run name."""
        return self.config.name

    @property
    def kind(self) -> str:
        """``test`` for an evaluation-only row (a trained model on another benchmark), else ``fit``."""
        return "test" if self.test_of is not None else "fit"

    @property
    def group(self) -> str:
        """The column group of the row (the altitude on SUES-200), empty when the table has none."""
        return self.config.group


def parse_table(text: str) -> list[int]:
    """``table1``..``table7``, ``1``..``7`` or ``all`` -> table numbers."""
    value = text.strip().lower()
    if value == "all":
        return sorted(TABLES)
    number = value.removeprefix("table")
    if number.isdigit() and int(number) in TABLES:
        return [int(number)]
    raise ConfigError(f"unknown table {text!r}: choose table1 ... table{max(TABLES)} or all")


@lru_cache(maxsize=8)
def _configs(root: Path) -> dict[str, ConfigInfo]:
    """Every experiment config under ``root`` (``_base`` excepted), by run name."""
    found: dict[str, ConfigInfo] = {}
    for path in sorted(root.rglob("*.yaml")):
        if "_base" in path.relative_to(root).parts:
            continue
        config = load_config(path)
        altitude = get_dotted(config, "data.options.altitude")
        found[str(config["name"])] = ConfigInfo(
            path=path,
            name=str(config["name"]),
            dataset=str(config["data"]["dataset"]),
            meta=dict(config.get("meta") or {}),
            init_from=get_dotted(config, "model.init_from"),
            eval_protocol={
                "gallery_variant": config["eval"].get("gallery_variant"),
                "flip_tta": bool(config["eval"].get("flip_tta")),
            },
            group=f"{altitude} m" if altitude is not None else "",
        )
    return found


def configs(root: Path | None = None) -> dict[str, ConfigInfo]:
    """The experiment configs under ``root`` (default :func:`default_configs_root`), by run name."""
    return _configs((root or default_configs_root()).resolve())


def _needs(info: ConfigInfo, known: dict[str, ConfigInfo], seen: tuple[str, ...] = ()) -> list[ConfigInfo]:
    """The configs ``info`` starts from (``model.init_from: runs/<name>`` of a known config), first first."""
    if not info.init_from:
        return []
    name = Path(str(info.init_from)).name
    if name not in known or name in seen:
        return []
    first = known[name]
    return [*_needs(first, known, (*seen, info.name)), first]


def _order(info: ConfigInfo) -> tuple[float, str, str]:
    """Paper order where the config says it (``meta.exp``), then by folder and file (X before X + CVD)."""
    meta = info.meta
    return (float(meta.get("exp", 1e9)), info.path.parent.as_posix(), info.path.stem.replace("_cvd", "~cvd"))


def table_rows(table: int, root: Path | None = None) -> list[Row]:
    """The rows of ``table`` in the paper's order."""
    known = configs(root)
    chosen = sorted(
        (info for info in known.values() if str(info.meta.get("table", "")) == str(table)), key=_order
    )
    rows = []
    for index, info in enumerate(chosen, start=1):
        test_of = None
        needs = _needs(info, known)
        if info.meta.get("test_of"):
            name = str(info.meta["test_of"])
            if name not in known:
                raise ConfigError(
                    f"{info.path}: meta.test_of names {name!r}, which is no config under {root or 'configs/'}"
                )
            test_of = known[name]
            needs = [*_needs(test_of, known), test_of]
        rows.append(
            Row(
                table=table,
                index=index,
                label=str(info.meta.get("row", info.name)),
                config=info,
                paper={
                    str(k): {str(m): float(v) for m, v in d.items()} for k, d in info.meta["paper"].items()
                },
                note=str(info.meta.get("note", "")),
                test_of=test_of,
                needs=tuple(needs),
            )
        )
    return rows


def select_rows(rows: list[Row], spec: str | None) -> list[Row]:
    """The rows named by ``--rows``: comma-separated 1-based positions, run names or globs of them."""
    if not spec:
        return rows
    chosen: list[Row] = []
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if part.isdigit():
            matches = [row for row in rows if row.index == int(part)]
        else:
            matches = [row for row in rows if fnmatch.fnmatchcase(row.key, part)]
        if not matches:
            names = ", ".join(f"{row.index}={row.key}" for row in rows)
            raise ConfigError(f"--rows: {part!r} matches no row of table {rows[0].table}; rows: {names}")
        chosen += [row for row in matches if row not in chosen]
    return sorted(chosen, key=lambda row: row.index)


def all_rows(root: Path | None = None) -> dict[int, list[Row]]:
    """Every table's rows, by table number (tables without a config are left out)."""
    found: dict[int, list[Row]] = defaultdict(list)
    for table in TABLES:
        rows = table_rows(table, root)
        if rows:
            found[table] = rows
    return dict(found)
