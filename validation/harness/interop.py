"""The NIR conformance table: each third-party library × network × {as imported, with adapter}, against fastsim.

For every spec, the NIR graph (:func:`convert.nir_export.to_nir`, lossy for a delay spec: the graph is the
cascade schedule's) runs in each library (:mod:`validation.harness.thirdparty`) on the same counter-based Poisson input
spikes as fastsim (float64) on the spec the graph encodes; a row gives the fraction of (image, neuron) spike
counts that equal fastsim's over all spiking layers, the prediction agreement, the library's accuracy and
fastsim's, the ANN's accuracy on the same images, and the wall time. A run the library cannot complete is a row
with its error. :func:`write` puts the results in ``docs/results/interop.json`` and the table in
``docs/interop.md``; tests/validation/test_interop.py checks that the two agree and recomputes each row's
verdict on small networks.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import check_outputs, provenance, write_json_atomic, write_text_atomic
from convert.contract.spec import NetworkSpec
from validation.harness.compare import compare_counts
from validation.harness.thirdparty import LIBRARIES, ThirdPartyError, graph_spec, library
from validation.markdown import table as md_table

MODES = ("as imported", "adapter")


@dataclass(frozen=True)
class InteropConfig:
    specs: tuple[str, ...] = ("mnist-mlp-data", "mnist-cnn-data")
    dataset: str = "mnist"
    images: int = 1000
    steps: int = 100
    seed: int = 0
    libraries: tuple[str, ...] = tuple(LIBRARIES)
    #: at most this many images for a library that runs one image at a time as imported (Norse: batched input
    #: fails on NIR's Flatten; a batchless run is correct but slow)
    unbatched_images: int = 100
    extra: dict[str, Any] = field(default_factory=dict)


VERDICTS = {
    "exact": "every count equal to fastsim's",
    "rounding": "every differing count explained by float32 rounding: the membrane came within 1e-4·θ of the "
    "threshold in that neuron or upstream in the same image",
    "differs": "counts differ beyond rounding",
    "fails": "the library raises an error on the graph",
}


def verdict(cell: dict[str, Any]) -> str:
    """One of :data:`VERDICTS` for a cell."""
    if "error" in cell:
        return "fails"
    if cell["exact_fraction"] == 1.0:
        return "exact"
    return "rounding" if cell["mismatches_unexplained"] == 0 else "differs"


def run_cell(name: str, spec: NetworkSpec, spikes: np.ndarray, labels: np.ndarray, steps: int, adapter: bool, ref):
    """One library × mode on the given spikes, compared with the fastsim record ``ref`` of the same images."""
    from validation.harness.engines import run

    start = time.perf_counter()
    idx = ref.image_indices
    try:
        rec = run(name, spec, spikes=spikes, steps=steps, labels=labels, image_indices=idx, adapter=adapter)
    except ThirdPartyError as err:
        return {"error": str(err).split("; engine ")[0], "wall_s": time.perf_counter() - start, "images": len(idx)}
    ident = compare_counts(ref, rec)
    return {
        "images": int(rec.n_images),
        "exact_fraction": ident["exact_fraction"],
        "layers_exact": [x["exact_fraction"] for x in ident["layers"]],
        "mismatches": ident["mismatches"],
        "mismatches_unexplained": ident["mismatches_unexplained"],
        "prediction_agreement": ident["prediction_agreement"],
        "accuracy": rec.accuracy(),
        "fastsim_accuracy": ref.accuracy(),
        "wall_s": time.perf_counter() - start,
    }


def run_interop(cfg: InteropConfig, root: Path | None, specs_dir: Path) -> dict[str, Any]:
    """Every (spec, library, mode) cell; see the module docstring."""
    from convert import ann, datasets
    from convert.contract.io import load_spec
    from convert.encoding import poisson_spikes
    from validation.harness.engines import run

    split = datasets.load(cfg.dataset, "test", root)
    images, labels = split.images[: cfg.images], split.labels[: cfg.images]
    idx = np.arange(len(images))
    rows = []
    for name in cfg.specs:
        spec = load_spec(specs_dir / f"{name}.npz")
        gspec, lost = graph_spec(spec)
        spikes = poisson_spikes(images, idx, cfg.steps, cfg.seed, gspec.max_rate_hz, gspec.dt_ms)
        start = time.perf_counter()
        ref = run(
            "fastsim",
            gspec,
            spikes=spikes,
            steps=cfg.steps,
            labels=labels,
            image_indices=idx,
            dtype="float64",
            record_neurons=True,
            record_margins=True,  # what explains a count that float32 rounding flips
        )
        ref_wall = time.perf_counter() - start
        network = {
            "spec": name,
            "ann_accuracy": ann.accuracy(spec, images, labels),
            "fastsim_accuracy": ref.accuracy(),
            "fastsim_wall_s": ref_wall,
            "not_expressed": lost,
            "cells": {},
        }
        for lib_name in cfg.libraries:
            lib = library(lib_name)
            for mode in MODES:
                adapter = mode == "adapter"
                n = len(images)
                if not adapter and lib_name == "norse":
                    n = min(n, cfg.unbatched_images)
                sub = _head(ref, n)
                cell = run_cell(lib_name, gspec, spikes[:n], labels[:n], cfg.steps, adapter, sub)
                cell["verdict"] = verdict(cell)
                cell["version"] = lib.version()
                network["cells"][f"{lib_name}/{mode}"] = cell
        rows.append(network)
    return {"config": _config(cfg), "networks": rows, "departures": _departures(cfg.libraries)}


def _head(record, n: int):
    """The first n images of a record (the reference for a cell run on fewer images)."""
    from dataclasses import replace

    if n == record.n_images:
        return record
    arrays = {
        k: getattr(record, k)[:n]
        for k in ("output_counts", "layer_counts", "first_spike_step", "synops", "labels", "image_indices")
    }
    return replace(
        record,
        **arrays,
        neuron_counts=tuple(c[:n] for c in record.neuron_counts),
        margins=None if record.margins is None else tuple(m[:n] for m in record.margins),
    )


def _config(cfg: InteropConfig) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in cfg.__dict__.items()}


def _departures(libraries: tuple[str, ...]) -> dict[str, Any]:
    out = {}
    for name in libraries:
        lib = library(name)
        out[name] = {"importer": lib.IMPORTER, "departures": list(lib.DEPARTURES), "adapter": list(lib.ADAPTER)}
    return out


COMMAND = "SNN_DATA=data .venv/bin/python -m validation interop --images 1000 --steps 100"


def table(results: dict[str, Any]) -> str:
    """The Markdown conformance table of a results dict."""
    rows = []
    for net in results["networks"]:
        for key, cell in net["cells"].items():
            lib, mode = key.split("/")
            head = (f"{lib} {cell['version']}", net["spec"], mode, cell["images"], cell["verdict"])
            if "error" in cell:
                fails = f"fails: {cell['error'].split(': ', 1)[-1][:90]}"
                rows.append((*head, fails, "–", "–", "–", "–", f"{cell['wall_s']:.0f} s"))
                continue
            rows.append(
                (
                    *head,
                    f"{100 * cell['exact_fraction']:.3f} %",
                    f"{100 * cell['prediction_agreement']:.1f} %",
                    f"{100 * cell['accuracy']:.1f} %",
                    f"{100 * cell['fastsim_accuracy']:.1f} %",
                    f"{100 * net['ann_accuracy']:.1f} %",
                    f"{cell['wall_s']:.0f} s",
                )
            )
    header = ("library", "network", "mode", "images", "verdict", "exact counts", "predictions agree", "accuracy")
    return "\n".join(md_table((*header, "fastsim", "ANN", "wall"), rows)) + "\n"


def markdown(results: dict[str, Any]) -> str:
    """docs/interop.md: the table, what each importer does differently from NIR, and the command."""
    cfg = results["config"]
    lines = [
        "# Running the NIR export in other libraries: conformance",
        "",
        f"Each spec's NIR graph (`python -m convert export-nir --lossy`: the delay-schedule specs export as the "
        f"cascade schedule, which is what NIR's IF graphs mean) run in each library on the same {cfg['steps']}-step "
        f"Poisson input spikes (seed {cfg['seed']}) of the first {cfg['images']} {cfg['dataset']} test images as "
        "fastsim (float64) on the spec the graph encodes. *exact counts*: the fraction of (image, neuron) spike "
        "counts, over all spiking layers, equal to fastsim's. *as imported*: the module the library's documented "
        "importer builds, nothing changed; *adapter*: the same module with the importer's departures from NIR "
        "(listed below) worked around. The libraries compute in float32, fastsim here in float64. Norse as imported "
        f"runs one image at a time (at most {cfg['unbatched_images']} images): batched input fails on NIR's Flatten.",
        "",
        table(results),
        "Verdicts: " + "; ".join(f"*{k}*: {v}" for k, v in VERDICTS.items()) + ".",
        "",
        "Produced on the 2-core box (x86_64, 2 cores, torch 2.13.0 CPU) by",
        "",
        "```bash",
        COMMAND,
        "```",
        "",
        "which writes this page and `docs/results/interop.json` (config, versions, git commit, every cell). "
        "`tests/validation/test_interop.py` checks that this table is the one the results file gives, and recomputes "
        "each row's verdict (exact, differs, fails) on small networks.",
        "",
        "## How each importer departs from NIR, and what the adapter changes",
        "",
    ]
    for name, d in results["departures"].items():
        lines += [f"### {name}: `{d['importer']}`", ""]
        lines += [f"- departs: {x}" for x in d["departures"]]
        lines += [f"- adapter: {x}" for x in d["adapter"]]
        lines.append("")
    return "\n".join(lines)


def write(results: dict[str, Any], docs: Path) -> list[Path]:
    """docs/results/interop.json (with provenance) and docs/interop.md, atomically."""
    paths = [docs / "results" / "interop.json", docs / "interop.md"]
    check_outputs(*paths)  # both or none
    write_json_atomic(paths[0], {**results, **provenance(results["config"], results["config"]["seed"])})
    write_text_atomic(paths[1], markdown(results))
    return paths
