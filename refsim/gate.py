"""The max-pool gate in Brian2 (docs/semantics.md: max-pooling): its wiring, its objects and their slots.

The gate (:class:`convert.layers.maxpool2d.MaxPool2d`) is a *tap node*: no population of IF neurons, but a
stateful map on the spikes of the population below, whose output units the next layer's synapses leave from.
:mod:`refsim.build` calls it through its table of tap nodes; everything the gate is in Brian2 is here:

* the population below gets a spike count ``c`` and a spike flag ``f`` (:data:`READER_VARIABLES`), reset with
  v at the start of every image (:data:`READER_START`), and counts its spikes right after its threshold test;
* a *member* per (window, real position) pair mirrors its unit's c and f (``copy``, summed over one synapse
  each), counts the mates of its window that beat it (``mates``: a higher count, or the same count and a lower
  rank) and fires when its unit fired and none beat it; its spike makes its window's gate unit fire (``feed``).
  A unit of overlapping windows has one member per window; padding has none.

Every object gets a fixed name (``refsim_gate_{k}_…``, k the population below, 1-based), so that a rebuilt
standalone project is byte-identical.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from convert.layers.maxpool2d import MaxPool2d
from refsim.brian import load as brian_load
from refsim.connectivity import Connections

#: what the population a gate reads needs: its spike count so far and whether it fired in this step
READER_VARIABLES = "\nc : 1\nf : 1"
#: its count starts again with every image (c·1 = c exactly otherwise)
READER_START = "c = c * int(t_in_timesteps % image_steps != 0)"
#: a gate's members (one per window and real position): the mirrored count and spike of its unit, how many
#: mates of its window beat it (a summed variable) and its position in the window (ties go to the lower)
MEMBER_VARIABLES = "c : 1\nf : 1\nbeaten : 1\nr : integer (constant)"
#: who beats a member, by the gate's rule. The leader rule: a mate with a higher count, or the same count and a
#: lower rank (the member fires when its unit fired and leads its window). The max-count rule: a mate whose count
#: before this step was higher (the member fires when its unit fired from the top: the window's highest count
#: grows; two such members make the gate unit fire once)
BEATEN = {
    "leader": "beaten_post = int(c_pre > c_post or (c_pre == c_post and r_pre < r_post)) : 1 (summed)",
    "max-count": "beaten_post = int(c_pre - f_pre > c_post - f_post) : 1 (summed)",
}


class GateWiring(NamedTuple):
    """A max-pool gate's wiring on a population: one *member* per (window, real position) pair, ``copy`` (unit →
    member: the member mirrors its unit's count and spike), ``mates`` (member → member of the same window, every
    ordered pair: through it each member counts the mates that beat it), ``feed`` (member → its window's gate
    unit), and each member's ``rank`` (row-major position in its window, the tie order)."""

    copy: Connections
    mates: Connections
    feed: Connections
    rank: np.ndarray


def wiring(layer: MaxPool2d, input_shape: tuple[int, ...]) -> GateWiring:
    """The wiring of a max-pool gate of any stride, padding and ceil_mode on a population of ``input_shape``
    (:meth:`MaxPool2d.members`: a unit of overlapping windows has one member per window; padding has none)."""
    members = layer.members(input_shape)  # type: ignore[arg-type]
    n_pre, n_gate = int(np.prod(input_shape)), members.shape[0]
    window, rank = np.nonzero(members >= 0)  # members in window order, each window's by rank
    unit = members[window, rank]
    n = len(unit)
    ones = np.ones(n)
    idx = np.arange(n, dtype=np.int32)
    copy = Connections(unit.astype(np.int32), idx, ones, n_pre, n)
    feed = Connections(idx, window.astype(np.int32), ones, n, n_gate)
    index = np.full(members.shape, -1, dtype=np.int64)  # each window's members by rank (−1: padding)
    index[window, rank] = idx
    pre, post = index[:, :, None], index[:, None, :]  # every ordered pair of positions of one window
    keep = (pre >= 0) & (post >= 0) & (pre != post)
    mi, mj = np.broadcast_to(pre, keep.shape)[keep], np.broadcast_to(post, keep.shape)[keep]
    mates = Connections(mi.astype(np.int32), mj.astype(np.int32), np.ones(len(mi)), n, n)
    return GateWiring(copy, mates, feed, rank.astype(np.int64))


@dataclass
class BuiltNode:
    """A tap node's Brian2 objects: ``group`` (its output units, whose spikes the next layer reads), every
    object to add to the network, and (object, delay slot, delay order, cascade order) of each scheduled one."""

    group: Any
    objects: list[Any]
    slotted: list[tuple[Any, str, int, int]]


def build(layer: MaxPool2d, population: Any, shape: tuple[int, ...], k: int, cascade: int) -> BuiltNode:
    """The gate on ``population`` (the k-th, 1-based, of ``shape``, built with :data:`READER_VARIABLES`);
    ``cascade``: the first order of population k in the cascade schedule (its thresholder at ``cascade`` + 2,
    its resetter at + 5: the gate's objects take the orders between and after)."""
    brian_load()
    from brian2 import NeuronGroup, Synapses

    wires = wiring(layer, shape)
    count = population.run_regularly(
        "f = int(v >= theta)\nc += f", when="thresholds", order=1, name=f"refsim_gate_{k}_count"
    )
    members = NeuronGroup(
        wires.copy.n_post,
        MEMBER_VARIABLES,
        threshold="f > 0.5 and beaten < 0.5",
        reset="f = 0",  # harmless (the copy sets f again before the next test); Brian2 wants a reset
        name=f"refsim_gate_{k}_members",
    )
    members.r = wires.rank
    copy = Synapses(
        population,
        members,
        "c_post = c_pre : 1 (summed)\nf_post = f_pre : 1 (summed)",
        name=f"refsim_gate_{k}_copy",
    )
    copy.connect(i=wires.copy.i, j=wires.copy.j)
    pairs = None
    if len(wires.mates.i):  # windows of one unit each (a 1x1 map) have no mates: nobody is ever beaten
        pairs = Synapses(
            members,
            members,
            BEATEN[layer.rule],
            name=f"refsim_gate_{k}_mates",
        )
        pairs.connect(i=wires.mates.i, j=wires.mates.j)
    gate = NeuronGroup(
        wires.feed.n_post, "passed : 1", threshold="passed > 0.5", reset="passed = 0", name=f"refsim_gate_{k}"
    )
    feed = Synapses(members, gate, on_pre="passed_post += 1", name=f"refsim_gate_{k}_feed")
    feed.connect(i=wires.feed.i, j=wires.feed.j)
    compare = [] if pairs is None else [(pairs.summed_updaters["beaten_post"], "thresholds", 3, cascade + 6)]
    slotted = [  # the population's thresholder: cascade + 2, its resetter cascade + 5
        (count, "thresholds", 1, cascade + 3),
        (copy.summed_updaters["c_post"], "thresholds", 2, cascade + 4),
        (copy.summed_updaters["f_post"], "thresholds", 2, cascade + 4),
        *compare,
        (members.thresholder["spike"], "thresholds", 4, cascade + 7),
        (feed.pre, "synapses", -3, cascade + 8),
        (gate.thresholder["spike"], "synapses", -2, cascade + 9),
    ]
    return BuiltNode(gate, [members, copy, *([pairs] if pairs is not None else []), gate, feed], slotted)
