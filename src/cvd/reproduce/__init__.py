"""``cvd reproduce``: the paper's tables as resumable commands that run, collect and compare.

- :mod:`cvd.reproduce.tables`: which config is which row of which table (with the paper's numbers);
- :mod:`cvd.reproduce.plan`: the steps a table needs, their commands, run folders and states;
- :mod:`cvd.reproduce.launch`: running the steps here, or writing a SLURM job-array script;
- :mod:`cvd.reproduce.collect`: the results beside the paper's numbers (Markdown, CSV, HTML);
- :mod:`cvd.reproduce.synthetic`: the same tables on synthetic worlds at a smoke budget.
"""

from cvd.reproduce.tables import TABLES, Row, all_rows, parse_table, select_rows, table_rows

__all__ = ["TABLES", "Row", "all_rows", "parse_table", "select_rows", "table_rows"]
