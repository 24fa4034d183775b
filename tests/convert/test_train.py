"""The Diehl ANNs: architecture, training, determinism and extraction into a spec."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from convert import ann, models
from convert.extract import spec_from_model
from convert.spec import AvgPool2d, Conv2d, Dense, Flatten, SpecError
from convert.train import TrainConfig, images_to_tensor, train_model


@pytest.mark.parametrize("name", models.MODELS)
def test_models_have_no_bias_and_documented_shapes(name):
    model = models.build(name)
    assert not [n for n, _ in model.named_parameters() if "bias" in n]
    assert model.eval()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_architectures():
    mlp = [p.shape for p in models.mlp().parameters()]
    assert mlp == [(1200, 784), (1200, 1200), (10, 1200)]
    cnn = [p.shape for p in models.cnn().parameters()]
    assert cnn == [(12, 1, 5, 5), (64, 12, 5, 5), (10, 1024)]
    assert sum(isinstance(m, torch.nn.AvgPool2d) for m in models.cnn()) == 2


def _tiny_data(mnist_test, n=256):
    x = images_to_tensor(mnist_test.images[:n])
    y = torch.from_numpy(mnist_test.labels[:n].astype(np.int64))
    return x, y


def test_training_lowers_the_loss(mnist_test):
    x, y = _tiny_data(mnist_test)
    _, losses = train_model(TrainConfig(model="mlp", epochs=3, batch_size=32), x, y)
    assert losses[-1] < 0.7 * losses[0]


@pytest.mark.parametrize("name", models.MODELS)
def test_same_seed_same_weights(mnist_test, name):
    x, y = _tiny_data(mnist_test, 64)
    cfg = TrainConfig(model=name, epochs=1, batch_size=16, seed=5)
    a, _ = train_model(cfg, x, y)
    b, _ = train_model(cfg, x, y)
    c, _ = train_model(TrainConfig(model=name, epochs=1, batch_size=16, seed=6), x, y)
    for (n, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), n
    assert not all(torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))


@pytest.mark.parametrize("name", models.MODELS)
def test_extracted_spec_computes_the_model(name, mnist_test):
    torch.manual_seed(0)
    model = models.build(name).eval()
    spec = spec_from_model(model, dataset="mnist")
    kinds = [type(layer) for layer in spec.layers]
    if name == "mlp":
        assert kinds == [Flatten, Dense, Dense, Dense]
    else:
        assert kinds == [Conv2d, AvgPool2d, Conv2d, AvgPool2d, Flatten, Dense]
    x = mnist_test.images[:50]
    with torch.inference_mode():
        expected = model(images_to_tensor(x))
    _, logits = ann.activations(spec, ann.as_input(spec, x))
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-4, atol=1e-5)


def test_extract_refuses_bias_and_unknown_modules():
    with pytest.raises(SpecError, match="bias"):
        spec_from_model(torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 10)))
    with pytest.raises(SpecError, match="MaxPool2d"):
        spec_from_model(
            torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(196, 10, bias=False))
        )
