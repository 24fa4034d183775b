"""refsim: the Brian2 ground-truth simulator of a NetworkSpec (runtime, cpp_standalone, cuda_standalone).

Real Brian2 objects: ``NeuronGroup``s of integrate-and-fire neurons, ``Synapses`` with per-synapse weights,
Poisson or supplied input spikes; results as :class:`convert.contract.records.SpikeRecord`, like fastsim's.

* :mod:`refsim.connectivity`: (i, j, w) synapse lists of each layer type (numpy);
* :mod:`refsim.inputs`: the input layer (PoissonGroup, supplied spikes, analog current);
* :mod:`refsim.build`: spec -> Brian2 network, one builder per layer type, both schedules;
* :mod:`refsim.devices`: the Brian2 device context manager (the only caller of ``set_device``);
* :mod:`refsim.runners`: runtime runs and standalone projects compiled once and rerun per batch;
* :mod:`refsim.readout`: spike monitors -> SpikeRecord;
* :mod:`refsim.simulate`: :func:`simulate`, the entry point; ``python -m refsim run ...`` the CLI.

Brian2 is imported only when a network is built, so importing refsim is cheap.
"""

from refsim.simulate import simulate

__all__ = ["simulate"]
