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


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int_or_pair(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, list) and len(value) == 2 and all(_is_int(v) for v in value))


# what each header key and each layer field must hold in the JSON header (docs/spec-format.md)
_HEADER_TYPES: dict[str, tuple[Any, str]] = {
    "format_version": (_is_int, "an integer"),
    "layers": (lambda v: isinstance(v, list), "a list of layer objects"),
    "input_shape": (lambda v: isinstance(v, list) and all(_is_int(d) for d in v), "a list of integers"),
    "reset": (lambda v: isinstance(v, str), "a string"),
    "schedule": (lambda v: isinstance(v, str), "a string"),
    "dt_ms": (_is_number, "a number"),
    "encoding": (lambda v: isinstance(v, str), "a string"),
    "max_rate_hz": (_is_number, "a number"),
    "labels": (lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v), "a list of strings"),
    "provenance": (lambda v: isinstance(v, dict), "a JSON object"),
}
_LAYER_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "weight": (lambda v: isinstance(v, str), "the name of an array in the file"),
    "threshold": (_is_number, "a number"),
    "kernel_size": (_is_int, "an integer"),
    "stride": (lambda v: v is None or _is_int_or_pair(v), "an integer or a pair of integers"),
    "padding": (_is_int_or_pair, "an integer or a pair of integers"),
}


def _layer_fields(cls: type) -> tuple[str, ...]:
    """The fields a layer of type ``cls`` has in the file: its dataclass fields but the (unsupported) bias."""
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "bias")


def _check_keys(where: str, keys: Any, allowed: tuple[str, ...]) -> None:
    """Every allowed key present, no other: a typo must not silently fall back to a default."""
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(allowed)}")
    missing = [k for k in allowed if k not in keys]
    if missing:
        raise SpecError(f"{where}: missing field {missing[0]!r}")


def _check_types(where: str, entry: dict[str, Any], types: dict[str, tuple[Any, str]]) -> None:
    for key, value in entry.items():
        check, meaning = types.get(key, (lambda v: True, ""))
        if not check(value):
            raise SpecError(f"{where}.{key}: must be {meaning}, got {json.dumps(value)[:60]}")


def _layer_from_dict(i: int, entry: Any, arrays: dict[str, np.ndarray]):
    where = f"layers[{i}]"
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: must be a JSON object with a 'type', got {json.dumps(entry)[:60]}")
    entry = dict(entry)
    kind = entry.pop("type", None)
    cls = _LAYER_CLASSES.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise SpecError(f"{where}: unknown layer type {kind!r}; supported: {', '.join(_LAYER_CLASSES)}")
    where = f"{where} ({kind})"
    _check_keys(where, entry, _layer_fields(cls))
    _check_types(where, entry, _LAYER_FIELD_TYPES)
    if "weight" in entry:
        name = entry["weight"]
        if name not in arrays:
            raise SpecError(f"{where}.weight: array {name!r} missing from the file")
        if arrays[name].dtype not in (np.float32, np.float64):
            raise SpecError(f"{where}.weight: array {name!r} has dtype {arrays[name].dtype}; need float32/float64")
        entry["weight"] = arrays[name]
    try:
        return cls(**entry)
    except (TypeError, ValueError) as err:  # SpecError included: the layer's own checks name the field
        raise SpecError(f"{where}: {err}") from None


def from_dict(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> NetworkSpec:
    """Rebuild a spec from :func:`to_dict`'s output. Anything else (a missing or unknown key, a wrong type, an
    unknown layer type) raises :class:`SpecError` naming the field; nothing falls back to a default."""
    if not isinstance(header, dict):
        raise SpecError(f"header: must be a JSON object, got a JSON {type(header).__name__}")
    _check_keys("header", header, ("format_version", "layers", *_SPEC_FIELDS))
    _check_types("header", header, _HEADER_TYPES)
    layers = tuple(_layer_from_dict(i, entry, arrays) for i, entry in enumerate(header["layers"]))
    kwargs = {name: header[name] for name in _SPEC_FIELDS}
    try:
        return NetworkSpec(layers=layers, **kwargs)
    except (TypeError, ValueError) as err:
        raise SpecError(str(err)) from None


_REMAKE = "re-create it with `python -m convert normalize ...` (or convert.io.save_spec)"
_RECOMPUTE = "delete it: the statistics are recomputed"


def _read_npz(path: str | os.PathLike[str], what: str, fix: str) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header (an object) and the arrays of one of our ``.npz`` files; damage raises :class:`SpecError`
    naming the file and ``fix``."""
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if not isinstance(z, np.lib.npyio.NpzFile):
                raise ValueError("a single .npy array, not an .npz archive")
            with z:
                arrays = {k: z[k] for k in z.files}
        header = json.loads(bytes(arrays.pop("header")).decode("utf-8"))
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, UnicodeDecodeError) as err:
        detail = "empty file" if isinstance(err, EOFError) else f"{type(err).__name__}: {err}"
        raise SpecError(f"{path}: damaged or not a {what} file ({detail}); {fix}") from err
    if not isinstance(header, dict):
        raise SpecError(f"{path}: damaged or not a {what} file (its header is a JSON {type(header).__name__}); {fix}")
    return header, arrays


def save_spec(spec: NetworkSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` to ``path`` (``.npz``) atomically."""
    header, arrays = to_dict(spec)
    blob = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, header=blob, **arrays)
    return Path(path)


def load_spec(path: str | os.PathLike[str]) -> NetworkSpec:
    """Read a spec file; a missing, damaged, malformed or too-new file raises :class:`SpecError` naming the file,
    the field and the fix."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such spec file; make one with `python -m convert normalize ...`")
    header, arrays = _read_npz(path, "spec", _REMAKE)
    version = header.get("format_version")
    if not _is_int(version) or version < 1:
        raise SpecError(f"{path}: header has no valid format_version; not a spec file? {_REMAKE}")
    if version > FORMAT_VERSION:
        raise SpecError(
            f"{path}: spec format version {version} is newer than this code reads ({FORMAT_VERSION}); "
            "update snn-balance"
        )
    try:
        return from_dict(header, arrays)
    except SpecError as err:
        raise SpecError(f"{path}: {err}; {_REMAKE}") from None


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

    header, arrays = _read_npz(path, "stats", _RECOMPUTE)
    try:
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
    except (KeyError, TypeError, ValueError) as err:
        raise SpecError(f"{path}: damaged statistics cache ({type(err).__name__}: {err}); {_RECOMPUTE}") from err
