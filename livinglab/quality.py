"""Ingest latency histograms: shared bucket edges so hourly histograms can be merged over any span.

Latency is `received_at - ts` in seconds. Bucket 0 holds latencies below `MIN_LATENCY_S` (including negative ones
from device clock skew); bucket i >= 1 holds [MIN * 2**((i-1)/STEPS_PER_OCTAVE), MIN * 2**(i/STEPS_PER_OCTAVE)),
and the last bucket everything above. A percentile read from the histogram is accurate to one bucket (about 19 %).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

MIN_LATENCY_S = 0.01
STEPS_PER_OCTAVE = 4
BUCKET_COUNT = 1 + 27 * STEPS_PER_OCTAVE  # up to 0.01 s * 2**27, about 15.5 days

#: Upper edge of each bucket, in seconds (the last is +inf).
LATENCY_BUCKET_EDGES_S: npt.NDArray[np.float64] = np.append(
    MIN_LATENCY_S * 2.0 ** (np.arange(BUCKET_COUNT - 1) / STEPS_PER_OCTAVE), np.inf
)


def latency_buckets(latency_s: npt.NDArray[np.float64]) -> npt.NDArray[np.int16]:
    """The bucket index of each latency."""
    with np.errstate(divide="ignore", invalid="ignore"):
        raw = np.floor(np.log2(np.maximum(latency_s, 1e-300) / MIN_LATENCY_S) * STEPS_PER_OCTAVE) + 1
    raw = np.where(latency_s < MIN_LATENCY_S, 0, raw)
    return np.clip(raw, 0, BUCKET_COUNT - 1).astype(np.int16)


def histogram_quantile(buckets: npt.ArrayLike, counts: npt.ArrayLike, q: float) -> float | None:
    """The q-quantile (0..1) of a latency histogram given as parallel arrays; None when it is empty.

    Interpolates geometrically inside the bucket that holds the quantile.
    """
    b = np.asarray(buckets, dtype=np.int64)
    n = np.asarray(counts, dtype=np.float64)
    if b.size == 0 or n.sum() <= 0:
        return None
    dense = np.zeros(BUCKET_COUNT, dtype=np.float64)
    np.add.at(dense, np.clip(b, 0, BUCKET_COUNT - 1), n)
    cumulative = np.cumsum(dense)
    rank = q * cumulative[-1]
    i = int(np.searchsorted(cumulative, rank, side="left"))
    i = min(i, BUCKET_COUNT - 1)
    if i == 0:
        return 0.0
    lower = LATENCY_BUCKET_EDGES_S[i - 1]
    upper = LATENCY_BUCKET_EDGES_S[i] if np.isfinite(LATENCY_BUCKET_EDGES_S[i]) else lower * 2
    before = cumulative[i - 1]
    fraction = (rank - before) / dense[i] if dense[i] > 0 else 0.0
    return float(lower * (upper / lower) ** fraction)
