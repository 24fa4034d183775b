"""The main job: data → training → conversion → Table 1, Table 2, Figures 3/4 → agreement with Brian2.

Reduced scale by default so that it finishes on a 2-core CPU box; every stage reuses what an earlier
(interrupted) run finished: checkpoints, statistics, specs, simulation records. ``runs/REPORT.md``
collects the tables with the command, the machine and the wall time of every stage.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from convert import ann, datasets, methods
from convert.contract.io import save_spec
from convert.contract.provenance import provenance, write_json_atomic, write_text_atomic
from convert.nir_export import save_nir
from convert.pipeline import copy_spec, normalized_spec, stats_for
from convert.select import CANDIDATES, select_and_train, selected
from convert.table1 import write_table1
from convert.train import TrainConfig
from validation.harness.agreement import agreement_summary
from validation.paper.beyond import BeyondConfig, run_beyond
from validation.paper.experiments import EvalConfig
from validation.paper.figures import make_figures
from validation.paper.horizon_check import HorizonCheck, run_horizon_check
from validation.paper.networks import PUBLISHED_MODELS, shown, use_given_models
from validation.paper.replication_config import ReplicationConfig, run_replication_config
from validation.paper.report import report_markdown
from validation.paper.table2 import PAIRS, run_table2

# the published run whose stage times --estimate scales (`validation publish` writes it beside the networks)
PUBLISHED = PUBLISHED_MODELS.parent / "reproduce.json"

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
    # where Brian2's standalone projects are compiled (`--build-dir`); None: $SNN_BUILD, else <runs>/build/refsim
    build_dir: Path | None = None

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
        stats = stats_for(base, ds, root, runs, cfg.eval.calib_images, holdout=cfg.eval.holdout)
        for method in (m.name for m in methods.paper_methods()):
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


class Check(NamedTuple):
    """One agreement check of the main job: the spec ``<dataset>-<model>-<method>`` (run with ``schedule`` when
    given), two engines, and how many images (``poisson``: of them also on each engine's own Poisson input)."""

    dataset: str
    model: str
    method: str
    engines: tuple[str, str]
    images: int
    steps: int
    poisson: int = 0
    schedule: str | None = None

    @property
    def spec_name(self) -> str:
        return f"{self.dataset}-{self.model}-{self.method}"


def agreement_plan(cfg: ReproduceConfig) -> list[Check]:
    """fastsim float64 against Brian2 on identical input spikes for every network's data-based spec and one
    model-based spec (every one with ``agreement_all``), the MNIST MLP's on the cascade schedule, fastsim's
    Poisson input against Brian2's own PoissonGroup on the MNIST data-based specs, and fastsim float32 with
    Table 2's kernel against float64."""
    against_brian = ("fastsim:float64", f"refsim:{cfg.agreement_device}")
    n, steps = cfg.agreement_images, cfg.agreement_steps
    plan = []
    for ds, model in PAIRS:
        for method in ("data", "model"):
            if method == "model" and not cfg.agreement_all and (ds, model) != ("mnist", "mlp"):
                continue
            poisson = n if (ds, method) == ("mnist", "data") else 0
            plan.append(Check(ds, model, method, against_brian, n, steps, poisson))
    plan.append(Check("mnist", "mlp", "data", against_brian, n, steps, schedule="cascade"))
    float32 = (f"fastsim:float32:{cfg.eval.kernel}", "fastsim:float64")
    for model in ("mlp", "cnn") if cfg.agreement_all else ("mlp",):
        plan.append(Check("mnist", model, "data", float32, cfg.float32_images, steps // 5))
    return plan


def agreement_runs(cfg: ReproduceConfig, root: Path | None, runs: Path) -> list[dict[str, Any]]:
    """Every check of :func:`agreement_plan` on the specs under runs/specs/ (Brian2's projects built in
    ``cfg.build_dir``): their one-line summaries."""
    from convert.contract.io import load_spec

    summaries = []
    for c in agreement_plan(cfg):
        spec = load_spec(runs / "specs" / f"{c.spec_name}.npz")
        if c.schedule is not None:
            spec = dataclasses.replace(spec, schedule=c.schedule)
        summaries.append(
            agreement_summary(
                spec, c.spec_name, c.engines, c.images, c.steps, c.poisson, cfg.seed, root, runs, cfg.build_dir
            )
        )
    return summaries


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
        lambda c, r, w, d: run_beyond(c.beyond, r, w, build_dir=c.build_dir) if c.beyond_stages else None,
    ),
    Stage(
        "diagnose",
        lambda cfg: f"diagnosis of every data-based spec ({cfg.diagnose_images} images × {cfg.diagnose_steps} ms)",
        lambda c, r, w, d: diagnose_all(c, r, w) if c.beyond_stages else [],
    ),
)


def diagnose_all(cfg: ReproduceConfig, root: Path | None, runs: Path) -> list[dict[str, Any]]:
    """:func:`validation.harness.diagnose.run_diagnosis` of every network's data-based spec (runs/specs/) on the first
    ``diagnose_images`` test images, written to runs/diagnose/<spec>/; one summary per network."""
    from convert.contract.io import load_spec
    from validation.harness.diagnose import headline, run_diagnosis

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
        out.append(
            {
                "network": name,
                "snn_accuracy": result["snn_accuracy"],
                **headline(result),
                "verdict": result["verdict"],
                "picture": f"diagnose/{name}/diagnose.png",
            }
        )
        print(f"  {name}: {result['verdict']}", flush=True)
    return out


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
    speed = print_estimate(cfg, reference)
    units = stage_units(cfg)
    t0 = time.perf_counter()
    done, log = run_stages(STAGES, cfg, root, runs, units)
    total = time.perf_counter() - t0
    write_text_atomic(runs / "REPORT.md", report_markdown(cfg, done, log, total))
    summary = {
        "stages": log,
        "total_s": total,
        "agreement": done["agreement"],
        "diagnose": done["diagnose"],
        "command": cfg.command,
        "calibration": speed,
    }
    write_json_atomic(
        runs / "reproduce.json",
        {
            **summary,
            **provenance({"tag": cfg.eval.tag, "select": cfg.select, "models": shown(cfg.models)}, cfg.seed),
        },
    )
    return runs / "REPORT.md"
