"""The spec file: the versioned ``.npz`` format of a :class:`~convert.contract.spec.NetworkSpec`.

File format (docs/spec-format.md): one ``.npz`` holding ``header`` (UTF-8 JSON as a uint8 array) and one
array per weight, ``layers.<i>.weight``. The header holds ``format_version``, every scalar field of the
:class:`~convert.contract.spec.NetworkSpec` and, per layer, ``{"type": <class name>, <fields>}`` with weights
replaced by the name of their array. One generic ``to_dict``/``from_dict`` keyed by class name serves all
layer families (:mod:`convert.layers`; a family lists its array fields). Writing is atomic; loading checks
the version and reports damage clearly.

Versions: 2 added the header key ``readout``; 3 added layer biases (``layers.<i>.bias``, a layer key ``bias``
naming it, present only on a layer with a nonzero bias). A spec is written as the oldest version that holds it:
with the default ``readout="spikes"`` and no bias as version 1, without the key, so that its file is byte for byte
what earlier code wrote and earlier code still reads it; a ``membrane`` readout as version 2; any bias as
version 3 (which has the ``readout`` key). A version-1 file must not have the key (it loads with
``readout="spikes"``), versions 2 to 4 must have it; only a version-3 or 4 file may hold a bias. Version 4 added
the graph: ``MaxPool2d`` gates and skip edges (a layer's ``skip_source``, ``skip_weight`` (an array),
``skip_stride``, ``skip_padding``, present only on a layer with a skip); a spec with either is written as
version 4, every other spec as before. Version 5 added the header key ``v_init`` (the initial membrane potential
as a fraction of the threshold); a spec with ``v_init`` ≠ 0 is written as version 5, which may hold everything
of version 4, and every other spec as before. Version 6 added per-neuron start potentials: the header key
``v_init_neurons``, a list naming one float64 array (n_l,) per spiking population (``v_init_neurons.<k>``,
always float64: a fraction just below 1 must not round up to 1); a spec with them is written as version 6.
Version 7 added the edge list: the header key ``skips``, every skip edge as ``{"source", "target", "weight"
(an array name, ``skips.<e>.weight``), "stride", "padding"}``, in place of the layers' ``skip_*`` fields, and
``v_init_neurons`` optional; a spec with more than one skip edge into one layer, or one into a ``Neurons``
layer (which the layer fields cannot hold), is written as version 7, every other spec as before.

The NIR export is :mod:`convert.nir_export`; the activation-statistics cache is in :mod:`convert.stats`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.npzfile import read_npz, write_npz
from convert.contract.spec import NetworkSpec, SpecError
from convert.layers import FAMILIES, family_of, supported
from convert.layers import skip as skip_edge

FORMAT_VERSION = 7
_SPEC_FIELDS = ("input_shape", "reset", "schedule", "dt_ms", "encoding", "max_rate_hz", "labels", "provenance")
#: header keys each format version adds to _SPEC_FIELDS
_VERSION_FIELDS = {
    1: (),
    2: ("readout",),
    3: ("readout",),
    4: ("readout",),
    5: ("readout", "v_init"),
    6: ("readout", "v_init", "v_init_neurons"),
    7: ("readout", "v_init", "v_init_neurons", "skips"),
}
#: header keys a version may leave out
_OPTIONAL_HEADER = {7: ("v_init_neurons",)}
_SKIP_KEYS = ("source", "target", "weight", "stride", "padding")  # an entry of ``skips`` (version 7)
_NEURON_STARTS = "v_init_neurons."  # the arrays of per-neuron start potentials (version 6)
#: layer array fields that may be absent (None), and the first version that holds them
_OPTIONAL_ARRAYS = {"bias": 3}
#: layer fields present only on a layer with a skip edge (convert.layers.skip), from version 4
_SKIP_FIELDS = {name: 4 for name in skip_edge.FIELDS}


def to_dict(spec: NetworkSpec) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """The JSON header and the arrays of a spec; a layer of an unregistered type raises :class:`SpecError`."""
    arrays: dict[str, np.ndarray] = {}
    chain, more_skips = spec.chain_form()  # the first skip edge into a layer as its fields (versions 4 to 6)
    version = _version(spec, bool(more_skips))
    layers = _layer_entries(spec.layers if version == 7 else chain, arrays)  # 7: skip edges in the header
    header = {"format_version": version, "layers": layers}
    for name in (*_SPEC_FIELDS, *_VERSION_FIELDS[version]):
        value = getattr(spec, name)
        if name == "v_init_neurons":
            if value is None:
                continue
            value = [f"{_NEURON_STARTS}{k}" for k in range(len(value))]
            arrays.update(dict(zip(value, spec.v_init_neurons, strict=True)))
        if name == "skips":
            value = [_skip_to_dict(e, k, arrays) for k, e in enumerate(spec.skips)]
        header[name] = list(value) if isinstance(value, tuple) else value
    return header, arrays


def _version(spec: NetworkSpec, more_skips: bool) -> int:
    """The oldest format version that holds ``spec`` (module doc)."""
    has_bias = any(getattr(layer, "bias", None) is not None for layer in spec.layers)
    version = 3 if has_bias else 1 if spec.readout == "spikes" else 2
    if not spec.is_chain:  # a gate or a skip edge
        version = 4
    if spec.v_init != 0.0:  # an initial membrane potential
        version = 5
    if spec.v_init_neurons is not None:  # one per neuron
        version = 6
    if more_skips:  # several skip edges into one layer, or one into a layer without skip fields (Neurons)
        version = 7
    return version


def _layer_entries(chain: tuple[Any, ...], arrays: dict[str, np.ndarray]) -> list[dict[str, Any]]:
    """The header's entry of every layer, its arrays added to ``arrays``."""
    layers = []
    for i, layer in enumerate(chain):
        family = family_of(layer)
        entry: dict[str, Any] = {"type": family.name}
        for f in dataclasses.fields(layer):
            value = getattr(layer, f.name)
            if f.name in _OPTIONAL_ARRAYS and value is None:
                continue
            if f.name in _SKIP_FIELDS and layer.skip_source is None:
                continue
            if family.omitted(layer, f.name):  # at its default: written as before the field existed
                continue
            if f.name in family.arrays:
                key = f"layers.{i}.{f.name}"
                arrays[key] = value
                entry[f.name] = key
            else:
                entry[f.name] = list(value) if isinstance(value, tuple) else value
        layers.append(entry)
    return layers


