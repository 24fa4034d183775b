"""The replication's own simulation set-up beside ours, so that each of its numbers is compared like for like.

The replication (hehao98/SNN-Balancing, PyTorch + SpikingJelly) feeds the analog image as a constant current
instead of Poisson spikes, runs the layers one after the other within a step, and reads the class from a
non-spiking output layer's accumulated potential. Its MNIST MLP data-based reaches 98.3 % after 16 steps and
comes within 0.1 pp of its final accuracy after 21 ms (the CNN after 29 ms); model-based needs ~2 000 ms.
Here every network's data- and model-based specs are rerun in that configuration: ``encoding="current"``,
``schedule="cascade"`` and ``readout="membrane"`` (docs/semantics.md), with the same weights and thresholds.
The input is deterministic, so the input seed plays no part.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from convert.contract.io import load_spec
from convert.contract.provenance import check_outputs, write_json_atomic, write_text_atomic
from convert.contract.spec import NetworkSpec
from validation.markdown import table
from validation.paper.convergence import convergence, correct_at
from validation.paper.experiments import EvalConfig, Job, evaluate
from validation.significance import wilson_interval

# the replication's reported times and accuracies in its configuration (PAPER.md)
REPLICATION_TIMES = {("mnist", "mlp", "data"): 21, ("mnist", "cnn", "data"): 29, ("mnist", "mlp", "model"): 2000}
REPLICATION_EARLY = {("mnist", "mlp", "data"): (16, 98.3)}  # (steps, accuracy %) reported at a short horizon
EARLY_STEPS = 16


@dataclasses.dataclass(frozen=True)
class ReplicationConfig:
    rows: tuple[str, ...] = ("data", "model")
    images: int = 10_000
    steps: int = 100  # data-based: the replication converged within 29 ms
    slow_rows: tuple[str, ...] = ("model",)
    slow_images: int = 500
    slow_steps: int = 2500  # model-based: the replication needed ~2 000 ms

    def eval_config(self, base: EvalConfig) -> EvalConfig:
        return dataclasses.replace(
            base,
            n_images=self.images,
            steps=self.steps,
            seeds=(0,),
            extra_checkpoints=(EARLY_STEPS, *sorted({t for t in REPLICATION_TIMES.values() if t <= self.slow_steps})),
            slow_rows=self.slow_rows,
            slow_images=self.slow_images,
            slow_steps=self.slow_steps,
        )


def replication_spec(spec: NetworkSpec) -> NetworkSpec:
    """``spec`` in the replication's set-up: analog current input, cascade schedule, membrane readout."""
    return dataclasses.replace(spec, encoding="current", schedule="cascade", readout="membrane")


def run_replication_config(
    rc: ReplicationConfig, base: EvalConfig, root: Path | None, runs: Path, pairs, update=None
) -> dict[str, Any]:
    """Every (network, row) in the replication's set-up; the entries also go to ``runs/replication-config/``."""
    cfg = rc.eval_config(base)
    out = runs / "replication-config"
    entries = []
    for ds, model in pairs:
        for row in rc.rows:
            path = runs / "specs" / f"{ds}-{model}-{row}.npz"
            if not path.exists():
                continue
            spec = replication_spec(load_spec(path))
            images, steps = cfg.plan(row)
            rec = evaluate(Job(spec, ds, model, 0, images, steps), root, cfg, out, update)
            conv = convergence(rec, spec.dt_ms)
            k_h = int(correct_at(rec, steps).sum())
            early = EARLY_STEPS if EARLY_STEPS <= steps else steps
            entries.append(
                {
                    "dataset": ds,
                    "model": model,
                    "row": row,
                    "images": images,
                    "horizon_steps": steps,
                    "accuracy_early": float(correct_at(rec, early).mean()),
                    "early_steps": early,
                    "accuracy": k_h / images,
                    "ci95": wilson_interval(k_h, images),
                    "accuracy_at_index": [float(rec.accuracy(i)) for i in range(len(rec.checkpoints))],
                    "checkpoints": rec.checkpoints.tolist(),
                    "convergence": conv.to_dict(),
                    "replication_ms": REPLICATION_TIMES.get((ds, model, row)),
                    "replication_early": REPLICATION_EARLY.get((ds, model, row)),
                    "wall_s": float(rec.meta.get("wall_s", 0.0)),
                    "record": str(Job(spec, ds, model, 0, images, steps).path(cfg, out).relative_to(out)),
                }
            )
    results = {"config": dataclasses.asdict(rc), "engine": cfg.engine, "entries": entries}
    check_outputs(out / "replication-config.json", out / "replication-config.md")  # both or none
    write_json_atomic(out / "replication-config.json", results)
    write_text_atomic(out / "replication-config.md", markdown(results))
    return results


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "The replication's set-up (analog current input, cascade schedule, non-spiking output read by its "
        "potential), same weights and thresholds: accuracy after 16 steps and at the horizon H (95 % Wilson "
        "interval), time to within 0.1 pp of the value at H, and the replication's own numbers.",
        "",
    ]
    rows = []
    for e in results["entries"]:
        conv = e["convergence"]
        lo, hi = e["ci95"]
        t = "–" if conv["time_to_accuracy_ms"] is None else f"{conv['time_to_accuracy_ms']:g}"
        repl = []
        if e["replication_early"]:
            repl.append(f"{e['replication_early'][1]:.1f} % at {e['replication_early'][0]} ms")
        if e["replication_ms"]:
            repl.append(f"~{e['replication_ms']} ms to within 0.1 pp")
        rows.append(
            (
                *(e["dataset"], e["model"], e["row"], f"{e['images']} × {e['horizon_steps']}"),
                f"{100 * e['accuracy_early']:.2f}",
                f"{100 * e['accuracy']:.2f} ({100 * lo:.2f}–{100 * hi:.2f})",
                t,
                "yes" if conv["converged"] else "no",
                "; ".join(repl) or "–",
            )
        )
    header = ("dataset", "model", "row", "images × H", "at 16 ms (%)", "at H (%)", "time to accuracy (ms)")
    lines += table((*header, "converged", "replication"), rows)
    return "\n".join(lines) + "\n"
