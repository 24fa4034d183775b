"""Statistics a reviewer accepts: an interval over images for every accuracy, a paired test for every comparison.

* :func:`wilson_interval`: the Wilson score interval of a binomial proportion k/n (95 % by default). Unlike
  the normal approximation it stays inside [0, 1] and behaves near 0 % and 100 %, where these accuracies live.
* :func:`mcnemar`: the exact McNemar test of two classifiers on the same images. Only the discordant images
  count: b = images A gets right and B wrong, c = the reverse. Under H0 (equal accuracy) b ~ Binomial(b + c,
  1/2); the two-sided p-value is min(1, 2 · P[X ≤ min(b, c)]). Sampling the images once and comparing two
  methods on them is far more sensitive than comparing two intervals.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from scipy import stats


def wilson_interval(k: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for k successes in n trials."""
    if n < 1 or not 0 <= k <= n:
        raise ValueError(f"wilson_interval needs 0 <= k <= n and n >= 1, got k={k}, n={n}")
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = k / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo = 0.0 if k == 0 else max(0.0, centre - half)  # exact at the ends: no rounding past the estimate
    hi = 1.0 if k == n else min(1.0, centre + half)
    return float(lo), float(hi)


@dataclass(frozen=True)
class Paired:
    """A paired comparison of A and B on the same images: accuracies, discordant counts, exact McNemar p."""

    n: int
    accuracy_a: float
    accuracy_b: float
    a_only: int  # images A classifies correctly and B does not (b)
    b_only: int  # images B classifies correctly and A does not (c)
    p_value: float

    def difference_interval(self, confidence: float = 0.95) -> tuple[float, float]:
        """Interval for accuracy A − accuracy B on these images: the Wald interval of a paired difference of
        proportions, d = (a_only − b_only)/n, se = √(a_only + b_only − n·d²)/n (Agresti, Categorical Data
        Analysis, §10.1), clipped to [−1, 1]."""
        n, d = self.n, (self.a_only - self.b_only) / self.n
        z = float(stats.norm.ppf(0.5 + confidence / 2))
        se = math.sqrt(max(self.a_only + self.b_only - n * d * d, 0.0)) / n
        return max(-1.0, d - z * se), min(1.0, d + z * se)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "difference_ci95": self.difference_interval()}


def mcnemar(correct_a: np.ndarray, correct_b: np.ndarray) -> Paired:
    """Exact two-sided McNemar test of two per-image correctness vectors over the same images."""
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape or a.ndim != 1 or len(a) == 0:
        raise ValueError(f"mcnemar needs two equal-length 1-d vectors, got {a.shape} and {b.shape}")
    a_only = int(np.sum(a & ~b))
    b_only = int(np.sum(~a & b))
    m = a_only + b_only
    p = 1.0 if m == 0 else min(1.0, 2.0 * float(stats.binom.cdf(min(a_only, b_only), m, 0.5)))
    return Paired(len(a), float(a.mean()), float(b.mean()), a_only, b_only, p)
