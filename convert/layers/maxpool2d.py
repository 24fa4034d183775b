"""MaxPool2d: k×k max-pooling as a *gate* on the spikes of the population below; not a neuron population.

The gate passes, in every step t, the spike of the window's unit with the highest spike count so far, the
spikes of step t included (Rueckauer et al. 2017), ties to the unit with the lowest index (docs/semantics.md:
max-pooling): ``rule="leader"``, the default. While the lead changes hands this passes more spikes than the
highest count; ``rule="max-count"`` passes one spike in every step in which the window's highest count grows,
so the window's passed spikes always equal its highest count (the ANN's max of the counts). It has no neurons,
weights or threshold; the next spiking layer's synapses leave from its output units, one per window, in C order
of the pooled shape.

* windows as torch defines them: kernel k, stride s (default k), zero ``padding`` p ≤ k/2 on each side and
  ``ceil_mode``: output size ⌊(H + 2p − k)/s⌋ + 1 (⌈…⌉ with ceil_mode, less a last window that would start in
  the right padding). Windows may overlap (s < k; a unit then belongs to several windows, and each window picks
  its own winner) and hold padding, which no unit occupies: a window's members are its units inside the
  population, ranked by their position in the window (row-major: the lowest C-order index first). A padded
  position never wins: the window's output is its real winner's spike (its max over real units, as torch's
  −∞ padding gives). Defaults (s = k, p = 0, floor) are the non-overlapping pool of format versions ≤ 6, and
  such a gate is written and hashed exactly as before;
* the gate must directly follow a spiking layer (the input's pixels are no spike counts to compare);
* ANN: z = the max of each window; ReLU commutes with it, so it needs no ReLU of its own;
* normalization: max(a / λ) = max(a) / λ, so the gate passes the scale λ of the layer below unchanged;
* torch: ``nn.MaxPool2d``/``F.max_pool2d`` with square kernel, stride and padding, any ``ceil_mode``, dilation
  1; NIR has no max-pooling node: exporting a spec with a gate is an error.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from convert.layers.base import Layer, LayerFamily, SpecError, square_size

#: what a window passes in step t (module docstring): "leader", the spike of the unit with the highest count so
#: far (Rueckauer et al. 2017; the default); "max-count", one spike whenever the window's highest count grows
RULES = ("leader", "max-count")
#: fields a plain gate leaves at these values, so that it is written and hashed as before they existed
DEFAULTS: dict[str, Any] = {"stride": None, "padding": 0, "ceil_mode": False, "rule": "leader"}


def omitted(layer: Any, field: str) -> bool:
    """Whether ``field`` of ``layer`` is left out of files and fingerprints: a gate's setting at its default."""
    return isinstance(layer, MaxPool2d) and FAMILY.omitted(layer, field)


