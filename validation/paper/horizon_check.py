"""Evidence for the horizon T of Table 2 where T is short: the fast rows run again, longer, on a subset.

Table 2 reads every fast row (data-based and robust normalization, the copy with θ = 1 and with its tuned
threshold) at the common T on the whole test set. On Fashion-MNIST those runs have not converged by T (their
accuracy still moves by more than 0.1 pp in the second half of the run), and running the whole test set
three times longer does not fit the main job's time budget on a CPU. So each such row runs once more on the
first ``images`` test images for ``steps`` ms, with a checkpoint at T: on the same images and input seed this
gives the accuracy at T and at the longer horizon, their exact McNemar test, and whether the longer run has
converged. The records are cached like Table 2's (:mod:`validation.paper.experiments`), by content.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from convert.contract.provenance import check_outputs, write_json_atomic, write_text_atomic
from validation.markdown import table
from validation.paper.convergence import convergence, correct_at
from validation.paper.experiments import EvalConfig, Job, build_specs, evaluate
from validation.significance import mcnemar, wilson_interval


@dataclasses.dataclass(frozen=True)
class HorizonCheck:
    datasets: tuple[str, ...] = ("fashion",)  # where the fast rows have not converged by T on the whole test set
    images: int = 2000
    steps: int = 1000

    def eval_config(self, base: EvalConfig) -> EvalConfig:
        """Table 2's engine and search settings, every row on ``images`` for ``steps`` with a checkpoint at T."""
        return dataclasses.replace(
            base,
            n_images=self.images,
            steps=self.steps,
            seeds=base.seeds[:1],
            slow_rows=(),
            extra_checkpoints=(*base.extra_checkpoints, base.steps),
        )


def run_horizon_check(
    hc: HorizonCheck, base: EvalConfig, root: Path | None, runs: Path, pairs, update=None
) -> dict[str, Any]:
    """Every fast row of the networks of ``hc.datasets`` to ``hc.steps`` ms on ``hc.images`` images; the
    results also go to ``runs/table2/<Table 2's tag>/horizon-check.{json,md}``."""
    cfg = hc.eval_config(base)
    out = runs / "table2"  # shared with Table 2: its threshold searches, and the record cache
    seed = cfg.seeds[0]
    entries = []
    for ds, model in pairs:
        if ds not in hc.datasets:
            continue
        built = build_specs(ds, model, root, runs, base, out)  # the specs (and tuned θ) Table 2 evaluated
        for row, (spec, _report) in built["specs"].items():
            if row in base.slow_rows:
                continue
            rec = evaluate(Job(spec, ds, model, seed, hc.images, hc.steps), root, cfg, out, update)
            at_t, at_h = correct_at(rec, base.steps), correct_at(rec, hc.steps)
            test = mcnemar(at_t, at_h)
            entries.append(
                {
                    "dataset": ds,
                    "model": model,
                    "row": row,
                    "images": hc.images,
                    "T_steps": base.steps,
                    "horizon_steps": hc.steps,
                    "accuracy_T": float(at_t.mean()),
                    "ci95_T": wilson_interval(int(at_t.sum()), len(at_t)),
                    "accuracy_H": float(at_h.mean()),
                    "ci95_H": wilson_interval(int(at_h.sum()), len(at_h)),
                    "mcnemar_T_vs_H": test.to_dict(),
                    "convergence": convergence(rec, spec.dt_ms).to_dict(),
                    "wall_s": float(rec.meta.get("wall_s", 0.0)),
                }
            )
    results = {"config": dataclasses.asdict(hc), "engine": cfg.engine, "seed": seed, "entries": entries}
    check_outputs(*(out / base.tag / f"horizon-check.{ext}" for ext in ("json", "md")))  # both or none
    write_json_atomic(out / base.tag / "horizon-check.json", results)
    write_text_atomic(out / base.tag / "horizon-check.md", markdown(results))
    return results


def markdown(results: dict[str, Any]) -> str:
    hc = results["config"]
    if not results["entries"]:
        return "No horizon check was run.\n"
    t = results["entries"][0]["T_steps"]
    lines = [
        f"The fast rows of {', '.join(hc['datasets'])} run again on the first {hc['images']} test images for "
        f"{hc['steps']} ms (input seed {results['seed']}): the accuracy at T = {t} ms and at {hc['steps']} ms on "
        "the same images, their exact McNemar test (images right only at T / only at the longer horizon), and "
        "the convergence verdict of the longer run (time to accuracy at most half of it).",
        "",
    ]
    rows = []
    for e in results["entries"]:
        m, c = e["mcnemar_T_vs_H"], e["convergence"]
        lo_t, hi_t = e["ci95_T"]
        lo_h, hi_h = e["ci95_H"]
        tta = c["time_to_accuracy_ms"]
        rows.append(
            (
                *(e["dataset"], e["model"], e["row"]),
                f"{100 * e['accuracy_T']:.2f} ({100 * lo_t:.1f}–{100 * hi_t:.1f})",
                f"{100 * e['accuracy_H']:.2f} ({100 * lo_h:.1f}–{100 * hi_h:.1f})",
                f"{m['a_only']} / {m['b_only']}",
                f"{m['p_value']:.3g}",
                "–" if tta is None else f"{tta:.0f}",
                "yes" if c["converged"] else "no",
            )
        )
    header = ("dataset", "model", "row", f"accuracy at {t} ms (%)", f"accuracy at {hc['steps']} ms (%)")
    lines += table((*header, "right only at T / only later", "p", "time to acc. (ms)", "converged"), rows)
    return "\n".join(lines) + "\n"
