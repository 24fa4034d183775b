"""Training-seed spread: Table 1 and Table 2 over several training seeds (``make reproduce-seeds``).

Retraining one setting with another seed (or on another CPU) moves the data-based SNN rows by a few tenths of
a point, as much as most differences between methods; the image-level intervals of one network do not show
that. For every training seed this trains each network with the setting the main job uses
(:func:`convert.select.selected`, the seed replaced; cached by content under ``runs/seeds/s<seed>/``; the
main job's own training seed starts from its published networks unless asked to retrain), runs
Table 2 on it (the same config as the main job's, one input seed) and then reports per network and row the
mean and spread over training seeds beside the first seed's Wilson interval, and in how many seeds each of
the paper's claims holds. Written to ``runs/seeds/seeds.{json,md}``. The main job keeps one training seed.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from convert.contract.provenance import check_outputs, provenance, write_json_atomic, write_text_atomic
from convert.select import select_and_train, selected
from convert.train import TrainConfig
from validation.markdown import table
from validation.paper.experiments import EvalConfig
from validation.paper.networks import PUBLISHED_MODELS, shown, use_given_models
from validation.paper.table2 import PAIRS, run_table2


def _main_job_eval() -> EvalConfig:
    from validation.paper.reproduce import MAIN_JOB_EVAL

    return MAIN_JOB_EVAL


@dataclass(frozen=True)
class SeedsConfig:
    """``seeds``: the training seeds; ``eval``: Table 2's config for each (the main job's by default);
    ``train``: overrides of every training config (e.g. fewer epochs, for a quick look or a test); ``models``:
    the networks trained with training seed ``models_seed`` and the main job's setting (the published ones),
    used for that seed instead of training it again (None, or any ``train`` override: every seed is trained)."""

    seeds: tuple[int, ...] = (0, 1, 2)
    pairs: tuple[tuple[str, str], ...] = PAIRS
    eval: EvalConfig = field(default_factory=_main_job_eval)
    train: dict[str, Any] = field(default_factory=dict)
    models: Path | None = PUBLISHED_MODELS
    models_seed: int = 0

    def __post_init__(self) -> None:
        if len(set(self.seeds)) < 2:
            raise ValueError(f"a spread needs at least two distinct training seeds, got {self.seeds}")

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "eval": self.eval.to_dict(), "models": shown(self.models)}

    def given(self, seed: int) -> Path | None:
        """The folder of networks that stand for training seed ``seed``, or None: train it."""
        return self.models if self.models is not None and not self.train and seed == self.models_seed else None


def train_seed(cfg: SeedsConfig, seed: int, root: Path | None, runs: Path) -> dict[tuple[str, str], dict]:
    """Every network trained with training seed ``seed`` into ``runs`` (or copied there, :meth:`SeedsConfig.given`);
    their metrics (Table 1's row)."""
    given = cfg.given(seed)
    if given is not None:
        metrics = use_given_models(given, runs, cfg.pairs)
        for (ds, model), m in metrics.items():
            if m.get("seed") != seed:
                raise ValueError(
                    f"{given}: {ds}-{model} was trained with seed {m.get('seed')}, not {seed}; "
                    "pass models=None (--train) to train every seed"
                )
        return metrics
    out = {}
    for ds, model in cfg.pairs:
        base = TrainConfig(dataset=ds, model=model, seed=seed, validation_images=cfg.eval.holdout)
        chosen = tuple({**c, **cfg.train} for c in selected(ds, model))
        out[(ds, model)] = select_and_train(base, chosen, root, runs, progress=False)
    return out


def aggregate(seeds: tuple[int, ...], tables1: list[dict], tables2: list[dict]) -> dict[str, Any]:
    """Per network: the ANN's test accuracy per training seed; per network and row: the SNN's accuracy at the
    row's horizon (T for the fast rows, longer for model-based normalization, which is still near chance at T)
    per seed, their mean, sample standard deviation and range, and the first seed's 95 % Wilson interval; per
    claim: the seeds in which it holds."""
    rows: dict[tuple[str, str, str], dict[str, Any]] = {}
    for t2 in tables2:
        for e in t2["entries"]:
            r = rows.setdefault((e["dataset"], e["model"], e["row"]), {"accuracy": [], "first": e})
            r["accuracy"].append(float(e["accuracy_mean"]))
    entries = []
    for (ds, model, row), r in rows.items():
        acc, first = np.asarray(r["accuracy"]), r["first"]
        lo, hi = (float(x) for x in first["ci95_first_seed"])
        entries.append(
            {
                "dataset": ds,
                "model": model,
                "row": row,
                "images": int(first["images"]),
                "horizon_steps": int(first["horizon_steps"]),
                "accuracy": acc.tolist(),
                "mean": float(acc.mean()),
                "std": float(acc.std(ddof=1)) if len(acc) > 1 else 0.0,
                "range": float(acc.max() - acc.min()),
                "ci95_first_seed": [lo, hi],
                "ci95_half_width_first_seed": (hi - lo) / 2,
            }
        )
    ann = {}
    for t1 in tables1:
        for (ds, model), m in t1.items():
            ann.setdefault(f"{ds}-{model}", []).append(float(m["test_accuracy"]))
    claims: dict[tuple[str, str, str], list[bool]] = {}
    for t2 in tables2:
        for c in t2.get("claims", []):
            claims.setdefault((c["dataset"], c["model"], c["claim"]), []).append(bool(c["holds"]))
    return {
        "seeds": list(seeds),
        "ann_test_accuracy": ann,
        "entries": entries,
        "claims": [{"dataset": d, "model": m, "claim": c, "holds": h} for (d, m, c), h in claims.items()],
    }


def markdown(summary: dict[str, Any]) -> str:
    seeds = summary["seeds"]
    lines = [
        f"Training seeds {', '.join(map(str, seeds))}: each network retrained with the main job's setting and "
        "the seed replaced, Table 2 run on each (one input seed). SNN accuracy per training seed, their "
        "mean ± sample standard deviation and range, beside the 95 % Wilson half-width over images of the first "
        "seed: a spread as large as the half-width means the training seed matters as much as the images. Each "
        "row at its horizon (images × steps): T for the fast rows, longer for model-based normalization.",
        "",
    ]
    lines += table(
        ("network", "ANN test % per seed", "mean"),
        (
            (net, " / ".join(f"{100 * a:.2f}" for a in acc), f"{100 * np.mean(acc):.2f}")
            for net, acc in summary["ann_test_accuracy"].items()
        ),
    )
    lines += [""]
    lines += table(
        ("network", "row", "images × steps", "SNN % per seed", "mean ± std", "range (pp)", "± images, first seed (pp)"),
        (
            (
                f"{e['dataset']}-{e['model']}",
                e["row"],
                f"{e['images']} × {e['horizon_steps']}",
                " / ".join(f"{100 * a:.2f}" for a in e["accuracy"]),
                f"{100 * e['mean']:.2f} ± {100 * e['std']:.2f}",
                f"{100 * e['range']:.2f}",
                f"{100 * e['ci95_half_width_first_seed']:.2f}",
            )
            for e in summary["entries"]
        ),
    )
    lines += ["", "The paper's claims, per training seed:", ""]
    lines += table(
        ("network", "claim", "holds in"),
        (
            (f"{c['dataset']}-{c['model']}", c["claim"], f"{sum(c['holds'])} of {len(c['holds'])} seeds")
            for c in summary["claims"]
        ),
    )
    return "\n".join(lines) + "\n"


def run_seeds(cfg: SeedsConfig, root: Path | None, runs: Path, progress: bool = True) -> dict[str, Any]:
    """Train, run Table 2 and aggregate for every training seed; resumable (everything cached by content)."""
    tables1, tables2 = [], []
    for seed in cfg.seeds:
        folder = runs / "seeds" / f"s{seed}"
        tables1.append(train_seed(cfg, seed, root, folder))
        tables2.append(run_table2(cfg.eval, root, folder, pairs=cfg.pairs, progress=progress))
    summary = {**aggregate(cfg.seeds, tables1, tables2), "config": cfg.to_dict(), **provenance(cfg.to_dict(), None)}
    check_outputs(runs / "seeds" / "seeds.json", runs / "seeds" / "seeds.md")  # both or none
    write_json_atomic(runs / "seeds" / "seeds.json", summary)
    write_text_atomic(runs / "seeds" / "seeds.md", "# Training-seed spread\n\n" + markdown(summary))
    return summary
