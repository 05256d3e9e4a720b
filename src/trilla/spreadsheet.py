"""CSV cells that a spreadsheet cannot run, read back by trilla unchanged.

A cell that starts with `=`, `+`, `-` or `@` (or a tab or carriage return) is a formula to Excel,
LibreOffice and Google Sheets: an annotator named `=HYPERLINK(...)` would run in the reviewer's
spreadsheet. OWASP's advice is followed: such a text cell is written with a leading `'`, which every
spreadsheet shows as text, and trilla's readers strip that one quote again. Numbers (`-0.25`) are
left alone: a spreadsheet reads them as numbers, not formulas.

Written by hand: pandas and the csv module write cells as given, and no maintained library does this.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def defuse(value):
    """The cell as written: text a spreadsheet would run gets a leading quote."""
    if isinstance(value, str) and value.startswith(TRIGGERS) and not _is_number(value):
        return "'" + value
    return value


def restore(value: str) -> str:
    """The cell as trilla wrote it before `defuse`."""
    if value.startswith("'") and value[1:].startswith(TRIGGERS) and not _is_number(value[1:]):
        return value[1:]
    return value


def defused(frame: pd.DataFrame) -> pd.DataFrame:
    """A copy whose text cells (and column names) a spreadsheet shows as text."""
    out = frame.rename(columns=defuse)
    for column in out.columns:
        if not pd.api.types.is_numeric_dtype(out[column]) and not pd.api.types.is_bool_dtype(out[column]):
            out[column] = out[column].map(defuse)
    return out


def read_strings(path: str | Path) -> pd.DataFrame:
    """A CSV trilla wrote, every cell a string (empty for missing), defused cells restored."""
    table = pd.read_csv(path, keep_default_na=False, dtype=str)
    return table.rename(columns=restore).map(restore)
