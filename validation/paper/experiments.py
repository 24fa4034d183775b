"""Evaluation runs shared by Table 2, the figures and the main job: one (dataset, model, row, seed) at a time.

Rows come from :mod:`validation.paper.rows` (one per registered normalization method, and a tuned-threshold row
for the baseline); with the built-in methods they are the paper's Table 2 columns plus robust normalization:
``baseline`` (the direct copy, threshold 1), ``baseline-tuned`` (the threshold chosen by a search on a
held-out part of the *training* set, never the test set: the last ``holdout`` training images, which
calibration excludes), ``model`` (Algorithm 1), ``data`` (Algorithm 2) and ``robust`` (the 99.9th percentile
of activations, Rueckauer et al. 2017).

Every cached artifact (the threshold search, each run's SpikeRecord) is named by a content fingerprint of
everything that determines it (:mod:`convert.contract.fingerprint`): the spec's weights and semantics, the dataset
split's recorded hash, the evaluation settings that matter to it, the engine options, the input seed and the
format versions. An interrupted Table 2 resumes where it stopped, and a retrained checkpoint or a changed
setting recomputes exactly the entries it changes; an old entry is never read for a new question.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from convert import datasets, methods
from convert.contract.fingerprint import (
    CACHE_FORMAT_VERSION,
    KEY_FIELD,
    fingerprint,
    read_cached,
    read_cached_json,
    short,
    spec_fingerprint,
)
from convert.contract.provenance import provenance, write_json_atomic
from convert.contract.records import RECORD_FORMAT_VERSION, SpikeRecord, concatenate, default_checkpoints
from convert.contract.spec import NetworkSpec
from convert.pipeline import copy_spec, normalized_spec, stats_for
from validation.harness.engines import run
from validation.paper.rows import VARIANTS, rows

REPLICATION_THRESHOLD = {"mlp": 4.0, "cnn": 20.0}


@dataclass(frozen=True)
class EvalConfig:
    """What Table 2 evaluates and how. Every row runs on the first ``n_images`` test images for ``steps`` ms
    (T, the common horizon at which all rows are compared), except the ``slow_rows`` (model-based
    normalization needs seconds of simulated time), which run on the first ``slow_images`` of them for
    ``slow_steps`` ms; their accuracy at T is read from the same run's checkpoints."""

    n_images: int = 500
    steps: int = 300
    seeds: tuple[int, ...] = (0, 1, 2)
    slow_rows: tuple[str, ...] = ()
    slow_steps: int = 5000
    slow_images: int = 2000
    part_images: int = 1000  # records are simulated and cached in parts of this many images (resume unit)
    extra_checkpoints: tuple[int, ...] = ()  # steps every record also keeps (where they fall within its run)
    device: str = "cpu"
    dtype: str = "float32"
    matmul: str = "fp32"  # fastsim's float32 product mode (fp32, tf32x2, tf32x3)
    kernel: str = "auto"  # fastsim's kernel: events, torch or triton; auto: events on a CPU, torch on a GPU
    batch_size: int | None = None
    thresholds: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 20.0, 32.0)
    search_images: int = 500
    holdout: int = 5000
    search_seed: int = 1_000_003
    percentile: float = 99.9
    calib_images: int | None = 20_000
    rows: tuple[str, ...] | None = None  # the rows evaluated (None: every row of the table); names of rows.py

    def __post_init__(self) -> None:
        for name in ("n_images", "steps", "slow_steps", "slow_images", "part_images", "search_images"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"EvalConfig.{name} must be a positive int, got {value!r}")
        if not self.seeds:
            raise ValueError("EvalConfig.seeds: give at least one input seed")
        if self.rows is not None:
            from validation.paper.rows import named

            object.__setattr__(self, "rows", tuple(self.rows))
            named(self.rows)  # an unknown name is a ValueError listing the rows
        if self.kernel == "auto" and self.device != "worker":  # the device's fastest exact engine (keys name it)
            from fastsim.network import fastest_kernel

            object.__setattr__(self, "kernel", fastest_kernel(self.device))

    @property
    def tag(self) -> str:
        # the folder name: the exact float32 engines (events, torch) share it; the records' keys tell them apart
        engine = "" if self.matmul == "fp32" and self.kernel in ("events", "torch") else f"-{self.matmul}-{self.kernel}"
        slow = ""
        if self.slow_rows and self.plan(self.slow_rows[0]) != (self.n_images, self.steps):
            images, steps = self.plan(self.slow_rows[0])
            slow = f"-slow{images}x{steps}"
        only = "" if self.rows is None else "-rows-" + "-".join(self.rows)
        return f"n{self.n_images}-t{self.steps}{slow}-{self.dtype}{engine}{only}"

    def plan(self, row: str) -> tuple[int, int]:
        """(images, horizon in steps) of a row: a slow row runs on at most ``slow_images`` of the images, for
        at least ``slow_steps`` and never less than T."""
        if row in self.slow_rows:
            return min(self.slow_images, self.n_images), max(self.slow_steps, self.steps)
        return self.n_images, self.steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @property
    def simulator_options(self) -> dict[str, Any]:
        """fastsim's keyword arguments for every run of this config (the one place they are spelled out)."""
        return {
            "device": self.device,
            "dtype": self.dtype,
            "matmul": self.matmul,
            "kernel": self.kernel,
            "batch_size": self.batch_size,
        }

    @property
    def engine(self) -> dict[str, Any]:
        """The simulator options that can change a record (float rounding differs between them)."""
        return {"engine": "fastsim", **self.simulator_options}


