"""From a model to a checked spiking network in one call: :func:`to_snn`.

    import convert
    from fastsim import simulate

    spec, report = convert.to_snn(model, calibration="mnist")  # data-based, reset by subtraction, checked
    spec, report = convert.to_snn("net.pt2", calibration=images, method="robust", percentile=99.9)
    convert.save_spec(spec, "net.npz")
    record = simulate(spec, test_images, steps=300, labels=test_labels)  # kernel="auto": events on a CPU

It chains what the pipeline does for the paper's networks (:mod:`convert.pipeline`): the direct copy of the
model (:func:`convert.from_torch.from_torch` for an ``nn.Module``, :func:`~convert.from_torch.from_exported`
for a ``torch.export`` program or ``.pt2`` file), the ANN's activation statistics on the calibration images
(:func:`convert.stats.collect_stats`, with the main job's settings), the registered normalization method
(:mod:`convert.methods`) and a quick check of the result. ``python -m convert normalize --model F.pt2`` runs
this same function.

Reset by subtraction is the default here: an imported model is usually deeper than the paper's two, and with
a reset to zero such networks can lose their accuracy entirely (torchvision's resnet18 and vgg11_bn gave
13.4 %, one class for every image, against 91.6 % and 95.0 % with reset by subtraction). The paper's own rows
(:mod:`convert.pipeline`, ``convert normalize --model mlp|cnn|vgg|resnet``) keep Diehl et al.'s reset to zero.

**The checks.** The ANN's predictions of up to :data:`CHECK_IMAGES` calibration images (evenly spaced): a
:class:`ConversionWarning` when it gives all of them one class (an untrained model, or images scaled other than
it was trained on). The spiking network is checked where it runs: :func:`fastsim.simulate` (and
``python -m fastsim run``) warns with a :class:`~convert.contract.records.OneClassWarning` when every image of
a record gets one class (or none) while its labels hold several, with the advice for the spec's reset
(:func:`convert.contract.records.one_class_warning`). convert imports no simulator (tests/test_dependencies.py),
and a second step loop here would be one more simulator to hold to the semantics.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convert import datasets, methods
from convert.ann import predict
from convert.contract.spec import NetworkSpec
from convert.normalize import NormalizationReport
from convert.pipeline import MAIN_CALIB_IMAGES, MAIN_HOLDOUT, STATS_SETTINGS, calibration_images
from convert.stats import collect_stats

__all__ = ["CHECK_IMAGES", "ConversionWarning", "to_snn"]

CHECK_IMAGES = 256  # calibration images the ANN check predicts (evenly spaced over them)
SPEC_FIELDS = ("schedule", "encoding", "readout", "v_init", "max_rate_hz", "dt_ms")
RESETS = ("subtract", "zero")


class ConversionWarning(UserWarning):
    """A model whose ANN gives every calibration image one class: nothing a conversion could keep."""


def _method_options() -> tuple[str, ...]:
    return tuple(sorted({name for m in methods.all_methods() for name in m.options}))


def _split_options(options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(method options, spec fields); an unknown name is a TypeError listing the known ones."""
    method_names = _method_options()
    unknown = sorted(set(options) - set(method_names) - set(SPEC_FIELDS))
    if unknown:
        raise TypeError(
            f"to_snn: unknown option(s) {', '.join(unknown)}; the method options are {', '.join(method_names)} "
            f"and the spec fields {', '.join(SPEC_FIELDS)}"
        )
    return (
        {k: v for k, v in options.items() if k in method_names},
        {k: v for k, v in options.items() if k in SPEC_FIELDS},
    )


