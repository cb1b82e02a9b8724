"""Text written into files other programs open: CSV cells a spreadsheet cannot run, Markdown
cells that cannot inject HTML or break a table. The one place every writer of those files uses.

CSV: a text cell beginning with `=`, `+`, `-`, `@`, a tab or a carriage return is a formula to
Excel, LibreOffice and Google Sheets (OWASP, "CSV Injection"); it is written with a leading `'`,
as OWASP advises and as Apache Superset does (superset/utils/csv.py, `escape_value`). A cell that
already begins with `'` gets one more, so `restore_csv_cell` gives back exactly what was written.
Numbers are not text: a negative number stays a number.
"""

from __future__ import annotations

import html
import re
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pandas loads with the first table: the metric registry imports this chain (rbmm list)
    import pandas as pd

_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_QUOTE = "'"


def csv_cell(value: object) -> object:
    """`value` as a CSV cell no spreadsheet evaluates: text that begins like a formula (or with
    the quote itself) gets a leading `'`; anything that is not text is returned unchanged."""
    if isinstance(value, str) and value.startswith(_FORMULA_START + (_QUOTE,)):
        return _QUOTE + value
    return value


def restore_csv_cell(value: object) -> object:
    """The text `csv_cell` was given (for reading our own CSV files back)."""
    if isinstance(value, str) and value.startswith(_QUOTE):
        return value[1:]
    return value


def _holds_text(column: pd.Series) -> bool:
    import pandas as pd

    return pd.api.types.is_object_dtype(column) or pd.api.types.is_string_dtype(column)


def _csv_label(label: object) -> object:
    """A header or index label (a tuple for a MultiIndex) through `csv_cell`."""
    return tuple(map(csv_cell, label)) if isinstance(label, tuple) else csv_cell(label)


def _neutral(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.copy()
    for column in out.columns:
        if _holds_text(out[column]):
            out[column] = out[column].map(csv_cell)
    out.columns = out.columns.map(_csv_label)
    out.index = out.index.map(_csv_label)
    return out


def csv_text(frame: pd.DataFrame, index: bool = False) -> str:
    """`frame` as CSV ("\\n" line ends), every text cell, header and index label through `csv_cell`."""
    return _neutral(frame).to_csv(index=index, lineterminator="\n")


def restore_csv_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """A frame read from a CSV written by `csv_text`, its text cells and headers as they were given."""
    frame.columns = [restore_csv_cell(c) for c in frame.columns]
    for column in frame.columns:
        if _holds_text(frame[column]):
            frame[column] = frame[column].map(restore_csv_cell)
    return frame


def md_cell(value: object) -> str:
    """`value` as Markdown text (a table cell or a line): HTML escaped, `|` and line breaks defused."""
    return html.escape(str(value), quote=False).replace("|", "\\|").replace("\n", " ")


def safe_file_name(text: str) -> str:
    """A file name made from a name we were given (a model's, a section's): letters, digits and
    `. _ + = -` kept, anything else (`/`, `\\`, NUL, spaces) `_`, leading dots dropped, so `..`,
    `/etc/x` or `.hidden` can neither leave the output folder nor hide in it."""
    name = re.sub(r"[^A-Za-z0-9._+=-]", "_", str(text)).lstrip(".")
    return name or "_"