def figure_checkpoints(steps: int, points: int = 60) -> np.ndarray:
    """A log-spaced grid of step counts (1 .. steps) for error-vs-time curves."""
    grid = np.unique(np.round(np.logspace(0, np.log10(steps), points)).astype(np.int64))
    return np.union1d(grid, default_checkpoints(steps))


def heldout(dataset: str, root: Path | None, cfg: EvalConfig) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images, labels and indices of the threshold-search set: from the training split's held-out tail."""
    train = datasets.load(dataset, "train", root)
    idx = np.arange(len(train.images) - cfg.holdout, len(train.images))[: cfg.search_images]
    return train.images[idx], train.labels[idx], idx


def search_threshold(
    base: NetworkSpec,
    images: np.ndarray,
    labels: np.ndarray,
    indices: np.ndarray,
    cfg: EvalConfig,
    progress: bool = True,
) -> tuple[float, dict[float, float]]:
    """The baseline threshold with the best accuracy on the given (held-out training) images.

    Ties go to the smaller threshold. Returns the choice and the accuracy of every candidate."""
    from convert.normalize import baseline

    scores = {}
    # one bar per search: on the deeper networks each candidate takes minutes of the CPU
    for theta in tqdm(cfg.thresholds, desc="threshold search", unit="θ", leave=False, disable=not progress):
        spec, _ = baseline(base, theta)
        rec = run(
            "fastsim",
            spec,
            images,
            steps=cfg.steps,
            seed=cfg.search_seed,
            labels=labels,
            image_indices=indices,
            compile=True,  # many runs of one network: torch.compile pays for itself (2x on the CNN)
            **cfg.simulator_options,
        )
        scores[float(theta)] = rec.accuracy()
    best = max(scores, key=lambda t: (scores[t], -t))
    return best, scores


def search_key(base: NetworkSpec, dataset: str, cfg: EvalConfig) -> str:
    """Fingerprint of a threshold search: the copy spec, the held-out images, the candidates and the engine."""
    return fingerprint(
        {
            "kind": "threshold-search",
            "cache_format": CACHE_FORMAT_VERSION,
            "spec": spec_fingerprint(base),
            "data": datasets.recorded_hashes(dataset, "train"),
            "search": {k: getattr(cfg, k) for k in ("thresholds", "search_images", "holdout", "search_seed", "steps")},
            "engine": cfg.engine,
        }
    )


def cached_search(
    base: NetworkSpec, dataset: str, root: Path | None, cfg: EvalConfig, out: Path, progress: bool = True
) -> dict[str, Any]:
    """The baseline threshold search, cached under ``out/searches/`` by :func:`search_key`."""
    key = search_key(base, dataset, cfg)
    path = out / "searches" / f"threshold-{dataset}-{short(key)}.json"
    search = read_cached_json(path, key)
    if search is not None:
        return search
    tuned, scores = search_threshold(base, *heldout(dataset, root, cfg), cfg, progress)
    search = {
        KEY_FIELD: key,
        "chosen": tuned,
        "accuracy": {str(k): v for k, v in scores.items()},
        "on": "held-out train",
        **provenance(cfg.to_dict(), cfg.search_seed),
    }
    write_json_atomic(path, search)
    return search


