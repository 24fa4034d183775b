"""Settings shared by every test package."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Silence brian2's use of pyparsing names deprecated by pyparsing 3.3 (noise, not our code).

    Every test that may build a Brian2 network gets the filter: tests/refsim and the engine-parametrized
    tests/conformance."""
    try:
        from pyparsing.warnings import PyparsingDeprecationWarning  # noqa: F401  (pyparsing >= 3.3)
    except ImportError:
        return
    quiet = pytest.mark.filterwarnings("ignore::pyparsing.warnings.PyparsingDeprecationWarning")
    for item in items:
        path = str(item.fspath).replace("\\", "/")
        if "tests/refsim/" in path or "tests/conformance/" in path:
            item.add_marker(quiet)


@pytest.fixture
def sigint_raises():
    """SIGINT raises KeyboardInterrupt for the test's duration (Python's own handler), whatever the disposition
    the session started with: a suite started as a background job starts with SIGINT ignored, and then
    ``_thread.interrupt_main()`` does nothing. The previous disposition is put back afterwards."""
    import signal

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


@pytest.fixture(scope="session")
def mnist_root():
    """The data root (``$SNN_DATA`` or ``data/``) with MNIST prepared; the test is skipped where it is not."""
    from convert import datasets

    try:
        root = datasets.default_root()
        datasets.load("mnist", "test", root)
    except datasets.DatasetError as err:
        pytest.skip(f"MNIST is not prepared (run `make data`): {err}")
    return root
