"""A spec run as the ReLU network it was converted from (torch, no dropout: eval semantics by construction).

For every spiking layer the ANN activation is a_l = ReLU(W_l ∗ a_{l-1} + b_l [+ S_l ∗ a_j]) (pooling: the
mean of each k×k window of a_{l-1}; ``Flatten`` reshapes; ``MaxPool2d`` takes each window's max; a skip edge
adds its map of the activity a_j after layer j, :mod:`convert.layers.skip`); the logits are the output
layer's pre-activation W_L ∗ a_{L-1}.
This is the only forward pass of the ANN that normalization and statistics use; each layer family's module
in :mod:`convert.layers` holds its own ``forward``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from convert.contract.spec import NetworkSpec, SpecError, is_spiking
from convert.layers import family_of, skip_synapses


def layer_forward(layer: object, x: torch.Tensor) -> torch.Tensor:
    """The ANN pre-activation of ``layer`` for the batch x (its family's ``forward``); an unregistered layer
    type raises :class:`SpecError` naming it."""
    return family_of(layer).forward(layer, x)


def as_input(spec: NetworkSpec, images: np.ndarray | torch.Tensor, dtype=torch.float64) -> torch.Tensor:
    """Images (uint8 or float in [0, 1]) as a float tensor of shape (N, *spec.input_shape)."""
    x = torch.as_tensor(np.asarray(images))
    if x.dtype == torch.uint8:
        x = x.to(torch.float64) / 255.0
    x = x.to(dtype)
    if x[0].numel() != spec.n_inputs:
        raise SpecError(f"input_shape: spec takes {spec.input_shape}, images have shape {tuple(x.shape[1:])}")
    return x.reshape(len(x), *spec.input_shape)


def _relu(k: int, layer: object, z: torch.Tensor) -> torch.Tensor:
    return torch.relu(z)


#: ``adjust(k, layer, a)``: shown spiking layer k's activity a, returns a layer to compute it with instead, or None
Adjust = Callable[[int, object, torch.Tensor], object | None]


def _forward(
    spec: NetworkSpec,
    x: torch.Tensor,
    rectify: Callable[[int, object, torch.Tensor], torch.Tensor] = _relu,
    adjust: Adjust | None = None,
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """The one forward pass: every layer's family ``forward``, each skip edge's map of its source's activity
    added before the rectifier, ``rectify(k, layer, z)`` at every spiking layer k (ReLU unless given). With
    ``adjust``, a spiking layer it replaces is computed again from the same input, before the layers above read
    it (:func:`clip_floor_activations` with ``adjust``: the calibrations' one-pass corrections)."""
    acts, after = [], []  # after[i]: the activity after layers[i] (a skip edge's source)
    z, k, into = x, 0, spec.skips_by_target()
    for i, layer in enumerate(spec.layers):
        below = z
        z = _pre_activation(into.get(i, ()), layer, below, after)
        if is_spiking(layer):
            a = rectify(k, layer, z)
            new = None if adjust is None else adjust(k, layer, a)
            if new is not None:
                z = _pre_activation(into.get(i, ()), new, below, after)
                a = rectify(k, new, z)
            logits = z.reshape(len(z), -1)
            z = a
            acts.append(z.reshape(len(z), -1))
            k += 1
        after.append(z)
    return acts, logits


def _pre_activation(skips: tuple, layer: object, below: torch.Tensor, after: list) -> torch.Tensor:
    """A layer's input current from the activity ``below`` and, through its skip edges ``skips``, the activities
    after earlier layers (``after``): the trunk's, then each edge's in the spec's order."""
    z = layer_forward(layer, below)
    for edge in skips:  # a residual sum: the node gets the currents of all its edges
        z = z + edge.forward(after[edge.source])
    return z


@torch.inference_mode()
def activations(spec: NetworkSpec, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """ReLU activations of every spiking layer (flattened, (N, n_l)) and the logits (N, n_classes)."""
    return _forward(spec, x)


@torch.inference_mode()
def rates(spec: NetworkSpec, x: torch.Tensor) -> list[torch.Tensor]:
    """The rate model of the spec's integrate-and-fire network (Diehl et al. 2015; Rueckauer et al. 2017): a
    neuron without leak driven by a constant current I per step fires I/θ times per step on average, so with
    ``x`` the input's spikes per step,

        r_0 = x,    r_l = ReLU(W_l r_{l-1} + b_l [+ S_l r_j]) / θ_l,

    the same forward as :func:`activations` (skip edges, gates, biases) with every spiking layer's activity
    divided by its threshold. Returns every spiking layer's rates, flattened (N, n_l), in spikes per step."""
    return _forward(spec, x, lambda k, layer, z: torch.relu(z) / layer.threshold)[0]


@torch.inference_mode()
def clip_floor_activations(
    spec: NetworkSpec, x: torch.Tensor, steps: int, adjust: Adjust | None = None, starts: list | None = None
) -> tuple[list[torch.Tensor], torch.Tensor]:
    """:func:`activations` with every spiking layer's ReLU replaced by the clip-floor of T = ``steps`` steps,

        q_l(z) = θ_l/T · clip(floor(z·T/θ_l + f), 0, T),

    with f the start potential as a fraction of θ (``v_init``, or each neuron's ``v_init_neurons``): the
    activity (count · θ/T) an IF neuron started at f·θ with reset by subtraction gives for the constant current
    z after T steps (docs/qcfs.md, f = ½ there). It is exact for the first spiking layer of an analog-input spec
    under ``cascade``; deeper layers receive spike trains, not constant currents, so for them it is the model
    of the SNN that calibration corrects against (:mod:`convert.bias_correction`). Returns every spiking
    layer's activity, flattened (N, n_l), and the logits (the output layer's pre-activation).

    ``starts``: each spiking layer's f (a float, or an array (n_l,)) in place of the spec's, a list that
    ``adjust`` (as :func:`_forward` takes it) may change for its layer before returning the layer to compute it
    again with: the calibrations correct one layer at a time from the input in one pass this way."""
    if starts is None:
        n = len(spec.spiking_indices)
        starts = [spec.v_init] * n if spec.v_init_neurons is None else list(spec.v_init_neurons)

    def clip_floor(k: int, layer, z: torch.Tensor) -> torch.Tensor:
        theta, f = layer.threshold, starts[k]
        if np.ndim(f) != 0:
            f = torch.as_tensor(np.asarray(f), dtype=x.dtype).reshape(z.shape[1:])
        return torch.clamp(torch.floor(z * (steps / theta) + f), 0, steps) * (theta / steps)

    return _forward(spec, x, clip_floor, adjust)


def batched_activities(
    forward: Callable[[NetworkSpec, torch.Tensor], tuple[list[torch.Tensor], torch.Tensor]],
    spec: NetworkSpec,
    images,
    batch_size: int = 256,
) -> list[np.ndarray]:
    """Every spiking layer's activity by ``forward`` (:func:`activations`, or :func:`clip_floor_activations`
    with its T bound) on ``images``, as arrays (N, n_l), computed ``batch_size`` images at a time."""
    out: list[list[np.ndarray]] = []
    for i in range(0, len(images), batch_size):
        acts, _ = forward(spec, as_input(spec, images[i : i + batch_size]))
        out.append([a.numpy() for a in acts])
    return [np.concatenate(layer) for layer in zip(*out, strict=True)]


def layer_activities(spec: NetworkSpec, images, batch_size: int = 256) -> list[np.ndarray]:
    """Every spiking layer's ANN activity (:func:`activations`) on ``images`` as float64 arrays (N, n_l)."""
    return batched_activities(activations, spec, images, batch_size)


def predict(spec: NetworkSpec, images, batch_size: int = 1000) -> np.ndarray:
    """ANN class predictions (argmax of the logits) of ``images``."""
    preds = []
    for i in range(0, len(images), batch_size):
        _, logits = activations(spec, as_input(spec, images[i : i + batch_size]))
        preds.append(logits.argmax(1).numpy())
    return np.concatenate(preds)


def accuracy(spec: NetworkSpec, images, labels, batch_size: int = 1000) -> float:
    return float(np.mean(predict(spec, images, batch_size) == np.asarray(labels)))


def macs_per_image(spec: NetworkSpec) -> list[int]:
    """Multiply-accumulates of one ANN forward pass, per spiking layer: the synapses its family connects.

    The SNN's synaptic events of one image (``SpikeRecord.synops``) count the same synapses once per input
    spike, so their ratio to these is the SNN's cost per classification in units of ANN passes."""
    shapes, out = spec.shapes, []
    for i in spec.spiking_indices:
        layer = spec.layers[i]
        n = int(family_of(layer).synapses(layer, shapes[i]))
        n += sum(skip_synapses(e, shapes[e.source + 1]) for e in spec.skips_into(i))
        out.append(n)
    return out