def build_specs(
    dataset: str, model: str, root: Path | None, runs: Path, cfg: EvalConfig, out: Path, progress: bool = True
) -> dict:
    """Every row's spec for one trained model (threshold search and statistics cached by content); with
    ``cfg.rows``, only those rows' (no threshold search nor statistics that they do not need)."""
    base = copy_spec(dataset, model, runs)
    table = rows() if cfg.rows is None else tuple(r for r in rows() if r.name in cfg.rows)
    search = cached_search(base, dataset, root, cfg, out, progress) if any(r.tuned for r in table) else None
    stats = None
    if any(methods.get(r.method).needs_stats for r in table):
        stats = stats_for(base, dataset, root, runs, cfg.calib_images, holdout=cfg.holdout, progress=progress)
    shared = {"threshold": 1.0, "percentile": cfg.percentile}
    specs = {}
    for row in table:
        options = {**shared, "threshold": search["chosen"]} if row.tuned else shared
        specs[row.name] = normalized_spec(base, row.method, stats, **options)
    for row in VARIANTS:  # the same spec with simulation options changed (built always: cheap)
        if row.method not in specs:
            continue
        spec, report = specs[row.method]
        specs[row.name] = (dataclasses.replace(spec, **row.changes), report)
    return {"base": base, "specs": specs, "search": search}


def record_checkpoints(steps: int, common: int, extra: tuple[int, ...] = ()) -> np.ndarray:
    """The checkpoints of a record run for ``steps``: the figures' log grid, the common horizon T and any
    ``extra`` steps, as far as they fall within the run."""
    wanted = [s for s in (common, *extra) if 1 <= s <= steps]
    return np.union1d(figure_checkpoints(steps), np.asarray(wanted, dtype=np.int64))


def record_key(spec: NetworkSpec, dataset: str, cfg: EvalConfig, seed: int, images: tuple[int, int], steps: int) -> str:
    """Fingerprint of one run: spec content, test split, the image range [lo, hi), steps, checkpoints, engine,
    seed. Two rows whose specs are equal (a tuned threshold that came out 1) share their records."""
    return fingerprint(
        {
            "kind": "table2-record",
            "cache_format": CACHE_FORMAT_VERSION,
            "record_format": RECORD_FORMAT_VERSION,
            "spec": spec_fingerprint(spec),
            "data": datasets.recorded_hashes(dataset, "test"),
            "images": [int(images[0]), int(images[1])],
            "steps": int(steps),
            "checkpoints": record_checkpoints(steps, cfg.steps, cfg.extra_checkpoints),
            "engine": cfg.engine,
            "seed": int(seed),
        }
    )


def record_path(out: Path, key: str, dataset: str, model: str, seed: int, part: bool = False) -> Path:
    """Where the record of :func:`record_key` ``key`` lives (parts under ``records/parts/``); the readable
    prefix is for people, the key decides."""
    folder = out / "records" / ("parts" if part else "")
    return folder / f"{dataset}-{model}-s{seed}-{short(key)}.npz"