def _skip_to_dict(edge: skip_edge.Skip, k: int, arrays: dict[str, np.ndarray]) -> dict[str, Any]:
    key = f"skips.{k}.weight"
    arrays[key] = edge.weight
    return {
        "source": edge.source,
        "target": edge.target,
        "weight": key,
        "stride": list(edge.stride),
        "padding": list(edge.padding),
    }


def _skip_from_dict(k: int, entry: Any, arrays: dict[str, np.ndarray]) -> skip_edge.Skip:
    where = f"header.skips[{k}]"
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: must be a JSON object with {', '.join(_SKIP_KEYS)}, got {json.dumps(entry)[:60]}")
    _check_keys(where, entry, _SKIP_KEYS)
    types = {
        "source": (_is_int, "an integer (the index of the layer the skip edge comes from)"),
        "target": (_is_int, "an integer (the index of the layer the skip edge goes into)"),
        "weight": _ARRAY_FIELD,
        "stride": (_is_int_or_pair, "an integer or a pair of integers"),
        "padding": (_is_int_or_pair, "an integer or a pair of integers"),
    }
    _check_types(where, entry, types)
    name = entry["weight"]
    if name not in arrays:
        raise SpecError(f"{where}.weight: array {name!r} missing from the file")
    if arrays[name].dtype not in (np.float32, np.float64):
        raise SpecError(f"{where}.weight: array {name!r} has dtype {arrays[name].dtype}; need float32/float64")
    try:
        return skip_edge.Skip(**{**entry, "weight": arrays[name]})
    except (TypeError, ValueError) as err:
        raise SpecError(f"{where}: {err}") from None


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
    "readout": (lambda v: isinstance(v, str), "a string"),
    "v_init": (_is_number, "a number (the initial membrane potential as a fraction of the threshold)"),
    "v_init_neurons": (
        lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
        "a list of array names (one per spiking population)",
    ),
    "skips": (lambda v: isinstance(v, list), "a list of skip-edge objects"),
}
_ARRAY_FIELD: tuple[Any, str] = (lambda v: isinstance(v, str), "the name of an array in the file")
_LAYER_FIELD_TYPES: dict[str, tuple[Any, str]] = {
    "threshold": (_is_number, "a number"),
    "kernel_size": (_is_int, "an integer"),
    "stride": (lambda v: v is None or _is_int_or_pair(v), "an integer or a pair of integers"),
    "padding": (_is_int_or_pair, "an integer or a pair of integers"),
    "skip_source": (_is_int, "an integer (the index of the layer the skip edge comes from)"),
    "skip_stride": (_is_int_or_pair, "an integer or a pair of integers"),
    "skip_padding": (_is_int_or_pair, "an integer or a pair of integers"),
}


