"""How :func:`fastsim.simulate.simulate` computes: the engine options, checked once, in one frozen value.

What is simulated and recorded (spec, input, steps, seed, checkpoints, what to record) are arguments of
``simulate``; how the engine computes it (device, precision, kernel, batching, compilation, progress display)
is a :class:`SimOptions`. Poisson input depends only on (seed, image, step, pixel), so the options change a
record only through the rounding of the synaptic sums (``dtype``, ``matmul``; see docs/fastsim.md).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch

from fastsim.limbs import check_mode
from fastsim.network import check_kernel, resolve_kernel

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def resolve_dtype(dtype: torch.dtype | str) -> torch.dtype:
    """torch.float32/float64 or their names."""
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
        return DTYPES[dtype]
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype must be torch.float32 or torch.float64, got {dtype!r}")
    return dtype


def resolve_device(device: str | torch.device) -> torch.device:
    """A torch device; 'cuda' without a usable GPU raises a ValueError that says so."""
    try:
        dev = torch.device(device)
    except RuntimeError as err:
        raise ValueError(f"device: {device!r} is not a torch device ({err})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(
            f"device={str(device)!r}: torch.cuda.is_available() is False (torch {torch.__version__}, "
            f"CUDA build: {torch.version.cuda or 'none'}); use device='cpu'"
        )
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be 'cpu' or 'cuda', got {device!r}")
    return dev


def _positive_int_or_none(value: Any, name: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != value or value < 1:
        raise ValueError(f"{name} must be a positive int or None, got {value!r}")
    return int(value)


@dataclass(frozen=True)
class SimOptions:
    """Engine options of :func:`fastsim.simulate.simulate`, checked on construction (errors name the field).

    * ``device``: ``cpu`` or ``cuda`` (a name or a torch.device; stored as a torch.device);
    * ``dtype``: ``float32`` or ``float64`` (a name or a torch dtype; stored as a torch dtype);
    * ``matmul``: ``fp32``, or ``tf32x2`` / ``tf32x3`` to run the synaptic products of a float32 simulation on
      TF32 tensor cores with the weights split into 2 or 3 TF32 limbs (:mod:`fastsim.limbs`); otherwise
      float32 runs never use TF32;
    * ``kernel``: ``auto`` (the default: ``events`` on a CPU, ``torch`` on a GPU,
      :func:`fastsim.network.fastest_kernel`; ``torch`` where the event engine cannot run the request:
      ``matmul`` other than ``fp32``, threshold margins or no numba; resolved per run by :meth:`for_run`, and
      the record's ``meta["kernel"]`` names the kernel that ran), ``torch`` (the time-batched engine),
      ``triton`` to run Dense layers as one fused Triton kernel per chunk (float32; a CUDA device, or
      ``TRITON_INTERPRET=1`` on a CPU for tests), or ``events`` (the event-driven CPU engine of
      :mod:`fastsim.events`: work in proportion to the spikes, the fastest on a CPU for sparsely firing
      networks; ``matmul='fp32'`` only);
    * ``batch_size``: images per batch; None: batches and chunks sized to ``memory_budget`` (bytes; None: the
      device's default, :func:`fastsim.simulate.default_memory_budget`);
    * ``compile``: fuse the layer scan, the input hash, pooling and small convolutions with torch.compile
      (None: only for runs of at least :data:`fastsim.simulate.COMPILE_MIN_IMAGE_STEPS`, where the start-up
      cost of compiling pays off; any failure falls back to eager code);
    * ``progress``: show a progress bar.
    """

    device: str | torch.device = "cpu"
    dtype: str | torch.dtype = torch.float32
    matmul: str = "fp32"
    kernel: str = "auto"
    batch_size: int | None = None
    memory_budget: int | None = None
    compile: bool | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        device, dtype = resolve_device(self.device), resolve_dtype(self.dtype)
        object.__setattr__(self, "device", device)
        object.__setattr__(self, "dtype", dtype)
        check_mode(self.matmul, dtype)
        check_kernel(self.kernel, device, dtype)
        if self.kernel == "events" and self.matmul != "fp32":
            raise ValueError(
                f"kernel='events' sums in the simulation dtype; matmul={self.matmul!r} needs kernel='torch'"
            )
        object.__setattr__(self, "batch_size", _positive_int_or_none(self.batch_size, "batch_size"))
        object.__setattr__(self, "memory_budget", _positive_int_or_none(self.memory_budget, "memory_budget"))
        if self.compile not in (None, True, False):
            raise ValueError(f"compile must be True, False or None, got {self.compile!r}")
        object.__setattr__(self, "progress", bool(self.progress))

    def for_run(self, margins: bool = False, spec: Any = None) -> SimOptions:
        """These options with ``kernel="auto"`` replaced by the kernel that runs for ``spec`` (``margins``: the
        run records threshold margins, which only the torch engine measures); :func:`fastsim.network.resolve_kernel`."""
        kernel = resolve_kernel(self.kernel, self.device, self.dtype, self.matmul, margins=margins, spec=spec)
        return self if kernel == self.kernel else dataclasses.replace(self, kernel=kernel)

    @classmethod
    def merge(cls, options: SimOptions | None, overrides: dict[str, Any]) -> SimOptions:
        """``options`` (default: the defaults) with the fields in ``overrides`` replaced; a key that is not a
        field raises a TypeError naming it."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise TypeError(
                f"unknown engine option(s) {', '.join(unknown)}; the options are {', '.join(sorted(names))}"
            )
        if options is None:
            return cls(**overrides)
        return dataclasses.replace(options, **overrides) if overrides else options
