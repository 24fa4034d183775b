"""Every fastsim path computes the one layer step, :func:`fastsim.step.if_update`.

The same cases (currents, initial membranes and threshold per (step, image, neuron), chosen to land on the
threshold exactly, cross it by a rounding error, go negative and stay silent) go through each path: the plain
network step, the time-batched scan (eager, per step and per chunk; and compiled by torch.compile), and the
fused Triton kernel, which restates the step in Triton (under Triton's CPU interpreter). Each must give the
spikes and membranes of stepping :func:`~fastsim.step.if_update` itself, bit for bit; a path that diverges
fails here.
"""

from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import torch

from fastsim.jit import Compiled
from fastsim.scan import UNROLL, if_scan, scan_steps
from fastsim.step import IFState, NetworkState, if_update, layer_step, network_update

MODES = [(schedule, reset) for schedule in ("delay", "cascade") for reset in ("zero", "subtract")]
T, B, N = UNROLL, 3, 7  # one group of the compiled scan


def make_case(kind: str, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(currents (T, B, N), v0 (B, N), θ 0-d) in ``dtype``."""
    rng = np.random.default_rng({"dyadic": 0, "rounding": 1, "silent": 2}[kind])
    if kind == "dyadic":  # sums exact: v lands on θ = 1 exactly, often
        currents = rng.integers(-4, 9, size=(T, B, N)) / 8.0
        v0 = rng.choice([-0.5, 0.0, 0.5, 0.875, 1.0, 2.0], size=(B, N))
        theta = 1.0
    elif kind == "rounding":  # non-dyadic: every sum rounds, v grazes θ by an ulp
        currents = rng.normal(0.3, 0.4, size=(T, B, N))
        currents[:, 0, :] = 0.1  # ten steps of 0.1 from 0.3: 0.3 + 0.7 in float rounding
        v0 = rng.normal(0.2, 0.5, size=(B, N))
        v0[0] = 0.3
        theta = 0.7
    else:  # no input: only the initial membranes decide
        currents = np.zeros((T, B, N))
        v0 = rng.choice([-1.0, 0.0, 0.69, 0.7, 1.5, 3.0], size=(B, N))
        theta = 0.7
    return tuple(torch.tensor(np.asarray(a) + 0.0, dtype=dtype) for a in (currents, v0, theta))  # + 0.0: no -0


CASES = ("dyadic", "rounding", "silent")


def trajectory(currents, v0, theta, reset, schedule) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Spikes (T, B, N) bool, membranes after every step and the voltages the threshold checks read (T, B, N):
    :func:`if_update`, step by step."""
    state, spikes, vs, checked = IFState(v0), [], [], []
    for t in range(len(currents)):
        update = if_update(currents[t], state, theta, reset, schedule)
        spikes.append(update.spikes)
        vs.append(update.state.v)
        checked.append(update.checked)
        state = update.state
    return torch.stack(spikes), torch.stack(vs), torch.stack(checked)


def reference(currents, v0, theta, reset, schedule) -> tuple[torch.Tensor, torch.Tensor]:
    """Spikes and membranes after every step, by the definition."""
    spikes, vs, _ = trajectory(currents, v0, theta, reset, schedule)
    return spikes, vs


def assert_same(got_spikes, got_v, want_spikes, want_v, what: str) -> None:
    assert torch.equal(got_spikes.to(torch.bool), want_spikes), f"{what}: spikes differ"
    assert torch.equal(got_v, want_v), f"{what}: membranes differ"


@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("schedule,reset", MODES)
def test_the_cases_exercise_the_step(kind, schedule, reset) -> None:
    """The cases are not vacuous: they fire and stay silent, and the dyadic ones land exactly on θ."""
    currents, v0, theta = make_case(kind, torch.float64)
    spikes, _, checked = trajectory(currents, v0, theta, reset, schedule)
    assert spikes.any() and not spikes.all()
    if kind == "dyadic":
        assert (checked == theta).any()  # a check at exactly θ, which fires


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("kind", CASES)
@pytest.mark.parametrize("schedule,reset", MODES)
def test_torch_paths_compute_the_step(dtype, kind, schedule, reset) -> None:
    currents, v0, theta = make_case(kind, dtype)
    want_spikes, want_v = reference(currents, v0, theta, reset, schedule)

    # the layer step functions and the network step (one layer, its synapse handing over this step's current)
    state, s_layer, v_layer, s_net, v_net = IFState(v0), [], [], [], []
    net_state = NetworkState((IFState(v0),))
    step = layer_step(schedule)
    for t in range(T):
        s, state = step(currents[t], state, theta, reset)
        s_layer.append(s)
        v_layer.append(state.v)
        (update,) = network_update(torch.zeros(B, 1), net_state, [lambda _, t=t: currents[t]], [theta], reset, schedule)
        net_state = NetworkState((update.state,))
        s_net.append(update.spikes)
        v_net.append(update.state.v)
    assert_same(torch.stack(s_layer), torch.stack(v_layer), want_spikes, want_v, "layer_step")
    assert_same(torch.stack(s_net), torch.stack(v_net), want_spikes, want_v, "network_update")

    # the time-batched scan, one step per chunk (every membrane) and whole chunks in groups of every size
    state, s_scan, v_scan = IFState(v0), [], []
    for t in range(T):
        s, state, _ = if_scan(currents[t : t + 1], state, theta, reset, schedule)
        s_scan.append(s[0])
        v_scan.append(state.v)
    assert_same(torch.stack(s_scan), torch.stack(v_scan), want_spikes, want_v, "if_scan per step")
    for unroll in (1, 3, T):
        s, state, counts = if_scan(currents, IFState(v0), theta, reset, schedule, unroll=unroll)
        assert_same(s, state.v, want_spikes, want_v[-1], f"if_scan, unroll {unroll}")
        assert torch.equal(counts, want_spikes.sum(0).to(dtype))


@pytest.mark.slow
@pytest.mark.parametrize("schedule,reset", MODES)
def test_compiled_scan_computes_the_step(schedule, reset) -> None:
    """torch.compile's fused loop over a group of steps (the engine's ``compile=True``), float32."""
    compiled = Compiled(scan_steps, dynamic=True)
    for kind in CASES:
        currents, v0, theta = make_case(kind, torch.float32)
        want_spikes, want_v = reference(currents, v0, theta, reset, schedule)
        s, state, counts = if_scan(currents, IFState(v0), theta, reset, schedule, group_scan=compiled)
        if not compiled.active:
            pytest.skip(f"torch.compile is unavailable here: {compiled.error}")
        assert_same(s, state.v, want_spikes, want_v[-1], f"compiled scan, {kind}")
        assert torch.equal(counts, want_spikes.sum(0).to(torch.float32))


def fused_inputs(currents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Input spikes (T, B, T·B) and weight limbs (1, T·B, N) whose product is exactly ``currents`` (T, B, N):
    image b fires only input t·B + b in step t, whose weights are that step's currents."""
    spikes = torch.zeros(T, B, T * B)
    weights = torch.zeros(T * B, N)
    for t in range(T):
        for b in range(B):
            spikes[t, b, t * B + b] = 1.0
            weights[t * B + b] = currents[t, b]
    return spikes, weights[None].contiguous()


def _kernel_is_interpreted() -> bool:
    from triton.runtime.interpreter import InterpretedFunction

    from fastsim import fused

    return isinstance(fused._dense_if_kernel, InterpretedFunction)


def _rerun_interpreted(test_id: str, tmp_path: Path) -> None:
    """Run ``test_id`` of this file in a fresh pytest process with TRITON_INTERPRET=1 (Triton fixes at import
    whether it interprets) and require that it ran and passed."""
    report = tmp_path / "report.xml"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"{__file__}::{test_id}",
            f"--junitxml={report}",
        ],
        env={**os.environ, "TRITON_INTERPRET": "1"},
        cwd=Path(__file__).resolve().parents[2],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert report.exists(), f"pytest wrote no report (exit {done.returncode}): {done.stderr[-3000:]}"
    suite = ET.parse(report).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    counts = {k: int(suite.get(k)) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": 1, "failures": 0, "errors": 0, "skipped": 0}, done.stdout[-4000:] + done.stderr[-2000:]


def test_fused_kernel_computes_the_step(tmp_path) -> None:
    """The fused Triton Dense kernel's update (:func:`fastsim.fused._if_update`) against the definition:
    every membrane (chunks of one step) and whole chunks, float32 (the kernel's only dtype)."""
    pytest.importorskip("triton", reason="Triton is not installed (the gpu extra)")
    if not _kernel_is_interpreted():
        _rerun_interpreted("test_fused_kernel_computes_the_step", tmp_path)
        return
    from fastsim.fused import dense_if_chunk

    for schedule, reset in MODES:
        for kind in CASES:
            currents, v0, theta = make_case(kind, torch.float32)
            want_spikes, want_v = reference(currents, v0, theta, reset, schedule)
            spikes, limbs = fused_inputs(currents)

            def run(s, v, limbs=limbs, theta=float(theta), reset=reset, schedule=schedule):
                return dense_if_chunk(s, limbs, v, theta, reset, schedule, False, (16, 16, 16))

            v, s_steps, v_steps = v0, [], []
            for t in range(T):
                out, v, _ = run(spikes[t : t + 1], v)
                s_steps.append(out[0])
                v_steps.append(v)
            what = f"fused kernel, {schedule}/{reset}, {kind}"
            assert_same(torch.stack(s_steps), torch.stack(v_steps), want_spikes, want_v, what + ", per step")
            out, v, counts = run(spikes, v0)
            assert_same(out, v, want_spikes, want_v[-1], what + ", one chunk")
            assert torch.equal(counts, want_spikes.sum(0).to(torch.float32)), what
