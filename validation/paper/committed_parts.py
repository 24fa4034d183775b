"""Table 2's records at the replication's scale, kept in the repository part by part.

A ``--full`` record (10 000 images × 10 000 ms) is simulated in parts of ``part_images`` images, each cached by
the content key of everything that determines it (:meth:`validation.paper.experiments.Job.part`: the spec's
fingerprint, the test split's hash, the image range, the steps, the checkpoints, the engine and the input seed).
The key names the file and is stored in it, so a part is the same file wherever it was simulated: the event
engine sums in one fixed order, and a part rerun on another machine must give the same spike counts.

:func:`publish` copies every finished part of the requested rows from the cache (``runs/table2/records/parts``)
to :data:`COMMITTED` (``docs/results/table2-full/parts``, kept in git, about 0.6 MB a part); :func:`seed` copies
committed parts into the cache before a run, so ``python -m validation table2 --full`` builds the table from
them with the same code as the main job and simulates only what is missing. A committed file is read only under
its own key (a file holding another key is ignored, as in the cache).
"""

from __future__ import annotations

import shutil
from pathlib import Path

from convert.contract.provenance import atomic_path

COMMITTED = Path(__file__).resolve().parents[2] / "docs" / "results" / "table2-full" / "parts"

__all__ = ["COMMITTED", "INDEX", "add_to_index", "index_entry", "part_files", "publish", "seed"]


def part_files(jobs, cfg, cache: Path) -> list[Path]:
    """Every part file of ``jobs`` (:class:`Job`) in ``cache``, finished or not, in job and image order."""
    return [job.part(cfg, cache, lo, hi)[1] for job in jobs for lo, hi in job.parts(cfg)]


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dest) as tmp:
        shutil.copyfile(src, tmp)


def seed(jobs, cfg, cache: Path, committed: Path | None = None) -> int:
    """Copy the committed parts of ``jobs`` that the cache lacks into it; returns how many."""
    committed = COMMITTED if committed is None else committed
    n = 0
    for path in part_files(jobs, cfg, cache):
        source = committed / path.name
        if source.exists() and not path.exists():
            _copy(source, path)
            n += 1
    return n


def publish(jobs, cfg, cache: Path, committed: Path | None = None) -> int:
    """Copy the finished parts of ``jobs`` from the cache to ``committed`` (default :data:`COMMITTED`) and note
    each new one in its :data:`INDEX` (who simulated it: :func:`index_entry`); returns how many are new."""
    committed = COMMITTED if committed is None else committed
    new = []
    for path in part_files(jobs, cfg, cache):
        if path.exists() and not (committed / path.name).exists():
            _copy(path, committed / path.name)
            new.append(committed / path.name)
    if new:
        from convert.contract.provenance import git_commit, machine

        add_to_index(committed, [index_entry(p, git_commit(), machine()) for p in new])
    return len(new)


INDEX = "index.json"  # beside the parts: per file its key, wall time, and the commit and machine that ran it


def index_entry(path: Path, commit: str | None, machine: dict | None) -> dict:
    """A committed part's provenance: its file, content key, images, engine, wall time, commit and machine (the
    record's own meta holds the first ones; the commit and machine are those of the run that published it)."""
    from convert.contract.records import SpikeRecord

    record = SpikeRecord.load(path)
    meta = record.meta
    return {
        "file": path.name,
        "cache_key": meta.get("cache_key"),
        "images": [int(record.image_indices.min()), int(record.image_indices.max()) + 1],
        "steps": int(record.steps),
        "engine": {k: meta.get(k) for k in ("simulator", "kernel", "dtype", "device")},
        "wall_s": meta.get("wall_s"),
        "commit": commit,
        "machine": machine,
    }


def add_to_index(committed: Path, entries: list[dict]) -> None:
    """Add (or replace, by file name) ``entries`` in ``committed``'s index, written atomically."""
    import json

    from convert.contract.provenance import write_json_atomic

    path = committed / INDEX
    known = {e["file"]: e for e in (json.loads(path.read_text())["parts"] if path.exists() else [])}
    known.update({e["file"]: e for e in entries})
    write_json_atomic(path, {"parts": [known[k] for k in sorted(known)]})
