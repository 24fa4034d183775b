"""Table 2: SNN test accuracy per dataset × model × row, at a common horizon T and at each row's own horizon.

``python -m validation table2`` runs (or resumes) every evaluation of :mod:`validation.paper.experiments`: one
long run per row (its checkpoints give the accuracy at T and at the row's horizon H, the time to accuracy
and the convergence verdict of :mod:`validation.paper.convergence`), with a 95 % Wilson interval over images for
every accuracy, exact McNemar tests on the same images (:func:`paired_tests`), the paper's claims checked
against them (:func:`validation.paper.table2_report.claims`) and the cost per classification in synaptic events
beside the ANN's MACs. :mod:`validation.paper.table2_report` writes ``table2.md``, ``table2.csv`` and ``table2.json``
(config, seeds, versions, git commit, and the content-addressed record file behind every accuracy) under
``runs/table2/<tag>/``. The replication's numbers
(10 000 ms, the whole test set) stand beside ours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from convert import ann, datasets
from convert.contract.provenance import provenance
from convert.contract.records import SpikeRecord
from convert.train import checkpoint_paths
from validation.harness.engines import run
from validation.paper import committed_parts
from validation.paper.convergence import checkpoint_index, convergence, correct_at
from validation.paper.experiments import EvalConfig, Job, build_specs, evaluate
from validation.paper.rows import VARIANTS, named, rows
from validation.paper.table2_report import claims, write_outputs
from validation.significance import mcnemar, wilson_interval

REPLICATION = {  # Table 2 of the replication: SNN test accuracy after 10 000 ms
    ("mnist", "mlp"): {"baseline": 98.64, "baseline-tuned": 98.68, "model": 98.65, "data": 98.66},
    ("mnist", "cnn"): {"baseline": 98.87, "baseline-tuned": 99.11, "model": 99.10, "data": 99.10},
    ("fashion", "mlp"): {"baseline": 89.75, "baseline-tuned": 90.00, "model": 89.69, "data": 89.85},
    ("fashion", "cnn"): {"baseline": 89.33, "baseline-tuned": 90.18, "model": 90.15, "data": 90.20},
}
PAIRS = tuple(REPLICATION)


def network_jobs(cfg: EvalConfig, built: dict, ds: str, model: str, row_names=None) -> dict[tuple[str, int], Job]:
    """Every (row, seed) record of one network (``row_names``: a subset of the rows; None: all)."""
    return {
        (r.name, seed): Job(built["specs"][r.name][0], ds, model, seed, *cfg.plan(r.name))
        for r in named(row_names)
        for seed in cfg.seeds
    }


def run_table2(
    cfg: EvalConfig,
    root: Path | None,
    runs: Path,
    pairs: tuple[tuple[str, str], ...] = PAIRS,
    progress: bool = True,
    estimate: bool = False,
    dask: str | None = None,
    publish: bool = False,
) -> dict[str, Any]:
    """Every (dataset, model, row, seed) evaluation; returns the results dictionary (also written).

    Threshold searches and statistics come first; then the simulations still missing are counted, and a
    progress bar in image-steps shows the ETA. ``estimate``: first print the expected wall time on this
    machine, from a short timed run of each network (:func:`expected_seconds`), and with ``dask`` on the
    cluster. ``dask``: a scheduler address or ``local:N`` (:mod:`validation.cluster`): the missing parts run
    there first, then the records are joined and the table built here as without it. Parts committed under
    ``docs/results/table2-full/parts`` (:mod:`validation.paper.committed_parts`) are read as cached ones;
    ``publish``: copy every finished part there, before simulating and after."""
    out = runs / "table2" / cfg.tag
    results: dict[str, Any] = {"config": cfg.to_dict(), "tag": cfg.tag, "entries": [], "paired": []}
    todo = [(ds, m) for ds, m in pairs if checkpoint_paths(runs, ds, m)[1].exists()]
    cache = runs / "table2"  # searches and records, keyed by content: shared by every tag (scale) of the table
    built = {(ds, m): build_specs(ds, m, root, runs, cfg, cache, progress) for ds, m in todo}
    jobs = {(ds, m): network_jobs(cfg, built[(ds, m)], ds, m, cfg.rows) for ds, m in todo}
    unique = {j.key(cfg): j for by_row in jobs.values() for j in by_row.values()}  # equal specs share a record
    if committed_parts.COMMITTED.is_dir():
        committed_parts.seed(unique.values(), cfg, cache)
    if publish:
        committed_parts.publish(unique.values(), cfg, cache)
    missing: dict[tuple[str, str], int] = {pair: 0 for pair in jobs}
    for j in unique.values():
        missing[(j.dataset, j.model)] += j.missing_image_steps(cfg, cache)
    total = sum(missing.values())
    if estimate and total:
        seconds = expected_seconds(built, missing, root, cfg)
        print(f"table2: {total:,} image-steps to simulate; expected wall time on this machine ~{_hms(seconds)}")
        if not dask:
            from validation import cluster

            print(cluster.estimate_lines(seconds, sum(len(j.missing_parts(cfg, cache)) for j in unique.values())))
    bar = tqdm(total=total, unit="img-step", unit_scale=True, desc="table2", disable=not progress or total == 0)
    if dask and total:
        from validation import cluster

        with cluster.connect(dask) as client:
            parts = cluster.missing_parts(list(unique.values()), cfg, root, cache)
            if estimate:
                print(cluster.estimate_lines(seconds, len(parts), sum(client.nthreads().values())))
            cluster.simulate_parts(client, parts, bar.update)
    for ds, model in todo:
        recs = network_records(cfg, jobs[(ds, model)], root, cache, bar.update)
        entries, correct = network_entries(cfg, built[(ds, model)], jobs[(ds, model)], recs, root, cache)
        results["entries"] += entries
        results["paired"] += paired_tests(ds, model, correct)
    bar.close()
    if publish:
        print(
            f"table2: {committed_parts.publish(unique.values(), cfg, cache)} new parts in {committed_parts.COMMITTED}"
        )
    results["claims"] = claims(results)
    results.update(provenance(cfg.to_dict(), seed=None))
    results["seeds"] = list(cfg.seeds)
    write_outputs(results, out)
    return results


def network_records(cfg, jobs, root, cache, update) -> dict[str, list[SpikeRecord]]:
    """Every row's records of one network, one per input seed (the rows ``jobs`` holds, in the table's order;
    simulated where missing, else read from ``cache``)."""
    return {
        r.name: [evaluate(jobs[(r.name, seed)], root, cfg, cache, update) for seed in cfg.seeds]
        for r in rows() + VARIANTS
        if (r.name, cfg.seeds[0]) in jobs
    }


def network_entries(cfg, built, jobs, records, root, cache) -> tuple[list[dict[str, Any]], dict]:
    """Every row's entry of one network from its ``records`` (:func:`network_records`; paths relative to
    ``cache``, runs/table2), and per row and for the ANN the per-image correctness (first input seed) at T and
    at the row's horizon, for the paired tests."""
    ds, model = next(iter(jobs.values())).dataset, next(iter(jobs.values())).model
    ann_all = json.loads(checkpoint_paths(cache.parent, ds, model)[1].read_text())["test_accuracy"]
    test = datasets.load(ds, "test", root)
    macs = sum(ann.macs_per_image(built["base"]))
    ann_correct = ann.predict(built["base"], test.images[: cfg.n_images]) == test.labels[: cfg.n_images]
    entries = []
    correct = {"ANN": {"T": ann_correct, "H": ann_correct}}
    row_defs = {r.name: r for r in rows() + VARIANTS}
    for row, recs in records.items():
        row_def = row_defs[row]
        spec, report = built["specs"][row]
        images, horizon = cfg.plan(row)
        first = recs[0]
        conv = convergence(first, spec.dt_ms)
        at_t = [float(np.mean(correct_at(r, cfg.steps))) for r in recs]
        final = [r.accuracy() for r in recs]
        correct[row] = {"T": correct_at(first, cfg.steps), "H": correct_at(first, horizon)}
        k_t, k_h = int(correct[row]["T"].sum()), int(correct[row]["H"].sum())
        t_acc = conv.time_to_accuracy_ms
        conv_index = None if t_acc is None else checkpoint_index(first, int(round(t_acc / spec.dt_ms)))
        entries.append(
            {
                "dataset": ds,
                "model": model,
                "row": row,
                "label": row_def.label(percentile=cfg.percentile),
                "tuned": row_def.tuned,
                "threshold": spec.thresholds[0],
                "images": images,
                "horizon_steps": horizon,
                "common_steps": cfg.steps,
                "n_images_common": cfg.n_images,
                "ann_test_accuracy": ann_all,
                "ann_accuracy_same_images": float(ann_correct[:images].mean()),
                "accuracy_at_T_mean": float(np.mean(at_t)),
                "accuracy_at_T_std": float(np.std(at_t, ddof=1)) if len(at_t) > 1 else 0.0,
                "accuracies_at_T": at_t,
                "ci95_at_T": wilson_interval(k_t, images),
                "accuracy_mean": float(np.mean(final)),  # at the row's horizon
                "accuracy_std": float(np.std(final, ddof=1)) if len(final) > 1 else 0.0,
                "accuracies": final,
                "ci95_first_seed": wilson_interval(k_h, images),
                "convergence": conv.to_dict(),
                "no_spike_fraction_at_T": first.no_spike_fraction(checkpoint_index(first, cfg.steps)),
                "no_spike_fraction_mean": float(np.mean([r.no_spike_fraction() for r in recs])),
                "synops_per_image_mean": float(np.mean([r.synops.sum(axis=1).mean() for r in recs])),
                "synops_per_image_at_T": _synops_at(first, checkpoint_index(first, cfg.steps)),
                "synops_per_image_at_convergence": None if conv_index is None else _synops_at(first, conv_index),
                "ann_macs_per_image": macs,
                "divisors": list(report.divisors),
                "replication": REPLICATION.get((ds, model), {}).get(row),
                "search": built["search"] if row_def.tuned else None,
                "wall_s": float(sum(r.meta.get("wall_s", 0.0) for r in recs)),
                "image_steps_per_s": first.meta.get("image_steps_per_s"),
                "records": [str(jobs[(row, s)].path(cfg, cache).relative_to(cache)) for s in cfg.seeds],
            }
        )
    return entries, correct


