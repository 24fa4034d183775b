"""A new user's probes on a fresh clone (docs/reliability.md, "A new user's probes"): each gives one clear line
and exit status 2, or a correct result, and loses nothing. Probes pinned elsewhere are named in that table."""

from __future__ import annotations

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from convert.contract import provenance
from convert.contract.io import save_spec
from convert.contract.records import SpikeRecord
from fastsim.__main__ import main as fastsim_main
from fastsim.synthetic import random_spec
from validation.__main__ import main as validation_main

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def mlp_spec(tmp_path) -> Path:
    path = tmp_path / "mlp.npz"
    save_spec(random_spec("mlp", seed=3), path)
    return path


def _one_error_line(capsys) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err, err
    return err


def test_negative_image_count_is_one_line(mlp_spec, mnist_root, tmp_path, capsys) -> None:
    out = tmp_path / "r.npz"
    argv = ["run", "--spec", str(mlp_spec), "--root", str(mnist_root), "--images", "-3", "--steps", "5"]
    assert fastsim_main([*argv, "--out", str(out)]) == 2
    assert "argument --images: must be a positive integer or `all`, got '-3'" in _one_error_line(capsys)
    assert not out.exists()


def test_unwritable_output_folder_is_one_line(mlp_spec, mnist_root, tmp_path, capsys, monkeypatch) -> None:
    """A read-only folder (simulated: as root, permissions do not stop a write): the temporary file cannot be
    created, so the run ends with one line naming the path, and nothing is left behind."""
    out = tmp_path / "locked" / "r.npz"

    def refuse(*args, dir=None, **kwargs):
        raise PermissionError(13, "Permission denied", str(dir))

    monkeypatch.setattr(provenance, "tempfile", types.SimpleNamespace(mkstemp=refuse))  # the atomic writer's
    argv = ["run", "--spec", str(mlp_spec), "--root", str(mnist_root), "--images", "2", "--steps", "5"]
    assert fastsim_main([*argv, "--no-progress", "--out", str(out)]) == 2
    err = _one_error_line(capsys)
    assert "Permission denied" in err and str(out.parent) in err
    assert not out.exists()


def test_unknown_engine_is_one_line(mlp_spec, mnist_root, tmp_path, capsys) -> None:
    out = tmp_path / "agreement"
    argv = ["agree", "--spec", str(mlp_spec), "--root", str(mnist_root), "--images", "2", "--steps", "5"]
    assert validation_main([*argv, "--engines", "fastsim:float64,brain2", "--out", str(out)]) == 2
    assert "engine must be fastsim[:option...], refsim[:device]" in _one_error_line(capsys)
    assert not out.exists()


@pytest.mark.slow
def test_two_runs_writing_one_out_leave_one_whole_record(mlp_spec, mnist_root, tmp_path) -> None:
    """Two runs started together on one --out: each writes a whole file under a temporary name and renames it,
    so the file that stays is one complete record (the last rename wins), never a mixture."""
    out = tmp_path / "r.npz"
    procs = []
    for seed in (1, 2):
        argv = [sys.executable, "-m", "fastsim", "run", "--spec", str(mlp_spec), "--root", str(mnist_root)]
        argv += ["--images", "40", "--steps", "50", "--seed", str(seed), "--no-progress", "--out", str(out)]
        procs.append(subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE))
    for proc in procs:
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err.decode()
    record = SpikeRecord.load(out)
    assert record.n_images == 40 and record.meta["provenance"]["seed"] in (1, 2)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no temporary file left
    assert np.all(record.layer_counts.sum(axis=1) > 0)
