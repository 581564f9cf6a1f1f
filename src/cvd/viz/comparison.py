"""The comparison report of several runs: metrics table, loss curves, retrieval grids, summary."""

from __future__ import annotations

import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from cvd.atomic import atomic_write_text
from cvd.evaluation.results import HEADLINE_METRICS as METRICS


def metrics_table(results: Mapping[str, Sequence[Mapping[str, Any]]]) -> list[dict[str, Any]]:
    """Rows (run, split, metrics...) from each run's list of split results."""
    rows = []
    for run, run_results in results.items():
        for result in run_results:
            row = {"run": run, "split": result.get("split", "?")}
            row.update({metric: result.get(metric) for metric in METRICS})
            row["queries"] = result.get("num_queries")
            row["gallery"] = result.get("num_gallery")
            rows.append(row)
    return rows


def markdown_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The metrics table as GitHub markdown."""
    header = ["run", "split", *METRICS, "queries", "gallery"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in rows:
        cells = [_cell(row.get(key)) for key in header]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    return "" if value is None else str(value)


def write_report(
    out: Path,
    title: str,
    intro: str,
    results: Mapping[str, Sequence[Mapping[str, Any]]],
    figures: Mapping[str, Path],
    notes: Sequence[str] = (),
    tables: Mapping[str, str] | None = None,
) -> Path:
    """Write ``summary.md``, ``index.html`` and ``metrics.json`` in ``out``; returns the HTML path.

    ``tables``: extra sections, caption -> a markdown table (shown as preformatted text in HTML).
    """
    out.mkdir(parents=True, exist_ok=True)
    tables = tables or {}
    rows = metrics_table(results)
    atomic_write_text(out / "metrics.json", json.dumps(rows, indent=2))
    summaries = [result.get("summary", "") for run in results.values() for result in run]
    markdown = [f"# {title}", "", intro, "", "## Metrics", "", markdown_table(rows), ""]
    markdown += ["Protocol lines:", "", *[f"- `{line}`" for line in summaries if line], ""]
    for caption, table in tables.items():
        markdown += [f"## {caption}", "", table, ""]
    for caption, path in figures.items():
        markdown += [f"## {caption}", "", f"![{caption}]({path.relative_to(out).as_posix()})", ""]
    if notes:
        markdown += ["## Notes", "", *[f"- {note}" for note in notes], ""]
    atomic_write_text(out / "summary.md", "\n".join(markdown))

    header = ["run", "split", *METRICS, "queries", "gallery"]
    table = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(key)))}</td>" for key in header) + "</tr>"
        for row in rows
    )
    figures_html = "".join(
        f"<h2>{html.escape(caption)}</h2><img src='{html.escape(path.relative_to(out).as_posix())}'>"
        for caption, path in figures.items()
    )
    notes_html = "".join(f"<li>{html.escape(note)}</li>" for note in notes)
    tables_html = "".join(
        f"<h2>{html.escape(caption)}</h2><pre>{html.escape(table)}</pre>" for caption, table in tables.items()
    )
    page = f"""<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;max-width:1100px;margin:2em auto}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}img{{max-width:100%}}</style></head><body>
<h1>{html.escape(title)}</h1><p>{html.escape(intro)}</p>
<h2>Metrics</h2><table><tr>{"".join(f"<th>{h}</th>" for h in header)}</tr>{table}</table>
<ul>{"".join(f"<li><code>{html.escape(s)}</code></li>" for s in summaries if s)}</ul>
{tables_html}{figures_html}{f"<h2>Notes</h2><ul>{notes_html}</ul>" if notes else ""}
</body></html>"""
    atomic_write_text(out / "index.html", page)
    return out / "index.html"