def _layer_fields(cls: type, version: int) -> tuple[str, ...]:
    """The fields a layer of type ``cls`` may have in a file of ``version``: its dataclass fields, but the
    optional arrays a version predates."""
    since = {**_OPTIONAL_ARRAYS, **_SKIP_FIELDS}
    until = {name: 6 for name in _SKIP_FIELDS}  # version 7 lists skip edges in the header
    return tuple(
        f.name for f in dataclasses.fields(cls) if since.get(f.name, 0) <= version <= until.get(f.name, version)
    )


def _check_keys(where: str, keys: Any, allowed: tuple[str, ...], optional: tuple[str, ...] = ()) -> None:
    """Every allowed key present (but the ``optional`` ones), no other: a typo must not silently fall back to a
    default."""
    unknown = [k for k in keys if k not in allowed]
    if unknown:
        raise SpecError(f"{where}: unknown field {unknown[0]!r}; the fields are {', '.join(allowed)}")
    missing = [k for k in allowed if k not in keys and k not in optional]
    if missing:
        raise SpecError(f"{where}: missing field {missing[0]!r}")


def _check_types(where: str, entry: dict[str, Any], types: dict[str, tuple[Any, str]]) -> None:
    for key, value in entry.items():
        check, meaning = types.get(key, (lambda v: True, ""))
        if not check(value):
            raise SpecError(f"{where}.{key}: must be {meaning}, got {json.dumps(value)[:60]}")


def _layer_from_dict(i: int, entry: Any, arrays: dict[str, np.ndarray], version: int):
    where = f"layers[{i}]"
    if not isinstance(entry, dict):
        raise SpecError(f"{where}: must be a JSON object with a 'type', got {json.dumps(entry)[:60]}")
    entry = dict(entry)
    kind = entry.pop("type", None)
    family = FAMILIES.get(kind) if isinstance(kind, str) else None
    if family is None:
        raise SpecError(f"{where}: unknown layer type {kind!r}; supported: {supported()}")
    where = f"{where} ({kind})"
    if kind == "MaxPool2d" and version < 4:
        raise SpecError(f"{where}: a max-pool gate needs format_version 4, the file says {version}")
    optional = (*_OPTIONAL_ARRAYS, *_SKIP_FIELDS, *family.defaults)
    _check_keys(where, entry, _layer_fields(family.layer, version), optional=optional)
    types = {**_LAYER_FIELD_TYPES, **family.field_types, **{field: _ARRAY_FIELD for field in family.arrays}}
    _check_types(where, entry, types)
    for field in family.arrays:
        if field in (*_OPTIONAL_ARRAYS, *_SKIP_FIELDS) and field not in entry:
            continue
        name = entry[field]
        if name not in arrays:
            raise SpecError(f"{where}.{field}: array {name!r} missing from the file")
        if arrays[name].dtype not in (np.float32, np.float64):
            raise SpecError(f"{where}.{field}: array {name!r} has dtype {arrays[name].dtype}; need float32/float64")
        entry[field] = arrays[name]
    try:
        return family.layer(**entry)
    except (TypeError, ValueError) as err:  # SpecError included: the layer's own checks name the field
        raise SpecError(f"{where}: {err}") from None


