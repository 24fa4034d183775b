"""convert.from_torch: any traceable model (a forward with functional calls, bias, BatchNorm) → the direct copy;
whatever has no spiking kind is an error naming the graph node."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.ann import activations, as_input
from convert.contract.spec import AvgPool2d, Conv2d, Dense, Flatten, MaxPool2d, SpecError
from convert.extract import spec_from_model
from convert.from_torch import from_torch
from convert.models import Block


class Net(nn.Module):
    """Conv+BN+ReLU (module), conv with bias and F.relu, a global average pool, a view, dropout, Linear+BN1d."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(4)
        self.act1 = nn.ReLU(inplace=True)
        self.pool = nn.AvgPool2d(2)
        self.conv2 = nn.Conv2d(4, 6, 3, stride=2)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.3)
        self.fc1 = nn.Linear(6, 8)
        self.bn2 = nn.BatchNorm1d(8)
        self.fc2 = nn.Linear(8, 3)

    def forward(self, x):
        x = self.pool(self.act1(self.bn1(self.conv1(x))))
        x = F.relu(self.conv2(x))
        x = self.gap(x)
        x = x.view(x.size(0), -1)
        x = torch.relu(self.bn2(self.fc1(self.drop(x))))
        return self.fc2(x)


def _trained_like(model: nn.Module) -> nn.Module:
    """Random running statistics and affine parameters, as training would leave them; eval mode."""
    gen = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=gen) * 0.2)
    return model.eval()


def test_a_model_with_a_forward_converts_and_computes_the_same_logits() -> None:
    torch.manual_seed(0)
    model = _trained_like(Net()).double()
    spec = from_torch(model, (1, 10, 10))
    kinds = [type(layer) for layer in spec.layers]
    assert kinds == [Conv2d, AvgPool2d, Conv2d, AvgPool2d, Flatten, Dense, Dense]
    assert spec.layers[0].bias is not None  # the folded BatchNorm's shift
    assert spec.thresholds == [1.0] * 6 and spec.provenance["source"] == "torch.fx"
    x = np.random.default_rng(1).uniform(size=(16, 1, 10, 10))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        _, got = activations(spec, as_input(spec, x))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_a_sequential_gives_what_spec_from_model_gives() -> None:
    torch.manual_seed(1)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 5, bias=False), nn.ReLU(), nn.Linear(5, 2, bias=False))
    assert from_torch(model, (1, 4, 4)).layers == spec_from_model(model, (1, 4, 4)).layers


class Sigmoid(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return torch.sigmoid(self.fc(x.flatten(1)))


class Residual(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        x = x.flatten(1)
        return self.b(F.relu(self.a(x)) + x)


class NoRelu(nn.Module):
    """Two convolutions without a ReLU between that are not one (the second pads, so it is no 1×1 map of the
    first's output: convert/from_torch/linear_pairs.py)."""

    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 2), nn.Conv2d(4, 2, 1, padding=1)

    def forward(self, x):
        return torch.flatten(self.b(self.a(x)), 1)


class BnAfterRelu(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.bn, self.b = nn.Linear(4, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(self.bn(F.relu(self.a(x.flatten(1)))))


@pytest.mark.parametrize(
    "model, shape, fragment",
    [
        (Sigmoid(), (1, 2, 2), "node `sigmoid` (torch.sigmoid) has no spiking equivalent"),
        (Residual(), (1, 2, 2), "adds a tensor that is not a rectified value"),
        (NoRelu(), (1, 2, 2), "node `a` is not followed by a ReLU"),
        (BnAfterRelu(), (1, 2, 2), "node `bn` (BatchNorm) does not follow a Linear or Conv2d"),
        (
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2, dilation=2), nn.Flatten(), nn.Linear(2, 2)),
            (1, 7, 7),
            "(MaxPool2d) dilation 2 is not supported (only 1)",
        ),
        (nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.Tanh()), (1, 2, 2), "(Tanh) has no spiking equivalent"),
    ],
    ids=["sigmoid", "residual", "no-relu", "bn-after-relu", "maxpool", "tanh"],
)
def test_what_has_no_spiking_kind_is_named(model, shape, fragment) -> None:
    with pytest.raises(SpecError) as err:
        from_torch(model.eval(), shape)
    assert fragment in str(err.value)


