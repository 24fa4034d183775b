"""convert: datasets, the Diehl et al. 2015 ANNs, the NetworkSpec contract and its normalizations.

Everything both simulators share lives here: the contract (:mod:`convert.contract`: the spec, its file format,
the simulator-neutral :class:`~convert.contract.records.SpikeRecord`, provenance and fingerprints), the layer
families, one module each (:mod:`convert.layers`), and the numpy reference of the counter-based input generator
(:mod:`convert.encoding`). The simulators read nothing else of convert (tests/test_dependencies.py).
"""
