"""Small networks and inputs for the third-party engine tests: dyadic weights (multiples of 1/8), so that float32
and float64 sums are exact and membranes land exactly on θ, as the pooling neurons of real networks do."""

from __future__ import annotations

import numpy as np

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec
from validation.harness.engines import run
from validation.harness.thirdparty import ThirdPartyError

STEPS = 30


def dyadic(rng: np.random.Generator, shape: tuple[int, ...], low: int = -3, high: int = 6) -> np.ndarray:
    return rng.integers(low, high, size=shape) / 8.0


def mlp(seed: int = 0, **kw) -> NetworkSpec:
    """(1, 4, 4) → Flatten → Dense 12 → Dense 4."""
    rng = np.random.default_rng(seed)
    layers = (Flatten(), Dense(dyadic(rng, (12, 16))), Dense(dyadic(rng, (4, 12)), threshold=0.5))
    return NetworkSpec((1, 4, 4), layers, schedule="cascade", **kw)


def cnn(seed: int = 0, **kw) -> NetworkSpec:
    """(1, 6, 6) → Conv 2@3×3 → AvgPool 2 → Flatten → Dense 3."""
    rng = np.random.default_rng(seed)
    layers = (Conv2d(dyadic(rng, (2, 1, 3, 3))), AvgPool2d(2), Flatten(), Dense(dyadic(rng, (3, 8))))
    return NetworkSpec((1, 6, 6), layers, schedule="cascade", **kw)


NETWORKS = {"mlp": mlp, "cnn": cnn}


def input_spikes(spec: NetworkSpec, images: int = 6, steps: int = 30, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rates = rng.random((images, 1, spec.n_inputs))
    return rng.random((images, steps, spec.n_inputs)) < rates


def fastsim_counts(spec, spikes):
    rec = run("fastsim", spec, spikes=spikes, steps=STEPS, dtype="float64", record_neurons=True)
    return rec


def library_verdict(name: str, network: str, adapter: bool) -> str:
    """exact / differs / fails of one library on one small network (the verdict vocabulary of docs/interop.md)."""
    spec = NETWORKS[network]()
    spikes = input_spikes(spec, steps=STEPS)
    ref = fastsim_counts(spec, spikes)
    try:
        rec = run(name, spec, spikes=spikes, steps=STEPS, adapter=adapter)
    except ThirdPartyError:
        return "fails"
    same = all(np.array_equal(a, b) for a, b in zip(ref.neuron_counts, rec.neuron_counts, strict=True))
    return "exact" if same else "differs"
