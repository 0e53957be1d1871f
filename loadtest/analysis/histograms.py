"""Latency percentiles through HDR histograms: one per worker, merged, as HdrHistogram does.

Values are recorded in microseconds (1 us to 1 h, 3 significant digits). Equal values are
recorded once with their count, so a million attempts cost a numpy unique, not a million
Python calls. Coordinated omission is not patched with synthetic samples here: the open
model records every message's intended send time, so `response time` (end - intended)
already carries the waiting a stalled server caused, and `latency` (end - start) is the
server's own service time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3
PERCENTILES = (50, 90, 95, 99)


def histogram(seconds: np.ndarray) -> HdrHistogram:
    h = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
    micros = np.clip(np.rint(seconds * 1e6), LOWEST_US, HIGHEST_US).astype(np.int64)
    # HdrHistogram's own counts index (bucket, sub-bucket) of every value, vectorised; then
    # one record_value per occupied slot, with its lowest value: the same counts, min and
    # max as recording each value, for a bincount instead of a million Python calls.
    half_mag = h.sub_bucket_half_count_magnitude
    bit_length = np.frexp((micros | h.sub_bucket_mask).astype(np.float64))[1]
    bucket = bit_length - h.unit_magnitude - (half_mag + 1)
    sub_bucket = micros >> (bucket + h.unit_magnitude)
    index = ((bucket + 1) << half_mag) + (sub_bucket - h.sub_bucket_half_count)
    counts = np.bincount(index)
    for slot in np.flatnonzero(counts).tolist():
        h.record_value(h.get_value_from_index(slot), int(counts[slot]))
    return h


def merged(seconds: np.ndarray, groups: np.ndarray | None = None) -> HdrHistogram:
    """One histogram per group (worker), added together: what a distributed run merges."""
    if groups is None or len(groups) == 0:
        return histogram(seconds)
    codes, uniques = pd.factorize(groups)  # hashing, not sorting, the worker names
    if len(uniques) == 1:
        return histogram(seconds)
    total = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
    for code in range(len(uniques)):
        total.add(histogram(seconds[codes == code]))
    return total


def percentiles_ms(
    seconds: np.ndarray, groups: np.ndarray | None = None
) -> dict[str, float | None]:
    if len(seconds) == 0:
        return {**{f"p{p}": None for p in PERCENTILES}, "max": None}
    h = merged(np.asarray(seconds, dtype=float), groups)
    out: dict[str, float | None] = {
        f"p{p}": round(h.get_value_at_percentile(p) / 1000.0, 3) for p in PERCENTILES
    }
    out["max"] = round(h.get_max_value() / 1000.0, 3)
    return out
