"""The spec file format and the NIR export."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from convert.contract.io import FORMAT_VERSION, load_spec, save_spec
from convert.contract.spec import Conv2d, Dense, NetworkSpec, SpecError
from convert.nir_export import save_nir


def test_save_load_exact(tmp_path, tiny_cnn):
    spec = tiny_cnn
    spec = type(spec)(**{**spec.__dict__, "reset": "subtract", "schedule": "cascade", "provenance": {"seed": 3}})
    path = save_spec(spec, tmp_path / "s.npz")
    back = load_spec(path)
    assert back == spec
    for a, b in zip(spec.layers, back.layers, strict=True):
        if hasattr(a, "weight"):
            assert a.weight.dtype == b.weight.dtype
            assert np.array_equal(a.weight, b.weight)
    assert [p.name for p in tmp_path.iterdir()] == ["s.npz"]


def test_file_readable_with_numpy_alone(tmp_path, tiny_cnn):
    spec = tiny_cnn
    save_spec(spec, tmp_path / "s.npz")
    z = np.load(tmp_path / "s.npz")
    header = json.loads(bytes(z["header"]).decode())
    assert header["format_version"] == 1  # the default readout: version 1, what earlier code wrote
    assert "readout" not in header
    assert header["layers"][0]["type"] == "Conv2d"
    np.testing.assert_array_equal(z[header["layers"][0]["weight"]], spec.layers[0].weight)


def test_membrane_readout_round_trips_as_version_2(tmp_path, tiny_cnn):
    import dataclasses

    spec = dataclasses.replace(tiny_cnn, readout="membrane")
    save_spec(spec, tmp_path / "m.npz")
    header = json.loads(bytes(np.load(tmp_path / "m.npz")["header"]).decode())
    assert header["format_version"] == 2 and header["readout"] == "membrane"
    back = load_spec(tmp_path / "m.npz")
    assert back == spec and back.readout == "membrane" and back != tiny_cnn


def test_a_bias_is_written_as_version_3_and_only_there(tmp_path, tiny_cnn):
    """A layer's bias: an array beside its weight and a ``bias`` key naming it, in a version-3 file; a
    version-2 file with a bias is refused, and a version-3 file without any still loads."""
    import dataclasses

    biased = Dense(np.ones((4, 27)) / 8, bias=np.array([0.5, -0.25, 0.0, 1.0]))
    spec = dataclasses.replace(tiny_cnn, layers=(*tiny_cnn.layers[:-1], biased))
    save_spec(spec, tmp_path / "b.npz")
    z = np.load(tmp_path / "b.npz")
    header = json.loads(bytes(z["header"]).decode())
    assert header["format_version"] == 3 and FORMAT_VERSION == 7 and header["readout"] == "spikes"
    assert "bias" not in header["layers"][0] and header["layers"][-1]["bias"] in z
    back = load_spec(tmp_path / "b.npz")
    assert back == spec and back.layers[-1].bias.tolist() == [0.5, -0.25, 0.0, 1.0]
    _rewrite_header(spec, tmp_path, "v2.npz", lambda h: h.update(format_version=2))
    with pytest.raises(SpecError, match="unknown field 'bias'"):
        load_spec(tmp_path / "v2.npz")
    _rewrite_header(tiny_cnn, tmp_path, "v3.npz", lambda h: h.update(format_version=3, readout="spikes"))
    assert load_spec(tmp_path / "v3.npz") == tiny_cnn


def test_a_graph_is_written_as_version_4_and_only_there(tmp_path):
    """A max-pool gate and a skip edge: a version-4 file (the skip's four keys only on the layer that has one,
    its weights an array), read back equal; in a version-3 file both are refused by name."""
    from tests.conformance.networks import network

    spec = network("Residual", "delay", "zero")
    save_spec(spec, tmp_path / "g.npz")
    z = np.load(tmp_path / "g.npz")
    header = json.loads(bytes(z["header"]).decode())
    assert header["format_version"] == 4
    assert [("skip_source" in entry) for entry in header["layers"]] == [False, False, False, True, True, False, False]
    assert header["layers"][3]["skip_weight"] in z and z[header["layers"][3]["skip_weight"]].shape == ()
    assert load_spec(tmp_path / "g.npz") == spec
    _rewrite_header(spec, tmp_path, "v3.npz", lambda h: h.update(format_version=3))
    with pytest.raises(SpecError, match="MaxPool2d.*needs format_version 4"):
        load_spec(tmp_path / "v3.npz")
    conv = Conv2d(np.ones((2, 2, 3, 3)) / 16, padding=1)
    no_gate = NetworkSpec((2, 4, 4), (conv, dataclasses.replace(conv, skip_source=0, skip_weight=0.5)))
    _rewrite_header(no_gate, tmp_path, "v3b.npz", lambda h: h.update(format_version=3))
    with pytest.raises(SpecError, match="unknown field 'skip_source'"):
        load_spec(tmp_path / "v3b.npz")


def test_default_readout_file_is_unchanged_and_loads_as_spikes(tmp_path, tiny_cnn):
    """A default spec's file holds no readout key (version 1); a version-2 file saying "spikes" is the same spec."""
    save_spec(tiny_cnn, tmp_path / "s.npz")
    assert load_spec(tmp_path / "s.npz").readout == "spikes"
    _rewrite_header(tiny_cnn, tmp_path, "v2.npz", lambda h: h.update(format_version=2, readout="spikes"))
    assert load_spec(tmp_path / "v2.npz") == tiny_cnn