@dataclass(frozen=True)
class Job:
    """One record of Table 2: ``spec`` on the first ``images`` test images for ``steps`` steps, input seed
    ``seed``; simulated in parts of ``cfg.part_images`` images, each cached by its own key."""

    spec: NetworkSpec
    dataset: str
    model: str
    seed: int
    images: int
    steps: int

    def parts(self, cfg: EvalConfig) -> list[tuple[int, int]]:
        return [(lo, min(self.images, lo + cfg.part_images)) for lo in range(0, self.images, cfg.part_images)]

    def key(self, cfg: EvalConfig) -> str:
        return record_key(self.spec, self.dataset, cfg, self.seed, (0, self.images), self.steps)

    def path(self, cfg: EvalConfig, out: Path) -> Path:
        return record_path(out, self.key(cfg), self.dataset, self.model, self.seed)

    def test_split(self, root: Path | None) -> datasets.Split:
        """The test split the job's images come from; more images than it holds is an error."""
        test = datasets.load(self.dataset, "test", root)
        if self.images > len(test.images):
            raise ValueError(f"{self.images} images exceed the {self.dataset} test split ({len(test.images)} images)")
        return test

    def part(self, cfg: EvalConfig, out: Path, lo: int, hi: int) -> tuple[str, Path]:
        """The cache key and file of the part holding test images [lo, hi)."""
        key = record_key(self.spec, self.dataset, cfg, self.seed, (lo, hi), self.steps)
        return key, record_path(out, key, self.dataset, self.model, self.seed, part=True)

    def missing_parts(self, cfg: EvalConfig, out: Path) -> list[tuple[int, int]]:
        """The image ranges still to simulate (none when the record or all its parts are cached)."""
        if _cached(self.path(cfg, out), self.key(cfg)) is not None:
            return []
        return [(lo, hi) for lo, hi in self.parts(cfg) if not self.part(cfg, out, lo, hi)[1].exists()]

    def missing_image_steps(self, cfg: EvalConfig, out: Path) -> int:
        """Image-steps still to simulate (0 when the record or all its parts are cached)."""
        return sum((hi - lo) * self.steps for lo, hi in self.missing_parts(cfg, out))


def _cached(path: Path, key: str) -> SpikeRecord | None:
    return read_cached(path, key, SpikeRecord.load, lambda r: r.meta)


@dataclass(frozen=True)
class PartTask:
    """Everything one part of a record needs besides its spec, so that a worker without the dataset or the
    cache (a Dask worker on another machine, :mod:`validation.cluster`) can simulate it: the part's test
    images [lo, hi) and labels, the steps, input seed, checkpoints, simulator options and cache key."""

    images: np.ndarray
    labels: np.ndarray
    lo: int
    hi: int
    steps: int
    seed: int
    checkpoints: np.ndarray
    options: dict[str, Any]
    key: str

    @classmethod
    def of(cls, job: Job, cfg: EvalConfig, lo: int, hi: int, images, labels, key: str) -> PartTask:
        checkpoints = record_checkpoints(job.steps, cfg.steps, cfg.extra_checkpoints)
        return cls(images, labels, lo, hi, job.steps, job.seed, checkpoints, cfg.simulator_options, key)

    @property
    def image_steps(self) -> int:
        return (self.hi - self.lo) * self.steps


def simulate_part(task: PartTask, spec: NetworkSpec, **override: Any) -> SpikeRecord:
    """The record of one part (``override``: simulator options that replace the task's, e.g. a cluster
    worker's device; the record's meta says what ran it)."""
    options = {**task.options, **override}
    if options["device"] == "worker":
        raise ValueError("device 'worker' (each cluster worker picks its own) needs a cluster: add --dask ADDRESS")
    return run(
        "fastsim",
        spec,
        task.images,
        steps=task.steps,
        seed=task.seed,
        labels=task.labels,
        image_indices=np.arange(task.lo, task.hi),
        compile=True,
        checkpoints=task.checkpoints,
        **options,
    ).with_meta(**{KEY_FIELD: task.key})


def evaluate(job: Job, root: Path | None, cfg: EvalConfig, out: Path, on_part=None) -> SpikeRecord:
    """The record of ``job``: cached whole, or joined from its cached parts, simulating the missing ones
    (``on_part(image_steps)`` after each). A file holding another key is recomputed, never read."""
    key, path = job.key(cfg), job.path(cfg, out)
    rec = _cached(path, key)
    if rec is not None:
        return rec
    test = job.test_split(root)
    parts = []
    for lo, hi in job.parts(cfg):
        part_key, part_path = job.part(cfg, out, lo, hi)
        part = _cached(part_path, part_key)
        if part is None:
            task = PartTask.of(job, cfg, lo, hi, test.images[lo:hi], test.labels[lo:hi], part_key)
            part = simulate_part(task, job.spec)
            part.save(part_path)
            if on_part is not None:
                on_part((hi - lo) * job.steps)
        parts.append(part)
    wall = sum(float(p.meta.get("wall_s", 0.0)) for p in parts)
    rec = concatenate(parts).with_meta(
        dataset=job.dataset,
        **{KEY_FIELD: key},
        wall_s=wall,
        image_steps_per_s=job.images * job.steps / wall if wall > 0 else None,
        provenance=provenance(cfg.to_dict(), job.seed),
    )
    rec.save(path)
    return rec
