"""Fixtures of the refsim tests: small dyadic specs, an independent reference loop, a shared build folder.

Dyadic specs have weights that are multiples of 1/16 and thresholds multiples of 1/4, so with 0/1 (or
dyadic analog) inputs every membrane sum is exact in float64 whatever the summation order: Brian2's
synapse-by-synapse additions and the reference's matrix products must give identical spikes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from convert.spec import AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec


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


def _linear(layer, x: torch.Tensor) -> torch.Tensor:
    """The layer's linear map on a batch x (B, *shape), with torch ops (independent of refsim.connectivity)."""
    if isinstance(layer, Flatten):
        return x.reshape(len(x), -1)
    if isinstance(layer, Dense):
        return x @ torch.as_tensor(np.array(layer.weight)).T
    if isinstance(layer, Conv2d):
        w = torch.as_tensor(np.array(layer.weight))
        return F.conv2d(x, w, stride=layer.stride, padding=layer.padding)
    if isinstance(layer, AvgPool2d):
        return F.avg_pool2d(x, layer.kernel_size, stride=layer.stride)
    raise TypeError(type(layer).__name__)


def reference_fanouts(spec: NetworkSpec) -> list[np.ndarray]:
    """Fanout of every neuron below each spiking layer: the gradient of the summed all-ones-weight map."""
    shapes, out = spec.shapes, []
    for k, layer in enumerate(spec.layers):
        if isinstance(layer, Flatten):
            continue
        x = torch.ones((1, *shapes[k]), dtype=torch.float64, requires_grad=True)
        if isinstance(layer, Dense):
            y = x @ torch.ones_like(torch.as_tensor(np.array(layer.weight))).T
        elif isinstance(layer, Conv2d):
            w = torch.ones(np.asarray(layer.weight).shape, dtype=torch.float64)
            y = F.conv2d(x, w, stride=layer.stride, padding=layer.padding)
        else:
            y = F.avg_pool2d(x, layer.kernel_size, stride=layer.stride) * layer.kernel_size**2
        y.sum().backward()
        out.append(np.rint(x.grad.numpy().ravel()).astype(np.int64))
    return out


def reference_run(spec: NetworkSpec, inputs: np.ndarray) -> list[np.ndarray]:
    """Spike trains (N, T, n_l) of every spiking layer by the loop of docs/semantics.md.

    ``inputs``: (N, T, n_in), 0/1 spikes or analog values s_0(t).
    """
    x = torch.as_tensor(np.asarray(inputs, dtype=np.float64))
    n, steps = x.shape[:2]
    spiking = [layer for layer in spec.layers if not isinstance(layer, Flatten)]
    shapes = spec.shapes
    v = [torch.zeros((n, int(np.prod(shapes[k + 1]))), dtype=torch.float64) for k in spec.spiking_indices]
    trains = [torch.zeros((n, steps, vi.shape[1]), dtype=torch.bool) for vi in v]

    def drive(k_spiking: int, below: torch.Tensor) -> torch.Tensor:
        # apply the Flatten layers between the population below and spiking layer k, then its synapses
        start = spec.spiking_indices[k_spiking - 1] + 1 if k_spiking else 0
        h = below.reshape(n, *shapes[start])
        for layer in spec.layers[start : spec.spiking_indices[k_spiking] + 1]:
            h = _linear(layer, h)
        return h.reshape(n, -1)

    def fire_and_reset(k: int, s: torch.Tensor) -> None:
        theta = spiking[k].threshold
        v[k] = torch.where(s, torch.zeros_like(v[k]) if spec.reset == "zero" else v[k] - theta, v[k])

    for t in range(steps):
        if spec.schedule == "delay":
            s = [vk >= layer.threshold for vk, layer in zip(v, spiking, strict=True)]
            below = [x[:, t], *(si.double() for si in s[:-1])]
            for k in range(len(v)):
                v[k] = v[k] + drive(k, below[k])
            for k in range(len(v)):
                fire_and_reset(k, s[k])
        else:
            below_k = x[:, t]
            s = []
            for k in range(len(v)):
                v[k] = v[k] + drive(k, below_k)
                s.append(v[k] >= spiking[k].threshold)
                fire_and_reset(k, s[k])
                below_k = s[k].double()
        for k in range(len(v)):
            trains[k][:, t] = s[k]
    return [tr.numpy() for tr in trains]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Silence brian2's use of pyparsing names deprecated by pyparsing 3.3 (noise, not our code)."""
    try:
        from pyparsing.warnings import PyparsingDeprecationWarning  # noqa: F401  (pyparsing >= 3.3)
    except ImportError:
        return
    quiet = pytest.mark.filterwarnings("ignore::pyparsing.warnings.PyparsingDeprecationWarning")
    for item in items:
        if "tests/refsim/" in str(item.fspath).replace("\\", "/"):
            item.add_marker(quiet)


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


@pytest.fixture(scope="session")
def standalone_root(tmp_path_factory: pytest.TempPathFactory):
    """One build folder for every standalone test of the session, so that each project compiles once."""
    return tmp_path_factory.mktemp("refsim_build")
