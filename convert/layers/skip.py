"""The skip edge: a synapse map into a spiking layer from an earlier point of the chain (a residual sum).

A spec is a chain of layers (the trunk) plus its skip edges, ``NetworkSpec.skips``: any number of
:class:`Skip` edges into any ``Dense`` or ``Conv2d`` layer l. The node l then receives the currents of all its
incoming edges, I_l = ((W_l · s_{l−1} + S_l · s_j) + S'_l · s_k …) + b_l (docs/semantics.md: residual sums),
where s_j is the activity *after* layer j = ``source`` of ``spec.layers`` (a spiking layer's spikes, or the
output of a ``MaxPool2d`` gate that directly follows one), and S_l is one of three maps, by the rank of the
edge's ``weight``:

* 0-d: the identity times a gain g (a ResNet's identity shortcut; the shapes must match);
* 1-d (C,): the identity times one gain per channel of a (C, H, W) source (a BatchNorm's scale on a rectified
  tensor: a depthwise 1×1 convolution to the simulators);
* 2-d (out, n_j): all-to-all, into a ``Dense`` layer;
* 4-d (out_c, C_j, kh, kw): a convolution with ``stride`` and ``padding`` (a ResNet's 1×1 downsampling
  shortcut, its BatchNorm folded in), into a ``Conv2d`` layer.

The *chain form* of a skip edge, the only one before format version 7, is four ``skip_*`` fields on its target
layer (``Dense(w, skip_source=j, skip_weight=g)``); :class:`convert.contract.spec.NetworkSpec` takes layers in
that form and moves each such edge into ``skips`` (:func:`stripped` layers), so every consumer reads one list.
Normalization scales a skip's weights by λ_j / λ_l (:mod:`convert.normalize`); the ANN adds each map's output
to the trunk's pre-activation (:meth:`Skip.forward`). The map as a layer of its own family, and its synapse
count, are :func:`convert.layers.skip_map_layer` and :func:`convert.layers.skip_synapses` (the registry, which
knows the families).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
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
    arr = _frozen(weight, f"{name}.skip_weight", (0, *ranks))
    if arr.ndim != 4 and (layer.skip_stride, layer.skip_padding) != ((1, 1), (0, 0)):
        raise SpecError(f"{name}.skip_stride/skip_padding: only a convolutional (4-d) skip has them")
    object.__setattr__(layer, "skip_weight", arr)


def _frozen(weight: Any, where: str, ranks: tuple[int, ...]) -> np.ndarray:
    """A skip edge's weights as a read-only float array of one of ``ranks``, finite; a SpecError naming ``where``."""
    if weight is None:
        raise SpecError(f"{where}: a skip edge needs weights (a 0-d gain for the identity)")
    arr = np.array(weight, copy=True)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if arr.ndim not in ranks:
        allowed = " or ".join(f"{r}-d" for r in ranks)
        raise SpecError(f"{where}: must be {allowed}, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise SpecError(f"{where}: NaN or infinite weights; retrain or fix the checkpoint")
    arr.setflags(write=False)
    return arr


def has_skip(layer: Any) -> bool:
    """Whether ``layer`` carries a skip edge in the chain form (its four ``skip_*`` fields)."""
    return getattr(layer, "skip_source", None) is not None


def stripped(layer: Any) -> Any:
    """``layer`` without the chain form's skip fields (at their defaults)."""
    return dataclasses.replace(layer, **DEFAULTS) if has_skip(layer) else layer


@dataclass(frozen=True, eq=False)
class Skip:
    """A skip edge: the synapse map from the activity after ``spec.layers[source]`` into the spiking layer
    ``spec.layers[target]`` (a ``Dense`` or ``Conv2d``). ``weight``'s rank picks the map (module doc); ``stride``
    and ``padding`` belong to a convolutional (4-d) map only. Any number of skip edges may enter one layer; its
    current is the trunk's sum, then each skip edge's sum in the spec's order, then the bias (docs/semantics.md).
    """

    source: int
    target: int
    weight: np.ndarray
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        for name in ("source", "target"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
                raise SpecError(f"skip edge {name}: must be the index of a layer of the spec, got {value!r}")
            object.__setattr__(self, name, int(value))
        where = f"skip edge {self.source} -> {self.target}"
        object.__setattr__(self, "stride", pair(self.stride, f"{where}: stride", 1))
        object.__setattr__(self, "padding", pair(self.padding, f"{where}: padding", 0))
        arr = _frozen(self.weight, f"{where}: weight", (0, 1, 2, 4))
        if arr.ndim != 4 and (self.stride, self.padding) != ((1, 1), (0, 0)):
            raise SpecError(f"{where}: stride/padding: only a convolutional (4-d) skip has them")
        object.__setattr__(self, "weight", arr)

    @classmethod
    def of_layer(cls, layer: Any, target: int) -> Skip:
        """The skip edge a layer carries in the chain form (its ``skip_*`` fields)."""
        return cls(layer.skip_source, target, layer.skip_weight, layer.skip_stride, layer.skip_padding)

    def fields(self) -> dict[str, Any]:
        """The chain form's four layer fields of this edge (files of versions 4 to 6, the fingerprints)."""
        return {
            "skip_source": self.source,
            "skip_weight": self.weight,
            "skip_stride": self.stride,
            "skip_padding": self.padding,
        }

    @property
    def kind(self) -> str:
        """``identity``, ``channel`` (a gain per channel), ``dense`` or ``conv``."""
        return {0: "identity", 1: "channel", 2: "dense", 4: "conv"}[self.weight.ndim]

    def output_shape(self, source_shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape the map sends for a source of ``source_shape``; a SpecError if it does not fit."""
        w, k = self.weight, self.kind
        if k == "identity":
            return tuple(source_shape)
        if k == "channel":
            if len(source_shape) != 3 or source_shape[0] != len(w):
                raise SpecError(f"skip gains ({len(w)},) take ({len(w)}, H, W), the skip source gives {source_shape}")
            return tuple(source_shape)
        if k == "dense":
            if tuple(source_shape) != (w.shape[1],):
                raise SpecError(f"skip weight {w.shape} takes ({w.shape[1]},), the skip source gives {source_shape}")
            return (w.shape[0],)
        oc, ic, kh, kw = w.shape
        if len(source_shape) != 3 or source_shape[0] != ic:
            raise SpecError(f"skip weight {w.shape} takes ({ic}, H, W), the skip source gives {source_shape}")
        (sh, sw), (ph, pw) = self.stride, self.padding
        h = (source_shape[1] + 2 * ph - kh) // sh + 1
        wd = (source_shape[2] + 2 * pw - kw) // sw + 1
        if h < 1 or wd < 1:
            raise SpecError(f"skip kernel {kh}x{kw} does not fit the skip source {source_shape}")
        return (oc, h, wd)

    def forward(self, a: Any) -> Any:
        """The ANN current the map sends for the source activity ``a`` (N, *source shape), torch."""
        import torch.nn.functional as F

        w, k = self.weight, self.kind
        if k == "identity":
            return a * float(w)
        if k == "channel":
            return a * weight_tensor(w, a).view(1, -1, 1, 1)
        if k == "dense":
            return a @ weight_tensor(w, a).T
        return F.conv2d(a, weight_tensor(w, a), stride=self.stride, padding=self.padding)

    def positive_input_rows(self) -> np.ndarray | float:
        """Σ_i max(S_ji, 0) per output neuron (dense) or output channel (conv), or max(g, 0) for the identity:
        the most one step of one-spike-per-input brings through the edge (model-based normalization)."""
        w = np.clip(self.weight, 0, None)
        if w.ndim <= 1:  # one synapse per unit: the gain (per channel)
            return float(w) if w.ndim == 0 else w
        return w.reshape(w.shape[0], -1).sum(axis=1)

    def scaled(self, factor: float) -> Skip:
        """The edge with its weights multiplied by ``factor`` (λ_source / λ_target)."""
        return dataclasses.replace(self, weight=self.weight * factor)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Skip):
            return NotImplemented
        return (
            (self.source, self.target, self.stride, self.padding)
            == (
                other.source,
                other.target,
                other.stride,
                other.padding,
            )
            and (self.weight.dtype, self.weight.shape) == (other.weight.dtype, other.weight.shape)
            and np.array_equal(self.weight, other.weight)
        )

    __hash__ = None  # type: ignore[assignment]
