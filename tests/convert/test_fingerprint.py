"""Content fingerprints: equal content gives equal keys, any change that matters gives a new one."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from convert.contract.fingerprint import fingerprint, spec_fingerprint
from convert.contract.spec import Dense, Flatten, NetworkSpec


def _spec(w: np.ndarray, **fields) -> NetworkSpec:
    return NetworkSpec(input_shape=(1, 2, 2), layers=(Flatten(), Dense(w)), **fields)


def test_spec_fingerprint_follows_content_not_metadata():
    w = np.arange(8.0).reshape(2, 4) / 10
    base = spec_fingerprint(_spec(w))
    assert spec_fingerprint(_spec(w.copy(), provenance={"note": "renamed"})) == base
    w2 = w.copy()
    w2[1, 3] = np.nextafter(w2[1, 3], 1.0)  # one ulp
    changed = [
        _spec(w2),
        _spec(w, reset="subtract"),
        _spec(w, schedule="cascade"),
        _spec(w, max_rate_hz=500.0),
        _spec(w, encoding="current"),
        _spec(w, readout="membrane"),
        _spec(w, v_init=0.5),
        NetworkSpec(input_shape=(1, 2, 2), layers=(Flatten(), Dense(w, threshold=2.0))),
    ]
    keys = {spec_fingerprint(s) for s in changed}
    assert base not in keys and len(keys) == len(changed)


def test_default_readout_keeps_the_fingerprint_of_before_the_field():
    """The readout enters the hash only when it is not the default: every cached result keeps its key."""
    from convert.contract.fingerprint import _spec_content

    spec = _spec(np.arange(8.0).reshape(2, 4) / 10)
    content = _spec_content(spec)
    assert "readout" not in content
    # the key of a default spec is the hash of exactly the fields hashed before readout existed
    old = {k: content[k] for k in ("input_shape", "layers", "reset", "schedule", "dt_ms", "encoding")}
    old.update(max_rate_hz=spec.max_rate_hz, labels=spec.labels)
    assert spec_fingerprint(spec) == fingerprint(old)
    assert spec_fingerprint(dataclasses.replace(spec, readout="membrane")) != fingerprint(old)
    assert "v_init" not in content  # likewise the initial potential at its default 0
    assert spec_fingerprint(dataclasses.replace(spec, v_init=0.0)) == fingerprint(old)


def test_fingerprint_is_canonical_and_type_aware():
    assert fingerprint({"a": 1, "b": [1, 2]}) == fingerprint({"b": [1, 2], "a": 1})
    assert fingerprint({"a": 1}) != fingerprint({"a": 1.5})
    a = np.zeros(4, dtype=np.float32)
    assert fingerprint(a) != fingerprint(a.astype(np.float64))
    assert fingerprint(a) != fingerprint(a.reshape(2, 2))
    assert fingerprint((1, 2)) != fingerprint((12,))

    @dataclasses.dataclass
    class Cfg:
        x: int = 1

    assert fingerprint(Cfg()) == fingerprint(Cfg()) != fingerprint(Cfg(x=2))
    with pytest.raises(TypeError, match="cannot hash"):
        fingerprint(object())
