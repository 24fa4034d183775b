"""What the third-party engines share: the graph as a user gets it (written to a ``.nir`` file and read back),
the time loop over a stateful torch module, the spike taps on the IF modules, and the SpikeRecord."""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from convert.contract.records import SpikeRecord, checked_checkpoints
from convert.contract.spec import NetworkSpec


def read_graph(spec: NetworkSpec) -> Any:
    """The NIR graph of ``spec`` as ``nir.read`` returns it from the file :func:`convert.nir_export.save_nir`
    writes (lossy: a delay or subtract spec gets its cascade, zero-reset graph)."""
    import nir

    from convert.nir_export import NIRSemanticsWarning, save_nir

    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", NIRSemanticsWarning)
        path = save_nir(spec, Path(tmp) / "graph.nir", lossy=True)
        return nir.read(str(path))


def if_nodes(graph: Any) -> list[str]:
    """Names of the graph's IF nodes along the chain from the input (one per spiking layer, in order)."""
    following = dict(graph.edges)
    names, name = [], "input"
    while name in following:
        name = following[name]
        if type(graph.nodes.get(name)).__name__ == "IF":
            names.append(name)
    return names


class SpikeTap:
    """Forward hooks that keep every call's spikes of the named submodules (the output, or its first item)."""

    def __init__(self, module: Any, names: list[str]) -> None:
        self.names = names
        self.calls: dict[str, list[Any]] = {n: [] for n in names}
        self._hooks = [module.get_submodule(n).register_forward_hook(self._hook(n)) for n in names]

    def _hook(self, name: str):
        def hook(mod: Any, inputs: Any, output: Any) -> None:
            z = output[0] if isinstance(output, tuple) else output
            self.calls[name].append(z.detach())

        return hook

    def take(self) -> dict[str, list[Any]]:
        calls, self.calls = self.calls, {n: [] for n in self.names}
        return calls

    def remove(self) -> None:
        for h in self._hooks:
            h.remove()


def step_loop(module: Any, x: Any, tap: SpikeTap, batched: bool = True, reset: Any = None) -> list[Any]:
    """Call ``module`` once per step, threading the state it returns, on x[:, t] (``batched``) or on each image's
    x[i, t] alone (NIR's batchless shapes); ``reset()`` before each sequence clears hidden state a library keeps
    in its modules. Per IF module: spikes (n, T, neurons)."""
    import torch

    def sequence(seq: Any, n: int) -> list[Any]:
        if reset is not None:
            reset()
        state = None
        with torch.no_grad():
            for t in range(x.shape[1]):
                x_t = seq[:, t] if batched else seq[t]
                out = module(x_t) if state is None else module(x_t, state)
                state = out[1] if isinstance(out, tuple) and len(out) == 2 else None
        calls = tap.take()
        return [torch.stack(calls[name], dim=int(batched)).reshape(n, len(calls[name]), -1) for name in tap.names]

    if batched:
        return sequence(x, len(x))
    per_image = [sequence(x[i], 1) for i in range(len(x))]
    return [torch.cat([p[k] for p in per_image]) for k in range(len(tap.names))]


def simulate(
    lib: ModuleType,
    spec: NetworkSpec,
    *,
    spikes: np.ndarray,
    steps: int,
    adapter: bool,
    labels: np.ndarray | None,
    image_indices: np.ndarray | None,
    checkpoints: Any,
    batch_size: int | None,
    progress: bool,
) -> SpikeRecord:
    import torch

    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.shape[1] < steps or spikes.shape[2] != spec.n_inputs:
        raise ValueError(f"spikes must have shape (N, >= {steps}, {spec.n_inputs}), got {spikes.shape}")
    n = len(spikes)
    graph = read_graph(spec)
    names = if_nodes(graph)
    batch = batch_size or lib.default_batch(steps)
    counts: list[list[np.ndarray]] = [[] for _ in names]
    outputs = []
    for start in range(0, n, batch):
        x = torch.tensor(spikes[start : start + batch, :steps], dtype=torch.float32)
        x = x.reshape(len(x), steps, *spec.input_shape)
        try:
            layers = lib.run(graph, names, x, adapter=adapter)
        except Exception as err:  # the library's own failure on the graph: say which and what the adapter does
            mode = "with the adapter" if adapter else "as imported"
            raise lib_error(lib, mode, err) from err
        for k, s in enumerate(layers):
            counts[k].append(s.sum(dim=1).to(torch.int64).numpy())
        outputs.append(layers[-1].numpy().astype(bool))
    return _record(lib, spec, counts, np.concatenate(outputs), steps, adapter, labels, image_indices, checkpoints)


def lib_error(lib: ModuleType, mode: str, err: BaseException) -> Exception:
    from validation.harness.thirdparty import ThirdPartyError

    return ThirdPartyError(
        f"{lib.NAME} {lib.version()} ({lib.IMPORTER}) fails {mode}: {type(err).__name__}: {err}"
        + (f"; engine {lib.NAME}:adapter works around: {'; '.join(lib.ADAPTER)}" if mode == "as imported" else "")
    )


def _record(lib, spec, counts, out, steps, adapter, labels, image_indices, checkpoints) -> SpikeRecord:
    n = len(out)
    cps = checked_checkpoints(checkpoints, steps)
    cumulative = np.cumsum(out, axis=1, dtype=np.int64)  # (N, T, C)
    fired = out.any(axis=2)
    first = np.where(fired.any(axis=1), fired.argmax(axis=1), -1)
    neuron_counts = tuple(np.concatenate(c) for c in counts)
    return SpikeRecord(
        checkpoints=cps,
        output_counts=cumulative[:, cps - 1],
        layer_counts=np.stack([c.sum(axis=1) for c in neuron_counts], axis=1),
        first_spike_step=first.astype(np.int64),
        synops=np.zeros((n, len(neuron_counts)), dtype=np.int64),
        labels=np.full(n, -1, dtype=np.int64) if labels is None else np.asarray(labels, dtype=np.int64),
        image_indices=np.arange(n, dtype=np.int64) if image_indices is None else np.asarray(image_indices),
        neuron_counts=neuron_counts,
        meta={
            "engine": f"{lib.NAME}:adapter" if adapter else lib.NAME,
            "library": lib.NAME,
            "version": lib.version(),
            "importer": lib.IMPORTER,
            "adapter": list(lib.ADAPTER) if adapter else [],
            "importer_departures": list(lib.DEPARTURES),
            "schedule": "cascade",
            "synops": "not recorded (0)",
        },
    )
