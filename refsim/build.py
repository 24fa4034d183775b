"""NetworkSpec -> Brian2 objects: one small builder per layer kind, dispatched on the layer's class.

Every spiking layer l is ``NeuronGroup(n_l, 'v : 1', threshold='v >= theta', reset=...)`` of integrate-and-fire
neurons without leak or refractory period (docs/semantics.md), fed by ``Synapses(on_pre='v_post += w')`` from
the population below (explicit (i, j, w) lists, :mod:`refsim.connectivity`, where each spiking family has its
one builder). ``Flatten`` only renames indices (C order) and builds nothing. Image n of a batch runs over the
global steps n·T … n·T + T − 1; a ``run_regularly(..., when='start')`` sets v_l = 0 in every step g with
g mod T = 0, before the first threshold test of the image. (It runs every step on the one clock of the network:
a second clock of period T·dt would make Brian2 write the clocks in a random order into main.cpp, so a rebuilt
standalone project would not be byte-identical and would recompile.)

Schedules, at every step t:

* ``delay`` (Brian2's default slots *thresholds → synapses → resets*): s_l(t) = [v_l ≥ θ_l] for all l on the
  voltage left from t − 1; then v_l += W_l s_{l−1}(t) for all l, then v_l += b_l (a layer's bias, a
  ``run_regularly`` in the ``synapses`` slot with order 1, after every pathway); then reset (``zero``: v_l = 0,
  the input of this step is lost; ``subtract``: v_l −= θ_l). Each layer adds one step of latency.
* ``cascade``: for l = 1 … L in order, v_l += W_l s_{l−1}(t); v_l += b_l; s_l(t) = [v_l ≥ θ_l]; reset. In
  Brian2 the pathway, bias, thresholder and resetter of layer k all run in the ``synapses`` slot with orders
  4k, 4k+1, 4k+2, 4k+3 (the input group's spikes come earlier, in the ``thresholds`` slot).

Brian2 adds a bias after the synaptic events one by one, ((v + w_1) + w_2 …) + b, where fastsim adds
v + ((w_1 + w_2 …) + b): the same sum up to its rounding order, exactly equal for dyadic weights.

Readout ``membrane``: the output group is the same NeuronGroup with θ = +∞, so its threshold test never
passes (no spike, no reset) and v_L is the running sum of its input; a ``StateMonitor`` of v_L in the ``end``
slot records it after every step (the readout picks the checkpoints).

Spike monitors run in the ``end`` slot, after every update of the step, under both schedules.
Every Brian2 object gets a fixed name, so that rebuilding a standalone project regenerates identical code.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from convert.contract.spec import Flatten, MaxPool2d, NetworkSpec, UnknownLayerError
from convert.layers import Layer, SpikingLayer
from refsim import gate
from refsim.brian import load as brian_load
from refsim.connectivity import connections, fanout, skip_connections
from refsim.inputs import InputBatch, InputLayer, build_input

RESETS = {"zero": "v = 0", "subtract": "v -= theta"}
#: orders per layer in the cascade schedule's synapses slot (module doc)
CASCADE = 10
#: the tap nodes: kinds of layer that are no population but hold state on the spikes of the population below
#: (:func:`convert.contract.spec.NetworkSpec.tap`), each a module with its reader variables and its builder
TAP_NODES: dict[type, Any] = {MaxPool2d: gate}
#: v = 0 in the first step of every image (v·1 = v exactly otherwise), before that step's threshold test
IMAGE_START = "v = v * int(t_in_timesteps % image_steps != 0)"
#: the same with a nonzero initial potential v0 = v_init · θ (the spec's ``v_init``): v·0 + v0·1 = v0 in the first
#: step, v·1 + v0·0 = v exactly otherwise; a spec with v_init = 0 keeps IMAGE_START (and its compiled projects)
IMAGE_START_AT_V0 = "v = v * int(t_in_timesteps % image_steps != 0) + v0 * int(t_in_timesteps % image_steps == 0)"


@dataclass
class BuiltNetwork:
    """The Brian2 network of one spec and one batch shape, and what the readout needs."""

    network: Any
    input: InputLayer
    layers: list[Any]  # NeuronGroups of the spiking layers, in order
    synapses: list[Any]  # synapses[l] feeds layers[l]
    monitors: list[Any]  # monitors[0]: input (None for the current encoding), monitors[l + 1]: layers[l]
    potential: Any  # StateMonitor of the output layer's v (membrane readout), else None
    fanouts: list[np.ndarray]  # fanouts[l][i]: synapses from neuron i of the population below layers[l]
    n_images: int
    steps: int
    dt_s: float
    tap_monitors: dict[tuple[str, int], Any] = field(default_factory=dict)  # each tap node's output, by its tap

    @property
    def duration_s(self) -> float:
        return self.n_images * self.steps * self.dt_s


@dataclass
class _BuildState:
    """What a layer builder reads and extends: the population below and the objects so far."""

    spec: NetworkSpec
    shape: tuple[int, ...]
    source: Any
    payload: str
    namespace: dict[str, Any]
    steps: int
    layers: list[Any] = field(default_factory=list)
    synapses: list[Any] = field(default_factory=list)
    fanouts: list[np.ndarray] = field(default_factory=list)
    index: int = 0  # the index in spec.layers of the layer being built
    taps: dict[int, Any] = field(default_factory=dict)  # layer index -> the group whose spikes are its activity
    extra: list[Any] = field(default_factory=list)  # skip pathways and the tap nodes' objects
    #: (object, delay slot, delay order, cascade order) of every skip and tap node object (apply_schedule)
    slotted: list[tuple[Any, str, int, int]] = field(default_factory=list)


@functools.singledispatch
def build_layer(layer: object, state: _BuildState) -> None:
    """Add ``layer``'s Brian2 objects on top of ``state.source``."""
    raise UnknownLayerError(f"refsim: no Brian2 builder for layer type {type(layer).__name__}")


