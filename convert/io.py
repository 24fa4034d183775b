"""All spec I/O: the versioned ``.npz`` spec file, and export to NIR.

File format (docs/spec-format.md): one ``.npz`` holding ``header`` (UTF-8 JSON as a uint8 array) and one
array per weight, ``layers.<i>.weight``. The header holds ``format_version``, every scalar field of the
:class:`~convert.spec.NetworkSpec` and, per layer, ``{"type": <class name>, <fields>}`` with weights
replaced by the name of their array. One generic ``to_dict``/``from_dict`` keyed by class name serves all
layer types. Writing is atomic; loading checks the version and reports damage clearly.
"""

from __future__ import annotations

import dataclasses
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from convert.provenance import atomic_path
from convert.spec import LAYER_TYPES, AvgPool2d, Conv2d, Dense, Flatten, NetworkSpec, SpecError

FORMAT_VERSION = 1
_LAYER_CLASSES = {cls.__name__: cls for cls in LAYER_TYPES}
_SPEC_FIELDS = ("input_shape", "reset", "schedule", "dt_ms", "encoding", "max_rate_hz", "labels", "provenance")


def to_dict(spec: NetworkSpec) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and the arrays of a spec."""
    arrays: dict[str, np.ndarray] = {}
    layers = []
    for i, layer in enumerate(spec.layers):
        entry: dict[str, Any] = {"type": type(layer).__name__}
        for f in dataclasses.fields(layer):
            value = getattr(layer, f.name)
            if f.name == "bias":
                continue
            if isinstance(value, np.ndarray):
                key = f"layers.{i}.{f.name}"
                arrays[key] = value
                entry[f.name] = key
            else:
                entry[f.name] = list(value) if isinstance(value, tuple) else value
        layers.append(entry)
    header = {"format_version": FORMAT_VERSION, "layers": layers}
    for name in _SPEC_FIELDS:
        value = getattr(spec, name)
        header[name] = list(value) if isinstance(value, tuple) else value
    return header, arrays


def from_dict(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> NetworkSpec:
    """Rebuild a spec from :func:`to_dict`'s output; unknown layer types raise :class:`SpecError`."""
    layers = []
    for i, entry in enumerate(header["layers"]):
        entry = dict(entry)
        kind = entry.pop("type")
        cls = _LAYER_CLASSES.get(kind)
        if cls is None:
            raise SpecError(f"layers[{i}]: unknown layer type {kind!r}; supported: {', '.join(_LAYER_CLASSES)}")
        for key, value in entry.items():
            if key == "weight":
                if value not in arrays:
                    raise SpecError(f"layers[{i}].weight: array {value!r} missing from the file")
                entry[key] = arrays[value]
        layers.append(cls(**entry))
    kwargs = {name: header[name] for name in _SPEC_FIELDS if name in header}
    return NetworkSpec(layers=tuple(layers), **kwargs)


def _read_npz(path: str | os.PathLike[str], what: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and the arrays of one of our ``.npz`` files; damage raises :class:`SpecError`."""
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(bytes(arrays.pop("header")).decode("utf-8"))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        raise SpecError(f"{path}: damaged or not a {what} file ({type(err).__name__}: {err})") from err
    return header, arrays


def save_spec(spec: NetworkSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` to ``path`` (``.npz``) atomically."""
    header, arrays = to_dict(spec)
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, header=blob, **arrays)
    return Path(path)