def test_untraceable_model_is_a_clear_error() -> None:
    class Branchy(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            if x.sum() > 0:  # data-dependent control flow: torch.fx cannot trace it
                return self.fc(x.flatten(1))
            return -self.fc(x.flatten(1))

    with pytest.raises(SpecError, match="torch.fx cannot trace"):
        from_torch(Branchy(), (1, 2, 2))


def _exported(model: nn.Module, shape: tuple[int, ...], path) -> object:
    from convert.from_torch import load_exported

    torch.export.save(torch.export.export(model.eval(), (torch.zeros(2, *shape),)), path)
    return load_exported(path)


def test_an_exported_program_converts_like_the_traced_model(tmp_path) -> None:
    from convert.from_torch import from_exported

    torch.manual_seed(2)
    model = _trained_like(Net())
    spec = from_exported(_exported(model, (1, 10, 10), tmp_path / "net.pt2"))
    assert spec.input_shape == (1, 10, 10) and spec.provenance["source"] == "torch.export"
    traced = from_torch(model, (1, 10, 10))
    assert [type(a) for a in spec.layers] == [type(b) for b in traced.layers]
    for a, b in zip(spec.layers, traced.layers, strict=True):
        if hasattr(a, "weight"):
            np.testing.assert_allclose(a.weight, b.weight, rtol=1e-6)
            np.testing.assert_allclose(a.bias, b.bias, rtol=1e-6, atol=1e-7)


def test_an_exported_residual_is_named(tmp_path) -> None:
    from convert.from_torch import from_exported

    with pytest.raises(SpecError, match=r"\(aten.add.Tensor\) adds a tensor that is not a rectified value"):
        from_exported(_exported(Residual(), (1, 2, 2), tmp_path / "res.pt2"))


def test_extract_cli_reads_a_pt2_and_refuses_a_foreign_file(tmp_path, capsys) -> None:
    from convert.__main__ import main
    from convert.contract.io import load_spec

    torch.manual_seed(3)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.ReLU(), nn.Linear(20, 10))
    _exported(model, (1, 28, 28), tmp_path / "mlp.pt2")
    out = tmp_path / "spec.npz"
    assert main(["extract", "--model", str(tmp_path / "mlp.pt2"), "--dataset", "mnist", "--out", str(out)]) == 0
    spec = load_spec(out)
    assert spec.labels == tuple(str(c) for c in spec.labels) and len(spec.layers) == 3
    assert spec.layers[1].bias is not None
    bad = tmp_path / "bad.pt2"
    bad.write_bytes(b"not a zip")
    assert main(["extract", "--model", str(bad), "--dataset", "mnist", "--out", str(tmp_path / "x.npz")]) == 2
    err = capsys.readouterr().err
    assert "not a torch.export archive" in err and err.count("\n") == 1
    assert not (tmp_path / "x.npz").exists()


class ResNet(nn.Module):
    """Every kind: conv with bias + BN, max-pool (before its ReLU: they commute), an identity block, a
    downsampling block, global average pooling and a Linear head."""

    def __init__(self) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.block1, self.block2 = Block(4, 4, 1), Block(4, 6, 2)
        self.head = nn.Linear(6, 3)

    def forward(self, x):
        x = F.relu(F.max_pool2d(self.bn(self.stem(x)), 2))
        x = self.block2(self.block1(x))
        return self.head(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def test_max_pooling_and_residual_sums_convert_to_gates_and_skip_edges() -> None:
    torch.manual_seed(4)
    model = _trained_like(ResNet()).double()
    spec = from_torch(model, (1, 12, 12))
    kinds = [type(layer) for layer in spec.layers]
    assert kinds == [Conv2d, MaxPool2d, Conv2d, Conv2d, Conv2d, Conv2d, AvgPool2d, Flatten, Dense]
    identity, down = spec.skips  # into layers 3 and 5, none into 2 and 4
    assert (identity.source, identity.target, identity.weight.shape) == (1, 3, ())  # from the gate's output
    assert (down.source, down.target, down.weight.shape, down.stride) == (3, 5, (6, 4, 1, 1), (2, 2))
    x = np.random.default_rng(5).uniform(size=(16, 1, 12, 12))
    with torch.no_grad():
        want = model(torch.from_numpy(x)).numpy()
        _, got = activations(spec, as_input(spec, x))
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-10, atol=1e-12)


def test_an_exported_resnet_converts_like_the_traced_one(tmp_path) -> None:
    from convert.from_torch import from_exported

    torch.manual_seed(6)
    model = _trained_like(ResNet())
    spec = from_exported(_exported(model, (1, 12, 12), tmp_path / "resnet.pt2"))
    traced = from_torch(model, (1, 12, 12))
    assert [type(a) for a in spec.layers] == [type(b) for b in traced.layers]
    for a, b in zip(spec.layers, traced.layers, strict=True):
        assert getattr(a, "skip_source", None) == getattr(b, "skip_source", None)
        if getattr(a, "skip_weight", None) is not None:
            np.testing.assert_allclose(a.skip_weight, b.skip_weight, rtol=1e-6)


