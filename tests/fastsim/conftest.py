from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def fastsim_rng() -> np.random.Generator:
    return np.random.default_rng(20261126)
