"""The main job: data → training → conversion → Table 1, Table 2, Figures 3/4 → agreement with Brian2.

Reduced scale by default so that it finishes on a 2-core CPU box; every stage reuses what an earlier
(interrupted) run finished: checkpoints, statistics, specs, simulation records. ``runs/REPORT.md``
collects the tables with the command, the machine and the wall time of every stage.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from convert import ann, datasets, methods
from convert.contract.io import save_spec
from convert.contract.provenance import atomic_path, machine, provenance, write_json_atomic, write_text_atomic
from convert.nir_export import save_nir
from convert.pipeline import copy_spec, normalized_spec, stats_for
from convert.select import CANDIDATES, select_and_train, selected
from convert.table1 import write_table1
from convert.train import TrainConfig
from validation.harness.agreement import agreement_markdown, agreement_summary
from validation.markdown import table
from validation.paper.beyond import BeyondConfig, run_beyond
from validation.paper.beyond import markdown as beyond_markdown
from validation.paper.experiments import EvalConfig
from validation.paper.figures import convergence_markdown, make_figures
from validation.paper.horizon_check import HorizonCheck, run_horizon_check
from validation.paper.horizon_check import markdown as horizon_markdown
from validation.paper.replication_config import ReplicationConfig, run_replication_config
from validation.paper.replication_config import markdown as replication_markdown
from validation.paper.table2 import PAIRS, run_table2

# the published run whose stage times --estimate scales, and its trained networks (`validation publish`)
PUBLISHED = Path(__file__).resolve().parents[2] / "docs" / "results" / "reproduce.json"
PUBLISHED_MODELS = PUBLISHED.parent / "models"

# Table 2 of the main job: every row on the whole test sets for T = 300 ms, model-based normalization (which
# needs seconds) on the first 500 test images for 5 000 ms; one input seed (the interval over images is the
# larger error; `validation table2 --seeds 0 1 2` measures the spread over seeds). `make reproduce-full` trains
# the networks from scratch and runs the model-based rows on 2 000 images, the horizon check on 2 000 and every
# Brian2 check for 500 steps.
MAIN_JOB_EVAL = EvalConfig(
    n_images=10_000, steps=300, seeds=(0,), slow_rows=("model",), slow_steps=5000, slow_images=500
)


@dataclass(frozen=True)
class ReproduceConfig:
    # the training settings per model: the winners of the validation-split selection (convert/select.py;
    # `select=True` tries every candidate again and keeps the best on the validation split)
    select: bool = False
    seed: int = 0
    eval: EvalConfig = field(default_factory=lambda: MAIN_JOB_EVAL)
    agreement_images: int = 100
    agreement_steps: int = 300
    agreement_device: str = "cpp_standalone"
    float32_images: int = 1000  # fastsim float32 vs float64 (MNIST, data-based), at agreement_steps / 5
    # every network's data- and model-based specs against Brian2 and both float32 checks (reproduce-full); the
    # default checks the data-based specs, the MNIST MLP's model-based one and the MLP's float32 run
    agreement_all: bool = False
    replication: ReplicationConfig = field(default_factory=ReplicationConfig)
    horizon: HorizonCheck = field(default_factory=lambda: HorizonCheck(images=1000))  # Fashion's fast rows, 1 000 ms
    command: str = "make reproduce"  # how this run was started, for the report
    # a folder of trained checkpoints (<dataset>-<model>.pt and its .json, as runs/models/ holds them) to start
    # from: by default the published networks (docs/results/models/), so that Table 2 comes out as published on
    # any machine; None trains them from scratch (`--train`, make reproduce-full)
    models: Path | None = field(default_factory=lambda: PUBLISHED_MODELS)
    # beyond the paper: the deeper Fashion-MNIST networks (validation/paper/beyond.py), and every network's data-based
    # spec diagnosed layer by layer (validation/harness/diagnose.py) on this many test images and steps
    # (`--beyond`: off by default, they add more than the main job's own half hour on the 2-core box)
    beyond_stages: bool = False
    beyond: BeyondConfig = field(default_factory=BeyondConfig)
    diagnose_images: int = 500
    diagnose_steps: int = 300

    @property
    def networks(self) -> tuple[tuple[str, str], ...]:
        """Every network of the job: the paper's four, then (``beyond_stages``) the deeper ones."""
        return (*PAIRS, *self.beyond.networks) if self.beyond_stages else PAIRS

    def candidates(self, dataset: str, model: str) -> tuple[dict[str, Any], ...]:
        """The settings trained for a network: every candidate (``select``) or the one chosen."""
        return CANDIDATES[model] if self.select else selected(dataset, model)