@build_layer.register
def _flatten(layer: Flatten, state: _BuildState) -> None:
    state.shape = layer.output_shape(state.shape)  # C-order indices are unchanged: no objects


@build_layer.register
def _spiking(layer: SpikingLayer, state: _BuildState) -> None:
    """Any spiking family: a NeuronGroup of IF neurons fed by the synapses of :func:`connections` (which
    raises for a family without a synapse builder)."""
    brian_load()
    from brian2 import NeuronGroup, Synapses

    k = len(state.layers) + 1
    conn = connections(layer, state.shape)
    biased = getattr(layer, "bias", None) is not None
    layers = state.spec.layers
    reader = TAP_NODES.get(type(layers[state.index + 1])) if state.index + 1 < len(layers) else None
    per_neuron = state.spec.v_init_neurons is not None  # one start potential per neuron (potential correction)
    v_init = state.spec.v_init != 0.0 or per_neuron
    group = NeuronGroup(
        conn.n_post,
        "v : 1\ntheta : 1 (constant, shared)\nimage_steps : integer (constant, shared)"
        + (f"\nv0 : 1 (constant{'' if per_neuron else ', shared'})" if v_init else "")
        + ("\nb : 1 (constant)" if biased else "")
        + (reader.READER_VARIABLES if reader else ""),  # a tap node reads it (refsim.gate)
        threshold="v >= theta",
        reset=RESETS[state.spec.reset],
        name=f"refsim_layer_{k}",
    )
    membrane = state.spec.readout == "membrane" and k == len(state.spec.spiking_indices)
    group.theta = np.inf if membrane else layer.threshold  # a membrane output layer never fires (module doc)
    group.image_steps = state.steps
    if v_init:
        group.v0 = state.spec.initial_potentials[k - 1]  # the spec's θ, also for a membrane output layer (an
        # array (n,) in the population's flattened C order with per-neuron starts, the order of every count)
    start = (IMAGE_START_AT_V0 if v_init else IMAGE_START) + ("\n" + reader.READER_START if reader else "")
    group.run_regularly(start, when="start", name=f"refsim_layer_{k}_image_start")
    bias = neuron_bias(layer, conn.n_post)
    if bias is not None:  # b_j: added every step right after the synaptic events (module doc)
        group.b = bias
        group.run_regularly("v += b", when="synapses", order=1, name=f"refsim_layer_{k}_bias")
    syn = Synapses(
        state.source,
        group,
        "w : 1 (constant)",
        on_pre=f"v_post += {state.payload}",
        namespace=state.namespace,
        name=f"refsim_synapses_{k}",
    )
    if len(conn.i):
        syn.connect(i=conn.i, j=conn.j)
        syn.w = conn.w
    else:  # a Neurons population has no synapse from below: Brian2 can neither connect nor run an empty list
        syn.active = False
    for e, edge in enumerate(state.spec.skips_into(state.index)):  # residual sums: one more pathway per skip
        source = state.taps[edge.source]  # edge, from its tap, in the trunk's slot
        skip_conn = skip_connections(edge, state.spec.shapes[edge.source + 1])
        name = f"refsim_skip_{k}" if e == 0 else f"refsim_skip_{k}_{e}"
        path = Synapses(source, group, "w : 1 (constant)", on_pre="v_post += w", name=name)
        path.connect(i=skip_conn.i, j=skip_conn.j)
        path.w = skip_conn.w
        state.extra.append(path)
        state.slotted.append((path.pre, "synapses", 0, CASCADE * k))
    state.layers.append(group)
    state.synapses.append(syn)
    state.fanouts.append(fanout(conn))
    state.taps[state.index] = group
    state.shape, state.source, state.payload, state.namespace = layer.output_shape(state.shape), group, "w", {}