def test_a_skip_branch_with_a_relu_is_named() -> None:
    class BadBranch(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a, self.b, self.s = nn.Linear(4, 4), nn.Linear(4, 4), nn.Linear(4, 4)

        def forward(self, x):
            h = F.relu(self.a(x.flatten(1)))
            return self.b(h) + F.relu(self.s(h))

    with pytest.raises(SpecError, match="lies on a skip branch"):
        from_torch(BadBranch(), (1, 2, 2))


# ------------------------------------------------------------------------------- user faults, one line each
_TORCH_LOGGERS = ("torch", "torch.export", "torch._export")


class _TorchRecords(logging.Handler):
    """The records of the torch loggers that print to stderr (`torch`, `torch.export`: each has its handler)."""

    def __enter__(self):
        self.records = []
        for name in _TORCH_LOGGERS:
            logging.getLogger(name).addHandler(self)
        return self

    def emit(self, record) -> None:
        self.records.append(record)

    def __exit__(self, *exc) -> None:
        for name in _TORCH_LOGGERS:
            logging.getLogger(name).removeHandler(self)


def _logger_settings() -> list:
    return [(logging.getLogger(n).propagate, list(logging.getLogger(n).handlers)) for n in _TORCH_LOGGERS]


def _damaged(kind: str, path):
    """An empty file, a truncated archive, a torch.save pickle renamed .pt2, a zip without a program."""
    import zipfile

    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).eval()
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        torch.export.save(torch.export.export(model, (torch.zeros(2, 1, 2, 2),)), path)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "pickle":
        torch.save(model.state_dict(), path)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("archive/version", "1")
    return path


DAMAGED = {
    "empty": "(an empty file)",
    "truncated": "(not a zip archive: truncated, damaged or another format)",
    "pickle": "(a torch.save file (a pickled model or state dict), not an exported program)",
    "no-program": "not a torch.export archive (",
}


@pytest.mark.parametrize("kind", list(DAMAGED))
def test_a_damaged_archive_is_one_quiet_error(kind, tmp_path, capsys) -> None:
    from convert.from_torch import load_exported

    path = _damaged(kind, tmp_path / "model.pt2")
    settings = _logger_settings()
    with _TorchRecords() as logged, pytest.raises(ValueError) as err:
        load_exported(path)
    message = str(err.value)
    assert message.startswith(f"{path}: not a torch.export archive") and DAMAGED[kind] in message
    assert "torch.export.save(torch.export.export(model.eval(), (example,)), path)" in message
    assert "\n" not in message and "warnings above" not in message
    assert logged.records == [] and capsys.readouterr().err == ""  # torch logged no traceback
    assert _logger_settings() == settings  # the loggers are restored


class _Bn(nn.Module):
    def __init__(self, track: bool = True, functional: bool = False) -> None:
        super().__init__()
        self.fc, self.bn, self.out = nn.Linear(4, 3), nn.BatchNorm1d(3, track_running_stats=track), nn.Linear(3, 2)
        self.functional = functional

    def forward(self, x):
        h = self.fc(x.flatten(1))
        if self.functional:  # training=self.training: traced as the mode the model is in
            h = F.batch_norm(h, self.bn.running_mean, self.bn.running_var, training=self.training)
        else:
            h = self.bn(h)
        return self.out(F.relu(h))


def test_a_model_exported_in_train_mode_is_told_to_call_eval(tmp_path) -> None:
    from convert.from_torch import from_exported, load_exported

    path = tmp_path / "train.pt2"
    torch.export.save(torch.export.export(_Bn().train(), (torch.zeros(2, 1, 2, 2),)), path)
    with pytest.raises(SpecError) as err:
        from_exported(load_exported(path))
    message = str(err.value)
    assert message.startswith("the model was in train mode when exported or traced")
    assert "call model.eval() before torch.export.export" in message
    assert "num_batches_tracked" in message
    assert "sums two tensors" not in message


