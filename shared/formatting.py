"""Numbers in tables and log lines: a fixed number of digits, ``-`` for a missing value."""

from __future__ import annotations


def number(value: float | None, digits: int = 2) -> str:
    """``value`` with ``digits`` decimals, or ``-`` when it is None (not measured)."""
    return "-" if value is None else f"{value:.{digits}f}"
