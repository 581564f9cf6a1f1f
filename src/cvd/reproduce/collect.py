"""A table's results beside the paper's: ``table.md``, ``table.csv`` and ``table.html`` (with charts).

Each row's numbers are read from its run's own ``results.json`` (or the ``cvd test`` output of an
evaluation row), matched to the paper's directions (``drone->satellite``, ``satellite->drone``;
the one street->satellite split for ``cvusa`` / ``cvact_val``), and laid out as the paper lays
the table out: one line per method, one column group per altitude (SUES-200) or benchmark
(CVUSA / CVACT_val), the paper's metrics in each. A row with no results, or whose results were
computed with another protocol than its config's (gallery variant, flip TTA: the paper's), is
marked as such.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cvd.reproduce.plan import DONE, Step
from cvd.reproduce.tables import METRICS, TABLES, Row

Column = tuple[str, str, str]  # (group, direction, metric)
DIRECTIONS = ("drone->satellite", "satellite->drone", "cvusa", "cvact_val")
"""The paper's column order (Table 3 shows CVUSA before CVACT_val)."""


@dataclass
class Cell:
    """One number of the table: ours (None when missing) and the paper's."""

    ours: float | None
    paper: float

    @property
    def diff(self) -> float | None:
        """Ours minus the paper's, in points (None when ours is missing)."""
        return None if self.ours is None else self.ours - self.paper


@dataclass
class Line:
    """One line of the table: a method (or ablation), its cells by column, and its marks."""

    label: str
    rows: list[Row] = field(default_factory=list)
    cells: dict[Column, Cell] = field(default_factory=dict)
    marks: list[str] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)


@dataclass
class CollectedTable:
    """A table as collected: its lines, its columns in the paper's order, and whether it is synthetic."""

    table: int
    title: str
    columns: list[Column]
    lines: list[Line]
    synthetic: bool = False


def read_results(path: Path) -> list[dict[str, Any]] | None:
    """A ``results.json`` as its list of splits (None when absent or unreadable)."""
    try:
        payload = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return payload if isinstance(payload, list) else None


def match_split(results: Sequence[dict[str, Any]], direction: str, group: str = "") -> dict[str, Any] | None:
    """The split of ``results`` the paper calls ``direction`` in column group ``group``.

    By split name (SUES-200's carry the altitude: ``drone->satellite/150m``), else the only split
    (CVUSA's and CVACT's one street->satellite split is the paper's ``cvusa`` / ``cvact_val``).
    """
    named = [r for r in results if str(r.get("split", "")).split("/")[0] == direction]
    if len(named) > 1 and group:
        named = [r for r in named if str(r.get("split", "")).endswith("/" + group.replace(" ", ""))]
    if len(named) == 1:
        return named[0]
    return results[0] if len(results) == 1 else None


def protocol_marks(row: Row, results: Sequence[dict[str, Any]]) -> list[str]:
    """How the results' protocol differs from the row config's (the paper's), e.g. ``flip TTA off``."""
    marks = []
    expected = row.config.eval_protocol
    variants = {r.get("gallery_variant") for r in results if r.get("gallery_variant") is not None}
    if expected.get("gallery_variant") and variants and variants != {expected["gallery_variant"]}:
        marks.append(f"gallery {'/'.join(sorted(map(str, variants)))}, paper {expected['gallery_variant']}")
    tta = {bool(r.get("flip_tta")) for r in results}
    if tta and tta != {bool(expected.get("flip_tta"))}:
        marks.append(
            f"flip TTA {'on' if True in tta else 'off'}, paper {'on' if expected.get('flip_tta') else 'off'}"
        )
    return marks


def collect_table(
    table: int, rows: Sequence[Row], steps: Sequence[Step], synthetic: bool = False
) -> CollectedTable:
    """Lay ``rows``' results (from the steps that serve them) out as the paper's table ``table``."""
    by_row = {(row.table, row.key): step for step in steps for row in step.rows}
    columns: list[Column] = []
    lines: list[Line] = []
    for row in rows:
        step = by_row.get((row.table, row.key))
        results = read_results(step.results) if step is not None else None
        row_columns = [
            (row.group, direction, metric)
            for direction, metrics in row.paper.items()
            for metric in METRICS
            if metric in metrics
        ]
        for column in row_columns:
            if column not in columns:
                columns.append(column)
        line = next(
            (ln for ln in lines if ln.label == row.label and not set(row_columns) & set(ln.cells)), None
        )
        if line is None:
            line = Line(row.label)
            lines.append(line)
        line.rows.append(row)
        where = f" {row.group}" if row.group else ""
        if results is None:
            state = step.state if step is not None and step.state != DONE else "no results"
            line.marks.append(f"missing{where} ({state})")
        else:
            line.marks += [f"{mark}{where}" for mark in protocol_marks(row, results)]
            line.runs.append(str(step.folder) if step is not None else "")
        for group, direction, metric in row_columns:
            split = match_split(results, direction, group) if results is not None else None
            value = split.get(metric) if split is not None else None
            line.cells[(group, direction, metric)] = Cell(
                float(value) if isinstance(value, int | float) else None, row.paper[direction][metric]
            )
    columns = _paper_order(columns)
    return CollectedTable(table, TABLES.get(table, f"Table {table}"), columns, lines, synthetic)


