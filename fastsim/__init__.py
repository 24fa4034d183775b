"""fastsim: a batched PyTorch integrate-and-fire simulator of a NetworkSpec, on CPU and CUDA.

It implements docs/semantics.md exactly (schedules ``delay`` and ``cascade``, resets ``zero`` and
``subtract``, ``poisson`` and ``current`` input) and returns a :class:`convert.records.SpikeRecord`:

    from fastsim import simulate
    record = simulate(spec, images, steps=300, device="cpu", dtype="float32", seed=0)

Modules: :mod:`~fastsim.step` (pure step functions), :mod:`~fastsim.layers` (operators per layer type),
:mod:`~fastsim.encode` (input encoders), :mod:`~fastsim.scan` (time-batched layer scan),
:mod:`~fastsim.sparse` (sparse spike products), :mod:`~fastsim.bandconv` (sparse convolutions),
:mod:`~fastsim.limbs` (split-weight TF32 products), :mod:`~fastsim.fused` (the fused Triton Dense kernel),
:mod:`~fastsim.network` (the engine), :mod:`~fastsim.recorder`, :mod:`~fastsim.simulate`,
:mod:`~fastsim.bench`; ``python -m fastsim``. How it computes and what is exact: docs/fastsim.md.
"""

from fastsim.simulate import simulate

__all__ = ["simulate"]
