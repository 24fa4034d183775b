"""SpikeRecord: the readouts, the synaptic-event curve, persistence (old files included) and concatenation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from convert.contract.records import RECORD_FORMAT_VERSION, SpikeRecord, concatenate, predict_potential, record_summary

CHECKPOINTS = np.array([1, 5, 10])


def _record(readout: str = "spikes", n: int = 4, with_curve: bool = True) -> SpikeRecord:
    rng = np.random.default_rng(0)
    counts = np.cumsum(rng.integers(0, 3, size=(n, 3, 3)), axis=1)
    synops = rng.random((n, 2)) * 100
    curve = np.stack([synops * 0.1, synops * 0.5, synops], axis=1)
    potential = rng.normal(size=(n, 3, 3)) if readout == "membrane" else None
    return SpikeRecord(
        checkpoints=CHECKPOINTS,
        output_counts=np.zeros_like(counts) if readout == "membrane" else counts,
        layer_counts=counts[:, -1].sum(1, keepdims=True).repeat(2, axis=1),
        first_spike_step=np.full(n, -1 if readout == "membrane" else 0),
        synops=synops,
        labels=np.arange(n) % 3,
        image_indices=np.arange(n),
        readout=readout,
        output_potential=potential,
        synops_curve=curve if with_curve else None,
    )


def test_potential_readout_rule():
    """Argmax, lowest index on ties, -1 only where every potential is equal (all zero included)."""
    v = np.array([[0.5, 2.0, 2.0], [0.0, 0.0, 0.0], [-1.0, -1.0, -1.0], [-3.0, -1.0, -2.0], [1.0, 1.0, 0.0]])
    np.testing.assert_array_equal(predict_potential(v), [1, -1, -1, 1, 0])


def test_membrane_record_reads_the_potential():
    rec = _record("membrane")
    want = predict_potential(rec.output_potential)  # (N, K)
    for c in range(3):
        np.testing.assert_array_equal(rec.predictions(c), want[:, c])
    np.testing.assert_allclose(rec.accuracy_curve(), np.mean(want == rec.labels[:, None], axis=0))
    assert rec.accuracy() == np.mean(want[:, -1] == rec.labels)
    assert rec.no_spike_fraction() == 1.0 and rec.undecided_fraction() == np.mean(want[:, -1] == -1)
    assert "membrane readout" in record_summary(rec)


def test_readout_fields_are_checked():
    with pytest.raises(ValueError, match="output_potential"):
        _record("spikes").__class__(**{**_record("spikes").__dict__, "readout": "membrane"})
    with pytest.raises(ValueError, match="readout must be one of"):
        _record("spikes").__class__(**{**_record("spikes").__dict__, "readout": "rate"})
    with pytest.raises(ValueError, match="synops_curve has shape"):
        _record("spikes").__class__(**{**_record("spikes").__dict__, "synops_curve": np.zeros((4, 2, 2))})


def test_synops_at_sums_the_layers():
    rec = _record()
    np.testing.assert_array_equal(rec.synops_at(-1), rec.synops.sum(1))
    np.testing.assert_array_equal(rec.synops_at(1), rec.synops_curve[:, 1].sum(1))
    with pytest.raises(ValueError, match="synops_curve is None"):
        _record(with_curve=False).synops_at(0)


@pytest.mark.parametrize("readout", ["spikes", "membrane"])
def test_save_load_round_trip(readout, tmp_path):
    rec = _record(readout)
    rec.save(tmp_path / "r.npz")
    back = SpikeRecord.load(tmp_path / "r.npz")
    assert back.readout == readout
    for name in ("output_counts", "synops", "synops_curve", "output_potential", "labels"):
        np.testing.assert_array_equal(getattr(back, name), getattr(rec, name), err_msg=name)


def test_a_record_file_without_the_new_fields_loads(tmp_path):
    """A version-1 file written before readout, output_potential and synops_curve existed."""
    rec = _record(with_curve=False)
    arrays = rec.to_arrays()
    assert "synops_curve" not in arrays and "output_potential" not in arrays
    header = {"format_version": RECORD_FORMAT_VERSION, "meta": {}}  # no readout key
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez_compressed(tmp_path / "old.npz", **arrays)
    back = SpikeRecord.load(tmp_path / "old.npz")
    assert back.readout == "spikes" and back.synops_curve is None and back.output_potential is None
    np.testing.assert_array_equal(back.predictions(), rec.predictions())


def test_concatenate_keeps_the_new_fields():
    a, b = _record("membrane", n=2), _record("membrane", n=3)
    joined = concatenate([a, b])
    assert joined.readout == "membrane" and joined.n_images == 5
    np.testing.assert_array_equal(joined.output_potential, np.concatenate([a.output_potential, b.output_potential]))
    np.testing.assert_array_equal(joined.synops_curve, np.concatenate([a.synops_curve, b.synops_curve]))
    assert concatenate([_record(), _record(with_curve=False)]).synops_curve is None
    with pytest.raises(ValueError, match="different readouts"):
        concatenate([_record("spikes"), _record("membrane")])
