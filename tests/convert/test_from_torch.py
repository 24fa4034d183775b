"""convert.from_torch: any traceable model (a forward with functional calls, bias, BatchNorm) → the direct copy;
whatever has no spiking kind is an error naming the graph node."""

from __future__ import annotations

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
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)

    def forward(self, x):
        return self.b(self.a(torch.flatten(x, 1)))


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
            nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.MaxPool2d(3, 2), nn.Flatten(), nn.Linear(8, 2)),
            (1, 7, 7),
            "overlapping windows are not supported",
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
    identity, down = spec.layers[3], spec.layers[5]
    assert identity.skip_source == 1 and identity.skip_weight.shape == ()  # from the gate's output
    assert down.skip_source == 3 and down.skip_weight.shape == (6, 4, 1, 1) and down.skip_stride == (2, 2)
    assert spec.layers[2].skip_source is None and spec.layers[4].skip_source is None
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
