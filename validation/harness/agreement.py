"""Running an agreement check: two engines on one spec, identical inputs and independent Poisson inputs
(the comparisons themselves are :mod:`validation.harness.compare`).

Engines are named ``fastsim[:option...]`` or ``refsim[:device]``. fastsim's options, in any order: a dtype
(``float32`` or ``float64``, default float64), a product mode (``fp32``, ``tf32x2``, ``tf32x3``; default
fp32), a kernel (``torch``, ``events``, ``triton``; default torch) and a device (``cpu``, ``cuda``, ``cuda:N``;
default cpu), e.g. ``fastsim:float32:tf32x2:cuda`` or ``fastsim:float32:events``. Threshold margins (which
explain a count that differs by rounding) are measured by the torch kernel: an ``events`` engine has none,
and the other engine's margins explain the differences.
refsim's device: ``runtime``, ``cpp_standalone`` or ``cuda_standalone`` (default cpp_standalone). Third-party
libraries: ``norse``, ``snntorch``, ``sinabs``, ``spikingjelly`` (the spec's NIR graph as the library's
importer builds it) and ``<library>:adapter`` (with the importer's departures from NIR worked around;
:mod:`validation.harness.thirdparty`).
With a third-party engine every engine runs the spec the NIR graph encodes (the ``cascade`` schedule, reset to
zero, the thresholds as float32), and the report lists what of the spec the graph does not express. The report
(JSON, Markdown and a PNG of per-layer count differences) is written atomically under ``out``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import (
    check_outputs,
    provenance,
    write_bytes_atomic,
    write_json_atomic,
    write_text_atomic,
)
from convert.contract.records import SpikeRecord
from convert.contract.spec import NetworkSpec
from convert.encoding import poisson_spikes
from validation.harness.compare import compare_counts, compare_poisson, markdown
from validation.harness.engines import run
from validation.harness.thirdparty import LIBRARIES
from validation.markdown import table
from validation.significance import wilson_interval

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
    runner: Callable[..., SpikeRecord] | None = None,
    build_dir: Path | None = None,
) -> tuple[dict[str, Any], tuple[SpikeRecord, SpikeRecord]]:
    """Identical-input comparison on ``images`` (and, if ``poisson_images``, an independent-noise one).

    With a third-party engine, every engine runs the spec the NIR graph encodes (identical inputs only).
    ``runner``: how an engine runs (default here; :func:`validation.cluster.sharded` for a Dask cluster).
    ``build_dir``: where refsim builds its standalone projects (None: :func:`refsim.devices.default_build_root`)."""

    def run_engine(engine: str, spec: NetworkSpec, **kw: Any) -> SpikeRecord:
        if build_dir is not None and engine.startswith("refsim"):
            kw["build_dir"] = build_dir
        return (runner or _run)(engine, spec, **kw)

    nir_report = None
    if any(is_thirdparty(e) for e in engines):
        from validation.harness.thirdparty import graph_spec

        if poisson_images:
            raise ValueError("third-party engines run on identical inputs only: leave out --poisson-images")
        spec, lost = graph_spec(spec)
        nir_report = {"schedule": spec.schedule, "reset": spec.reset, "not_expressed": lost}
    idx = np.arange(len(images))
    if spec.encoding == "poisson":  # the pinned counter-based trains, given to every engine
        given: dict[str, Any] = {"spikes": poisson_spikes(images, idx, steps, seed, spec.max_rate_hz, spec.dt_ms)}
    else:  # analog input: the images are the identical input (a constant current, no noise)
        if poisson_images:
            raise ValueError(
                f"the spec's input is the analog current ({spec.encoding!r}): there is no Poisson noise to compare "
                "independently; leave out --poisson-images"
            )
        given = {"images": images}
    common = dict(steps=steps, seed=seed, labels=labels, image_indices=idx, record_neurons=True, progress=progress)
    # threshold margins (which explain a count that differs by rounding) cost a second, stepwise pass: they
    # are recorded only when the counts differ somewhere
    recs = tuple(run_engine(e, spec, margins=False, **given, **common) for e in engines)
    identical = compare_counts(*recs)
    if identical["mismatches"]:
        recs = tuple(
            run_engine(e, spec, **given, **common) if e.startswith("fastsim") else r
            for e, r in zip(engines, recs, strict=True)
        )
        identical = compare_counts(*recs)
    report: dict[str, Any] = {"engines": list(engines), "identical": identical}
    if nir_report is not None:
        report["nir"] = {**nir_report, **{e: r.meta for e, r in zip(engines, recs, strict=True) if is_thirdparty(e)}}
    if poisson_images:
        n = min(poisson_images, len(images))
        common = dict(steps=steps, seed=seed, labels=labels[:n], image_indices=idx[:n], progress=progress)
        pois = tuple(run_engine(e, spec, images=images[:n], **common) for e in engines)
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
    check_outputs(*paths)  # all three or none
    write_json_atomic(paths[0], report)
    write_text_atomic(paths[1], markdown(report))
    write_bytes_atomic(paths[2], plot_differences(recs, tuple(report["engines"])))
    return paths


def agreement_summary(
    spec: NetworkSpec,
    name: str,
    engines: tuple[str, str],
    images: int,
    steps: int,
    poisson: int,
    seed: int,
    root: Path | None,
    runs: Path,
    build_dir: Path | None = None,
) -> dict[str, Any]:
    """:func:`agreement` of ``spec`` (called ``name``, ``<dataset>-...``) on the first ``images`` test images,
    its report written under ``runs/agreement/``, Brian2's projects built in ``build_dir`` (default
    :func:`refsim.devices.default_build_root` of ``runs``); returns the one-line summary the reports tabulate."""
    import time

    from convert import datasets
    from refsim.devices import default_build_root

    ds = name.split("-")[0]
    test = datasets.load(ds, "test", root)
    start = time.perf_counter()
    report, _recs = agreement(
        spec,
        test.images[:images],
        test.labels[:images],
        steps,
        engines,
        seed=seed,
        poisson_images=poisson,
        build_dir=build_dir or default_build_root(runs),
    )
    wall = time.perf_counter() - start
    file = f"{name}-{spec.schedule}-{engines[0].replace(':', '_')}-vs-{engines[1].replace(':', '_')}"
    config = {"spec": name, "schedule": spec.schedule, "images": images, "steps": steps, "seed": seed}
    write_report(report, _recs, runs / "agreement", file, config)
    ident = report["identical"]
    summary = {
        "network": name,
        "schedule": spec.schedule,
        "engines": " vs ".join(engines),
        "images": images,
        "steps": steps,
        "exact_fraction": ident["exact_fraction"],
        "mismatches": ident["mismatches"],
        "explained": ident["mismatches_explained"],
        "prediction_agreement": ident["prediction_agreement"],
        "wall_s": round(wall, 1),
    }
    if "poisson" in report:
        summary["poisson"] = report["poisson"]
    print(f"  {file}: {100 * ident['exact_fraction']:.4f} % equal counts ({wall:.0f} s)", flush=True)
    return summary


def agreement_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Identical input spikes (the counter-based Poisson trains, fed to Brian2 as a SpikeGeneratorGroup): "
        "per-neuron spike counts of every layer and image compared.",
        "",
    ]
    header = ("network (spec)", "schedule", "engines", "images × steps", "equal per-neuron counts")
    lines += table(
        (*header, "mismatches (explained)", "same prediction", "wall (s)"),
        (
            (
                *(r["network"], r["schedule"], r["engines"], f"{r['images']} × {r['steps']}"),
                f"{100 * r['exact_fraction']:.4f} %",
                f"{r['mismatches']} ({r['explained']})",
                f"{100 * r['prediction_agreement']:.1f} %",
                f"{r['wall_s']:.0f}",
            )
            for r in rows
        ),
    )
    poisson = [r for r in rows if "poisson" in r]
    if poisson:
        lines += [
            "",
            "Independent Poisson draws (fastsim's counter-based generator vs Brian2's own PoissonGroup) on the same "
            "images: the two are different samples of the same input process, so agreement means accuracies "
            "within the 95 % interval of a difference of two binomial proportions, not equal counts.",
            "",
        ]
        body = []
        for r in poisson:
            p = r["poisson"]
            n = p["images"]
            cells = []
            for acc in p["accuracy"]:
                lo, hi = wilson_interval(round(acc * n), n)
                cells.append(f"{100 * acc:.1f} ({100 * lo:.1f}–{100 * hi:.1f})")
            body.append(
                (
                    *(r["network"], f"{n} × {p['steps']}", cells[0], cells[1]),
                    f"{100 * p['accuracy_difference']:+.1f}",
                    f"±{100 * p['interval_95']:.1f}",
                    "yes" if p["accuracy_within_interval"] else "no",
                )
            )
        header = ("network (spec)", "images × steps", "fastsim Poisson, accuracy % (95 % Wilson)")
        header += ("Brian2 PoissonGroup", "difference (pp)", "95 % interval of the difference (pp)", "within")
        lines += table(header, body)
    return "\n".join(lines) + "\n"
