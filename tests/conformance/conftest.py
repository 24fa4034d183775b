"""The ``engine`` fixture: every conformance test runs once per engine of :data:`tests.conformance.engines.ENGINES`.

Engines without their hardware (a CUDA GPU, Brian2CUDA and nvcc) are skipped with the reason. Standalone
engines compile every network they meet (30-90 s each on the 2-core CI box) into one session-wide build
folder; by default they run only the cases a test lists in its ``cover`` (see :func:`covered`) and skip the
rest with that reason. ``SNN_CONFORMANCE_FULL=1`` runs the whole matrix on them too.
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


def covered(engine: Engine, case: tuple, cover: set[tuple]) -> None:
    """Skip ``case`` on an engine that compiles a project per network unless ``cover`` lists it.

    The full matrix runs on every other engine, Brian2's runtime device (the same network builders as the
    standalone devices) among them; tests/refsim/test_standalone.py holds cpp_standalone to the runtime
    device and the reference on other networks and modes."""
    if engine.compiles and case not in cover and os.environ.get("SNN_CONFORMANCE_FULL") != "1":
        pytest.skip(
            f"{engine.id} compiles a project per network: it runs this test's covering subset only "
            "(SNN_CONFORMANCE_FULL=1 runs them all)"
        )
