"""SpikeRecord: the one simulator-neutral result type returned by fastsim and refsim.

validation/ reads only SpikeRecords and specs, never Brian2 or torch objects. A record holds, per image:

* ``output_counts`` (N, C, K): cumulative output-layer spike counts after ``checkpoints[c]`` steps;
* ``layer_counts`` (N, L): total spikes of each spiking layer over the whole run;
* ``neuron_counts``: optionally, per spiking layer an (N, n_l) array of per-neuron spike counts;
* ``first_spike_step`` (N,): the 0-based step index of the first output spike, -1 if there was none;
* ``synops`` (N, L): synaptic events into each spiking layer, Σ_t Σ_i s_{l-1,i}(t) · fanout_i (for the
  ``current`` encoding the analog input x_i takes the place of s_0,i);
* ``synops_curve`` (N, K, L) float64, optional: the same sums over the steps t < checkpoints[k] only; its last
  checkpoint equals ``synops`` (None in records written before it existed);
* ``readout``: the spec's readout, ``"spikes"`` or ``"membrane"``; ``output_potential`` (N, K, C) float64:
  the output layer's membrane v_L after ``checkpoints[k]`` steps, required for (and recorded only by) the
  ``membrane`` readout. A membrane output layer never spikes: its ``output_counts`` are all zero and
  ``first_spike_step`` is -1 for every image;
* ``labels``, ``image_indices`` (N,): the true classes and the images' indices in their dataset split;
* ``margins``: optionally, per spiking layer an (N, n_l) array of min over the threshold checks of
  |v − θ| / θ, the closest relative approach of each membrane to its threshold (what explains a count that
  flips between float32 and float64 arithmetic).

Readout (docs/semantics.md): ``spikes``: the class is the argmax of the output counts so far, ties broken by
the lowest index; an image with no output spike at all is predicted as -1 and counts as wrong. ``membrane``:
the argmax of the output potential, ties broken by the lowest index; an image whose output potentials are
all equal (all zero, say: no input reached the output layer) is predicted as -1 and counts as wrong.
"""

from __future__ import annotations

import json
import os
import zipfile
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from convert.contract.provenance import atomic_path

RECORD_FORMAT_VERSION = 1  # readout, output_potential and synops_curve are optional: version-1 files load
READOUTS = ("spikes", "membrane")
_OPTIONAL_ARRAYS = ("output_potential", "synops_curve")


def default_checkpoints(steps: int) -> np.ndarray:
    """1, 2, 5, 10, 20, 50, ... up to ``steps``, always ending with ``steps`` itself."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    points = {steps}
    decade = 1
    while decade <= steps:
        points.update(m * decade for m in (1, 2, 5) if m * decade <= steps)
        decade *= 10
    return np.asarray(sorted(points), dtype=np.int64)


def checked_checkpoints(checkpoints: Any, steps: int) -> np.ndarray:
    """The checkpoints every simulator records at: ``default_checkpoints(steps)`` when None; otherwise
    strictly increasing step counts in [1, steps], with ``steps`` appended when they stop before it, so that a
    record's last checkpoint (``SpikeRecord.steps``) is always the whole run. Anything else is a ValueError."""
    if checkpoints is None:
        return default_checkpoints(steps)
    c = np.asarray(checkpoints, dtype=np.int64).reshape(-1)
    if len(c) == 0 or np.any(np.diff(c) <= 0) or c[0] < 1 or c[-1] > steps:
        got = np.asarray(checkpoints).tolist()
        raise ValueError(f"checkpoints must be increasing step counts in [1, {steps}], got {got}")
    return c if c[-1] == steps else np.append(c, steps)


def predict(counts: np.ndarray) -> np.ndarray:
    """Argmax over the last axis, lowest index on ties, -1 where every count is zero."""
    counts = np.asarray(counts)
    pred = np.argmax(counts, axis=-1)
    return np.where(counts.max(axis=-1) > 0, pred, -1)


def predict_potential(potential: np.ndarray) -> np.ndarray:
    """Argmax over the last axis, lowest index on ties, -1 where every potential is equal (e.g. all zero)."""
    potential = np.asarray(potential)
    pred = np.argmax(potential, axis=-1)
    return np.where(potential.max(axis=-1) > potential.min(axis=-1), pred, -1)


