"""Content fingerprints: the keys of every cached artifact (statistics, threshold searches, records, sweeps).

A cached result is named by a hash of everything that determines it, as git names objects, never by a file
name: a changed checkpoint, spec, dataset file or config changes the key, so an old entry is never read for a
new question. :func:`fingerprint` hashes JSON-able values, numpy arrays, dataclasses and :class:`NetworkSpec`
objects canonically (sorted keys, exact array bytes with dtype and shape).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from convert.contract.spec import NetworkSpec
from convert.layers import family_of
from convert.layers import skip as skip_edge

T = TypeVar("T")

# Bump when the meaning of a cached artifact changes (new record fields, new simulation semantics).
CACHE_FORMAT_VERSION = 1


def spec_fingerprint(spec: NetworkSpec) -> str:
    """sha256 of everything in a spec that determines a simulation: layers, weights, thresholds, reset,
    schedule, dt, encoding, rate, labels and readout. ``provenance`` is free-form metadata and is left out.
    The readout enters only when it is not the default ``"spikes"``, ``v_init`` only when it is not 0, and a
    layer's bias only when it has one, so that such a spec hashes exactly as before either existed (every
    cached result keeps its key)."""
    return fingerprint(_spec_content(spec))


def _spec_content(spec: NetworkSpec) -> dict[str, Any]:
    layers = []
    chain, more_skips = spec.chain_form()  # a layer's first skip edge hashed as its fields, as before
    for layer in chain:
        entry: dict[str, Any] = {"type": type(layer).__name__}
        for f in dataclasses.fields(layer):
            value = getattr(layer, f.name)
            if f.name == "bias" and value is None:  # no bias: hashed as before biases existed
                continue
            if f.name in skip_edge.FIELDS and layer.skip_source is None:  # no skip: likewise
                continue
            if family_of(layer).omitted(layer, f.name):  # a field at its default (a plain gate's stride...)
                continue
            entry[f.name] = value
        layers.append(entry)
    content = {
        "input_shape": spec.input_shape,
        "layers": layers,
        "reset": spec.reset,
        "schedule": spec.schedule,
        "dt_ms": spec.dt_ms,
        "encoding": spec.encoding,
        "max_rate_hz": spec.max_rate_hz,
        "labels": spec.labels,
    }
    if spec.readout != "spikes":
        content["readout"] = spec.readout
    if spec.v_init != 0.0:
        content["v_init"] = spec.v_init
    if spec.v_init_neurons is not None:  # per-neuron start potentials (absent: every older key unchanged)
        content["v_init_neurons"] = list(spec.v_init_neurons)
    if more_skips:  # a second skip edge into one layer (absent: every older key unchanged)
        content["skips"] = [
            {"source": e.source, "target": e.target, "weight": e.weight, "stride": e.stride, "padding": e.padding}
            for e in more_skips
        ]
    return content


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(value: Any) -> str:
    """sha256 of a canonical encoding of ``value`` (dicts by sorted key, arrays by dtype, shape and bytes)."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


def short(digest: str, n: int = 16) -> str:
    """The first ``n`` hex digits of a digest, for file names."""
    return digest[:n]


def _feed(h: Any, value: Any) -> None:
    if isinstance(value, NetworkSpec):
        h.update(b"S")
        _feed(h, _spec_content(value))
    elif isinstance(value, np.ndarray):
        arr = np.ascontiguousarray(value)
        h.update(b"A" + json.dumps([arr.dtype.str, list(arr.shape)]).encode())
        h.update(arr.tobytes())
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        h.update(b"D" + type(value).__name__.encode())
        _feed(h, {f.name: getattr(value, f.name) for f in dataclasses.fields(value)})
    elif isinstance(value, dict):
        h.update(b"{")
        for key in sorted(value, key=str):
            _feed(h, str(key))
            _feed(h, value[key])
        h.update(b"}")
    elif isinstance(value, list | tuple):
        h.update(b"[")
        for item in value:
            _feed(h, item)
        h.update(b"]")
    elif isinstance(value, Path):
        _feed(h, str(value))
    elif isinstance(value, np.generic):
        _feed(h, value.item())
    elif value is None or isinstance(value, bool | int | float | str):
        h.update(b"J" + json.dumps(value).encode() + b";")
    else:
        raise TypeError(f"fingerprint: cannot hash a {type(value).__name__}; pass JSON-able values or arrays")


KEY_FIELD = "cache_key"  # where every cached result stores the key it was computed under
_OLD_KEY_FIELD = "key"  # the field threshold searches and trained candidates used before (still read)


def read_cached(path: Path, key: str, load: Callable[[Path], T], meta: Callable[[T], Mapping[str, Any]]) -> T | None:
    """The result stored at ``path`` if it was computed under ``key`` (``meta(result)[KEY_FIELD]``); None when
    the file is missing or holds another key: a cached result is recomputed, never read under another key.
    The one cache lookup of the project: records, activation statistics, threshold searches, candidates."""
    if not path.exists():
        return None
    result = load(path)
    stored = meta(result)
    return result if stored.get(KEY_FIELD, stored.get(_OLD_KEY_FIELD)) == key else None


def read_cached_json(path: Path, key: str) -> dict[str, Any] | None:
    """:func:`read_cached` of a JSON file whose top level holds the key."""
    return read_cached(path, key, lambda p: json.loads(p.read_text()), lambda d: d)
