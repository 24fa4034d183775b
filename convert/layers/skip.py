"""The skip edge: a second synapse map into a spiking layer, from an earlier point of the chain (a residual sum).

A spec is a chain of layers (the trunk) plus, on any ``Dense`` or ``Conv2d`` layer l, at most one skip edge:
the layer's four ``skip_*`` fields. The node l then receives the currents of both incoming edges,
I_l = (W_l · s_{l−1} + S_l · s_j) + b_l (docs/semantics.md: residual sums), where s_j is the activity *after*
layer ``skip_source`` = j of ``spec.layers`` (a spiking layer's spikes, or the output of a ``MaxPool2d`` gate
that directly follows one), and S_l is one of three maps, by the rank of ``skip_weight``:

* 0-d: the identity times a gain g (a ResNet's identity shortcut; the shapes must match);
* 2-d (out, n_j): all-to-all, into a ``Dense`` layer;
* 4-d (out_c, C_j, kh, kw): a convolution with ``skip_stride`` and ``skip_padding`` (a ResNet's 1×1
  downsampling shortcut, its BatchNorm folded in), into a ``Conv2d`` layer.

Normalization scales the skip weights by λ_j / λ_l (:mod:`convert.normalize`); the ANN adds the skip map's
output to the trunk's pre-activation (:func:`forward`). A layer without a skip has ``skip_source`` None and the
other three fields at their defaults; such a layer hashes and is written exactly as before skips existed.
The skip map as a layer of its own family, and its synapse count, are :func:`convert.layers.skip_map_layer`
and :func:`convert.layers.skip_synapses` (the registry, which knows the families).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from convert.layers.base import SpecError, pair, weight_tensor

#: the layer fields of a skip edge, in file order
FIELDS = ("skip_source", "skip_weight", "skip_stride", "skip_padding")
DEFAULTS = {"skip_source": None, "skip_weight": None, "skip_stride": (1, 1), "skip_padding": (0, 0)}


def check_fields(layer: Any, name: str, ranks: tuple[int, ...]) -> None:
    """Validate and freeze a layer's skip fields in place (its ``__post_init__``); ``ranks``: the ranks of
    ``skip_weight`` the family takes besides 0 (the identity)."""
    source, weight = layer.skip_source, layer.skip_weight
    object.__setattr__(layer, "skip_stride", pair(layer.skip_stride, f"{name}.skip_stride", 1))
    object.__setattr__(layer, "skip_padding", pair(layer.skip_padding, f"{name}.skip_padding", 0))
    if source is None:
        if weight is not None:
            raise SpecError(f"{name}.skip_weight: given without skip_source; name the layer the skip comes from")
        if (layer.skip_stride, layer.skip_padding) != ((1, 1), (0, 0)):
            raise SpecError(f"{name}.skip_stride/skip_padding: given without skip_source")
        return
    if isinstance(source, bool) or int(source) != source or source < 0:
        raise SpecError(f"{name}.skip_source: must be the index of an earlier layer of the spec, got {source!r}")
    object.__setattr__(layer, "skip_source", int(source))
    if weight is None:
        raise SpecError(f"{name}.skip_weight: a skip edge needs weights (a 0-d gain for the identity)")
    arr = np.array(weight, copy=True)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim not in (0, *ranks):
        allowed = " or ".join(f"{r}-d" for r in (0, *ranks))
        raise SpecError(f"{name}.skip_weight: must be {allowed}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"{name}.skip_weight: NaN or infinite weights; retrain or fix the checkpoint")
    if arr.ndim != 4 and (layer.skip_stride, layer.skip_padding) != ((1, 1), (0, 0)):
        raise SpecError(f"{name}.skip_stride/skip_padding: only a convolutional (4-d) skip has them")
    arr.setflags(write=False)
    object.__setattr__(layer, "skip_weight", arr)


def has_skip(layer: Any) -> bool:
    return getattr(layer, "skip_source", None) is not None


def kind(layer: Any) -> str:
    """``identity``, ``dense`` or ``conv``: the skip map of a layer that :func:`has_skip`."""
    return {0: "identity", 2: "dense", 4: "conv"}[layer.skip_weight.ndim]


def output_shape(layer: Any, source_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The shape the skip map sends for a source of ``source_shape``; a SpecError if it does not fit."""
    w, k = layer.skip_weight, kind(layer)
    if k == "identity":
        return tuple(source_shape)
    if k == "dense":
        if tuple(source_shape) != (w.shape[1],):
            raise SpecError(f"skip_weight {w.shape} takes ({w.shape[1]},), the skip source gives {source_shape}")
        return (w.shape[0],)
    oc, ic, kh, kw = w.shape
    if len(source_shape) != 3 or source_shape[0] != ic:
        raise SpecError(f"skip_weight {w.shape} takes ({ic}, H, W), the skip source gives {source_shape}")
    (sh, sw), (ph, pw) = layer.skip_stride, layer.skip_padding
    h = (source_shape[1] + 2 * ph - kh) // sh + 1
    wd = (source_shape[2] + 2 * pw - kw) // sw + 1
    if h < 1 or wd < 1:
        raise SpecError(f"skip kernel {kh}x{kw} does not fit the skip source {source_shape}")
    return (oc, h, wd)


def forward(layer: Any, a: Any) -> Any:
    """The ANN current the skip map sends for the source activity ``a`` (N, *source shape), torch."""
    import torch.nn.functional as F

    w, k = layer.skip_weight, kind(layer)
    if k == "identity":
        return a * float(w)
    if k == "dense":
        return a @ weight_tensor(w, a).T
    return F.conv2d(a, weight_tensor(w, a), stride=layer.skip_stride, padding=layer.skip_padding)


def positive_input_rows(layer: Any) -> np.ndarray | float:
    """Σ_i max(S_ji, 0) per output neuron (dense) or output channel (conv), or max(g, 0) for the identity:
    the most one step of one-spike-per-input brings through the skip (model-based normalization)."""
    w = np.clip(layer.skip_weight, 0, None)
    if w.ndim == 0:
        return float(w)
    return w.reshape(w.shape[0], -1).sum(axis=1)


def scaled(layer: Any, factor: float) -> Any:
    """The layer with its skip weights multiplied by ``factor`` (λ_source / λ_target)."""
    return dataclasses.replace(layer, skip_weight=layer.skip_weight * factor)
