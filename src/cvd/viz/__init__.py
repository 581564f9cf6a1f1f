"""Figures and reports: loss curves, retrieval grids, the demo's report."""
