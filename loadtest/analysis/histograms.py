"""Latency percentiles through HDR histograms, held as counts by slot (`Slots`): added
over workers or partitions of a run as HdrHistogram adds histograms.

Values are recorded in microseconds (1 us to 1 h, 3 significant digits). Equal values are
recorded once with their count, so a million attempts cost a numpy unique, not a million
Python calls. Coordinated omission is not patched with synthetic samples here: the open
model records every message's intended send time, so `response time` (end - intended)
already carries the waiting a stalled server caused, and `latency` (end - start) is the
server's own service time.
"""

from __future__ import annotations

import numpy as np
from hdrh.histogram import HdrHistogram

LOWEST_US, HIGHEST_US, DIGITS = 1, 3_600_000_000, 3
PERCENTILES = (50, 90, 95, 99)


class Slots:
    """An HDR histogram's counts by slot (bucket, sub-bucket), as one numpy array: what a
    histogram holds, made for a bincount and added by an array sum. The counts of two
    sets of values added are the counts of their union, so percentiles over workers,
    partitions of the messages or anything else split are the whole run's very figures
    (the counts decide every percentile, the min and the max)."""

    _shape = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self.counts = np.zeros(0, dtype=np.int64) if counts is None else counts

    @classmethod
    def of(cls, seconds: np.ndarray) -> Slots:
        """The slots of durations in seconds (clipped to 1 us .. 1 h)."""
        h = cls._shape
        values = np.asarray(seconds, dtype=float)
        micros = np.clip(np.rint(values * 1e6), LOWEST_US, HIGHEST_US).astype(np.int64)
        # HdrHistogram's own counts index of every value, vectorised.
        half_mag = h.sub_bucket_half_count_magnitude
        bit_length = np.frexp((micros | h.sub_bucket_mask).astype(np.float64))[1]
        bucket = bit_length - h.unit_magnitude - (half_mag + 1)
        sub_bucket = micros >> (bucket + h.unit_magnitude)
        index = ((bucket + 1) << half_mag) + (sub_bucket - h.sub_bucket_half_count)
        return cls(np.bincount(index).astype(np.int64))

    def __add__(self, other: Slots) -> Slots:
        a, b = self.counts, other.counts
        if len(a) < len(b):
            a, b = b, a
        total = a.copy()
        total[: len(b)] += b
        return Slots(total)

    def __len__(self) -> int:
        return int(self.counts.sum())

    def histogram(self) -> HdrHistogram:
        """The histogram: one record_value per occupied slot, with its lowest value (the
        same counts, min and max as recording each value)."""
        h = HdrHistogram(LOWEST_US, HIGHEST_US, DIGITS)
        for slot in np.flatnonzero(self.counts).tolist():
            h.record_value(h.get_value_from_index(slot), int(self.counts[slot]))
        return h

    def percentiles_ms(self) -> dict[str, float | None]:
        if not len(self):
            return {**{f"p{p}": None for p in PERCENTILES}, "max": None}
        h = self.histogram()
        out: dict[str, float | None] = {
            f"p{p}": round(h.get_value_at_percentile(p) / 1000.0, 3) for p in PERCENTILES
        }
        out["max"] = round(h.get_max_value() / 1000.0, 3)
        return out


def percentiles_ms(seconds: np.ndarray) -> dict[str, float | None]:
    """p50, p90, p95, p99 and max, in milliseconds, of durations in seconds."""
    return Slots.of(seconds).percentiles_ms()