def _images(calibration: Any, dataset: str | None, root: Any) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The calibration images (uint8, or float in [0, 1], checked) and how they were chosen."""
    if calibration is None:
        return None, {"images": 0}
    if isinstance(calibration, str):
        if calibration not in datasets.DATASETS:
            raise ValueError(
                f"calibration: a dataset name must be one of {', '.join(datasets.DATASETS)}, got {calibration!r}"
            )
        if dataset not in (None, calibration):
            raise ValueError(f"calibration={calibration!r} but dataset={dataset!r}: the labels are the dataset's")
        images = calibration_images(calibration, root, MAIN_CALIB_IMAGES, MAIN_HOLDOUT)
        where = {"dataset": calibration, "split": "train", "first": MAIN_CALIB_IMAGES, "holdout": MAIN_HOLDOUT}
        return images, {"images": len(images), **where}
    if isinstance(calibration, torch.Tensor):
        calibration = calibration.detach().cpu().numpy()
    images = np.asarray(calibration)
    if images.ndim < 2 or len(images) == 0:
        raise ValueError(
            f"calibration: expected a non-empty batch of images (N, ...), got shape {images.shape}; "
            "or a dataset name (mnist, fashion)"
        )
    if images.dtype != np.uint8:
        if not (np.issubdtype(images.dtype, np.floating) or np.issubdtype(images.dtype, np.integer)):
            raise ValueError(f"calibration: images must be uint8 or float in [0, 1], got dtype {images.dtype}")
        bad = ~np.isfinite(images)
        if bad.any():
            raise ValueError(
                f"calibration: {int(bad.sum())} pixel values are NaN or infinite "
                f"(in {int(bad.reshape(len(images), -1).any(1).sum())} of {len(images)} images)"
            )
        if images.min() < 0 or images.max() > 1:
            raise ValueError(
                f"calibration: float pixel values must lie in [0, 1] (as the simulators' input), got "
                f"[{images.min():g}, {images.max():g}]; divide uint8 images by 255 or pass them as uint8"
            )
    return images, {"images": len(images)}


def _shape_of(images: np.ndarray | None, calibration: Any) -> tuple[int, ...]:
    """The input shape when none is given: the images' (a 2-d image gets one channel), else 1×28×28."""
    if images is None or isinstance(calibration, str) or images.ndim not in (2, 3, 4):
        return (1, 28, 28)
    return tuple(images.shape[1:]) if images.ndim != 3 else (1, *images.shape[1:])


def _copy(
    model: Any, input_shape: tuple[int, ...] | None, images, calibration, dataset, fields, normalize_input=None
) -> NetworkSpec:
    """The direct copy (θ = 1) of ``model``: an nn.Module, a torch.export program or a .pt2 path."""
    from torch.export import ExportedProgram

    from convert.from_torch import from_exported, from_torch, load_exported

    if input_shape is not None:
        input_shape = tuple(input_shape)
        if not input_shape or not all(isinstance(d, (int, np.integer)) and d > 0 for d in input_shape):
            raise ValueError(
                f"input_shape must be a tuple of positive ints (one sample, e.g. (1, 28, 28)), got {input_shape}"
            )
        input_shape = tuple(int(d) for d in input_shape)
    if isinstance(model, (str, os.PathLike)):
        model = load_exported(Path(model))
    if isinstance(model, ExportedProgram):
        spec = from_exported(model, dataset=dataset, normalize_input=normalize_input, **fields)
        if input_shape is not None and tuple(spec.input_shape) != input_shape:
            raise ValueError(
                f"input_shape={input_shape}, but the exported program takes inputs of shape {spec.input_shape}"
            )
        return spec
    if not isinstance(model, torch.nn.Module):
        raise TypeError(
            f"model must be a torch.nn.Module, a torch.export.ExportedProgram or the path of a .pt2 archive, "
            f"got {type(model).__name__}"
        )
    shape = input_shape or _shape_of(images, calibration)
    inferred = "" if input_shape is not None else " (the input shape was taken from the calibration images)"
    try:
        return from_torch(model, shape, dataset=dataset, normalize_input=normalize_input, **fields)
    except (RuntimeError, IndexError) as err:  # the shape propagation of one zero input failed
        detail = (str(err).strip().splitlines() or [""])[0][:300]
        raise ValueError(
            f"input_shape {shape}: the model does not run on an input of this shape ({type(err).__name__}: "
            f"{detail}); pass input_shape= (one sample, without the batch dimension){inferred}"
        ) from None
    except ValueError as err:  # from_torch's own message; say where an inferred shape came from
        if inferred and "input_shape" in str(err):
            raise ValueError(f"{err}{inferred}") from None
        raise


def _check_inputs(spec: NetworkSpec, images: np.ndarray) -> None:
    n = int(np.prod(images.shape[1:]))
    if n != spec.n_inputs:
        raise ValueError(
            f"calibration: one image has shape {tuple(images.shape[1:])} ({n} values), but the model takes "
            f"input_shape {spec.input_shape} ({spec.n_inputs} values)"
        )


