"""Tables as text: a GitHub Markdown table and numbers as a person writes them, for reports, the
console and harvests alike."""

from __future__ import annotations

import numpy as np
import pandas as pd


def markdown_table(frame: pd.DataFrame, floatfmt: str = ".4f") -> str:
    """A GitHub table without the `tabulate` dependency that pandas.to_markdown needs. `floatfmt`
    "human" writes numbers as a person would: 16000, 0.9875, 0.0003, never 1.6e+04."""
    def cell(value) -> str:
        if value is None or (isinstance(value, (float, np.floating)) and np.isnan(value)):
            return ""
        if isinstance(value, (float, np.floating)):
            return human(value) if floatfmt == "human" else format(value, floatfmt)
        return str(value).replace("|", "\\|")

    lines = ["| " + " | ".join(map(str, frame.columns)) + " |", "|" + "---|" * len(frame.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def human(value: float) -> str:
    """A number for people: whole numbers as such, others to 4 decimals (trailing zeros dropped), and
    only numbers too small or too large for that (below 1e-4, from 1e9) in scientific notation."""
    value = float(value)
    if abs(value) >= 1e9 or not np.isfinite(value):  # a diverged loss: its digits say nothing
        return f"{value:.3g}"
    if value.is_integer():
        return str(int(value))
    if abs(value) >= 1e-4:
        return f"{value:.4f}".rstrip("0").rstrip(".")
    return f"{value:.2g}"