def _rewrite_header(spec, folder, name, edit) -> None:
    """Save ``spec``, apply ``edit`` to its JSON header in place, and write the result as ``folder/name``."""
    save_spec(spec, folder / "s.npz")
    z = dict(np.load(folder / "s.npz"))
    header = json.loads(bytes(z["header"]).decode())
    edit(header)
    z["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(folder / name, **z)


def test_newer_version_rejected(tmp_path, tiny_cnn):
    _rewrite_header(tiny_cnn, tmp_path, "new.npz", lambda h: h.update(format_version=FORMAT_VERSION + 1))
    with pytest.raises(SpecError, match="newer"):
        load_spec(tmp_path / "new.npz")


def test_damaged_and_missing(tmp_path, tiny_cnn):
    save_spec(tiny_cnn, tmp_path / "s.npz")
    raw = (tmp_path / "s.npz").read_bytes()
    (tmp_path / "bad.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(SpecError, match="damaged"):
        load_spec(tmp_path / "bad.npz")
    with pytest.raises(SpecError, match="no such spec file"):
        load_spec(tmp_path / "missing.npz")


def test_unknown_layer_in_file(tmp_path, tiny_cnn):
    _rewrite_header(tiny_cnn, tmp_path, "u.npz", lambda h: h["layers"][1].update(type="LPPool2d"))
    with pytest.raises(SpecError, match="unknown layer type 'LPPool2d'"):
        load_spec(tmp_path / "u.npz")


def test_nan_weights_in_file_rejected(tmp_path, tiny_cnn):
    save_spec(tiny_cnn, tmp_path / "s.npz")
    z = dict(np.load(tmp_path / "s.npz"))
    z["layers.0.weight"] = np.full_like(z["layers.0.weight"], np.nan)
    np.savez(tmp_path / "n.npz", **z)
    with pytest.raises(SpecError, match="NaN"):
        load_spec(tmp_path / "n.npz")


def test_nir_membrane_readout_ends_in_an_integrator(tmp_path, tiny_cnn):
    import dataclasses

    import nir

    save_nir(dataclasses.replace(tiny_cnn, readout="membrane", schedule="cascade"), tmp_path / "m.nir")
    graph = nir.read(str(tmp_path / "m.nir"))
    following = {a: b for a, b in graph.edges}
    chain, name = [], "input"
    while name in following:
        name = following[name]
        chain.append(type(graph.nodes[name]).__name__)
    assert chain == ["Conv2d", "IF", "SumPool2d", "IF", "Flatten", "Affine", "I", "Output"]
    assert graph.metadata["readout"] == "membrane"


# ------------------------------------------------------------------------------------ malformed spec files
def _empty(folder, spec):
    (folder / "bad.npz").write_bytes(b"")


def _npy_renamed(folder, spec):
    np.save(folder / "bad.npy", np.zeros(3))
    (folder / "bad.npy").rename(folder / "bad.npz")


def _rewrite_arrays(edit):
    """A probe that saves the spec and edits its arrays (the header included, as decoded JSON)."""

    def make(folder, spec):
        save_spec(spec, folder / "s.npz")
        z = dict(np.load(folder / "s.npz"))
        header = edit(json.loads(bytes(z["header"]).decode()), z)
        z["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        np.savez(folder / "bad.npz", **z)

    return make


def _header(edit):
    """A probe that edits the header in place."""

    def edit_header(header, arrays):
        edit(header)
        return header

    return _rewrite_arrays(edit_header)


def _int_weights(header, arrays):
    arrays["layers.0.weight"] = np.ones(arrays["layers.0.weight"].shape, dtype=np.int64)
    return header


def _v5(**fields):
    """A version-5 header (the one with ``v_init``) with ``fields`` set."""
    return _header(lambda h: h.update({"format_version": 5, "readout": "spikes", **fields}))


def _layer0(**fields):
    return _header(lambda h: h["layers"][0].update(fields))


# probe → (how to write it, a fragment its message must hold); every message must also name the file and the fix
MALFORMED = {
    "empty file": (_empty, "empty file"),
    ".npy renamed to .npz": (_npy_renamed, "not an .npz archive"),
    "header is a JSON list": (_rewrite_arrays(lambda h, z: [h]), "header is a JSON list"),
    "no layers": (_header(lambda h: h.pop("layers")), "missing field 'layers'"),
    "layer not a dict": (_header(lambda h: h["layers"].__setitem__(0, ["Conv2d"])), "layers[0]: must be a JSON object"),
    "unknown header field": (_header(lambda h: h.update(rest="subtract")), "unknown field 'rest'"),
    "unknown layer field": (_layer0(gain=2), "layers[0] (Conv2d): unknown field 'gain'"),
    "missing layer field": (_header(lambda h: h["layers"][0].pop("threshold")), "missing field 'threshold'"),
    "wrong-typed input_shape": (_header(lambda h: h.update(input_shape=784)), "header.input_shape: must be a list"),
    "wrong-typed threshold": (_layer0(threshold="high"), "layers[0] (Conv2d).threshold: must be a number"),
    "wrong-typed labels": (_header(lambda h: h.update(labels="0123")), "header.labels: must be a list of strings"),
    "wrong-typed provenance": (_header(lambda h: h.update(provenance=[1])), "header.provenance: must be a JSON object"),
    "pair stride on a pool": (_header(lambda h: h["layers"][1].update(stride=[2, 2])), "layers[1] (AvgPool2d)"),
    "int weights": (_rewrite_arrays(_int_weights), "dtype int64"),
    "readout in a version-1 file": (_header(lambda h: h.update(readout="membrane")), "unknown field 'readout'"),
    "version 2 without readout": (_header(lambda h: h.update(format_version=2)), "missing field 'readout'"),
    "unknown readout": (_header(lambda h: h.update(format_version=2, readout="rate")), "readout must be one of"),
    "wrong-typed readout": (_header(lambda h: h.update(format_version=2, readout=1)), "header.readout: must be a"),
    "v_init in a version-4 file": (_v5(format_version=4, v_init=0.5), "unknown field 'v_init'"),
    "version 5 without v_init": (_v5(), "missing field 'v_init'"),
    "v_init of a threshold": (_v5(v_init=1.0), "v_init must be a fraction"),
    "wrong-typed v_init": (_v5(v_init="half"), "header.v_init: must be a number"),
    "v_init_neurons in a version-5 file": (_v5(v_init=0.5, v_init_neurons=["x"]), "unknown field 'v_init_neurons'"),
    "version 6 without v_init_neurons": (_v5(format_version=6, v_init=0.5), "missing field 'v_init_neurons'"),
    "v_init_neurons naming no array": (
        _v5(format_version=6, v_init=0.5, v_init_neurons=["v_init_neurons.0", "v_init_neurons.1"]),
        "header.v_init_neurons: array 'v_init_neurons.0' missing from the file",
    ),
    "wrong-typed v_init_neurons": (_v5(format_version=6, v_init=0.5, v_init_neurons=3), "must be a list of array"),
}


def write_malformed(name, folder, spec):
    """Write the malformed spec ``name`` as ``folder/bad.npz``; return its path and the expected message part."""
    make, fragment = MALFORMED[name]
    make(folder, spec)
    return folder / "bad.npz", fragment


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_spec_file_is_a_clear_error(name, tmp_path, tiny_cnn):
    path, fragment = write_malformed(name, tmp_path, tiny_cnn)
    with pytest.raises(SpecError) as info:
        load_spec(path)
    message = str(info.value)
    assert fragment in message and str(path) in message
    assert "python -m convert normalize" in message  # the fix
    assert "\n" not in message


def test_an_initial_potential_is_written_as_version_5_and_only_there(tmp_path, tiny_cnn):
    """v_init ≠ 0: a version-5 file with the key, read back equal; a spec at rest keeps its older version."""
    spec = dataclasses.replace(tiny_cnn, v_init=0.5, reset="subtract")
    save_spec(spec, tmp_path / "v.npz")
    header = json.loads(bytes(np.load(tmp_path / "v.npz")["header"]).decode())
    assert header["format_version"] == 5 and header["v_init"] == 0.5 and header["readout"] == "spikes"
    back = load_spec(tmp_path / "v.npz")
    assert back == spec and back.v_init == 0.5 and back != dataclasses.replace(spec, v_init=0.0)
    save_spec(dataclasses.replace(spec, v_init=0.0), tmp_path / "rest.npz")
    assert json.loads(bytes(np.load(tmp_path / "rest.npz")["header"]).decode())["format_version"] == 1


def test_per_neuron_starts_are_written_as_version_6_and_only_there(tmp_path, tiny_cnn):
    """v_init_neurons: a version-6 file naming one float64 array per population, read back equal."""
    starts = [np.linspace(0, 0.9, n) for n in tiny_cnn.population_sizes]
    spec = dataclasses.replace(tiny_cnn, v_init=0.5, reset="subtract", v_init_neurons=starts)
    save_spec(spec, tmp_path / "n.npz")
    header = json.loads(bytes(np.load(tmp_path / "n.npz")["header"]).decode())
    assert header["format_version"] == 6 and header["v_init_neurons"][0] == "v_init_neurons.0"
    back = load_spec(tmp_path / "n.npz")
    assert back == spec and back != dataclasses.replace(spec, v_init_neurons=None)
    save_spec(dataclasses.replace(spec, v_init_neurons=None), tmp_path / "v5.npz")
    assert json.loads(bytes(np.load(tmp_path / "v5.npz")["header"]).decode())["format_version"] == 5


def test_a_float32_file_is_half_the_size_and_runs_the_same_in_float32(tmp_path) -> None:
    """``save_spec(..., precision="float32")`` stores the weight and bias arrays as float32: half the bytes, and
    the float32 engines (which round every weight to float32 once) give the same spikes as from the float64
    file; the header's scalars stay float64."""
    from fastsim import simulate
    from fastsim.synthetic import mnist_like, random_spec

    spec = dataclasses.replace(random_spec("mlp", seed=3), reset="subtract")
    wide, narrow = save_spec(spec, tmp_path / "a.npz"), save_spec(spec, tmp_path / "b.npz", precision="float32")
    assert narrow.stat().st_size < 0.55 * wide.stat().st_size
    back = load_spec(narrow)
    assert all(la.weight.dtype == np.float32 for la in back.layers if hasattr(la, "weight"))
    assert back.thresholds == spec.thresholds and back.reset == "subtract"
    images = mnist_like(6, np.random.default_rng(0))
    for kernel in ("torch", "events"):
        a = simulate(load_spec(wide), images, steps=40, dtype="float32", kernel=kernel, record_neurons=True)
        b = simulate(back, images, steps=40, dtype="float32", kernel=kernel, record_neurons=True)
        for x, y in zip(a.neuron_counts, b.neuron_counts, strict=True):
            np.testing.assert_array_equal(x, y)
    with pytest.raises(ValueError, match="precision must be one of float64, float32"):
        save_spec(spec, tmp_path / "c.npz", precision="float16")
    assert not (tmp_path / "c.npz").exists()
