"""Intervals and paired tests against values computed by hand and by independent formulas."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from validation.significance import mcnemar, wilson_interval


def test_wilson_known_values():
    # Wilson (1927) / Newcombe (1998) example: 81 of 263 -> (0.2553, 0.3662)
    lo, hi = wilson_interval(81, 263)
    assert lo == pytest.approx(0.2553, abs=5e-5) and hi == pytest.approx(0.3662, abs=5e-5)
    # at the boundary the interval stays inside [0, 1] and is not degenerate
    lo, hi = wilson_interval(500, 500)
    assert hi == 1.0 and lo == pytest.approx(1 / (1 + 1.959964**2 / 500), rel=1e-6)
    assert wilson_interval(0, 10)[0] == 0.0
    with pytest.raises(ValueError, match="k <= n"):
        wilson_interval(11, 10)


@given(st.integers(1, 5000), st.data())
def test_wilson_contains_the_estimate_and_narrows_with_n(n, data):
    k = data.draw(st.integers(0, n))
    lo, hi = wilson_interval(k, n)
    assert 0 <= lo <= k / n <= hi <= 1
    lo4, hi4 = wilson_interval(4 * k, 4 * n)
    assert hi4 - lo4 < hi - lo


def test_mcnemar_known_values():
    a = np.array([1] * 10 + [1] * 2 + [0] * 8 + [0] * 5, bool)  # 10 both right, 2 A only, 8 B only, 5 both wrong
    b = np.array([1] * 10 + [0] * 2 + [1] * 8 + [0] * 5, bool)
    r = mcnemar(a, b)
    assert (r.a_only, r.b_only, r.n) == (2, 8, 25)
    # exact: 2 * P[Binomial(10, 1/2) <= 2] = 2 * 56 / 1024
    assert r.p_value == pytest.approx(2 * 56 / 1024)
    assert mcnemar(b, a).p_value == r.p_value  # symmetric
    assert mcnemar(a, a).p_value == 1.0 and mcnemar(a, a).a_only == 0
    with pytest.raises(ValueError, match="equal-length"):
        mcnemar(a, b[:-1])


def test_mcnemar_detects_a_real_difference_that_intervals_hide():
    """Two classifiers with overlapping intervals, but B never wrong where A is right: paired test decides."""
    rng = np.random.default_rng(0)
    a = rng.random(2000) < 0.97
    b = a.copy()
    b[np.flatnonzero(~a)[:20]] = True  # B fixes 20 of A's errors and breaks none
    lo_a, hi_a = wilson_interval(int(a.sum()), 2000)
    lo_b, hi_b = wilson_interval(int(b.sum()), 2000)
    assert lo_b < hi_a  # the intervals overlap
    assert mcnemar(a, b).p_value < 1e-5


def test_paired_difference_interval_known_values():
    """10 images only A gets right, 2 only B, of 100: d = 0.08, se = √(12 − 100·0.08²)/100 (a hand computation)."""
    a = np.zeros(100, bool)
    b = np.zeros(100, bool)
    a[:10] = True
    b[10:12] = True
    a[20:60] = b[20:60] = True  # concordant images do not move it
    lo, hi = mcnemar(a, b).difference_interval()
    half = 1.959963984540054 * np.sqrt(12 - 100 * 0.08**2) / 100
    assert (lo, hi) == pytest.approx((0.08 - half, 0.08 + half), abs=1e-12)
    assert mcnemar(b, a).difference_interval() == pytest.approx((-0.08 - half, -0.08 + half), abs=1e-12)
    assert mcnemar(a, a).difference_interval() == (0.0, 0.0)  # no discordant image: no spread
    assert mcnemar(a, b).to_dict()["difference_ci95"] == (lo, hi)