def _paper_order(columns: list[Column]) -> list[Column]:
    """Groups with altitudes ascending, directions in the paper's order (DIRECTIONS), metrics as METRICS."""
    groups = sorted(dict.fromkeys(c[0] for c in columns), key=lambda g: (not g, _number(g), g))
    seen = list(dict.fromkeys(c[1] for c in columns))
    directions = sorted(
        seen, key=lambda d: (DIRECTIONS.index(d) if d in DIRECTIONS else len(DIRECTIONS), seen.index(d))
    )
    present = set(columns)
    return [(g, d, m) for g in groups for d in directions for m in METRICS if (g, d, m) in present]


def _number(text: str) -> float:
    head = text.split(" ")[0]
    try:
        return float(head)
    except ValueError:
        return 0.0


def _fmt(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def _header(column: Column) -> str:
    group, direction, metric = column
    return " ".join(part for part in (group, direction, metric) if part)


def render_markdown(collected: CollectedTable) -> str:
    """The table as Markdown: per cell ours / paper (difference), and a marks column."""
    lines = [f"# {collected.title}", ""]
    if collected.synthetic:
        from cvd.reproduce.synthetic import SYNTHETIC_NOTE

        lines += [f"> **{SYNTHETIC_NOTE}**", ""]
    lines += ["Each cell: ours / paper (ours - paper), in %. — : not measured.", ""]
    lines.append("| row | " + " | ".join(_header(c) for c in collected.columns) + " | marks |")
    lines.append("|---|" + "---|" * len(collected.columns) + "---|")
    for line in collected.lines:
        cells = []
        for column in collected.columns:
            cell = line.cells.get(column)
            cells.append(
                "" if cell is None else f"{_fmt(cell.ours)} / {_fmt(cell.paper)} ({_fmt(cell.diff, True)})"
            )
        lines.append(f"| {line.label} | " + " | ".join(cells) + f" | {'; '.join(line.marks)} |")
    return "\n".join(lines) + "\n"


CSV_FIELDS = ("table", "row", "group", "direction", "metric", "ours", "paper", "diff", "marks", "runs")


def render_csv(collected: CollectedTable) -> str:
    """One CSV line per cell (tidy): table, row, group, direction, metric, ours, paper, diff, marks."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_FIELDS)
    for line in collected.lines:
        for column in collected.columns:
            cell = line.cells.get(column)
            if cell is None:
                continue
            writer.writerow([
                collected.table, line.label, *column,
                "" if cell.ours is None else f"{cell.ours:.4f}", f"{cell.paper:.2f}",
                "" if cell.diff is None else f"{cell.diff:.4f}", "; ".join(line.marks), " ".join(line.runs),
            ])  # fmt: skip
    return buffer.getvalue()


def render_html(collected: CollectedTable) -> str:
    """A self-contained page: the table (ours, paper, difference per cell) and the bar charts."""
    esc = html.escape
    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{esc(collected.title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:3px 6px;text-align:right}td.l,th.l{text-align:left}"
        ".p{color:#666}.up{color:#070}.down{color:#b00}.mark{color:#b60;text-align:left}"
        ".synthetic{background:#fee;border:2px solid #b00;padding:1em;font-weight:bold}</style></head><body>",
        f"<h1>{esc(collected.title)}</h1>",
    ]
    if collected.synthetic:
        from cvd.reproduce.synthetic import SYNTHETIC_NOTE

        parts.append(f"<p class='synthetic'>{esc(SYNTHETIC_NOTE)}</p>")
    parts.append("<p>Each cell: ours, <span class='p'>the paper's</span>, and the difference (points).</p>")
    parts.append("<table><tr><th class='l'>row</th>")
    parts += [f"<th>{esc(_header(c))}</th>" for c in collected.columns]
    parts.append("<th class='l'>marks</th></tr>")
    for line in collected.lines:
        parts.append(f"<tr><td class='l'>{esc(line.label)}</td>")
        for column in collected.columns:
            cell = line.cells.get(column)
            if cell is None:
                parts.append("<td></td>")
                continue
            diff = cell.diff
            kind = "" if diff is None else ("up" if diff >= 0 else "down")
            parts.append(
                f"<td><b>{_fmt(cell.ours)}</b><br><span class='p'>{_fmt(cell.paper)}</span><br>"
                f"<span class='{kind}'>{_fmt(diff, True)}</span></td>"
            )
        parts.append(f"<td class='mark'>{esc('; '.join(line.marks))}</td></tr>")
    parts.append("</table>")
    chart = chart_png(collected)
    if chart:
        encoded = base64.b64encode(chart).decode("ascii")
        parts.append(f"<h2>Charts</h2><img alt='ours vs paper' src='data:image/png;base64,{encoded}'>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def chart_metric(collected: CollectedTable) -> list[Column]:
    """The columns the charts show: R@1 (else the first metric) of the first direction, per group."""
    directions = list(dict.fromkeys(c[1] for c in collected.columns))
    if not directions:
        return []
    chosen = [c for c in collected.columns if c[1] == directions[0] and c[2] == "R@1"]
    return chosen or [c for c in collected.columns if c[1] == directions[0]][:1]


def cvd_gains(collected: CollectedTable, column: Column) -> list[tuple[str, float | None, float]]:
    """(label, our gain, the paper's gain) of each CVD line over its baseline in ``column``.

    The baseline of ``X + CVD`` is ``X``; in the ablation tables it is the last line before it
    whose label starts with "Baseline" (else the table's first line).
    """
    by_label = {line.label: line for line in collected.lines}
    gains = []
    baseline = collected.lines[0] if collected.lines else None
    for line in collected.lines:
        if line.label.lower().startswith("baseline"):
            baseline = line
            continue
        base = by_label.get(line.label.removesuffix(" + CVD")) if line.label.endswith(" + CVD") else None
        if base is None and not any(other.label.endswith(" + CVD") for other in collected.lines):
            base = baseline if baseline is not line else None
        if base is None:
            continue
        ours, theirs = line.cells.get(column), base.cells.get(column)
        if ours is None or theirs is None:
            continue
        gain = None if ours.ours is None or theirs.ours is None else ours.ours - theirs.ours
        gains.append((line.label, gain, ours.paper - theirs.paper))
    return gains


def chart_png(collected: CollectedTable) -> bytes | None:
    """Bar charts (ours vs paper; CVD's gain, ours vs paper's) as PNG bytes; None without numbers."""
    columns = chart_metric(collected)
    if not columns:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, ours, paper, gains = [], [], [], []
    for column in columns:
        suffix = f" {column[0]}" if column[0] else ""
        for line in collected.lines:
            cell = line.cells.get(column)
            if cell is not None:
                labels.append(line.label + suffix)
                ours.append(cell.ours if cell.ours is not None else 0.0)
                paper.append(cell.paper)
        gains += [(label + suffix, gain, theirs) for label, gain, theirs in cvd_gains(collected, column)]
    metric = " ".join(p for p in (columns[0][1], columns[0][2]) if p)
    panels = 2 if gains else 1
    figure, axes = plt.subplots(
        panels, 1, figsize=(max(6.0, 0.45 * len(labels) + 2), 4.0 * panels), squeeze=False
    )
    _bars(axes[0][0], labels, ours, paper, f"{metric} (%): ours vs paper")
    if gains:
        _bars(axes[1][0], [g[0] for g in gains], [g[1] or 0.0 for g in gains], [g[2] for g in gains],
              f"CVD's gain in {metric} (points): ours vs paper's")  # fmt: skip
    if collected.synthetic:
        figure.suptitle("synthetic smoke numbers, not a reproduction", color="#b00")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def _bars(axis: Any, labels: list[str], ours: list[float], paper: list[float], title: str) -> None:
    positions = range(len(labels))
    axis.bar([p - 0.2 for p in positions], ours, width=0.4, label="ours")
    axis.bar([p + 0.2 for p in positions], paper, width=0.4, label="paper")
    axis.set_xticks(list(positions))
    axis.set_xticklabels(labels, rotation=45, ha="right", fontsize=8)
    axis.set_title(title)
    axis.axhline(0, color="black", linewidth=0.5)
    axis.legend()


def write_table(collected: CollectedTable, folder: Path) -> list[Path]:
    """Write ``table.md``, ``table.csv`` and ``table.html`` into ``folder``; returns their paths."""
    from cvd.atomic import atomic_write_text

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, text in (
        ("table.md", render_markdown(collected)),
        ("table.csv", render_csv(collected)),
        ("table.html", render_html(collected)),
    ):
        atomic_write_text(folder / name, text)
        written.append(folder / name)
    return written
