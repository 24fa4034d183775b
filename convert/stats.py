"""Per-layer activation statistics of a spec's ANN over calibration data, with bounded memory.

``collect_stats(spec, images)`` is the only code that runs the ANN for normalization. It streams over
batches and keeps, per spiking layer:

* the exact maximum activation (Algorithm 2 of Diehl et al. 2015);
* a uniform random sample (without replacement) of at most ``max_samples`` of the layer's *positive*
  activations, from which percentiles are read (Rueckauer et al. 2017 and snntoolbox take percentiles of the
  non-zero activations). Each value gets a seeded uniform key and the ``max_samples`` smallest keys are kept,
  so while a layer has at most ``max_samples`` positive values the percentiles are exact; beyond that the
  p-quantile's rank error has standard deviation sqrt(p (1 - p) / max_samples) (for p = 0.999 and 2·10⁶
  samples: 2.2·10⁻⁵, i.e. ±2 % of the 0.1 % tail).

:func:`save_stats` / :func:`load_stats` keep them in an ``.npz`` cache (:mod:`convert.contract.npzfile`): a JSON header
with the scalars and one array ``samples.<l>`` per spiking layer.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from convert.ann import activations, as_input
from convert.contract.npzfile import read_npz, write_npz
from convert.contract.spec import NetworkSpec, SpecError, family_of

STATS_FORMAT_VERSION = 1
_RECOMPUTE = "delete it: the statistics are recomputed"


def weights_fingerprint(spec: NetworkSpec) -> str:
    """sha256 over every weight array: ties statistics to the exact ANN they were measured on."""
    h = hashlib.sha256()
    layers, more_skips = spec.chain_form()  # a layer's first skip edge hashed as its fields, as before
    for layer in layers:
        w = getattr(layer, "weight", None)
        h.update(type(layer).__name__.encode())
        if w is not None:
            h.update(np.ascontiguousarray(w, dtype=np.float64).tobytes())
        for name in ("bias", "skip_weight"):  # absent: hashed as before biases and skips existed
            extra = getattr(layer, name, None)
            if extra is not None:
                h.update(name.encode() + np.ascontiguousarray(extra, dtype=np.float64).tobytes())
        if getattr(layer, "skip_source", None) is not None:
            h.update(repr((layer.skip_source, layer.skip_stride, layer.skip_padding)).encode())
        key_fields = family_of(layer).key_fields
        if key_fields is not None:  # a tap node's settings (the gate's kernel, stride, padding, ceil_mode)
            h.update(key_fields(layer))
    for edge in more_skips:  # the second and later skip edges into one layer (none: hashed as before)
        h.update(b"skip_weight" + np.ascontiguousarray(edge.weight, dtype=np.float64).tobytes())
        h.update(repr((edge.source, edge.target, edge.stride, edge.padding)).encode())
    return h.hexdigest()


@dataclass(frozen=True)
class ActivationStats:
    """Per spiking layer (in order): max activation, sample of positive activations, counts."""

    max: tuple[float, ...]
    samples: tuple[np.ndarray, ...]
    n_values: tuple[int, ...]  # activations seen per layer (zeros included)
    n_positive: tuple[int, ...]
    n_images: int
    fingerprint: str
    seed: int = 0
    meta: dict = field(default_factory=dict)

    def percentile(self, layer: int, p: float) -> float:
        """The p-th percentile (0-100) of layer ``layer``'s positive activations (0 if none was positive)."""
        if not 0 < p <= 100:
            raise ValueError(f"percentile must lie in (0, 100], got {p}")
        s = self.samples[layer]
        return float(np.percentile(s, p)) if len(s) else 0.0

    def exact(self, layer: int) -> bool:
        """True when the sample holds every positive activation of the layer."""
        return len(self.samples[layer]) == self.n_positive[layer]

    def check_matches(self, spec: NetworkSpec) -> None:
        if self.fingerprint != weights_fingerprint(spec):
            raise SpecError(
                "stats: these activation statistics were measured on different weights; "
                "run collect_stats on this spec (normalizations take the un-normalized spec and its stats)"
            )


def collect_stats(
    spec: NetworkSpec,
    images: np.ndarray,
    batch_size: int = 500,
    max_samples: int = 2_000_000,
    seed: int = 0,
    progress: bool = False,
) -> ActivationStats:
    """Stream ``images`` through the ANN of ``spec`` and summarise every spiking layer's activations
    (``progress``: a tqdm bar of images on stderr)."""
    if len(images) == 0:
        raise ValueError("collect_stats: no calibration images")
    n_layers = len(spec.spiking_indices)
    gen = torch.Generator().manual_seed(seed)
    maxima = [0.0] * n_layers
    n_values = [0] * n_layers
    n_pos = [0] * n_layers
    keep_vals: list[torch.Tensor] = [torch.empty(0, dtype=torch.float64) for _ in range(n_layers)]
    keep_keys: list[torch.Tensor] = [torch.empty(0, dtype=torch.float64) for _ in range(n_layers)]
    # the slowest step of a conversion (16-90 s on the main job's 20 000 images): a bar on stderr, nothing else
    with tqdm(total=len(images), desc="activation stats", unit="img", disable=not progress) as bar:
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            acts, _ = activations(spec, as_input(spec, batch))
            for li, a in enumerate(acts):
                pos = a[a > 0]
                n_values[li] += a.numel()
                n_pos[li] += pos.numel()
                if pos.numel():
                    maxima[li] = max(maxima[li], float(pos.max()))
                keys = torch.rand(pos.numel(), generator=gen, dtype=torch.float64)
                if 0 < max_samples <= len(keep_keys[li]):  # full: only keys below the largest kept one can enter
                    enter = keys < keep_keys[li].max()
                    pos, keys = pos[enter], keys[enter]
                vals = torch.cat([keep_vals[li], pos])
                allk = torch.cat([keep_keys[li], keys])
                if len(allk) > max_samples:
                    idx = torch.topk(allk, max_samples, largest=False).indices
                    vals, allk = vals[idx], allk[idx]
                keep_vals[li], keep_keys[li] = vals, allk
            bar.update(len(batch))
    return ActivationStats(
        max=tuple(maxima),
        samples=tuple(np.sort(v.numpy()) for v in keep_vals),
        n_values=tuple(n_values),
        n_positive=tuple(n_pos),
        n_images=len(images),
        fingerprint=weights_fingerprint(spec),
        seed=seed,
        meta={"max_samples": max_samples, "batch_size": batch_size},
    )


def save_stats(stats: ActivationStats, path: str | os.PathLike[str]) -> Path:
    """Write ``stats`` to ``.npz`` atomically."""
    header = {
        "format_version": STATS_FORMAT_VERSION,
        "max": list(stats.max),
        "n_values": list(stats.n_values),
        "n_positive": list(stats.n_positive),
        "n_images": stats.n_images,
        "fingerprint": stats.fingerprint,
        "seed": stats.seed,
        "meta": stats.meta,
    }
    return write_npz(path, header, {f"samples.{i}": s for i, s in enumerate(stats.samples)})


def load_stats(path: str | os.PathLike[str]) -> ActivationStats:
    """Read :func:`save_stats`' file; a damaged one raises :class:`SpecError` naming the file and the fix."""
    header, arrays = read_npz(path, "stats", _RECOMPUTE)
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
