"""Running batches of images through a Brian2 network: runtime, or a standalone project compiled once.

* :class:`RuntimeRunner` builds a fresh network for every batch on Brian2's runtime device (numpy target by
  default) and runs it; nothing is compiled.
* :class:`StandaloneRunner` (a context manager) writes and compiles one C++ (or CUDA) project for a fixed
  (spec, steps, batch size, input mode, seed) and runs every batch through ``device.run(run_args=...)``,
  which replaces the input ``TimedArray`` without recompiling; a shorter last batch is padded with blank
  images whose spikes are dropped. The project lives in ``<build_root>/<device>-<hash>``: a later process
  asking for the same key regenerates identical code, so ``make`` finds nothing to recompile.

Poisson input uses Brian2's own random generator seeded with ``seed`` before every batch. A standalone
project bakes the seed into its code, so every batch replays the same random stream (recorded in the
record's meta); the runtime runner seeds every batch the same way so both devices follow one rule.
"""

from __future__ import annotations

import contextlib
import gc
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.io import to_dict
from convert.contract.spec import NetworkSpec
from refsim.brian import load as brian_load
from refsim.build import BuiltNetwork, build_network
from refsim.devices import STANDALONE, brian_device, build_directory, build_key
from refsim.inputs import InputBatch
from refsim.readout import InputActivity, SpikeTable


@dataclass
class BatchResult:
    """What one batch of N images produced: ``inputs``, the input activity (:class:`InputActivity`), one
    spike table per spiking layer and, for a membrane readout, the output potential after every step
    (N, steps, n_out), else None."""

    inputs: InputActivity
    tables: list[SpikeTable]
    build_s: float
    run_s: float
    potential: np.ndarray | None = None
    tap_tables: dict[tuple[str, int], tuple[SpikeTable, int]] | None = None  # each tap node's output, by its tap

    @property
    def input_counts(self) -> np.ndarray:
        return self.inputs.counts(self.inputs.steps)


def collect(built: BuiltNetwork, batch: InputBatch, n_images: int) -> BatchResult:
    """Read the monitors of ``built`` after a run, for the first ``n_images`` images (timings left at 0)."""
    steps, dt_s = built.steps, built.dt_s
    tables = [SpikeTable.from_monitor(m, steps, dt_s) for m in built.monitors[1:]]
    if batch.mode == "current":
        inputs = InputActivity(steps, n_images, batch.n_inputs, analog=batch.data[:n_images])
    else:
        table = SpikeTable.from_monitor(built.monitors[0], steps, dt_s)
        inputs = InputActivity(steps, n_images, batch.n_inputs, table=table)
    potential = None
    if built.potential is not None:  # (n_out, padded images · steps) -> (images, steps, n_out)
        v = np.asarray(built.potential.v_[:], dtype=np.float64)
        potential = v.T.reshape(-1, steps, v.shape[0])[:n_images]
    taps = {tap: (SpikeTable.from_monitor(m, steps, dt_s), int(m.source.N)) for tap, m in built.tap_monitors.items()}
    return BatchResult(inputs, tables, 0.0, 0.0, potential, taps)


class RuntimeRunner:
    """Brian2 runtime: build, run and read a fresh network per batch."""

    device = "runtime"

    def __init__(
        self, spec: NetworkSpec, steps: int, *, seed: int = 0, target: str = "numpy", spike_source: str = "generator"
    ) -> None:
        self.spec, self.steps, self.seed = spec, steps, seed
        self.target, self.spike_source = target, spike_source

    def run(self, batch: InputBatch) -> BatchResult:
        brian_load()
        from brian2 import second
        from brian2 import seed as brian_seed

        with brian_device("runtime", target=self.target, dt_s=self.spec.dt_ms * 1e-3):
            t0 = time.perf_counter()
            if batch.mode == "poisson":
                brian_seed(self.seed)
            built = build_network(self.spec, batch, self.steps, spike_source=self.spike_source)
            t1 = time.perf_counter()
            built.network.run(built.duration_s * second)
            result = collect(built, batch, batch.n_images)
            result.build_s, result.run_s = t1 - t0, time.perf_counter() - t1
            return result


