"""Small statistics shared by reports and benchmarks."""

from __future__ import annotations

import math
from collections.abc import Iterable


def percentile(sorted_values: list[float], p: float) -> float | None:
    """The p-th percentile (0–100) of pre-sorted values, by linear interpolation between the
    closest ranks (numpy's default); None for no values."""
    if not sorted_values:
        return None
    k = (len(sorted_values) - 1) * p / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


def quantile(values: Iterable[float], q: float, empty: float = 0.0) -> float:
    """The q-quantile (0–1) of unsorted values by `percentile`'s rule; `empty` for no values."""
    value = percentile(sorted(values), q * 100.0)
    return empty if value is None else value
