"""Ctrl-C in any command line: one line on stderr, exit status 130, no traceback and no partial file."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time

import pytest

from convert.cli import EXIT_INTERRUPTED, INTERRUPTED, run_command
from convert.contract.io import save_spec
from fastsim.synthetic import random_spec
from tests.subprocesses import REPO, Stderr, run_python, sigint_default, sigint_ignored


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
def test_sigint_during_a_fastsim_run(tmp_path, mnist_root) -> None:
    """The probe that found it: Ctrl-C while `python -m fastsim run` simulates."""
    root = mnist_root
    spec = tmp_path / "mlp.npz"
    save_spec(random_spec("mlp", seed=3), spec)
    out = tmp_path / "record.npz"
    argv = [sys.executable, "-m", "fastsim", "run", "--spec", str(spec), "--root", str(root)]
    argv += ["--images", "all", "--steps", "5000", "--out", str(out)]
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=os.environ.copy(),
        preexec_fn=sigint_default,
    )
    err = Stderr(proc)
    err.wait_for(b"fastsim", timeout=120)  # until the progress bar shows that the simulation runs
    assert proc.poll() is None, f"the run ended before it could be interrupted: {bytes(err.data).decode()}"
    time.sleep(1.0)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=120)
    text = err.text()
    assert proc.returncode == 130, text
    assert "Traceback" not in text and INTERRUPTED in text
    assert not out.exists() and not list(tmp_path.glob(".*"))  # no record, no temporary file


@pytest.mark.parametrize("import_brian2", ["refsim", "raw"])
def test_ctrl_c_tests_pass_in_a_suite_started_with_sigint_ignored(import_brian2, tmp_path) -> None:
    """`make test &` from a non-interactive shell starts with SIGINT ignored. Brian2, imported earlier in the
    session, wrapped that disposition in a handler that calls SIG_IGN (``TypeError: 'Handlers' object is not
    callable``) and the Ctrl-C tests of the event engine failed. Here they run in such a process after Brian2
    was imported as refsim imports it and as a test module might (``import brian2``), then SIGINT's
    disposition is checked: refsim.brian.load leaves it ignored."""
    first = "from refsim.brian import load; load()" if import_brian2 == "refsim" else "import brian2"
    script = (
        "import signal, sys, pytest\n"
        f"{first}\n"
        "code = pytest.main(['-q', '-p', 'no:cacheprovider', 'tests/fastsim/test_events.py', "
        "'-k', 'ctrl_c or stops_when_asked'])\n"
        "ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN\n"
        "print('SIGINT ignored after the tests:', ignored)\n"
        "sys.exit(code)\n"
    )
    proc = run_python(script, preexec_fn=sigint_ignored, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out
    assert "2 passed" in out and "not callable" not in out, out
    if import_brian2 == "refsim":
        assert "SIGINT ignored after the tests: True" in out, out


def test_brian2_import_keeps_the_sigint_disposition() -> None:
    """refsim.brian.load imports Brian2 and puts back the handler the process had (here: SIG_IGN, and Python's
    default handler), so Ctrl-C is a KeyboardInterrupt, never Brian2's request to stop a run early."""
    script = (
        "import signal\n"
        "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "from refsim.brian import load\n"
        "brian2 = load()\n"
        "assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.getsignal(signal.SIGINT)\n"
        "assert brian2.prefs.core.stop_on_keyboard_interrupt is False\n"
        "print('ok')\n"
    )
    proc = run_python(script)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
    script = (
        "import signal\n"
        "from refsim.brian import load\n"
        "load()\n"
        "assert signal.getsignal(signal.SIGINT) is signal.default_int_handler\n"
        "print('ok')\n"
    )
    proc = run_python(script, preexec_fn=sigint_default)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