def release_written_arrays(device: Any) -> None:
    """Free what Brian2 keeps in Python of a standalone project it has written: the static arrays (every
    synapse's source, target and weight: 16 bytes a synapse) and its cache of their values (8 more). The
    compiled project reads them from its own files, and values asked for after a run are read from the results;
    on a 265 M-synapse network (vgg16_bn) these copies were 6 GB beside the running simulation."""
    device.static_arrays.clear()
    for var, value in list(device.array_cache.items()):
        if value is not None and getattr(value, "nbytes", 0) > 1 << 16:
            device.array_cache[var] = None  # read back from the results files when asked for
    gc.collect()


class StandaloneRunner:
    """A compiled cpp_standalone / cuda_standalone project, rerun for every batch of ``batch_size`` images."""

    def __init__(
        self,
        spec: NetworkSpec,
        steps: int,
        batch_size: int,
        mode: str,
        *,
        device: str = "cpp_standalone",
        seed: int = 0,
        build_root: str | Path | None = None,
        threads: int = 0,
    ) -> None:
        if device not in STANDALONE:
            raise ValueError(f"device must be one of {STANDALONE}, got {device!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.spec, self.steps, self.batch_size, self.mode = spec, steps, batch_size, mode
        self.device, self.seed, self.threads = device, seed, threads
        header, arrays = to_dict(spec)
        brian_load()
        import brian2

        parts = {
            "spec": header,
            "steps": steps,
            "batch_size": batch_size,
            "mode": mode,
            "seed": seed if mode == "poisson" else None,
            "threads": threads,
            "brian2": brian2.__version__,
        }
        self.directory = build_directory(device, build_key(parts, arrays), build_root)
        self.compile_s = float("nan")
        self.compiled = False
        self._stack: contextlib.ExitStack | None = None
        self._built: BuiltNetwork | None = None
        self._device: Any = None

    def __enter__(self) -> StandaloneRunner:
        brian_load()
        from brian2 import second
        from brian2 import seed as brian_seed

        gc.collect()  # free the names of earlier Brian2 objects, so that the generated code is identical
        with contextlib.ExitStack() as stack:
            self._device = stack.enter_context(
                brian_device(self.device, threads=self.threads, dt_s=self.spec.dt_ms * 1e-3)
            )
            if self.mode == "poisson":
                brian_seed(self.seed)
            shape = (self.batch_size, self.steps) if self.mode == "spikes" else (self.batch_size,)
            blank = InputBatch(
                self.mode, np.zeros((*shape, self.spec.n_inputs), bool if self.mode == "spikes" else float)
            )
            self._built = build_network(self.spec, blank, self.steps, spike_source="timed_array")
            self._built.network.run(self._built.duration_s * second)
            binary = self.directory / "main"
            before = binary.stat().st_mtime_ns if binary.exists() else None
            t0 = time.perf_counter()
            self._device.build(directory=str(self.directory), compile=True, run=False, with_output=False)
            release_written_arrays(self._device)
            self.compile_s = time.perf_counter() - t0
            self.compiled = before is None or binary.stat().st_mtime_ns != before
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc: object) -> None:
        stack, self._stack, self._built = self._stack, None, None
        if stack is not None:
            stack.close()

    def run(self, batch: InputBatch) -> BatchResult:
        """Run ``batch`` (at most ``batch_size`` images) through the compiled project."""
        if self._built is None:
            raise RuntimeError("StandaloneRunner.run: use it inside `with StandaloneRunner(...) as runner:`")
        if batch.mode != self.mode:
            raise ValueError(f"batch.mode {batch.mode!r} differs from the compiled project's {self.mode!r}")
        padded = batch.padded(self.batch_size)
        t0 = time.perf_counter()
        args = self._built.input.run_args(padded, self.steps, self.spec.max_rate_hz)
        self._device.run(directory=str(self.directory), with_output=False, run_args=args)
        result = collect(self._built, padded, batch.n_images)
        self._device.delete(code=False, data=False, run_args=True, directory=False)
        result.run_s = time.perf_counter() - t0
        return result
