"""Errors a user can act on.

Every module raises :class:`InputError` for bad input (files, names, shapes, values) with a
one-line message that names the thing and what was expected. The CLI turns it into that line on
stderr and exit code 2; :class:`GateFailure` becomes exit code 1.
"""

from __future__ import annotations


class InputError(Exception):
    """Bad user input: unknown name, unreadable file, mismatched modality, NaN... (exit 2)."""

    exit_code = 2


class GateFailure(Exception):
    """A robustness regression beyond the stated tolerance (exit 1)."""

    exit_code = 1


def one_of(what: str, value: object, choices) -> InputError:
    """An InputError for an unknown name that lists the valid choices."""
    listed = ", ".join(sorted(str(c) for c in choices)) or "(none)"
    return InputError(f"unknown {what} {value!r}; expected one of: {listed}")
