"""What the tests that start a child process share: SIGINT's disposition in the child, a Python script run to
completion, and a child's stderr collected while it runs (to wait for its progress bar, then interrupt it)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def sigint_default() -> None:
    """In a child before it runs Python: SIGINT's default disposition, so that Python installs its
    KeyboardInterrupt handler even when this suite runs as a background job (started with SIGINT ignored, which
    children inherit; a user's command started from a terminal has the default)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sigint_ignored() -> None:
    """In a child before it runs Python: SIGINT ignored, as a background job of a non-interactive shell has it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def run_python(script: str, preexec_fn=None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -c script`` in the checkout, to completion, its output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=timeout, preexec_fn=preexec_fn
    )


class Stderr:
    """A child's stderr, read on a thread as it arrives (``proc`` started with ``stderr=subprocess.PIPE``)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc, self.data = proc, bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        for chunk in iter(lambda: self.proc.stderr.read1(4096), b""):
            self.data.extend(chunk)

    def wait_for(self, marker: bytes, timeout: float) -> None:
        """Until ``marker`` has appeared, the child has ended or ``timeout`` seconds have passed."""
        deadline = time.monotonic() + timeout
        while marker not in self.data and self.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)

    def text(self, join_timeout: float = 10) -> str:
        """Everything the child wrote, once the reader has reached the end of the stream."""
        self.thread.join(timeout=join_timeout)
        return bytes(self.data).decode(errors="replace")