def _synops_at(record: SpikeRecord, index: int) -> float | None:
    """Mean synaptic events per image up to checkpoint ``index`` (None for records without the curve)."""
    if record.synops_curve is None:
        return float(record.synops.sum(axis=1).mean()) if index == len(record.checkpoints) - 1 else None
    return float(record.synops_at(index).mean())


def expected_seconds(built: dict, missing: dict, root: Path | None, cfg: EvalConfig, probe=(256, 40)) -> float:
    """Expected wall time of the missing image-steps: each network's rate from a timed probe run (``probe`` =
    images × steps of its data-based spec, compiled, after one untimed warm-up run)."""
    seconds = 0.0
    for (ds, model), todo in missing.items():
        if not todo:
            continue
        spec = built[(ds, model)]["specs"].get("data", next(iter(built[(ds, model)]["specs"].values())))[0]
        images = datasets.load(ds, "test", root).images[: probe[0]]
        kw = {"steps": probe[1], **cfg.simulator_options}
        run("fastsim", spec, images[:32], compile=True, **kw)
        rec = run("fastsim", spec, images, compile=True, **kw)
        seconds += todo / rec.meta["image_steps_per_s"]
    return seconds


def _hms(seconds: float) -> str:
    h, rest = divmod(int(seconds), 3600)
    return f"{h} h {rest // 60} min" if h else f"{rest // 60} min {rest % 60} s"


REFERENCE_ROW = "data"  # the paper's method: every other row is compared with it


def paired_tests(dataset: str, model: str, correct: dict[str, dict[str, np.ndarray]]) -> list[dict[str, Any]]:
    """Exact McNemar tests on the same images and input seed (the first ``min`` images both ran): the ANN
    against every SNN row at the row's horizon; the reference row against every other row at T and at their
    horizons (each row at its own)."""
    snn = [r for r in correct if r != "ANN"]
    pairs = [("ANN", r, "H") for r in snn]
    if REFERENCE_ROW in correct:
        pairs += [(REFERENCE_ROW, r, when) for when in ("T", "H") for r in snn if r != REFERENCE_ROW]
    pairs += [(f"{r}-tuned", r, "H") for r in snn if f"{r}-tuned" in correct]  # a tuned threshold vs θ = 1
    tests = []
    for a, b, when in pairs:
        n = min(len(correct[a][when]), len(correct[b][when]))
        test = mcnemar(correct[a][when][:n], correct[b][when][:n]).to_dict()
        tests.append({"dataset": dataset, "model": model, "a": a, "b": b, "at": when, **test})
    return tests
