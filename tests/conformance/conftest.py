"""The ``engine`` fixture: every conformance test runs once per engine of :data:`tests.conformance.engines.ENGINES`.

Engines without their hardware (a CUDA GPU, Brian2CUDA and nvcc) are skipped with the reason. Standalone
engines compile every network they meet (30-90 s each on the 2-core CI box) into one session-wide build
folder; by default they run only the cases a test lists in its ``conformance_cover`` mark, and the rest are
deselected at collection (not skipped). ``SNN_CONFORMANCE_FULL=1`` runs the whole matrix on them too.
"""

from __future__ import annotations

import dataclasses
import os

import pytest

from tests.conformance.engines import Engine, engine_params


@pytest.fixture(scope="session")
def conformance_build_root(tmp_path_factory: pytest.TempPathFactory):
    """One build folder for every standalone project of the session (keyed by content, so each compiles once)."""
    return tmp_path_factory.mktemp("conformance_build")


@pytest.fixture(params=engine_params())
def engine(request: pytest.FixtureRequest) -> Engine:
    eng: Engine = request.param
    reason = eng.unavailable()
    if reason:
        pytest.skip(f"{eng.id}: {reason}")
    if eng.compiles:
        root = request.getfixturevalue("conformance_build_root")
        eng = dataclasses.replace(eng, options={**eng.options, "build_dir": root})
    return eng


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Deselect (not skip) the cases an engine that compiles a project per network does not run by default.

    A test names its covering subset with ``@pytest.mark.conformance_cover(keys, cases)``: the parameter names
    that identify a case and the cases to run on compiling engines; a test without the mark runs none there.
    The full matrix runs on every other engine, Brian2's runtime device (the same network builders as the
    standalone devices) among them; tests/refsim/test_standalone.py holds cpp_standalone to the runtime device
    and the reference on other networks and modes. ``SNN_CONFORMANCE_FULL=1`` keeps every case."""
    if os.environ.get("SNN_CONFORMANCE_FULL") == "1":
        return
    keep, drop = [], []
    for item in items:
        (drop if _beyond_cover(item) else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


def _beyond_cover(item: pytest.Item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    engine = params.get("engine")
    if not isinstance(engine, Engine) or not engine.compiles:
        return False
    mark = item.get_closest_marker("conformance_cover")
    if mark is None:
        return True
    keys, cases = mark.args
    return tuple(params[k] for k in keys) not in cases
