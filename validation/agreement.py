"""Running an agreement check: two engines on one spec, identical inputs and independent Poisson inputs
(the comparisons themselves are :mod:`validation.compare`).

Engines are named ``fastsim[:option...]`` or ``refsim[:device]``. fastsim's options, in any order: a dtype
(``float32`` or ``float64``, default float64), a product mode (``fp32``, ``tf32x2``, ``tf32x3``; default
fp32), a kernel (``torch``, ``events``, ``triton``; default torch) and a device (``cpu``, ``cuda``, ``cuda:N``;
default cpu), e.g. ``fastsim:float32:tf32x2:cuda`` or ``fastsim:float32:events``. Threshold margins (which
explain a count that differs by rounding) are measured by the torch kernel: an ``events`` engine has none,
and the other engine's margins explain the differences.
refsim's device: ``runtime``, ``cpp_standalone`` or ``cuda_standalone`` (default cpp_standalone). Third-party
libraries: ``norse``, ``snntorch``, ``sinabs``, ``spikingjelly`` (the spec's NIR graph as the library's
importer builds it) and ``<library>:adapter`` (with the importer's departures from NIR worked around;
:mod:`validation.thirdparty`).
With a third-party engine every engine runs the spec the NIR graph encodes (the ``cascade`` schedule, reset to
zero, the thresholds as float32), and the report lists what of the spec the graph does not express. The report
(JSON, Markdown and a PNG of per-layer count differences) is written atomically under ``out``.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import provenance, write_bytes_atomic, write_json_atomic, write_text_atomic
from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec
from convert.encoding import poisson_spikes
from validation.compare import compare_counts, compare_poisson, markdown
from validation.engines import run
from validation.thirdparty import LIBRARIES

FASTSIM_OPTIONS = {
    "float32": "dtype",
    "float64": "dtype",
    "fp32": "matmul",
    "tf32x2": "matmul",
    "tf32x3": "matmul",
    "torch": "kernel",
    "events": "kernel",
    "triton": "kernel",
}


def parse_engine(text: str) -> tuple[str, dict[str, Any]]:
    name, _, option = text.partition(":")
    if name == "fastsim":
        options: dict[str, Any] = {"dtype": "float64", "record_margins": True}
        tokens = option.split(":") if option else []
        i = 0
        while i < len(tokens):
            token = tokens[i]
            if token in FASTSIM_OPTIONS:
                options[FASTSIM_OPTIONS[token]] = token
            elif token in ("cpu", "cuda"):
                if token == "cuda" and i + 1 < len(tokens) and tokens[i + 1].isdigit():  # cuda:N
                    token, i = f"cuda:{tokens[i + 1]}", i + 1
                options["device"] = token
            else:
                known = ", ".join([*FASTSIM_OPTIONS, "cpu", "cuda[:N]"])
                raise ValueError(f"engine {text!r}: unknown fastsim option {token!r} (known: {known})")
            i += 1
        return name, options
    if name == "refsim":
        return name, {"device": option or "cpp_standalone"}
    if name in LIBRARIES:
        if option not in ("", "adapter"):
            raise ValueError(f"engine {text!r}: {name} takes no option but `adapter`")
        return name, {"adapter": option == "adapter"}
    libs = "|".join(LIBRARIES)
    raise ValueError(f"engine must be fastsim[:option...], refsim[:device] or {{{libs}}}[:adapter], got {text!r}")


def is_thirdparty(engine: str) -> bool:
    return engine.partition(":")[0] in LIBRARIES


def _run(engine: str, spec: NetworkSpec, margins: bool = True, **kw: Any) -> SpikeRecord:
    name, options = parse_engine(engine)
    if name == "fastsim" and (kw.get("spikes") is None or not margins or options.get("kernel") == "events"):
        options.pop("record_margins")
    return run(name, spec, **kw, **options)


def agreement(
    spec: NetworkSpec,
    images: np.ndarray,
    labels: np.ndarray,
    steps: int,
    engines: tuple[str, str],
    seed: int = 0,
    poisson_images: int = 0,
    progress: bool = False,
) -> tuple[dict[str, Any], tuple[SpikeRecord, SpikeRecord]]:
    """Identical-input comparison on ``images`` (and, if ``poisson_images``, an independent-noise one).

    With a third-party engine, every engine runs the spec the NIR graph encodes (identical inputs only)."""
    nir_report = None
    if any(is_thirdparty(e) for e in engines):
        from validation.thirdparty import graph_spec

        if poisson_images:
            raise ValueError("third-party engines run on identical inputs only: leave out --poisson-images")
        spec, lost = graph_spec(spec)
        nir_report = {"schedule": spec.schedule, "reset": spec.reset, "not_expressed": lost}
    idx = np.arange(len(images))
    spikes = poisson_spikes(images, idx, steps, seed, spec.max_rate_hz, spec.dt_ms)
    common = dict(steps=steps, seed=seed, labels=labels, image_indices=idx, record_neurons=True, progress=progress)
    # threshold margins (which explain a count that differs by rounding) cost a second, stepwise pass: they
    # are recorded only when the counts differ somewhere
    recs = tuple(_run(e, spec, margins=False, spikes=spikes, **common) for e in engines)
    identical = compare_counts(*recs)
    if identical["mismatches"]:
        recs = tuple(
            _run(e, spec, spikes=spikes, **common) if e.startswith("fastsim") else r
            for e, r in zip(engines, recs, strict=True)
        )
        identical = compare_counts(*recs)
    report: dict[str, Any] = {"engines": list(engines), "identical": identical}
    if nir_report is not None:
        report["nir"] = {**nir_report, **{e: r.meta for e, r in zip(engines, recs, strict=True) if is_thirdparty(e)}}
    if poisson_images:
        n = min(poisson_images, len(images))
        common = dict(steps=steps, seed=seed, labels=labels[:n], image_indices=idx[:n], progress=progress)
        pois = tuple(_run(e, spec, images=images[:n], **common) for e in engines)
        report["poisson"] = compare_poisson(*pois)
    return report, recs


def plot_differences(recs: tuple[SpikeRecord, SpikeRecord], engines: tuple[str, str]) -> bytes:
    """PNG: per layer, a scatter of per-neuron counts of engine A against engine B."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    layers = len(recs[0].neuron_counts)
    fig, axes = plt.subplots(1, layers, figsize=(3.2 * layers, 3.2), squeeze=False)
    for li, ax in enumerate(axes[0]):
        a, b = recs[0].neuron_counts[li].ravel(), recs[1].neuron_counts[li].ravel()
        ax.scatter(a, b, s=3, alpha=0.4)
        top = max(a.max(initial=0), b.max(initial=0), 1)
        ax.plot([0, top], [0, top], "k:", linewidth=0.8)
        ax.set_title(f"layer {li}: {np.mean(a == b) * 100:.3f} % equal", fontsize=8)
        ax.set_xlabel(engines[0], fontsize=8)
        ax.set_ylabel(engines[1], fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def write_report(report: dict[str, Any], recs, out: Path, name: str, config: dict[str, Any]) -> list[Path]:
    report = {"title": name, "config": config, **report, **provenance(config, config.get("seed"))}
    paths = [out / f"{name}.json", out / f"{name}.md", out / f"{name}.png"]
    write_json_atomic(paths[0], report)
    write_text_atomic(paths[1], markdown(report))
    write_bytes_atomic(paths[2], plot_differences(recs, tuple(report["engines"])))
    return paths
