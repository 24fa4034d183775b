"""The conformance table (docs/interop.md): it is exactly what docs/results/interop.json gives, the results hold
what the table claims, and each row's verdict (exact, differs, fails) is recomputed here on small networks
with the libraries installed now (tests/validation/test_thirdparty.py)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

from tests.validation.thirdparty_nets import library_verdict
from validation.harness.interop import MODES, markdown, table
from validation.harness.thirdparty import LIBRARIES

ROOT = Path(__file__).resolve().parents[2]
RESULTS = json.loads((ROOT / "docs" / "results" / "interop.json").read_text())
DOC = (ROOT / "docs" / "interop.md").read_text()


def test_the_page_is_the_results_file():
    assert table(RESULTS) in DOC
    assert markdown(RESULTS) == DOC


def test_results_cover_every_library_network_and_mode():
    assert {net["spec"] for net in RESULTS["networks"]} == {"mnist-mlp-data", "mnist-cnn-data"}
    for net in RESULTS["networks"]:
        assert set(net["cells"]) == {f"{lib}/{mode}" for lib in LIBRARIES for mode in MODES}
        assert 0 < RESULTS["config"]["images"] <= 1000
        assert "schedule 'delay'" in net["not_expressed"][0]  # the trained specs are delay specs
    assert RESULTS["git_commit"] and RESULTS["config"]["steps"] > 0


def test_with_the_adapter_every_library_matches_fastsim():
    """Counts equal up to float32 rounding near a threshold (the libraries compute in float32, fastsim here in
    float64), and the accuracy within 0.1 pp of fastsim's on the same images."""
    for net in RESULTS["networks"]:
        for lib in LIBRARIES:
            cell = net["cells"][f"{lib}/adapter"]
            assert cell["images"] == RESULTS["config"]["images"]
            assert cell["verdict"] in ("exact", "rounding") and cell["mismatches_unexplained"] == 0, (net["spec"], lib)
            assert cell["exact_fraction"] > 0.9999 and cell["prediction_agreement"] >= 0.999
            assert abs(cell["accuracy"] - cell["fastsim_accuracy"]) <= 0.001


def _verdicts() -> list[tuple[str, str, str, str]]:
    return [
        (lib, mode, spec, net["cells"][f"{lib}/{mode}"]["verdict"])
        for net in RESULTS["networks"]
        for spec in [net["spec"]]
        for lib in LIBRARIES
        for mode in MODES
    ]


@pytest.mark.parametrize(("lib", "mode", "spec", "verdict"), _verdicts())
def test_each_verdict_is_recomputed_on_a_small_network(lib, mode, spec, verdict):
    if importlib.util.find_spec(lib) is None:
        pytest.skip(f"{lib} not installed (the interop extra)")
    network = "cnn" if "cnn" in spec else "mlp"
    expected = "exact" if verdict == "rounding" else verdict  # the small networks' arithmetic is exact
    assert library_verdict(lib, network, adapter=mode == "adapter") == expected
