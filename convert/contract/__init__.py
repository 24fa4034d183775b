"""The contract the simulators import: the spec (:mod:`convert.contract.spec`, with the layer families of
:mod:`convert.layers`), its file format (:mod:`convert.contract.io`), the simulator-neutral spike record
(:mod:`convert.contract.records`), provenance of every results file (:mod:`convert.contract.provenance`) and
content fingerprints (:mod:`convert.contract.fingerprint`).

Training, datasets and normalization live beside it in :mod:`convert`; nothing here imports them.
"""
