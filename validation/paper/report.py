"""The main job's report (``runs/REPORT.md``): every stage's result as Markdown, in the order a reader wants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from convert.contract.provenance import machine
from validation.harness.agreement import agreement_markdown
from validation.markdown import table
from validation.paper.beyond import markdown as beyond_markdown
from validation.paper.figures import convergence_markdown
from validation.paper.horizon_check import markdown as horizon_markdown
from validation.paper.replication_config import markdown as replication_markdown
from validation.paper.table2_report import claims_markdown, converged_markdown, cost_markdown, paired_markdown
from validation.paper.table2_report import markdown as table2_markdown

if TYPE_CHECKING:
    from validation.paper.reproduce import ReproduceConfig

HORIZONS = """Horizons. Every row runs once, for its horizon H, with checkpoints on a log grid; the table above reads
each run at T, the table below at H. T = {T} ms is where the fast rows (threshold 1 with data-based or robust
normalization, the copy with θ = 1 or with the threshold tuned on held-out training images) have converged on
MNIST (their curves are flat from ~100 ms on) and are close on Fashion-MNIST; model-based normalization scales
the weights by worst-case bounds and needs seconds (Diehl et al. and the replication run 10 000 ms), so it runs
for {slow_steps} ms on the first {slow_images} test images, as much as the time budget allows. The convergence
column says for every row whether the evidence supports its horizon: converged = the accuracy moved by at
most 0.1 pp over the whole second half of the run. `python -m validation table2 --full` runs every row on all
10 000 images for 10 000 ms, on this machine or, with `--dask ADDRESS`, over a Dask cluster
(docs/scale-out.md). The model-based rows on all 10 000 images are left to it: at 5 000 ms they are
2·10⁸ image-steps, about 40 min of a 2-core machine, and a local cluster adds no cores to it.
"""


def throughput_markdown(results: dict[str, Any]) -> str:
    lines = [
        f"Simulation cost of every Table 2 run (fastsim, {results['config']['dtype']}, kernel "
        f"`{results['config']['kernel']}`; the wall time of the runs made now, or of the cached run that made the "
        "record).",
        "",
    ]
    lines += table(
        ("dataset", "model", "row", "images × steps", "wall (s)", "image-steps / s"),
        (
            (
                *(e["dataset"], e["model"], e["row"], f"{e['images']} × {e['horizon_steps']}"),
                *(f"{e['wall_s']:.0f}", f"{e['image_steps_per_s'] or 0:,.0f}"),
            )
            for e in results["entries"]
        ),
    )
    return "\n".join(lines) + "\n"


NOT_RUN = (
    "Not run in this job: `python -m validation reproduce --beyond` adds the deeper networks' table and the "
    "diagnosis of every network (or `python -m validation beyond` and `python -m validation diagnose` alone).\n"
)


def diagnose_markdown(rows: list[dict[str, Any]]) -> str:
    """One line per network (``rows``: the main job's diagnosis summaries, with :func:`headline`'s fields, or
    with only a ``verdict`` as older runs wrote them), then what each pattern that occurs usually means."""
    from validation.harness.diagnose import ADVICE, SUBLINEAR

    lines = [
        "Per spiking layer, the SNN's firing rates against the rates the ANN asks for "
        "(validation/harness/diagnose.py); the first layer where they part, its pattern, and the slope of the "
        "SNN rate on the ANN rate in the first spiking layer.",
        "",
    ]
    if rows and any("pattern" not in r for r in rows):  # an older summary: its verdict in full
        body = [
            (r["network"], f"{100 * r['snn_accuracy']:.2f}", _dash(r["first_broken"]), r["verdict"], _pic(r))
            for r in rows
        ]
        lines += table(("network (spec)", "SNN accuracy %", "first broken layer", "verdict", "picture"), body)
        return "\n".join(lines) + "\n"
    body = [
        (
            *(r["network"], f"{100 * r['snn_accuracy']:.2f}", _dash(r["first_broken"]), _dash(r["pattern"])),
            *(f"{r['first_slope']:.2f}", _pic(r)),
        )
        for r in rows
    ]
    head = ("network (spec)", "SNN accuracy %", "first broken layer", "pattern", "slope, layer 0", "picture")
    lines += [*table(head, body), ""]
    lines += [f"- {p}: {ADVICE[p]}." for p in ADVICE if any(r["pattern"] == p for r in rows)]
    if any(r["first_slope"] < SUBLINEAR for r in rows):
        lines.append(
            f"- slope below {SUBLINEAR} in the first layer, under a reset to zero: the reset discards the charge "
            "above θ at every spike, so a neuron driven by I per step fires only once in ⌈θ/I⌉ steps; reset by "
            "subtraction keeps it (Rueckauer et al. 2017)."
        )
    return "\n".join(lines) + "\n"


def _dash(value: Any) -> Any:
    return "–" if value is None else value


def _pic(row: dict[str, Any]) -> str:
    return f"[per layer]({row['picture']})"


def report_markdown(cfg: ReproduceConfig, done: dict[str, Any], log: list[dict[str, Any]], total: float) -> str:
    """The report of a main job with config ``cfg`` whose stages returned ``done`` (by key) in ``log``'s times
    and ``total`` seconds."""
    table1, results, conv = done["training"], done["table2"], done["figures"]
    repl, horizon, agree = done["replication"], done["horizon"], done["agreement"]
    beyond, diagnosis = done["beyond"], done["diagnose"]
    ev = cfg.eval
    tag = ev.tag
    return "\n".join(
        [
            "# Reproduction of Diehl et al. 2015 on MNIST and Fashion-MNIST",
            "",
            f"Command: `{cfg.command}`. Machine: {machine()}. Total wall time {total / 60:.1f} min. Table 2: "
            f"{ev.n_images} test images × {ev.steps} ms per row, model-based {ev.plan('model')[0]} × "
            f"{ev.plan('model')[1]} ms.",
            "",
            "## Table 1 (ANN accuracy, eval mode)",
            "",
            table1,
            "## Table 2 (SNN accuracy)",
            "",
            table2_markdown(results),
            HORIZONS.format(T=ev.steps, slow_steps=ev.slow_steps, slow_images=ev.slow_images),
            converged_markdown(results),
            "### The horizon on Fashion-MNIST",
            "",
            horizon_markdown(horizon),
            "### The paper's claims at this scale",
            "",
            claims_markdown(results),
            "### Paired tests",
            "",
            paired_markdown(results),
            "### Cost per classification",
            "",
            cost_markdown(results),
            f"Figures: `runs/table2/{tag}/fig3_mnist.png`, `runs/table2/{tag}/fig4_fashion.png`.",
            "",
            "## Convergence",
            "",
            convergence_markdown(conv),
            "## The replication's configuration",
            "",
            replication_markdown(repl),
            "## Agreement with Brian2",
            "",
            agreement_markdown(agree),
            "## Beyond the paper's two networks",
            "",
            beyond_markdown(beyond) if beyond else NOT_RUN,
            "## Where the conversions lose accuracy",
            "",
            diagnose_markdown(diagnosis) if diagnosis else NOT_RUN,
            "## Stage wall times",
            "",
            "\n".join(f"- {x['stage']}: {x['wall_s']:.0f} s" for x in log),
            "",
            throughput_markdown(results),
        ]
    )
