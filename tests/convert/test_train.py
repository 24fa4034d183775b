"""The Diehl ANNs: architecture, training, determinism and extraction into a spec."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch

from convert import ann, models
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, SpecError
from convert.extract import spec_from_model
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


def test_extract_copies_bias_and_refuses_unknown_modules():
    linear = torch.nn.Linear(784, 10)
    spec = spec_from_model(torch.nn.Sequential(torch.nn.Flatten(), linear))
    np.testing.assert_array_equal(spec.layers[1].bias, linear.bias.detach().numpy().astype(np.float64))
    with pytest.raises(SpecError, match="MaxPool2d"):
        spec_from_model(
            torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(), torch.nn.Linear(196, 10, bias=False))
        )


# ------------------------------------------------------------------------------- impossible settings
@pytest.mark.parametrize(
    "field, value",
    [
        ("epochs", 0),
        ("epochs", 1.5),
        ("batch_size", 0),
        ("lr", 0.0),
        ("lr", -1e-3),
        ("lr", float("nan")),
        ("train_images", 0),
        ("weight_decay", -1.0),
        ("dataset", "cifar10"),
        ("model", "resnet"),
    ],
)
def test_train_config_refuses_impossible_values(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_train_config_accepts_all_and_a_prefix():
    assert TrainConfig(train_images=None).train_images is None
    assert TrainConfig(train_images=64, epochs=1, lr=1e-2).train_images == 64


# ------------------------------------------------------------------------------------ foreign checkpoints
class _RunsCode:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _bad_checkpoints(tmp_path):
    torch.save({"model": "mlp", "state_dict": _RunsCode(tmp_path / "pwned")}, tmp_path / "hostile.pt")
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    torch.save({"weights": {}}, tmp_path / "no-model.pt")
    torch.save({"model": "mlp", "state_dict": models.cnn().state_dict()}, tmp_path / "wrong-weights.pt")
    return sorted(p for p in tmp_path.glob("*.pt"))


def test_load_model_refuses_foreign_checkpoints_without_running_them(tmp_path):
    from convert.train import load_model

    for path in _bad_checkpoints(tmp_path):
        with pytest.raises(ValueError, match="not a checkpoint written by `python -m convert train`; retrain") as info:
            load_model(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value), path.name
    assert not (tmp_path / "pwned").exists()


def test_hostile_checkpoint_through_the_cli_is_one_line(tmp_path, capsys):
    from convert.__main__ import main

    (tmp_path / "models").mkdir()
    torch.save({"model": "mlp", "state_dict": _RunsCode(tmp_path / "pwned")}, tmp_path / "models" / "mnist-mlp.pt")
    argv = ["normalize", "--dataset", "mnist", "--model", "mlp", "--method", "model", "--runs", str(tmp_path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "mnist-mlp.pt" in err and "retrain" in err
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "specs").exists()


# ------------------------------------------------------------------------- extraction: the rectifiers
def _seq(*modules):
    return torch.nn.Sequential(*modules)


def _lin(i, o):
    return torch.nn.Linear(i, o, bias=False)


def _conv(i, o):
    return torch.nn.Conv2d(i, o, 5, bias=False)


@pytest.mark.parametrize(
    "model, culprit",
    [
        (_seq(torch.nn.Flatten(), _lin(784, 20), _lin(20, 10)), "module 1 (Linear)"),
        (_seq(torch.nn.Flatten(), _lin(784, 20), torch.nn.Dropout(0.5), _lin(20, 10)), "module 1 (Linear)"),
        (_seq(_conv(1, 4), torch.nn.AvgPool2d(2), torch.nn.Flatten(), _lin(576, 10)), "module 0 (Conv2d)"),
        (  # the ReLU after the pool: the SNN would compute avg(relu), this ANN relu(avg)
            _seq(_conv(1, 4), torch.nn.AvgPool2d(2), torch.nn.ReLU(), torch.nn.Flatten(), _lin(576, 10)),
            "module 0 (Conv2d)",
        ),
        (
            _seq(torch.nn.Flatten(), _lin(784, 20), torch.nn.ReLU(), _lin(20, 20), _lin(20, 10), torch.nn.ReLU()),
            "module 3 (Linear)",
        ),
    ],
)
def test_extract_refuses_a_weight_layer_without_relu(model, culprit):
    with pytest.raises(SpecError, match="is not followed by a ReLU") as info:
        spec_from_model(model)
    assert str(info.value).startswith(culprit)


@pytest.mark.parametrize(
    "model",
    [
        _seq(torch.nn.Flatten(), _lin(784, 10)),  # a single layer: the logits
        _seq(torch.nn.ReLU(), torch.nn.Flatten(), _lin(784, 20), torch.nn.ReLU(), torch.nn.ReLU(), _lin(20, 10)),
        _seq(torch.nn.Flatten(), _lin(784, 20), torch.nn.ReLU(), _lin(20, 10), torch.nn.ReLU()),
        _seq(_conv(1, 4), torch.nn.Flatten(), torch.nn.ReLU(), torch.nn.Dropout(0.1), _lin(2304, 10)),
        _seq(_conv(1, 4), torch.nn.ReLU(), torch.nn.AvgPool2d(2), torch.nn.ReLU(), torch.nn.Flatten(), _lin(576, 10)),
        models.mlp(),
        models.cnn(),
    ],
)
def test_extract_accepts_rectified_models(model):
    spec = spec_from_model(model, dataset="mnist")
    assert spec.provenance["dataset"] == "mnist" and spec.n_classes == 10