@dataclass(frozen=True, eq=False)
class SpikeRecord:
    checkpoints: np.ndarray
    output_counts: np.ndarray
    layer_counts: np.ndarray
    first_spike_step: np.ndarray
    synops: np.ndarray
    labels: np.ndarray
    image_indices: np.ndarray
    neuron_counts: tuple[np.ndarray, ...] | None = None
    margins: tuple[np.ndarray, ...] | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    readout: str = "spikes"
    output_potential: np.ndarray | None = None
    synops_curve: np.ndarray | None = None

    def __post_init__(self) -> None:
        n = len(self.labels)
        for name in ("output_counts", "layer_counts", "first_spike_step", "synops", "image_indices"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"SpikeRecord.{name} has {len(getattr(self, name))} rows for {n} images")
        if self.output_counts.shape[1] != len(self.checkpoints):
            raise ValueError("SpikeRecord.output_counts: one column per checkpoint expected")
        if self.readout not in READOUTS:
            raise ValueError(f"SpikeRecord.readout must be one of {READOUTS}, got {self.readout!r}")
        if self.readout == "membrane" and self.output_potential is None:
            raise ValueError("SpikeRecord.output_potential: a membrane readout needs the output potentials")
        expected = {
            "output_potential": self.output_counts.shape,
            "synops_curve": (n, len(self.checkpoints), self.synops.shape[1] if self.synops.ndim == 2 else 0),
        }
        for name, shape in expected.items():
            value = getattr(self, name)
            if value is not None and tuple(np.shape(value)) != tuple(shape):
                raise ValueError(f"SpikeRecord.{name} has shape {np.shape(value)}, expected {tuple(shape)}")

    @property
    def n_images(self) -> int:
        return len(self.labels)

    @property
    def steps(self) -> int:
        return int(self.checkpoints[-1])

    def _predict(self, index: Any) -> np.ndarray:
        if self.readout == "membrane":
            return predict_potential(self.output_potential[:, index])
        return predict(self.output_counts[:, index])

    def predictions(self, checkpoint: int = -1) -> np.ndarray:
        """Predicted classes after ``checkpoints[checkpoint]`` steps, by the record's readout (-1: undecided,
        i.e. no output spike yet, or all output potentials equal)."""
        return self._predict(checkpoint)

    def accuracy(self, checkpoint: int = -1) -> float:
        return float(np.mean(self.predictions(checkpoint) == self.labels)) if self.n_images else float("nan")

    def accuracy_curve(self) -> np.ndarray:
        """Accuracy at every checkpoint, shape (K,)."""
        pred = self._predict(slice(None))  # (N, K)
        return np.mean(pred == self.labels[:, None], axis=0)

    def no_spike_fraction(self, checkpoint: int = -1) -> float:
        """Fraction of images without any output spike (1 for a ``membrane`` readout, whose output layer
        never spikes; see :meth:`undecided_fraction` for the images counted wrong by either readout)."""
        return float(np.mean(self.output_counts[:, checkpoint].max(axis=-1) == 0))

    def undecided_fraction(self, checkpoint: int = -1) -> float:
        """Fraction of images predicted -1 (counted as wrong): no output spike (``spikes``) or all output
        potentials equal (``membrane``)."""
        return float(np.mean(self.predictions(checkpoint) == -1))

    def synops_at(self, checkpoint_index: int) -> np.ndarray:
        """Synaptic events per image (N,) over all layers in the first ``checkpoints[checkpoint_index]`` steps."""
        if self.synops_curve is None:
            raise ValueError("SpikeRecord.synops_curve is None (a record written before it was recorded)")
        return self.synops_curve[:, checkpoint_index].sum(axis=1)

    def with_meta(self, **meta: Any) -> SpikeRecord:
        return replace(self, meta={**self.meta, **meta})

    # ------------------------------------------------------------------------------------- persistence
    def to_arrays(self) -> dict[str, np.ndarray]:
        arrays = {
            name: np.asarray(getattr(self, name))
            for name in (
                "checkpoints",
                "output_counts",
                "layer_counts",
                "first_spike_step",
                "synops",
                "labels",
                "image_indices",
            )
        }
        for name in ("neuron_counts", "margins"):
            for i, values in enumerate(getattr(self, name) or ()):
                arrays[f"{name}_{i}"] = np.asarray(values)
        for name in _OPTIONAL_ARRAYS:
            if getattr(self, name) is not None:
                arrays[name] = np.asarray(getattr(self, name))
        return arrays

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write one ``.npz`` (arrays + a JSON ``header``) atomically."""
        header = {"format_version": RECORD_FORMAT_VERSION, "meta": self.meta, "readout": self.readout}
        arrays = self.to_arrays()
        arrays["header"] = np.frombuffer(json.dumps(header, default=_jsonable).encode(), dtype=np.uint8)
        with atomic_path(path, suffix=".npz") as tmp:
            np.savez_compressed(tmp, **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SpikeRecord:
        try:
            with np.load(path, allow_pickle=False) as z:
                data = {k: z[k] for k in z.files}
        except (OSError, ValueError, zipfile.BadZipFile) as err:
            raise ValueError(f"{path}: not a readable SpikeRecord file ({err})") from err
        header = json.loads(bytes(data.pop("header")).decode())
        if header.get("format_version", 0) > RECORD_FORMAT_VERSION:
            raise ValueError(f"{path}: record format {header['format_version']} is newer than this code")
        per_layer = {}
        for name in ("neuron_counts", "margins"):
            keys = sorted((k for k in data if k.startswith(name + "_")), key=lambda k: int(k.rsplit("_", 1)[1]))
            per_layer[name] = tuple(data.pop(k) for k in keys) or None
        optional = {name: data.pop(name, None) for name in _OPTIONAL_ARRAYS}  # absent from older files
        readout = header.get("readout", "spikes")  # records written before the readout existed: spikes
        return cls(**data, **per_layer, **optional, readout=readout, meta=header.get("meta", {}))


def concatenate(records: list[SpikeRecord]) -> SpikeRecord:
    """Join records of consecutive image batches (same checkpoints) into one."""
    if not records:
        raise ValueError("concatenate: no records")
    first = records[0]
    for r in records[1:]:
        if not np.array_equal(r.checkpoints, first.checkpoints):
            raise ValueError("concatenate: records have different checkpoints")
        if r.readout != first.readout:
            raise ValueError(f"concatenate: records have different readouts ({first.readout}, {r.readout})")
    arrays = {
        name: np.concatenate([getattr(r, name) for r in records])
        for name in ("output_counts", "layer_counts", "first_spike_step", "synops", "labels", "image_indices")
    }
    for name in ("neuron_counts", "margins"):
        arrays[name] = None
        if all(getattr(r, name) is not None for r in records):
            parts = zip(*(getattr(r, name) for r in records), strict=True)
            arrays[name] = tuple(np.concatenate(p) for p in parts)
    for name in _OPTIONAL_ARRAYS:  # kept only if every part has it
        values = [getattr(r, name) for r in records]
        arrays[name] = np.concatenate(values) if all(v is not None for v in values) else None
    return SpikeRecord(checkpoints=first.checkpoints, meta=dict(first.meta), readout=first.readout, **arrays)


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


class OneClassWarning(UserWarning):
    """A simulated network that gave every image one class (or none): the sign of a broken conversion."""


def one_class_warning(record: SpikeRecord) -> str | None:
    """What to say when every image of ``record`` (more than one) got the same prediction at its last
    checkpoint, the sign of a broken conversion, with the advice for the record's reset; None otherwise.
    (torchvision's resnet18 and vgg11_bn converted with a reset to zero gave one class for every image.)"""
    predictions = record.predictions()
    if len(predictions) < 2 or len(set(predictions.tolist())) > 1:
        return None
    what = "no decision (no output spike)" if predictions[0] < 0 else f"class {int(predictions[0])}"
    if record.meta.get("reset") == "zero":
        advice = (
            "a reset to zero discards the charge above the threshold at every spike, which deep networks do not "
            "survive: convert it with reset by subtraction (convert.to_snn's default; --reset subtract), or try "
            "another method or threshold, or more steps"
        )
    else:
        advice = "try another normalization (method, threshold) or more steps"
    return f"every one of the {len(predictions)} images got {what}: the conversion is likely broken; {advice}"


def record_summary(record: SpikeRecord) -> str:
    """One line: images, steps, accuracy (by the record's readout) and the fraction counted wrong undecided."""
    undecided = "with all output potentials equal" if record.readout == "membrane" else "without an output spike"
    return (
        f"{record.n_images} images x {record.steps} steps: accuracy {100 * record.accuracy():.2f} % "
        f"({record.readout} readout; {100 * record.undecided_fraction():.2f} % {undecided}, counted wrong)"
    )