def load_spec(path: str | os.PathLike[str]) -> NetworkSpec:
    """Read a spec file; a missing, damaged or too-new file raises :class:`SpecError` saying so."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such spec file; make one with `python -m convert normalize ...`")
    header, arrays = _read_npz(path, "spec")
    version = header.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise SpecError(f"{path}: header has no valid format_version")
    if version > FORMAT_VERSION:
        raise SpecError(
            f"{path}: spec format version {version} is newer than this code reads ({FORMAT_VERSION}); "
            "update snn-balance"
        )
    return from_dict(header, arrays)


# ------------------------------------------------------------------------------------------------- NIR
def to_nir(spec: NetworkSpec):
    """The spec as a NIR graph: Linear/Conv2d/AvgPool2d nodes each followed by an ``IF`` node.

    NIR's IF is continuous-time (``r``, ``v_threshold``); our discrete semantics (dt, schedule, reset mode,
    encoding) travel in the graph's metadata. AvgPool2d is followed by an IF node too (our pooling neurons
    spike); weights of 1/k² are implied by NIR's AvgPool2d.
    """
    import nir

    shapes = spec.shapes
    nodes: dict[str, Any] = {"input": nir.Input(input_type={"input": np.asarray(spec.input_shape)})}
    edges = []
    prev = "input"
    for i, layer in enumerate(spec.layers):
        out_shape = np.asarray(shapes[i + 1])
        name = f"{i}_{type(layer).__name__.lower()}"
        if isinstance(layer, Flatten):
            nodes[name] = nir.Flatten(input_type={"input": np.asarray(shapes[i])}, start_dim=0, end_dim=-1)
        elif isinstance(layer, Dense):
            nodes[name] = nir.Linear(weight=np.array(layer.weight))
        elif isinstance(layer, Conv2d):
            nodes[name] = nir.Conv2d(
                input_shape=tuple(shapes[i][1:]),
                weight=np.array(layer.weight),
                stride=layer.stride,
                padding=layer.padding,
                dilation=(1, 1),
                groups=1,
                bias=np.zeros(layer.weight.shape[0]),
            )
        elif isinstance(layer, AvgPool2d):
            nodes[name] = nir.AvgPool2d(
                kernel_size=np.array([layer.kernel_size] * 2),
                stride=np.array([layer.stride] * 2),
                padding=np.array([0, 0]),
            )
        edges.append((prev, name))
        prev = name
        if not isinstance(layer, Flatten):
            if_name = f"{i}_if"
            nodes[if_name] = nir.IF(
                r=np.ones(out_shape), v_threshold=np.full(out_shape, layer.threshold), v_reset=np.zeros(out_shape)
            )
            edges.append((prev, if_name))
            prev = if_name
    nodes["output"] = nir.Output(output_type={"output": np.asarray(shapes[-1])})
    edges.append((prev, "output"))
    metadata = {
        "snn_balance_format_version": FORMAT_VERSION,
        "dt_ms": spec.dt_ms,
        "schedule": spec.schedule,
        "reset": spec.reset,
        "encoding": spec.encoding,
        "max_rate_hz": spec.max_rate_hz,
        "labels": list(spec.labels),
        "semantics": "discrete-time IF, no leak, no refractory period; see docs/semantics.md",
    }
    return nir.NIRGraph(nodes=nodes, edges=edges, metadata=metadata)


def save_nir(spec: NetworkSpec, path: str | os.PathLike[str]) -> Path:
    """Write the NIR graph of ``spec`` (HDF5) atomically; it reads back with ``nir.read``."""
    import nir

    graph = to_nir(spec)
    with atomic_path(path, suffix=".nir") as tmp:
        nir.write(str(tmp), graph)
    return Path(path)


# ------------------------------------------------------------------------------------- activation stats
def save_stats(stats, path: str | os.PathLike[str]) -> Path:
    """Write :class:`convert.stats.ActivationStats` to ``.npz`` atomically."""
    header = {
        "format_version": FORMAT_VERSION,
        "max": list(stats.max),
        "n_values": list(stats.n_values),
        "n_positive": list(stats.n_positive),
        "n_images": stats.n_images,
        "fingerprint": stats.fingerprint,
        "seed": stats.seed,
        "meta": stats.meta,
    }
    arrays = {f"samples.{i}": s for i, s in enumerate(stats.samples)}
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, header=blob, **arrays)
    return Path(path)


def load_stats(path: str | os.PathLike[str]):
    from convert.stats import ActivationStats

    header, arrays = _read_npz(path, "stats")
    n = len(header["max"])
    return ActivationStats(
        max=tuple(header["max"]),
        samples=tuple(arrays[f"samples.{i}"] for i in range(n)),
        n_values=tuple(header["n_values"]),
        n_positive=tuple(header["n_positive"]),
        n_images=header["n_images"],
        fingerprint=header["fingerprint"],
        seed=header["seed"],
        meta=header["meta"],
    )
