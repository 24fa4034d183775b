"""The analytic oracle beside the model: an IF neuron with constant input J per step, reset by subtraction.

After T steps its count is T·J/θ within 1: with v(0) = 0, v grows by J per step and every spike removes θ,
so θ·count ≤ (tested steps)·J < θ·(count + 1), and a neuron fires at most once per step (J > θ saturates at
one spike per step). Under ``delay`` the threshold test of step t reads the voltage left from t − 1, so the
last step's input is never tested: T − 1 steps count. Weights and thresholds here are not dyadic, so the
bound, not exact equality, is what every engine (float32 ones included) must meet.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.spec import Dense, NetworkSpec

RATIOS = np.array([0.0, 0.05, 0.3, 1 / 3, 0.55, 0.8, 0.999, 1.0, 1.7])  # J / θ at input x = 1
X = np.array([[1.0], [0.5], [0.15]])  # three images: J = x · w


@pytest.mark.parametrize(("theta", "steps"), [(0.8, 150), (0.37, 97)])
@pytest.mark.parametrize("schedule", ["delay", "cascade"])
def test_constant_input_count_is_within_one_of_T_J_over_theta(engine, schedule, theta, steps):
    weights = RATIOS[:, None] * theta
    spec = NetworkSpec(
        (1,), (Dense(weights, threshold=theta),), reset="subtract", schedule=schedule, encoding="current"
    )
    record = engine.run(spec, X, steps=steps, record_neurons=True)
    counts = record.neuron_counts[0]  # (images, neurons)
    tested = steps - 1 if schedule == "delay" else steps
    expected = tested * np.minimum(X * RATIOS[None, :], 1.0)
    err = np.abs(counts - expected)
    assert err.max() <= 1, f"{engine.id}: counts {counts.tolist()} vs T·J/θ {expected.round(2).tolist()}"
    assert counts.max() == tested, "J > θ fires in every tested step"
    np.testing.assert_allclose(record.synops[:, 0], steps * X[:, 0] * len(RATIOS))  # analog input x, fan-out 9