def stage_units(cfg: ReproduceConfig) -> dict[str, float]:
    """Each stage's amount of work, the scale :mod:`validation.paper.estimate` multiplies a published time by:
    epochs trained, image-steps simulated (Table 2: every row of the four networks), Brian2 image-steps."""
    from validation.paper.rows import rows

    ev = cfg.eval
    names = [r.name for r in rows()]
    table2 = sum(ev.plan(name)[0] * ev.plan(name)[1] for name in names) * len(PAIRS) * len(ev.seeds)
    repl = cfg.replication
    epochs = sum(c.get("epochs", TrainConfig.epochs) for ds, m in cfg.networks for c in cfg.candidates(ds, m))
    beyond = cfg.beyond.eval
    beyond_steps = sum(beyond.plan(r)[0] * beyond.plan(r)[1] for r in cfg.beyond.rows) * len(cfg.beyond.networks)
    return {
        "training": 0.0 if cfg.models is not None else float(epochs),
        "conversion": 1.0,
        "table2": float(table2),
        "figures": 1.0,
        "replication": float(repl.images * repl.steps + repl.slow_images * repl.slow_steps),
        "horizon": float(min(cfg.horizon.images, ev.n_images) * cfg.horizon.steps),
        "agreement": float(cfg.agreement_images * cfg.agreement_steps * (2 if cfg.agreement_all else 1)),
        "beyond": float(beyond_steps * len(beyond.seeds)) if cfg.beyond_stages else 0.0,
        "diagnose": float(cfg.diagnose_images * cfg.diagnose_steps * len(cfg.networks)) if cfg.beyond_stages else 0.0,
    }


def _stage(log: list[dict[str, Any]], key: str, name: str, start: float, units: dict[str, float]) -> None:
    log.append({"key": key, "stage": name, "wall_s": round(time.perf_counter() - start, 1), "units": units[key]})
    print(f"[reproduce] {name}: {log[-1]['wall_s']:.0f} s", flush=True)


def print_estimate(cfg: ReproduceConfig, reference: Path) -> dict[str, float]:
    """Measure this machine (:func:`validation.paper.estimate.calibrate`), print the expected wall time against the
    published run at ``reference`` (if there is one) and return the calibration."""
    from validation.paper import estimate

    speed = estimate.calibrate()
    ref = estimate.load_reference(reference)
    if ref is None:
        print(f"[reproduce] no published run with stage units at {reference}: no estimate", flush=True)
    else:
        expected = estimate.expected_seconds(stage_units(cfg), ref, speed)
        print(f"[reproduce] {estimate.describe(expected, ref)}", flush=True)
    return speed


def _shown(folder: Path | None) -> str | None:
    """A folder as a results file records it: relative to the repository when inside it (no machine paths)."""
    if folder is None:
        return None
    root = PUBLISHED.parents[2]
    try:
        return str(Path(folder).resolve().relative_to(root))
    except ValueError:
        return str(folder)


def use_given_models(folder: Path, runs: Path, networks: tuple[tuple[str, str], ...] = PAIRS) -> None:
    """Copy the checkpoints of ``networks`` (and their metrics) from ``folder`` into ``runs/models/``, after
    checking that each loads as the project's network; a missing or foreign file is a ValueError naming it."""
    from convert.train import checkpoint_paths, load_model

    for ds, model in networks:
        src_pt, src_json = checkpoint_paths(folder.parent, ds, model)
        src_pt, src_json = folder / src_pt.name, folder / src_json.name
        if not src_pt.exists() or not src_json.exists():
            raise ValueError(
                f"--models {folder}: {src_pt.name} and {src_json.name} are both needed; "
                "or train the networks from scratch with --train (make reproduce-full)"
            )
        if models_name(load_model(src_pt)) != model:
            raise ValueError(f"--models {folder}: {src_pt.name} holds another architecture than the {model}")
        dst_pt, dst_json = checkpoint_paths(runs, ds, model)
        dst_pt.parent.mkdir(parents=True, exist_ok=True)
        for src, dst in ((src_pt, dst_pt), (src_json, dst_json)):
            if not dst.exists() or dst.read_bytes() != src.read_bytes():
                with atomic_path(dst) as tmp:
                    shutil.copyfile(src, tmp)
        m = json.loads(dst_json.read_text())
        print(f"  {ds}-{model}: given checkpoint {src_pt} (test {100 * m['test_accuracy']:.2f} %)")