def from_dict(header: dict[str, Any], arrays: dict[str, np.ndarray]) -> NetworkSpec:
    """Rebuild a spec from :func:`to_dict`'s output. Anything else (a missing or unknown key, a wrong type, an
    unknown layer type) raises :class:`SpecError` naming the field; nothing falls back to a default."""
    if not isinstance(header, dict):
        raise SpecError(f"header: must be a JSON object, got a JSON {type(header).__name__}")
    version = header.get("format_version")
    if not _is_int(version) or version not in _VERSION_FIELDS:
        raise SpecError(f"header.format_version: must be one of {sorted(_VERSION_FIELDS)}, got {json.dumps(version)}")
    fields = (*_SPEC_FIELDS, *_VERSION_FIELDS[version])
    optional = _OPTIONAL_HEADER.get(version, ())
    _check_keys(f"header (format_version {version})", header, ("format_version", "layers", *fields), optional)
    _check_types("header", header, _HEADER_TYPES)
    layers = tuple(_layer_from_dict(i, entry, arrays, version) for i, entry in enumerate(header["layers"]))
    kwargs = {name: header[name] for name in fields if name in header}
    if "skips" in kwargs:
        kwargs["skips"] = tuple(_skip_from_dict(k, e, arrays) for k, e in enumerate(kwargs["skips"]))
    if "v_init_neurons" in kwargs:
        missing = [name for name in kwargs["v_init_neurons"] if name not in arrays]
        if missing:
            raise SpecError(f"header.v_init_neurons: array {missing[0]!r} missing from the file")
        kwargs["v_init_neurons"] = [arrays[name] for name in kwargs["v_init_neurons"]]
    try:
        return NetworkSpec(layers=layers, **kwargs)
    except (TypeError, ValueError) as err:
        raise SpecError(str(err)) from None


_REMAKE = "re-create it with `python -m convert normalize ...` (or convert.contract.io.save_spec)"


PRECISIONS = ("float64", "float32")


def save_spec(spec: NetworkSpec, path: str | os.PathLike[str], precision: str = "float64") -> Path:
    """Write ``spec`` to ``path`` (``.npz``) atomically.

    ``precision``: the dtype of the weight and bias arrays in the file. ``float64`` (the default) keeps the
    conversion's arithmetic as computed; the reference runs need it (Brian2 and fastsim float64 in the agreement
    checks and the diagnosis, which the main job runs on its spec files). ``float32`` halves the file (the
    published Fashion VGG's data-based spec: 7.0 MB → 3.5 MB) and changes nothing for the float32 engines
    (fastsim's torch and event engines at ``dtype=float32`` round every weight to float32 once, as this does); a
    float64 run of such a file simulates the float32-rounded weights (every engine reading it sees one network).
    Thresholds, rates and the other scalars stay float64 in the JSON header either way, and per-neuron start
    potentials float64 in the file."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    header, arrays = to_dict(spec)
    if precision == "float32":
        arrays = {k: v if k.startswith(_NEURON_STARTS) else np.asarray(v, dtype=np.float32) for k, v in arrays.items()}
    return write_npz(path, header, arrays)


def load_spec(path: str | os.PathLike[str]) -> NetworkSpec:
    """Read a spec file; a missing, damaged, malformed or too-new file raises :class:`SpecError` naming the file,
    the field and the fix."""
    path = Path(path)
    if not path.exists():
        raise SpecError(f"{path}: no such spec file; make one with `python -m convert normalize ...`")
    header, arrays = read_npz(path, "spec", _REMAKE)
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
