"""convert: datasets, the Diehl et al. 2015 ANNs, the NetworkSpec contract and its normalizations.

Everything both simulators share lives here: the contract (:mod:`convert.contract`: the spec, its file format,
the simulator-neutral :class:`~convert.contract.records.SpikeRecord`, provenance and fingerprints), the layer
families, one module each (:mod:`convert.layers`), and the numpy reference of the counter-based input generator
(:mod:`convert.encoding`). The simulators read nothing else of convert (tests/test_dependencies.py).

From a model to a spec in one call: ``spec, report = convert.to_snn(model, calibration="mnist")``
(:mod:`convert.api`); ``convert.save_spec`` / ``convert.load_spec`` write and read the spec file.
"""

from typing import Any

# The one-call API, loaded on first use (PEP 562) so that importing a convert submodule stays light:
#   spec, report = convert.to_snn(model, calibration="mnist"); convert.save_spec(spec, "net.npz")
_LAZY = {
    "to_snn": "convert.api",
    "ConversionWarning": "convert.api",
    "load_spec": "convert.contract.io",
    "save_spec": "convert.contract.io",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'convert' has no attribute {name!r}")
