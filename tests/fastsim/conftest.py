from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture
def fastsim_rng() -> np.random.Generator:
    return np.random.default_rng(20261126)


@pytest.fixture(scope="session")
def trained_mnist_mlp():
    """A briefly trained MNIST MLP (2 epochs, seed 0) as its copy spec, activation stats and test set."""
    import torch

    from convert import datasets
    from convert.extract import spec_from_model
    from convert.stats import collect_stats
    from convert.train import TrainConfig, images_to_tensor, train_model

    train, test = datasets.load("mnist", "train"), datasets.load("mnist", "test")
    x, y = images_to_tensor(train.images), torch.from_numpy(train.labels.astype(np.int64))
    model, _ = train_model(TrainConfig(model="mlp", epochs=2, seed=0), x, y)
    base = spec_from_model(model, dataset="mnist")
    return base, collect_stats(base, train.images[:10_000]), test