def models_name(net: Any) -> str:
    """``mlp``, ``cnn``, ``vgg`` or ``resnet``: the project architecture a loaded checkpoint rebuilt."""
    kinds = {type(m).__name__ for m in net.modules()}
    if "Block" in kinds:
        return "resnet"
    if "MaxPool2d" in kinds:
        return "vgg"
    return "cnn" if "Conv2d" in kinds else "mlp"


def train_all(cfg: ReproduceConfig, root: Path | None, runs: Path) -> None:
    if cfg.models is not None:
        use_given_models(cfg.models, runs, cfg.networks)
        return
    for ds, model in cfg.networks:
        base = TrainConfig(dataset=ds, model=model, seed=cfg.seed, validation_images=cfg.eval.holdout)
        m = select_and_train(base, cfg.candidates(ds, model), root, runs)
        sel = m["selection"]
        print(
            f"  {ds}-{model}: candidate {sel['chosen']} of {len(sel['candidates'])} "
            f"(validation {100 * m['validation_accuracy']:.2f} %), test {100 * m['test_accuracy']:.2f} %"
        )


def write_specs(cfg: ReproduceConfig, root: Path | None, runs: Path) -> list[dict[str, Any]]:
    """The four methods' specs for every model under runs/specs/ (with their divisors and the ANN test
    accuracy of each normalized spec, which must equal the copy's), and one NIR export."""
    rows = []
    for ds, model in PAIRS:
        base = copy_spec(ds, model, runs)
        test = datasets.load(ds, "test", root)
        copy_acc = ann.accuracy(base, test.images, test.labels)
        stats = stats_for(base, ds, root, runs, cfg.eval.calib_images, holdout=cfg.eval.holdout, progress=False)
        for method in methods.names():
            spec, report = normalized_spec(base, method, stats, percentile=cfg.eval.percentile)
            save_spec(spec, runs / "specs" / f"{ds}-{model}-{method}.npz")
            if (ds, model, method) == ("mnist", "cnn", "model"):
                # the graph other simulators run: the cascade schedule (NIR cannot express the delay schedule)
                save_nir(dataclasses.replace(spec, schedule="cascade"), runs / "specs" / "mnist-cnn-model.nir")
            acc = ann.accuracy(spec, test.images, test.labels)
            same = acc == copy_acc  # positive homogeneity: only an exact logit tie could break it
            rows.append(
                {"spec": f"{ds}-{model}-{method}", "divisors": list(report.divisors), "ann_test": acc, "same": same}
            )
            print(
                f"  {ds}-{model}-{method}: divisors {[f'{d:.4g}' for d in report.divisors]}, ANN test {acc:.4f}"
                + ("" if same else f" DIFFERS from the copy's {copy_acc:.4f}")
            )
    write_json_atomic(runs / "specs" / "summary.json", rows)
    return rows


