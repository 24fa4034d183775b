"""convert: datasets, the Diehl et al. 2015 ANNs, the NetworkSpec contract and its normalizations.

Everything both simulators share lives here: the spec (:mod:`convert.spec`) and its layer families, one
module each (:mod:`convert.layers`), its file format (:mod:`convert.io`), the simulator-neutral
:class:`convert.records.SpikeRecord` and the numpy reference of the counter-based input generator
(:mod:`convert.encoding`).
"""
