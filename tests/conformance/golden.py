"""Golden trajectories of the smallest network that tells the schedules and resets apart, worked by hand.

The chain: one input -> neuron A (w = 0.75, θ = 1) -> neuron B (w = 0.5, θ = 1), 8 steps. Two input trains:
``every step`` (s_0(t) = 1 for all t; also what ``current`` input x = 1 and ``poisson`` input of intensity 1
give) and ``steps 3-4`` (s_0(t) = 1 for t = 3, 4 only). Below, per schedule and reset mode, the spikes of A and
B in steps t = 0..7 and their membranes v after each step (after the resets), from docs/semantics.md.

A worked example, ``delay``/``zero`` on ``every step`` (thresholds read the voltage left from t - 1):

    t   thresholds          synapses              resets
    0   -                   vA = .75
    1   -                   vA = 1.5
    2   A (vA = 1.5)        vA = 2.25, vB = .5    vA = 0
    3   -                   vA = .75
    4   -                   vA = 1.5
    5   A                   vA = 2.25, vB = 1     vA = 0
    6   B (vB = 1)          vA = .75              vB = 0
    7   -                   vA = 1.5

and ``cascade``/``subtract`` on ``every step`` (integrate, threshold and reset layer by layer):
t1 vA = 1.5 -> A, .5; vB = .5 | t2 vA = 1.25 -> A, .25; vB = 1 -> B, 0 | t3 vA = 1 -> A, 0; vB = .5 |
t4 vA = .75 | t5 vA = 1.5 -> A, .5; vB = 1 -> B, 0 | t6 vA = 1.25 -> A, .25; vB = .5 | t7 vA = 1 -> A, 0;
vB = 1 -> B, 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from convert.contract.spec import Dense, NetworkSpec

STEPS = 8
INPUTS = {"every step": "11111111", "steps 3-4": "00011000"}


class Golden(NamedTuple):
    """Spikes ("0"/"1" per step) and membranes after each step of neurons A and B."""

    a: str
    v_a: tuple[float, ...]
    b: str
    v_b: tuple[float, ...]


# (schedule, reset) -> input name -> trajectory
GOLDEN: dict[tuple[str, str], dict[str, Golden]] = {
    ("delay", "zero"): {
        "every step": Golden(
            "00100100", (0.75, 1.5, 0, 0.75, 1.5, 0, 0.75, 1.5), "00000010", (0, 0, 0.5, 0.5, 0.5, 1, 0, 0)
        ),
        "steps 3-4": Golden("00000100", (0, 0, 0, 0.75, 1.5, 0, 0, 0), "00000000", (0, 0, 0, 0, 0, 0.5, 0.5, 0.5)),
    },
    ("delay", "subtract"): {
        "every step": Golden(
            "00111011",
            (0.75, 1.5, 1.25, 1, 0.75, 1.5, 1.25, 1),
            "00001001",
            (0, 0, 0.5, 1, 0.5, 0.5, 1, 0.5),
        ),
        "steps 3-4": Golden(
            "00000100", (0, 0, 0, 0.75, 1.5, 0.5, 0.5, 0.5), "00000000", (0, 0, 0, 0, 0, 0.5, 0.5, 0.5)
        ),
    },
    ("cascade", "zero"): {
        "every step": Golden(
            "01010101", (0.75, 0, 0.75, 0, 0.75, 0, 0.75, 0), "00010001", (0, 0.5, 0.5, 0, 0, 0.5, 0.5, 0)
        ),
        "steps 3-4": Golden("00001000", (0, 0, 0, 0.75, 0, 0, 0, 0), "00000000", (0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5)),
    },
    ("cascade", "subtract"): {
        "every step": Golden(
            "01110111",
            (0.75, 0.5, 0.25, 0, 0.75, 0.5, 0.25, 0),
            "00100101",
            (0, 0.5, 0, 0.5, 0.5, 0, 0.5, 0),
        ),
        "steps 3-4": Golden(
            "00001000", (0, 0, 0, 0.75, 0.5, 0.5, 0.5, 0.5), "00000000", (0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5)
        ),
    },
}
MODES = sorted(GOLDEN)  # (schedule, reset) pairs

# readout="membrane": B integrates w = .5 per spike of A (A's trains above: A does not depend on B) and never
# fires nor resets, so v_B(t) = .5 · #{A spikes in steps 0..t}, in the step of A's spike under both schedules
# (delay: A's threshold reads v_A(t-1) and B integrates s_A(t) in step t; cascade: A fires and B integrates
# within step t). E.g. delay/zero, every step: A = 00100100 -> v_B = 0, 0, .5, .5, .5, 1, 1, 1.
MEMBRANE_GOLDEN: dict[tuple[str, str], dict[str, tuple[float, ...]]] = {
    ("delay", "zero"): {"every step": (0, 0, 0.5, 0.5, 0.5, 1, 1, 1), "steps 3-4": (0, 0, 0, 0, 0, 0.5, 0.5, 0.5)},
    ("delay", "subtract"): {
        "every step": (0, 0, 0.5, 1, 1.5, 1.5, 2, 2.5),
        "steps 3-4": (0, 0, 0, 0, 0, 0.5, 0.5, 0.5),
    },
    ("cascade", "zero"): {
        "every step": (0, 0.5, 0.5, 1, 1, 1.5, 1.5, 2),
        "steps 3-4": (0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5),
    },
    ("cascade", "subtract"): {
        "every step": (0, 0.5, 1, 1.5, 1.5, 2, 2.5, 3),
        "steps 3-4": (0, 0, 0, 0, 0.5, 0.5, 0.5, 0.5),
    },
}


def chain(schedule: str, reset: str, depth: int = 2, encoding: str = "poisson", readout: str = "spikes") -> NetworkSpec:
    """The golden chain, or its first ``depth`` layers (A alone: layer A does not depend on B)."""
    layers = (Dense([[0.75]], threshold=1.0), Dense([[0.5]], threshold=1.0))[:depth]
    return NetworkSpec((1,), layers, schedule=schedule, reset=reset, encoding=encoding, readout=readout)


def train(bits: str) -> np.ndarray:
    """'0010' -> array([False, False, True, False])."""
    return np.array([c == "1" for c in bits])


def input_trains(names: list[str]) -> np.ndarray:
    """Supplied input spikes (len(names), STEPS, 1) of the named input trains."""
    return np.stack([train(INPUTS[name]) for name in names])[:, :, None]
