"""The trained networks a job starts from: the published checkpoints (docs/results/models/), copied into a
runs folder and checked to be the project's architectures, or trained there from scratch."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from convert.contract.provenance import atomic_path
from validation.paper.table2 import PAIRS

REPOSITORY = Path(__file__).resolve().parents[2]
# the networks the main job publishes and starts from (`validation publish` writes them)
PUBLISHED_MODELS = REPOSITORY / "docs" / "results" / "models"


def shown(folder: Path | None) -> str | None:
    """A folder as a results file records it: relative to the repository when inside it (no machine paths)."""
    if folder is None:
        return None
    try:
        return str(Path(folder).resolve().relative_to(REPOSITORY))
    except ValueError:
        return str(folder)


def use_given_models(folder: Path, runs: Path, networks: tuple[tuple[str, str], ...] = PAIRS) -> dict[tuple, dict]:
    """Copy the checkpoints ``folder`` holds for ``networks`` into ``runs/models`` (unchanged files are left),
    checking that each loads as the project's network; a missing or foreign file is a ValueError naming it.
    Returns each network's metrics (its Table 1 row)."""
    from convert.train import checkpoint_paths, load_model

    metrics = {}
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
        metrics[(ds, model)] = m = json.loads(dst_json.read_text())
        print(f"  {ds}-{model}: given checkpoint {shown(src_pt)} (test {100 * m['test_accuracy']:.2f} %)")
    return metrics


def models_name(net: Any) -> str:
    """``mlp``, ``cnn``, ``vgg`` or ``resnet``: the project architecture a loaded checkpoint rebuilt."""
    kinds = {type(m).__name__ for m in net.modules()}
    if "Block" in kinds:
        return "resnet"
    if "MaxPool2d" in kinds:
        return "vgg"
    return "cnn" if "Conv2d" in kinds else "mlp"


def require_checkpoints(runs: Path, networks: tuple[tuple[str, str], ...]) -> None:
    """A ValueError naming every network of ``networks`` whose checkpoint (``<runs>/models/<dataset>-<model>.pt``
    and its ``.json``) is missing, with the commands that make it: a table that silently left them out was the
    fault (``validation table2``, ``figures`` and ``beyond`` check before anything runs)."""
    from convert.train import checkpoint_paths

    missing = [(ds, m, [p.name for p in checkpoint_paths(runs, ds, m) if not p.exists()]) for ds, m in networks]
    missing = [(ds, m, files) for ds, m, files in missing if files]
    if not missing:
        return
    folder = runs / "models"
    names = ", ".join(f"{ds}-{m}" for ds, m, _ in missing)
    files = ", ".join(name for _, _, found in missing for name in found)
    count = f" ({len(missing)} of the {len(networks)} networks asked for)" if len(missing) < len(networks) else ""
    one = len(missing) == 1
    train = ", ".join(f"`python -m convert train --dataset {ds} --model {m} --runs {runs}`" for ds, m, _ in missing)
    published = all((PUBLISHED_MODELS / f"{ds}-{m}.pt").exists() for ds, m, _ in missing)
    copy = (
        f", or copy the published {'one' if one else 'ones'} from {shown(PUBLISHED_MODELS)} into {folder} "
        "(`make reproduce` does)"
        if published
        else ""
    )
    raise ValueError(
        f"no checkpoint of {names}{count} in {folder} ({files} missing); "
        f"train {'it' if one else 'them'} with {train}{copy}"
    )