def to_snn(
    model: Any,
    input_shape: tuple[int, ...] | None = None,
    calibration: Any = None,
    method: str | None = None,
    reset: str = "subtract",
    *,
    dataset: str | None = None,
    root: str | os.PathLike[str] | None = None,
    check: bool = True,
    progress: bool = False,
    normalize_input: tuple[Any, Any] | None = None,
    **options: Any,
) -> tuple[NetworkSpec, NormalizationReport]:
    """Convert ``model`` into a normalized spiking-network spec; returns ``(spec, report)``.

    * ``model``: an ``nn.Module`` that torch.fx can trace, a ``torch.export.ExportedProgram``, or the path of
      a ``.pt2`` archive (``torch.export.save``);
    * ``input_shape``: one sample's shape (an nn.Module only; default: the calibration images' shape, a 2-d
      image getting one channel, or (1, 28, 28));
    * ``calibration``: images (N, ...) as uint8 or float in [0, 1], or a dataset name (``"mnist"``,
      ``"fashion"``) for the main job's calibration set (its first 20 000 training images, leaving out the
      last 5 000; :func:`convert.pipeline.calibration_images`); needed by the methods that use activation
      statistics (``data``, ``robust``) and by the check;
    * ``method``: a registered method (:func:`convert.methods.names`: baseline, model, data, robust, qcfs,
      calibrated, calibrated-channel, calibrated-bc);
      default ``qcfs`` for a model with QCFS activations (:mod:`convert.qcfs`: no statistics, the copy's
      θ = λ), else ``data``;
    * ``reset``: ``"subtract"`` (the default here) or ``"zero"`` (the paper's);
    * ``dataset``: whose class names the spec's labels are (default: the calibration dataset's, if named);
    * ``check``: run the ANN check of the module docstring and warn (:class:`ConversionWarning`);
    * ``progress``: show a progress bar while the activation statistics are collected;
    * ``normalize_input``: ``(mean, std)`` of a ``transforms.Normalize`` the model was trained behind, folded
      into its first layer (calibration images stay raw, in [0, 1]); a model's own ``(x - mean) / std`` is
      folded without it (:mod:`convert.from_torch`);
    * ``options``: the method's options (``threshold``, ``percentile``, ``previous``, ``steps``, ``activity``) and the
      spec's fields (``schedule``, ``encoding``, ``readout``, ``v_init``, ``max_rate_hz``, ``dt_ms``); any other is
      a TypeError.

    ``report`` is the method's :class:`~convert.normalize.NormalizationReport` (per-layer divisors and
    thresholds; ``report.table()`` prints them); ``spec.provenance["to_snn"]`` records the calibration, the
    reset and the check. Bad inputs (NaN or out-of-range images, no images, a shape the model does not take)
    are ValueErrors that say what is wrong.
    """
    if reset not in RESETS:
        raise ValueError(f"reset must be one of {', '.join(RESETS)}, got {reset!r}")
    if method is not None:
        methods.get(method)  # an unknown name is a ValueError listing the methods, before any work
    method_options, fields = _split_options(options)
    images, calibration_info = _images(calibration, dataset, root)
    if dataset is None and isinstance(calibration, str):
        dataset = calibration
    base = _copy(model, input_shape, images, calibration, dataset, {**fields, "reset": reset}, normalize_input)
    if method is None:
        method = "qcfs" if "qcfs" in base.provenance else "data"
    normalizer = methods.get(method)
    if images is not None:
        _check_inputs(base, images)
    stats = None
    if normalizer.needs_stats or normalizer.needs_images:
        if images is None:
            raise ValueError(
                f"method {method!r} needs calibration images: pass calibration=images (uint8, or float in [0, 1]) "
                "or a dataset name (mnist, fashion)"
            )
    if normalizer.needs_stats:
        stats = collect_stats(base, images, progress=progress, **STATS_SETTINGS)
    spec, report = normalizer.apply(base, stats, images, **method_options)
    record: dict[str, Any] = {"calibration": calibration_info, "reset": reset}
    if check and images is not None:
        record["check"] = _check(base, images)
    provenance = {**spec.provenance, "to_snn": record}
    return dataclasses.replace(spec, provenance=provenance), report


def _check(base: NetworkSpec, images: np.ndarray) -> dict[str, Any]:
    """The ANN check of the module docstring: its numbers, and a ConversionWarning when it fails."""
    idx = np.unique(np.linspace(0, len(images) - 1, min(CHECK_IMAGES, len(images))).round().astype(np.int64))
    classes = sorted(set(predict(base, images[idx]).tolist()))
    if len(idx) >= 2 and len(classes) == 1:
        warnings.warn(
            f"to_snn: the ANN itself predicts class {classes[0]} for every one of {len(idx)} calibration "
            "images: is the model trained, and do the images (uint8, or float in [0, 1]) match what it was "
            "trained on?",
            ConversionWarning,
            stacklevel=3,
        )
    return {"images": len(idx), "ann_classes": len(classes)}
