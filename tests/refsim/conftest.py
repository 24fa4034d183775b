"""Fixtures of the refsim tests: small dyadic specs and a shared build folder.

Dyadic specs have weights that are multiples of 1/16 and thresholds multiples of 1/4, so with 0/1 (or
dyadic analog) inputs every membrane sum is exact in float64 whatever the summation order: Brian2's
synapse-by-synapse additions and a matrix product must give identical spikes. The reference loop that every
engine is checked against is tests/conformance/reference.py.
"""

from __future__ import annotations

import numpy as np
import pytest

from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec


def dyadic(rng: np.random.Generator, shape: tuple[int, ...], low: int = -4, high: int = 9) -> np.ndarray:
    return rng.integers(low, high, size=shape).astype(np.float64) / 16.0


def dyadic_mlp(rng: np.random.Generator, reset: str = "zero", schedule: str = "delay", **kw) -> NetworkSpec:
    """12 -> 8 -> 3, thresholds 1 and 0.75."""
    layers = (Dense(dyadic(rng, (8, 12)), threshold=1.0), Dense(dyadic(rng, (3, 8)), threshold=0.75))
    return NetworkSpec((12,), layers, reset=reset, schedule=schedule, **kw)


def dyadic_cnn(rng: np.random.Generator, reset: str = "subtract", schedule: str = "cascade") -> NetworkSpec:
    """(1, 8, 8) -> conv 3@3x3 pad 1 -> pool 2 -> conv 4@3x3 stride 2 pad 1 -> flatten 16 -> dense 4."""
    layers = (
        Conv2d(dyadic(rng, (3, 1, 3, 3)), threshold=1.0, padding=1),
        AvgPool2d(2, threshold=0.5),
        Conv2d(dyadic(rng, (4, 3, 3, 3)), threshold=0.75, stride=2, padding=1),
        Flatten(),
        Dense(dyadic(rng, (4, 16)), threshold=0.5),
    )
    return NetworkSpec((1, 8, 8), layers, reset=reset, schedule=schedule)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


@pytest.fixture(scope="session")
def standalone_root(tmp_path_factory: pytest.TempPathFactory):
    """One build folder for every standalone test of the session, so that each project compiles once."""
    return tmp_path_factory.mktemp("refsim_build")


@pytest.fixture(autouse=True)
def _brian2_without_its_sigint_handler() -> None:
    """Brian2 as refsim imports it (:func:`refsim.brian.load`), also for tests that import it directly: its
    own SIGINT handler would otherwise stay installed for the rest of the session."""
    from refsim.brian import load

    load()
