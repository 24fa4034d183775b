"""QCFS: the quantization-clip-floor-shift activation (Bu et al., ICLR 2022, "Optimal ANN-SNN conversion for
high-accuracy and ultra-low-latency spiking neural networks"), a drop-in for ``nn.ReLU``:

    a = λ/L · clip(floor(z·L/λ + 1/2), 0, L)

with L ``levels`` (an integer ≥ 1) and a learnable threshold λ per layer (a scalar parameter, ``lam``). Its
output takes the L + 1 values 0, λ/L, ..., λ: an integrate-and-fire neuron with threshold λ, a start at λ/2
and reset by subtraction, driven by the constant current z for T = L steps, fires exactly
clip(floor(z·L/λ + 1/2), 0, L) times (docs/qcfs.md), so the ANN's activation is the SNN's rate times λ.

Training: the floor passes its gradient straight through (as if it were the identity), the clip only inside
its range: with u = z·L/λ + 1/2, ∂a/∂z = 1 where 0 ≤ floor(u) ≤ L, else 0, and ∂a/∂λ = floor(u)/L − z/λ there,
1 above it (a = λ) and 0 below (as the reference code's ``MyFloor``).

Conversion: :func:`convert.from_torch.from_torch` reads a QCFS module as the rectifier of the weight layer
before it, with θ = 1 and the weights rescaled, W_l · λ_{l−1}/λ_l and b_l/λ_l (λ_0 = 1; an output layer, or a
layer rectified by a plain ReLU, has λ = 1): a spike of layer l stands for the activation λ_l. The spec
starts every membrane at θ/2 (``v_init`` 0.5) and resets by subtraction unless told otherwise. The method
``qcfs`` (:mod:`convert.methods`) keeps that copy as it is: no activation statistics are needed.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from convert.contract.spec import NetworkSpec, SpecError

__all__ = ["QCFS", "qcfs", "has_qcfs"]


def _check_levels(levels: Any) -> int:
    if isinstance(levels, bool) or not isinstance(levels, int) or levels < 1:
        raise ValueError(
            f"QCFS levels must be an integer >= 1 (the activation's quantization steps, the SNN's time steps "
            f"for an exact copy), got {levels!r}"
        )
    return int(levels)


class QCFS(nn.Module):
    """a = λ/L · clip(floor(z·L/λ + 1/2), 0, L), λ = ``lam`` learnable (module docstring)."""

    def __init__(self, levels: int = 8, lam: float = 8.0) -> None:
        super().__init__()
        self.levels = _check_levels(levels)
        if isinstance(lam, bool) or not isinstance(lam, (int, float)) or not math.isfinite(lam) or lam <= 0:
            raise ValueError(f"QCFS lam (the initial threshold λ) must be a positive finite number, got {lam!r}")
        self.lam = nn.Parameter(torch.tensor(float(lam)))

    def steps(self, z: torch.Tensor) -> torch.Tensor:
        """clip(floor(z·L/λ + 1/2), 0, L): the integer level of each activation (the SNN's spike count after
        T = L steps), without a gradient."""
        with torch.no_grad():
            return torch.clamp(torch.floor(z * self.levels / self.lam + 0.5), 0, self.levels)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        u = z * self.levels / self.lam + 0.5
        q = u + (torch.floor(u) - u).detach()  # floor(u) exactly (floor(u) − u is exact), gradient 1
        return torch.clamp(q, 0, self.levels) * self.lam / self.levels

    def extra_repr(self) -> str:
        return f"levels={self.levels}, lam={float(self.lam.detach()):.6g}"


def has_qcfs(model: nn.Module) -> bool:
    """Whether ``model`` holds a :class:`QCFS` module."""
    return any(isinstance(m, QCFS) for m in model.modules())


def qcfs(spec: NetworkSpec) -> tuple[NetworkSpec, Any]:
    """The method ``qcfs``: the copy of a QCFS model (:func:`convert.from_torch.from_torch`, whose weights already
    hold the λ's) kept as it is, thresholds 1; its report gives the divisors λ_l / λ_{l−1} that the copy applied
    and each layer's λ and L. A spec of a model without QCFS is a :class:`SpecError`."""
    from convert.normalize import NormalizationReport

    info = spec.provenance.get("qcfs")
    if not isinstance(info, dict) or "lambda" not in info or "divisors" not in spec.provenance:
        raise SpecError(
            "method 'qcfs' converts a model trained with QCFS activations (convert.qcfs.QCFS, `python -m convert "
            "train --activation qcfs`); this spec's model has none: choose data, robust, model or baseline"
        )
    infos = tuple(
        {"type": type(spec.layers[i]).__name__, "lambda": lam, "levels": levels}
        for i, lam, levels in zip(spec.spiking_indices, info["lambda"], info["levels"], strict=True)
    )
    divisors = tuple(float(d) for d in spec.provenance["divisors"])
    report = NormalizationReport("qcfs", divisors, tuple(spec.thresholds), {}, infos)
    return spec, report