def agreement_runs(cfg: ReproduceConfig, root: Path | None, runs: Path) -> list[dict[str, Any]]:
    """fastsim float64 against Brian2 on identical input spikes for every network's data- and model-based
    specs (and the cascade schedule of the MNIST MLP's), fastsim's Poisson input against Brian2's own
    PoissonGroup on the MNIST data-based specs, and fastsim float32 with Table 2's kernel against float64."""
    from convert.contract.io import load_spec

    brian = f"refsim:{cfg.agreement_device}"
    n, steps = cfg.agreement_images, cfg.agreement_steps
    plan = []  # (dataset, model, method, schedule, engines, images, steps, poisson images)
    for ds, model in PAIRS:
        for method in ("data", "model"):
            if method == "model" and not cfg.agreement_all and (ds, model) != ("mnist", "mlp"):
                continue  # the main job checks one model-based spec; `--agreement all` every one
            poisson = n if (ds, method) == ("mnist", "data") else 0
            plan.append((ds, model, method, None, ("fastsim:float64", brian), n, steps, poisson))
    plan.append(("mnist", "mlp", "data", "cascade", ("fastsim:float64", brian), n, steps, 0))
    for model in ("mlp", "cnn") if cfg.agreement_all else ("mlp",):
        plan.append(
            (
                "mnist",
                model,
                "data",
                None,
                (f"fastsim:float32:{cfg.eval.kernel}", "fastsim:float64"),
                cfg.float32_images,
                steps // 5,
                0,
            )
        )
    summaries = []
    for ds, model, method, schedule, engines, images, n_steps, poisson in plan:
        spec = load_spec(runs / "specs" / f"{ds}-{model}-{method}.npz")
        if schedule is not None:
            spec = dataclasses.replace(spec, schedule=schedule)
        summaries.append(
            agreement_summary(spec, f"{ds}-{model}-{method}", engines, images, n_steps, poisson, cfg.seed, root, runs)
        )
    return summaries


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


@dataclass(frozen=True)
class Stage:
    """One stage of the main job: its ``key`` (the unit :func:`stage_units` counts and the estimate scales), its
    name in the report (``name(cfg)``) and its work, ``run(cfg, root, runs, done)`` → its result, ``done``
    holding the results of the stages before it by key."""

    key: str
    name: Callable[[ReproduceConfig], str]
    run: Callable[[ReproduceConfig, Path | None, Path, dict[str, Any]], Any]


def _horizon(cfg: ReproduceConfig) -> HorizonCheck:
    return dataclasses.replace(cfg.horizon, images=min(cfg.horizon.images, cfg.eval.n_images))


def _training(cfg: ReproduceConfig, root: Path | None, runs: Path, done: dict[str, Any]) -> str:
    train_all(cfg, root, runs)
    return write_table1(runs)


def _training_name(cfg: ReproduceConfig) -> str:
    given = "Table 1 of the given networks (no training)" if cfg.models is not None else "training + Table 1"
    return given + (" (with model selection)" if cfg.select else "")


#: the main job, in order (every stage resumes from what an interrupted run finished)
STAGES: tuple[Stage, ...] = (
    Stage("training", _training_name, _training),
    Stage("conversion", lambda cfg: "conversion (statistics + specs)", lambda c, r, w, d: write_specs(c, r, w)),
    Stage(
        "table2",
        lambda cfg: "Table 2 simulations (fastsim; threshold searches included)",
        lambda c, r, w, d: run_table2(c.eval, r, w),
    ),
    Stage("figures", lambda cfg: "Figures 3/4", lambda c, r, w, d: make_figures(d["table2"], w)),
    Stage(
        "replication",
        lambda cfg: "the replication's configuration (current input, membrane readout)",
        lambda c, r, w, d: run_replication_config(c.replication, c.eval, r, w, PAIRS),
    ),
    Stage(
        "horizon",
        lambda cfg: (
            f"horizon check ({', '.join(_horizon(cfg).datasets)} fast rows, "
            f"{_horizon(cfg).images} images × {_horizon(cfg).steps} ms)"
        ),
        lambda c, r, w, d: run_horizon_check(_horizon(c), c.eval, r, w, PAIRS),
    ),
    Stage("agreement", lambda cfg: "agreement with Brian2", lambda c, r, w, d: agreement_runs(c, r, w)),
    Stage(
        "beyond",
        lambda cfg: (
            f"beyond the paper ({', '.join(m for _, m in cfg.beyond.networks)}: "
            f"{cfg.beyond.eval.n_images} images × {cfg.beyond.eval.steps} ms, Brian2 sample)"
        ),
        lambda c, r, w, d: run_beyond(c.beyond, r, w) if c.beyond_stages else None,
    ),
    Stage(
        "diagnose",
        lambda cfg: f"diagnosis of every data-based spec ({cfg.diagnose_images} images × {cfg.diagnose_steps} ms)",
        lambda c, r, w, d: diagnose_all(c, r, w) if c.beyond_stages else [],
    ),
)