def _tap_node(layer: Layer, state: _BuildState) -> None:
    """A tap node (:data:`TAP_NODES`: the max-pool gate, :mod:`refsim.gate`) on the population below, which
    :func:`_spiking` built with the node's reader variables; its output units are the next layer's source."""
    node = TAP_NODES[type(layer)]
    k = len(state.layers)  # the population below, 1-based
    built = node.build(layer, state.source, state.shape, k, CASCADE * k)
    state.extra += built.objects
    state.slotted += built.slotted
    state.taps[state.index] = built.group
    state.shape, state.source, state.payload, state.namespace = layer.output_shape(state.shape), built.group, "w", {}


for _cls in TAP_NODES:
    build_layer.register(_cls)(_tap_node)


def neuron_bias(layer: object, n_post: int) -> np.ndarray | None:
    """A layer's bias per neuron in C order (a convolution's per-channel bias repeated over its positions), or
    None without a bias."""
    bias = getattr(layer, "bias", None)
    if bias is None:
        return None
    bias = np.asarray(bias, dtype=np.float64)
    return np.repeat(bias, n_post // len(bias))


def apply_schedule(state: _BuildState, schedule: str) -> None:
    """Set the slots of every pathway, bias, thresholder, resetter and gate object for ``schedule`` (see the
    module doc)."""
    if schedule == "delay":  # Brian2's order: thresholds, synapses (then the biases, order 1), resets
        for obj, when, order, _ in state.slotted:
            obj.when, obj.order = when, order
        return
    if schedule != "cascade":
        raise ValueError(f"schedule must be 'delay' or 'cascade', got {schedule!r}")
    for k, (group, syn) in enumerate(zip(state.layers, state.synapses, strict=True), start=1):
        biases = [op for op in group.contained_objects if op.name.endswith("_bias")]
        for obj, order in (
            (syn.pre, CASCADE * k),
            *((op, CASCADE * k + 1) for op in biases),
            (group.thresholder["spike"], CASCADE * k + 2),
            (group.resetter["spike"], CASCADE * k + 5),
        ):
            obj.when, obj.order = "synapses", order
    for obj, _, _, cascade_order in state.slotted:
        obj.when, obj.order = "synapses", cascade_order


def build_network(spec: NetworkSpec, batch: InputBatch, steps: int, *, spike_source: str = "generator") -> BuiltNetwork:
    """The explicit ``Network`` presenting ``batch`` (``steps`` steps per image) to ``spec``'s layers.

    Call it inside ``refsim.devices.brian_device(..., dt_s=spec.dt_ms / 1000)``: the network runs on the
    defaultclock. The caller runs ``network.run(duration)``.
    """
    brian_load()
    from brian2 import Network, SpikeMonitor, StateMonitor, defaultclock

    if batch.n_inputs != spec.n_inputs:
        raise ValueError(f"input: {batch.n_inputs} inputs per image, but the spec takes {spec.n_inputs}")
    if batch.mode == "spikes" and batch.data.shape[1] != steps:
        raise ValueError(f"spikes: {batch.data.shape[1]} steps of input spikes, but steps={steps}")
    dt_s = spec.dt_ms * 1e-3
    if abs(float(defaultclock.dt_) - dt_s) > 1e-9 * dt_s:
        raise ValueError(f"dt_ms: defaultclock.dt is {defaultclock.dt}, the spec needs {spec.dt_ms} ms (brian_device)")
    inp = build_input(batch, steps, defaultclock.dt, spec.max_rate_hz, spike_source)
    state = _BuildState(spec, spec.input_shape, inp.group, inp.payload, inp.namespace, steps)
    for index, layer in enumerate(spec.layers):
        state.index = index
        build_layer(layer, state)
    apply_schedule(state, spec.schedule)
    sources = [None if batch.mode == "current" else inp.group, *state.layers]
    monitors = [
        None if src is None else SpikeMonitor(src, when="end", name=f"refsim_monitor_{k}")
        for k, src in enumerate(sources)
    ]
    node_taps = {spec.tap(i): g for i, g in state.taps.items() if type(spec.layers[i]) in TAP_NODES}
    tap_monitors = {
        tap: SpikeMonitor(g, when="end", name=f"refsim_{tap[0]}_monitor_{tap[1] + 1}") for tap, g in node_taps.items()
    }
    potential = None
    if spec.readout == "membrane":
        potential = StateMonitor(state.layers[-1], "v", record=True, when="end", name="refsim_potential")
    objects = [inp.group, *state.layers, *state.synapses, *state.extra, *(m for m in monitors if m is not None)]
    objects += list(tap_monitors.values())
    if potential is not None:
        objects.append(potential)
    return BuiltNetwork(
        network=Network(*objects, name="refsim_network"),
        input=inp,
        layers=state.layers,
        synapses=state.synapses,
        monitors=monitors,
        potential=potential,
        fanouts=state.fanouts,
        tap_monitors=tap_monitors,
        n_images=batch.n_images,
        steps=steps,
        dt_s=dt_s,
    )
