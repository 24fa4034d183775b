"""Brian2, imported without its SIGINT handler: the one place refsim (and anything running Brian2 for it)
imports the package.

Importing ``brian2`` replaces the process's SIGINT handler with its ``_InterruptHandler``, which during
``Network.run`` turns Ctrl-C into a request to "finish simulating the current time step and then stop" (its
docstring), and otherwise calls the handler it replaced. Two faults follow:

* Ctrl-C during a runtime simulation would end ``Network.run`` early instead of raising, and refsim would read the
  monitors of a shortened run;
* where SIGINT was *ignored* when Brian2 was imported (a background job: ``make test &`` from a
  non-interactive shell starts with SIGINT ignored), the replaced "handler" is ``signal.SIG_IGN``, which is not
  callable: every later SIGINT (or ``_thread.interrupt_main()``) fails with
  ``TypeError: 'Handlers' object is not callable``, and a signal the shell asked to ignore is no longer ignored.

:func:`load` imports Brian2 once and puts back whatever SIGINT disposition the process had before (Python's
``default_int_handler``, ``SIG_IGN``, ``SIG_DFL`` or a handler of the caller's), so the project's interrupt
path is Python's own KeyboardInterrupt (``convert.cli.run_command`` turns it into one line and exit 130),
whatever Brian2 does. Brian2's handler can be installed only from the main thread; imported from another thread,
Brian2 itself fails there (``signal only works in main thread``), so do the first import in the main thread
(validation.cluster's worker plugin does).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import ModuleType

__all__ = ["load"]


def load() -> ModuleType:
    """The ``brian2`` module, imported (once) with the process's SIGINT disposition kept as it was."""
    module = sys.modules.get("brian2")
    if module is not None:
        return module
    if threading.current_thread() is not threading.main_thread():
        import brian2  # Brian2's own signal.signal call fails here with a ValueError naming the thread

        return brian2
    previous = signal.getsignal(signal.SIGINT)
    try:
        import brian2
    finally:
        if previous is not None:  # None: a handler not installed from Python, which cannot be put back
            signal.signal(signal.SIGINT, previous)
    brian2.prefs.core.stop_on_keyboard_interrupt = False  # in case a later import path reinstalls the handler
    return brian2