NOT_RUN = (
    "Not run in this job: `python -m validation reproduce --beyond` adds the deeper networks' table and the "
    "diagnosis of every network (or `python -m validation beyond` and `python -m validation diagnose` alone).\n"
)


def diagnose_all(cfg: ReproduceConfig, root: Path | None, runs: Path) -> list[dict[str, Any]]:
    """:func:`validation.harness.diagnose.run_diagnosis` of every network's data-based spec (runs/specs/) on the first
    ``diagnose_images`` test images, written to runs/diagnose/<spec>/; one summary per network."""
    from convert.contract.io import load_spec
    from validation.harness.diagnose import run_diagnosis

    out = []
    for ds, model in cfg.networks:
        name = f"{ds}-{model}-data"
        path = runs / "specs" / f"{name}.npz"
        if not path.exists():  # a deeper network without a checkpoint (beyond skipped it)
            continue
        test = datasets.load(ds, "test", root)
        n = cfg.diagnose_images
        config = {"spec": name, "images": n, "steps": cfg.diagnose_steps, "seed": cfg.seed}
        result = run_diagnosis(
            load_spec(path),
            name,
            test.images[:n],
            test.labels[:n],
            cfg.diagnose_steps,
            runs / "diagnose" / name,
            config,
            seed=cfg.seed,
            progress=False,
        )
        first = result["first_broken"]
        out.append(
            {
                "network": name,
                "snn_accuracy": result["snn_accuracy"],
                "first_broken": first,
                "verdict": result["verdict"],
                "picture": f"diagnose/{name}/diagnose.png",
            }
        )
        print(f"  {name}: {result['verdict']}", flush=True)
    return out


def diagnose_markdown(rows: list[dict[str, Any]]) -> str:
    lines = [
        "Per spiking layer, the SNN's firing rates against the rates the ANN asks for "
        "(validation/harness/diagnose.py); the first layer where they part and what that usually means.",
        "",
    ]
    body = []
    for r in rows:
        first = "–" if r["first_broken"] is None else r["first_broken"]
        body.append(
            (r["network"], f"{100 * r['snn_accuracy']:.2f}", first, r["verdict"], f"[per layer]({r['picture']})")
        )
    lines += table(("network (spec)", "SNN accuracy %", "first broken layer", "verdict", "picture"), body)
    return "\n".join(lines) + "\n"


def run_stages(
    stages: tuple[Stage, ...], cfg: ReproduceConfig, root: Path | None, runs: Path, units: dict[str, float]
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Run ``stages`` in order, each timed: their results by key, and the log of stage times the report and
    ``reproduce.json`` record."""
    done: dict[str, Any] = {}
    log: list[dict[str, Any]] = []
    for stage in stages:
        start = time.perf_counter()
        done[stage.key] = stage.run(cfg, root, runs, done)
        _stage(log, stage.key, stage.name(cfg), start, units)
    return done, log


def reproduce(cfg: ReproduceConfig, root: Path | None, runs: Path, reference: Path = PUBLISHED) -> Path:
    from validation.paper.table2_report import claims_markdown, converged_markdown, cost_markdown, paired_markdown
    from validation.paper.table2_report import markdown as table2_markdown

    speed = print_estimate(cfg, reference)
    units = stage_units(cfg)
    t0 = time.perf_counter()
    done, log = run_stages(STAGES, cfg, root, runs, units)
    table1, results, conv = done["training"], done["table2"], done["figures"]
    repl, horizon, agree = done["replication"], done["horizon"], done["agreement"]
    beyond, diagnosis = done["beyond"], done["diagnose"]
    total = time.perf_counter() - t0
    ev = cfg.eval
    tag = ev.tag
    report = "\n".join(
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
    write_text_atomic(runs / "REPORT.md", report)
    summary = {
        "stages": log,
        "total_s": total,
        "agreement": agree,
        "diagnose": diagnosis,
        "command": cfg.command,
        "calibration": speed,
    }
    write_json_atomic(
        runs / "reproduce.json",
        {
            **summary,
            **provenance({"tag": tag, "select": cfg.select, "models": _shown(cfg.models)}, cfg.seed),
        },
    )
    return runs / "REPORT.md"