@dataclass(frozen=True)
class MaxPool2d(Layer):
    """k×k max-pooling gate with stride (None: k), zero padding and ceil_mode as torch defines them; not a
    neuron population (module docstring)."""

    kernel_size: int
    stride: int | None = None
    padding: int = 0
    ceil_mode: bool = False
    rule: str = "leader"

    def __post_init__(self) -> None:
        k = self.kernel_size
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
            raise SpecError(f"MaxPool2d.kernel_size must be a positive int, got {k!r}")
        object.__setattr__(self, "kernel_size", int(k))
        s = self.stride
        if s is not None and (isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1):
            raise SpecError(f"MaxPool2d.stride must be a positive int or None (the kernel size), got {s!r}")
        object.__setattr__(self, "stride", None if s is None or int(s) == int(k) else int(s))
        p = self.padding
        if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or not 0 <= p <= k // 2:
            raise SpecError(
                f"MaxPool2d.padding must be an int from 0 to kernel_size // 2 = {k // 2} (as torch requires), got {p!r}"
            )
        object.__setattr__(self, "padding", int(p))
        if not isinstance(self.ceil_mode, (bool, np.bool_)):
            raise SpecError(f"MaxPool2d.ceil_mode must be true or false, got {self.ceil_mode!r}")
        object.__setattr__(self, "ceil_mode", bool(self.ceil_mode))
        if self.rule not in RULES:
            raise SpecError(f"MaxPool2d.rule must be one of {', '.join(RULES)}, got {self.rule!r}")

    @property
    def step(self) -> int:
        """The stride in effect (the kernel size unless given)."""
        return self.kernel_size if self.stride is None else self.stride

    @property
    def is_plain(self) -> bool:
        """Stride k, no padding, floor mode, the leader rule: the gate of format versions ≤ 6 (written and hashed as
        then)."""
        return all(omitted(self, name) for name in DEFAULTS)

    def pooled_size(self, n: int) -> int:
        """torch's output length for an input length n."""
        k, s, p = self.kernel_size, self.step, self.padding
        span = n + 2 * p - k
        if span < 0:
            return 0
        out = (-(-span // s) if self.ceil_mode else span // s) + 1
        if self.ceil_mode and (out - 1) * s >= n + p:  # the last window may not start in the right padding
            out -= 1
        return out

    def output_shape(self, input_shape: tuple[int, ...]) -> tuple[int, ...]:
        if len(input_shape) != 3:
            raise SpecError(f"MaxPool2d takes (C, H, W), got {input_shape}")
        h, w = self.pooled_size(input_shape[1]), self.pooled_size(input_shape[2])
        if h < 1 or w < 1:
            raise SpecError(f"MaxPool2d: kernel {self.kernel_size} does not fit input {input_shape}")
        return (input_shape[0], h, w)

    def members(self, input_shape: tuple[int, int, int]) -> np.ndarray:
        """(n_windows, k²): each window's units (C-order index in the population) by rank (row-major position in
        the window), −1 where the window holds padding or lies past the input; windows in C order of the
        pooled shape."""
        c, h, w = input_shape
        _, oh, ow = self.output_shape(input_shape)
        k, s, p = self.kernel_size, self.step, self.padding
        ys = (np.arange(oh) * s - p)[:, None] + np.arange(k)[None, :]  # (oh, k) input rows of each window
        xs = (np.arange(ow) * s - p)[:, None] + np.arange(k)[None, :]
        y = ys[:, None, :, None]  # (oh, 1, k, 1)
        x = xs[None, :, None, :]  # (1, ow, 1, k)
        inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
        plane = np.where(inside, y * w + x, -1).reshape(oh * ow, k * k)  # one channel's windows
        per_channel = np.arange(c)[:, None, None] * (h * w)
        out = np.where(plane[None] >= 0, plane[None] + per_channel, -1)
        return out.reshape(c * oh * ow, k * k).astype(np.int64)


def forward(layer: MaxPool2d, x: Any) -> Any:
    import torch.nn.functional as F

    return F.max_pool2d(x, layer.kernel_size, layer.step, layer.padding, ceil_mode=layer.ceil_mode)


def pool_from(kernel: Any, stride: Any, padding: Any, dilation: Any, ceil_mode: bool, where: str) -> MaxPool2d:
    """The gate of a torch max-pooling with these settings; a SpecError naming ``where`` for one it cannot be."""
    k = square_size(kernel, "MaxPool2d.kernel_size")
    s = k if stride is None or stride == [] or stride == () else square_size(stride, "MaxPool2d.stride")
    p = square_size(padding, "MaxPool2d.padding")
    if dilation not in (1, (1, 1), [1, 1]):
        raise SpecError(f"{where} (max-pooling): dilation {dilation} is not supported (only 1)")
    try:
        return MaxPool2d(k, s, p, bool(ceil_mode))
    except SpecError as err:
        raise SpecError(f"{where} (max-pooling): {str(err).split(': ', 1)[-1]}") from None


def from_module(module: Any, index: int) -> MaxPool2d:
    return pool_from(
        module.kernel_size, module.stride, module.padding, module.dilation, module.ceil_mode, f"module {index}"
    )


def to_module(layer: MaxPool2d) -> Any:
    from torch import nn

    return nn.MaxPool2d(layer.kernel_size, layer.step, layer.padding, ceil_mode=layer.ceil_mode)


def nir_node(layer: MaxPool2d, input_shape: tuple[int, ...]) -> Any:
    raise SpecError(
        "MaxPool2d: NIR has no max-pooling node, so a spec with a max-pool gate cannot be exported to NIR; "
        "use average pooling (AvgPool2d) in the network to export it"
    )


def key_fields(layer: MaxPool2d) -> bytes:
    """The settings the statistics key hashes: the kernel size, and stride, padding and ceil_mode unless plain (a
    plain gate hashes as before those fields existed)."""
    key = str(layer.kernel_size).encode()
    if layer.is_plain:
        return key
    key += repr((layer.step, layer.padding, layer.ceil_mode)).encode()
    return key if layer.rule == "leader" else key + layer.rule.encode()  # a gate of the leader rule as before


def synapses(layer: MaxPool2d, input_shape: tuple[int, ...]) -> int:
    """A gate has no synapses."""
    return 0


FAMILY = LayerFamily(
    MaxPool2d,
    forward=forward,
    nir_node=nir_node,
    torch_module="MaxPool2d",
    from_module=from_module,
    to_module=to_module,
    defaults=DEFAULTS,
    field_types={
        "ceil_mode": (lambda v: isinstance(v, bool), "true or false"),
        "rule": (lambda v: v in RULES, " or ".join(RULES)),
    },
    tap="gate",
    key_fields=key_fields,
)


def with_rule(layers: Any, rule: str) -> tuple[Any, ...]:
    """``layers`` with every gate on ``rule`` (:data:`RULES`) and the rest as they are: the same ANN, and
    ``dataclasses.replace(spec, layers=with_rule(spec.layers, "max-count"))`` is the spec with max-count gates."""
    return tuple(dataclasses.replace(x, rule=rule) if isinstance(x, MaxPool2d) else x for x in layers)


def unit_windows(members: np.ndarray, n_units: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of every unit, compressed: unit j's windows are ``windows[ptr[j]:ptr[j + 1]]`` in increasing
    order (one for a plain gate; several where windows overlap; none for a unit outside every window)."""
    win, _ = np.nonzero(members >= 0)
    unit = members[members >= 0]
    order = np.lexsort((win, unit))
    ptr = np.zeros(n_units + 1, dtype=np.int64)
    np.add.at(ptr, unit + 1, 1)
    return np.cumsum(ptr), win[order].astype(np.int64)
