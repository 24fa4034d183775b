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


@pytest.mark.parametrize("name", models.PAPER_MODELS)
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


def test_deeper_architectures():
    vgg = models.vgg()
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in vgg) == 2
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in vgg) == 4
    resnet = models.build("resnet")
    assert sum(isinstance(m, models.Block) for m in resnet.modules()) == 3
    assert sum(m.down is not None for m in resnet.modules() if isinstance(m, models.Block)) == 2
    for net in (vgg, resnet):
        assert net.eval()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


@pytest.mark.parametrize("name", models.DEEPER_MODELS)
def test_deeper_models_convert_to_the_same_function(name, mnist_test):
    """BatchNorm (random running statistics) folded, max-pooling a gate, residual sums skip edges: the spec's
    ANN computes the model's logits (float64 throughout: only the folding's rounding differs)."""
    from convert.contract.spec import MaxPool2d
    from convert.from_torch import from_torch

    torch.manual_seed(1)
    model = models.build(name).double()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    model.eval()
    spec = from_torch(model, dataset="fashion")
    kinds = [type(layer).__name__ for layer in spec.layers]
    if name == "vgg":
        assert kinds.count("MaxPool2d") == 2 and all(layer.bias is not None for layer in spec.layers[:2])
        assert not any(isinstance(layer, MaxPool2d) for layer in spec.layers[-2:])
    else:
        assert [(e.source, e.target) for e in spec.skips if e.target < 7] == [(0, 2), (2, 4), (4, 6)]
        assert kinds[7] == "AvgPool2d"  # global average pooling of 7×7
    x = mnist_test.images[:20]
    with torch.inference_mode():
        expected = model(images_to_tensor(x).double())
    _, logits = ann.activations(spec, ann.as_input(spec, x))
    np.testing.assert_allclose(logits.numpy(), expected.numpy(), rtol=1e-9, atol=1e-9)


def test_shift_moves_each_image_within_bounds_and_fills_with_background():
    from convert.train import shifted

    x = torch.rand(64, 1, 28, 28) + 0.5  # no zero pixel inside
    gen = torch.Generator().manual_seed(3)
    y = shifted(x, 2, gen)
    assert y.shape == x.shape
    found = set()
    for i in range(len(x)):  # each output is the input moved by one (dy, dx) in [-2, 2]²
        hits = [
            (dy, dx)
            for dy in range(-2, 3)
            for dx in range(-2, 3)
            if torch.equal(y[i], torch.nn.functional.pad(x[i], (2, 2, 2, 2))[:, 2 - dy : 30 - dy, 2 - dx : 30 - dx])
        ]
        assert len(hits) == 1
        found.add(hits[0])
    assert len(found) > 10  # the shifts vary
    assert torch.equal(shifted(x, 0, gen), x)
    again = shifted(x, 2, torch.Generator().manual_seed(3))
    assert torch.equal(again, y)  # one generator seed, one draw


def test_the_shift_is_recorded_only_when_set():
    from convert.select import candidate_key
    from convert.train import record

    assert "shift" not in record(TrainConfig()) and record(TrainConfig(shift=2))["shift"] == 2
    assert candidate_key(TrainConfig()) != candidate_key(TrainConfig(shift=2))
    with pytest.raises(ValueError, match="shift"):
        TrainConfig(shift=-1)


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


@pytest.mark.parametrize("name", models.PAPER_MODELS)
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
        ("shift", 14),
        ("dataset", "cifar10"),
        ("model", "resnet50"),
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
