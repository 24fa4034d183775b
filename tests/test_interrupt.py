"""Ctrl-C in any command line: one line on stderr, exit status 130, no traceback and no partial file."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from convert.cli import EXIT_INTERRUPTED, INTERRUPTED, run_command
from convert.contract.io import save_spec
from fastsim.synthetic import random_spec

REPO = Path(__file__).resolve().parents[1]


def _interrupting_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m toy")
    sub = parser.add_subparsers(dest="command", required=True)

    def work(args: argparse.Namespace) -> int:
        raise KeyboardInterrupt  # what SIGINT raises in the middle of the work

    sub.add_parser("run").set_defaults(func=work)
    return parser


def test_run_command_turns_ctrl_c_into_one_line_and_status_130(capsys) -> None:
    assert run_command(_interrupting_parser(), ["run"]) == EXIT_INTERRUPTED == 130
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines == [INTERRUPTED] and "Traceback" not in err


@pytest.mark.parametrize("module", ["convert", "fastsim", "refsim", "validation"])
def test_every_cli_goes_through_run_command(module, monkeypatch, capsys) -> None:
    """Each CLI's main() hands its subcommand to run_command, so Ctrl-C anywhere in the work is caught."""
    import importlib

    cli = importlib.import_module(f"{module}.__main__")
    calls = []
    monkeypatch.setattr(cli, "run_command", lambda *a, **k: calls.append(a) or EXIT_INTERRUPTED)
    assert cli.main(["--help-not-an-option"]) == EXIT_INTERRUPTED
    assert calls, f"{module}.__main__.main does not call convert.cli.run_command"


@pytest.mark.slow
def test_sigint_during_a_fastsim_run(tmp_path) -> None:
    """The probe that found it: Ctrl-C while `python -m fastsim run` simulates."""
    from convert import datasets

    try:
        root = datasets.default_root()
        datasets.load("mnist", "test", root)
    except datasets.DatasetError as err:
        pytest.skip(f"MNIST is not prepared (run `make data`): {err}")
    spec = tmp_path / "mlp.npz"
    save_spec(random_spec("mlp", seed=3), spec)
    out = tmp_path / "record.npz"
    argv = [sys.executable, "-m", "fastsim", "run", "--spec", str(spec), "--root", str(root)]
    argv += ["--images", "all", "--steps", "5000", "--out", str(out)]
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=os.environ.copy())
    err = bytearray()

    def read() -> None:
        for chunk in iter(lambda: proc.stderr.read1(4096), b""):
            err.extend(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + 120
    while b"fastsim" not in err and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.2)  # until the progress bar shows that the simulation runs
    assert proc.poll() is None, f"the run ended before it could be interrupted: {bytes(err).decode()}"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    reader.join(timeout=10)
    text = bytes(err).decode(errors="replace")
    assert proc.returncode == 130, text
    assert "Traceback" not in text and INTERRUPTED in text
    assert not out.exists() and not list(tmp_path.glob(".*"))  # no record, no temporary file