def test_a_model_in_train_mode_is_traced_in_eval_mode() -> None:
    model = _trained_like(_Bn(functional=True)).train()
    spec = from_torch(model, (1, 2, 2))
    assert model.training  # its mode is restored
    x = np.random.default_rng(7).uniform(size=(5, 1, 2, 2))
    with torch.no_grad():
        want = model.eval()(torch.from_numpy(x).float()).numpy()
    np.testing.assert_allclose(activations(spec, as_input(spec, x))[1].numpy(), want, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("how", ["module", "functional", "exported"])
def test_batchnorm_without_running_statistics_is_explained(how, tmp_path) -> None:
    from convert.from_torch import from_exported, load_exported

    with pytest.raises(SpecError) as err:
        if how == "module":
            from_torch(_Bn(track=False).eval(), (1, 2, 2))
        elif how == "functional":

            class Functional(nn.Module):
                def __init__(self) -> None:
                    super().__init__()
                    self.fc, self.out = nn.Linear(4, 3), nn.Linear(3, 2)

                def forward(self, x):
                    return self.out(F.relu(F.batch_norm(self.fc(x.flatten(1)), None, None, training=True)))

            from_torch(Functional().eval(), (1, 2, 2))
        else:
            path = tmp_path / "bn.pt2"
            torch.export.save(torch.export.export(_Bn(track=False).eval(), (torch.zeros(2, 1, 2, 2),)), path)
            from_exported(load_exported(path))
    message = str(err.value)
    assert "track_running_stats=False" in message
    assert "normalizes each batch by that batch's own mean and variance" in message
    assert "retrain it with track_running_stats=True" in message and "remove the BatchNorm" in message
    assert "convert in eval mode" not in message and "ShapeProp" not in message


def test_a_model_for_other_images_is_refused_for_a_dataset() -> None:
    cifar = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 30 * 30, 10)).eval()
    want = "the model takes 3×32×32 inputs; mnist images are 1×28×28"
    with pytest.raises(SpecError, match=want):
        from_torch(cifar, (3, 32, 32), dataset="mnist")
    assert from_torch(cifar, (3, 32, 32)).input_shape == (3, 32, 32)  # no dataset: nothing to check
    with pytest.raises(SpecError, match="the model takes 3072 inputs; fashion images are 1×28×28"):
        spec_from_model(nn.Sequential(nn.Flatten(), nn.Linear(3072, 10)), (3072,), dataset="fashion")
    for shape in ((1, 28, 28), (28, 28), (784,), (1, 784)):
        flat = nn.Sequential(nn.Flatten(), nn.Linear(784, 10))
        assert from_torch(flat, shape, dataset="mnist").input_shape == shape


def test_a_flat_mlp_runs_on_28x28_images_as_the_flatten_model_does() -> None:
    """A model taking (784,) (flattened images) reads 28×28 images flattened row by row: in the ANN and in
    fastsim it gives what the same weights behind an nn.Flatten of (1, 28, 28) give."""
    from fastsim.simulate import simulate

    torch.manual_seed(8)
    hidden, head = nn.Linear(784, 30), nn.Linear(30, 10)
    flat = from_torch(nn.Sequential(hidden, nn.ReLU(), head).eval(), (784,), dataset="mnist")
    image = from_torch(nn.Sequential(nn.Flatten(), hidden, nn.ReLU(), head).eval(), (1, 28, 28), dataset="mnist")
    assert flat.input_shape == (784,)
    images = np.random.default_rng(9).integers(0, 256, size=(6, 28, 28), dtype=np.uint8)
    np.testing.assert_array_equal(
        activations(flat, as_input(flat, images))[1].numpy(), activations(image, as_input(image, images))[1].numpy()
    )
    runs = [simulate(s, images, steps=10, kernel="torch", compile=False, progress=False) for s in (flat, image)]
    np.testing.assert_array_equal(runs[0].output_counts, runs[1].output_counts)
    np.testing.assert_array_equal(runs[0].layer_counts, runs[1].layer_counts)
    assert runs[0].layer_counts.sum() > 0


def test_a_wrong_input_shape_names_it_and_the_first_layer(capsys) -> None:
    mlp = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.ReLU(), nn.Linear(20, 10))
    with pytest.raises(SpecError) as err:
        from_torch(mlp, (3, 32, 32))
    message = str(err.value)
    assert "input_shape=(3, 32, 32)" in message and "(Linear) takes 784 input features" in message
    assert "\n" not in message and "ShapeProp" not in message
    conv = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 26 * 26, 10))
    with pytest.raises(SpecError, match=r"input_shape=\(1, 28, 28\).*\(Conv2d\) takes 3 input channels"):
        from_torch(conv, (1, 28, 28))
    assert capsys.readouterr().err == ""  # ShapeProp's printed traceback is dropped
    # the node that fails is named: here a max-pool whose input has become smaller than its window
    deep = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.MaxPool2d(2), nn.MaxPool2d(2), nn.MaxPool2d(8))
    with pytest.raises(SpecError, match=r"node `_4` \(MaxPool2d\) fails: RuntimeError: .*size") as err:
        from_torch(deep, (1, 28, 28))
    assert "\n" not in str(err.value) and "ShapeProp" not in str(err.value)


@pytest.mark.parametrize("model", [nn.Sequential(nn.Flatten(), nn.ReLU()), nn.Sequential(nn.Sigmoid())])
def test_a_model_without_parameters_has_nothing_to_convert(model) -> None:
    with pytest.raises(SpecError, match=r"the model has no parameters \(no Linear or Conv2d layer\)"):
        from_torch(model, (1, 28, 28))
