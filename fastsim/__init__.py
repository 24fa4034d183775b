"""fastsim: a batched PyTorch integrate-and-fire simulator of a NetworkSpec, on CPU and CUDA.

It implements docs/semantics.md exactly (schedules ``delay`` and ``cascade``, resets ``zero`` and
``subtract``, ``poisson`` and ``current`` input) and returns a :class:`convert.contract.records.SpikeRecord`:

    from fastsim import SimOptions, simulate
    record = simulate(spec, images, steps=300, device="cpu", dtype="float32", seed=0)
    record = simulate(spec, images, steps=300, seed=0, options=SimOptions(device="cpu", dtype="float32"))

Modules: :mod:`~fastsim.step` (the step semantics: pure step functions), :mod:`~fastsim.layers` (operators
per layer type), :mod:`~fastsim.encode` (input sources), :mod:`~fastsim.scan` (time-batched layer scan),
:mod:`~fastsim.sparse` (sparse spike products), :mod:`~fastsim.bandconv` (sparse convolutions),
:mod:`~fastsim.limbs` (split-weight TF32 products), :mod:`~fastsim.fused` (the fused Triton Dense kernel),
:mod:`~fastsim.jit` (torch.compile with a fallback), :mod:`~fastsim.network` (the engine),
:mod:`~fastsim.input_paths` (how the first layer takes each source's input), :mod:`~fastsim.recorder`,
:mod:`~fastsim.margins` (threshold margins), :mod:`~fastsim.options` (engine options),
:mod:`~fastsim.simulate`, :mod:`~fastsim.bench`, :mod:`~fastsim.synthetic` (random specs and images for
benchmarks and tests); ``python -m fastsim``. How it computes and what is exact: docs/fastsim.md.
"""

from fastsim.options import SimOptions
from fastsim.simulate import simulate

__all__ = ["SimOptions", "simulate"]
