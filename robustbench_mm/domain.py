"""The domain's small vocabularies as types, parsed once at the edge, and the table helpers that
select cells by them (instead of `df["family"] == "clean"` string comparisons everywhere).

`Family` and `Task` are `StrEnum`s: they compare equal to, hash like and serialise as their
plain string values, so cells.csv, manifests and baselines written with them are unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

from .errors import one_of

if TYPE_CHECKING:  # pandas loads where a table is selected: the registries import this module (rbmm list)
    import pandas as pd


class Family(StrEnum):
    """The built-in condition families (the `family` column of cells.csv). Each is registered in
    `corruptions.families.CONDITION_FAMILIES`, where other families register too (by name)."""

    CLEAN = "clean"
    CORRUPTION = "corruption"
    REMOVAL = "removal"
    CONFLICT = "conflict"


class Task(StrEnum):
    """What a model predicts: class scores, or one real value per sample."""

    CLASSIFICATION = "classification"
    REGRESSION = "regression"


def parse_task(value: str, what: str = "task") -> Task:
    """`value` as a Task, or a one-line error naming `what` (a file's field) and the tasks."""
    try:
        return Task(value)
    except ValueError:
        raise one_of(what, value, [t.value for t in Task]) from None


def cells(df: pd.DataFrame, family: Family | None = None, **equal: object) -> pd.DataFrame:
    """The rows of a cells table of one family (any when None) whose columns equal the given values:
    `cells(df, Family.REMOVAL, rate=1)`."""
    import pandas as pd

    keep = pd.Series(True, index=df.index)
    if family is not None:
        keep &= df["family"] == family
    for column, value in equal.items():
        keep &= df[column] == value
    return df[keep]


def clean_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The clean rows of a cells table."""
    return cells(df, Family.CLEAN)


# What "mean corrupted" averages, everywhere it is printed (rbmm eval, the report, the gate): the
# corruption family's cells only; modality removal and conflict cells are summarised on their own.
MEAN_CORRUPTED_CELLS = "every corruption × modality × level × rate cell; removal and conflict cells excluded"


def corrupted_cells(df: pd.DataFrame) -> pd.DataFrame:
    """The rows "mean corrupted" averages (MEAN_CORRUPTED_CELLS)."""
    return cells(df, Family.CORRUPTION)


def perturbed_cells(df: pd.DataFrame) -> pd.DataFrame:
    """Every row that is not clean."""
    return df[df["family"] != Family.CLEAN]
