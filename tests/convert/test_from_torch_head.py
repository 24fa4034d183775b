"""from_torch on models as users write them: the softmax head, the input's normalization, dropped nodes at a
skip's source, and every unsupported node named in one error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from convert.ann import activations, as_input
from convert.contract.spec import SpecError
from convert.from_torch import from_torch


class ExamplesNet(nn.Module):
    """pytorch/examples' MNIST network as written (conv 32, conv 64, max-pool, two dropouts, log_softmax)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(1, 32, 3, 1), nn.Conv2d(32, 64, 3, 1)
        self.dropout1, self.dropout2 = nn.Dropout(0.25), nn.Dropout(0.5)
        self.fc1, self.fc2 = nn.Linear(9216, 128), nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = self.dropout1(F.max_pool2d(x, 2))
        x = self.dropout2(F.relu(self.fc1(torch.flatten(x, 1))))
        return F.log_softmax(self.fc2(x), dim=1)


def _logits(spec, x: np.ndarray) -> np.ndarray:
    return activations(spec, as_input(spec, x))[1].numpy()


def _images(n: int = 6, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 1, 28, 28)).astype(np.uint8)


def test_a_log_softmax_head_is_dropped_and_said():
    torch.manual_seed(0)
    net = ExamplesNet().eval()
    spec = from_torch(net, dataset="mnist")
    assert spec.provenance["dropped_head"] == ["F.log_softmax (node `log_softmax`)"]
    x = _images()
    with torch.no_grad():
        want = net(torch.from_numpy(x).float() / 255.0)
    got = _logits(spec, x)
    np.testing.assert_array_equal(got.argmax(1), want.numpy().argmax(1))
    np.testing.assert_allclose(torch.log_softmax(torch.from_numpy(got), 1).numpy(), want.numpy(), atol=1e-4)


@pytest.mark.parametrize("head", [nn.Softmax(dim=1), nn.LogSoftmax(dim=-1)])
def test_module_heads_are_dropped(head):
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 10), head).eval()
    spec = from_torch(net)
    assert len(spec.provenance["dropped_head"]) == 1 and len(spec.layers) == 2


def test_a_softmax_that_changes_the_argmax_or_is_not_last_is_refused():
    class Across(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, x):
            return F.softmax(self.fc(torch.flatten(x, 1)), dim=0)  # across the batch

    with pytest.raises(SpecError, match=r"softmax over dim=0 .* leaves the argmax unchanged"):
        from_torch(Across().eval())
    inner = nn.Sequential(nn.Flatten(), nn.Linear(784, 20), nn.Softmax(1), nn.Linear(20, 10)).eval()
    with pytest.raises(SpecError, match="only the model's output may follow a softmax head"):
        from_torch(inner)


class Normalized(nn.Module):
    def __init__(self, padding: int = 0, buffer: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=padding)
        self.fc = nn.Linear(4 * (26 + 2 * padding) ** 2, 10)
        if buffer:
            self.register_buffer("mean", torch.tensor([0.1307]).view(1, 1, 1, 1))
        self.buffer = buffer

    def forward(self, x):
        x = (x - (self.mean if self.buffer else 0.1307)) / 0.3081
        return self.fc(torch.flatten(F.relu(self.conv(x)), 1))


@pytest.mark.parametrize("buffer", [False, True])
def test_a_models_own_input_normalization_is_folded_exactly(buffer):
    torch.manual_seed(1)
    net = Normalized(buffer=buffer).double().eval()
    spec = from_torch(net)
    (norm,) = spec.provenance["input_normalization"]
    assert norm["scale"] == pytest.approx([1 / 0.3081]) and norm["offset"] == pytest.approx([-0.1307 / 0.3081])
    x = _images(5, 2)
    with torch.no_grad():
        want = net(torch.from_numpy(x).double() / 255.0).numpy()
    np.testing.assert_allclose(_logits(spec, x), want, rtol=1e-10, atol=1e-10)


def test_a_normalization_outside_the_model_is_folded_when_given():
    """Trained behind transforms.Normalize((0.1307,), (0.3081,)): without the option the copy computes another
    function; with it, the model's own (Linear through a Flatten, so per column)."""
    torch.manual_seed(2)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 32), nn.ReLU(), nn.Linear(32, 10)).double().eval()
    x = _images(5, 3)
    with torch.no_grad():
        want = net((torch.from_numpy(x).double() / 255.0 - 0.1307) / 0.3081).numpy()
    plain = from_torch(net)
    assert not np.allclose(_logits(plain, x), want, atol=1e-3)
    spec = from_torch(net, normalize_input=((0.1307,), (0.3081,)))
    np.testing.assert_allclose(_logits(spec, x), want, rtol=1e-10, atol=1e-10)
    with pytest.raises(SpecError, match=r"normalize_input must be \(mean, std\)"):
        from_torch(net, normalize_input=0.5)
    with pytest.raises(SpecError, match="std != 0"):
        from_torch(net, normalize_input=(0.1, 0.0))


def test_a_padded_first_conv_cannot_absorb_an_offset():
    with pytest.raises(SpecError, match="pads the normalized input with zeros"):
        from_torch(Normalized(padding=1).eval())


class DroppedSkipSource(nn.Module):
    """A residual whose skip leaves from an Identity (and a Dropout) after a ReLU: resnet18 with its stem
    max-pool replaced by nn.Identity() has this shape."""

    def __init__(self) -> None:
        super().__init__()
        self.c0, self.c1, self.c2 = (
            nn.Conv2d(1, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
            nn.Conv2d(4, 4, 3, padding=1),
        )
        self.pool, self.drop, self.fc = nn.Identity(), nn.Dropout(0.1), nn.Linear(4 * 28 * 28, 10)

    def forward(self, x):
        x = self.drop(self.pool(F.relu(self.c0(x))))
        y = self.c2(F.relu(self.c1(x)))
        return self.fc(torch.flatten(F.relu(y + x).contiguous(), 1))


def test_a_skip_may_leave_from_a_dropped_node():
    torch.manual_seed(3)
    net = DroppedSkipSource().double().eval()
    spec = from_torch(net)
    x = _images(4, 4)
    with torch.no_grad():
        want = net(torch.from_numpy(x).double() / 255.0).numpy()
    np.testing.assert_allclose(_logits(spec, x), want, rtol=1e-10, atol=1e-10)


def test_every_unsupported_node_is_named_in_one_error():
    net = nn.Sequential(
        nn.Flatten(), nn.Linear(784, 20), nn.Sigmoid(), nn.Linear(20, 20), nn.Tanh(), nn.Linear(20, 10)
    ).eval()
    with pytest.raises(SpecError) as err:
        from_torch(net)
    message = str(err.value)
    assert message.startswith("the model has 2 parts with no spiking equivalent, of 2 kinds: (1) Sigmoid (`_2`)")
    assert "(2) Tanh (`_4`) has no spiking equivalent" in message and "\n" not in message


def test_problems_of_one_kind_are_grouped():
    """Five sigmoids and a tanh: two kinds, the first with its count and first nodes named."""
    layers = [nn.Flatten()]
    for _ in range(5):
        layers += [nn.Linear(784 if len(layers) == 1 else 8, 8), nn.Sigmoid()]
    net = nn.Sequential(*layers, nn.Linear(8, 8), nn.Tanh(), nn.Linear(8, 10)).eval()
    with pytest.raises(SpecError) as err:
        from_torch(net)
    message = str(err.value)
    assert message.startswith("the model has 6 parts with no spiking equivalent, of 2 kinds: (1) 5× Sigmoid")
    assert "(`_2`, `_4`, `_6` and 2 more) has no spiking equivalent; (2) Tanh" in message


def test_to_snn_folds_a_given_normalization():
    """One call: a model trained behind Normalize converts with its own function when told the (mean, std)."""
    from convert import to_snn

    torch.manual_seed(4)
    net = nn.Sequential(nn.Flatten(), nn.Linear(784, 16), nn.ReLU(), nn.Linear(16, 10)).eval()
    x = _images(40, 5)
    spec, _ = to_snn(net, calibration=x, method="data", normalize_input=((0.1307,), (0.3081,)), check=False)
    assert spec.provenance["input_normalization"][0]["node"] == "normalize_input"
    with torch.no_grad():
        want = net((torch.from_numpy(x).float() / 255.0 - 0.1307) / 0.3081).numpy().argmax(1)
    np.testing.assert_array_equal(_logits(spec, x).argmax(1), want)


@pytest.mark.parametrize("size_in,size_out", [((5, 5), (3, 3)), ((1, 1), (7, 7)), ((6, 4), (4, 3))])
def test_an_adaptive_pool_of_any_size_folds_into_the_linear_after_it(size_in, size_out):
    """PyTorch's adaptive windows (overlapping, repeating, rectangular): the fold is the torch function."""
    from convert.from_torch.ops import adaptive_matrix

    x = torch.rand(2, 3, *size_in, dtype=torch.float64)
    want = F.adaptive_avg_pool2d(x, size_out).reshape(2, 3, -1)
    got = x.reshape(2, 3, -1) @ torch.from_numpy(adaptive_matrix(size_in, size_out)).T
    torch.testing.assert_close(got, want)
    torch.manual_seed(6)
    h, w = size_in
    net = (
        nn.Sequential(
            nn.Conv2d(1, 3, 3, padding=1),
            nn.ReLU(),
            nn.AdaptiveAvgPool2d(size_out),
            nn.Flatten(),
            nn.Linear(3 * size_out[0] * size_out[1], 10),
        )
        .double()
        .eval()
    )
    spec = from_torch(net, (1, h, w))
    images = np.random.default_rng(7).integers(0, 256, (4, 1, h, w)).astype(np.uint8)
    with torch.no_grad():
        want = net(torch.from_numpy(images).double() / 255.0).numpy()
    np.testing.assert_allclose(_logits(spec, images), want, rtol=1e-10, atol=1e-10)


def test_an_adaptive_pool_not_read_by_a_linear_is_refused():
    net = nn.Sequential(nn.Conv2d(1, 3, 3), nn.ReLU(), nn.AdaptiveAvgPool2d((5, 5)), nn.Conv2d(3, 2, 3))
    with pytest.raises(SpecError, match=r"pools 26x26 to 5x5 in unequal windows: .* but `_3` \(weight\)"):
        from_torch(net.eval())


def test_torchvision_vgg11_bn_converts_to_its_own_function():
    """vgg11_bn as it comes (num_classes=10, the first conv for one channel) on 32x32: BatchNorm folded, five
    max-pool gates, the 1x1 -> 7x7 adaptive pool folded into the first Linear; the spec's ANN is the model."""
    from convert.vision import import_torchvision

    tv = import_torchvision()
    torch.manual_seed(8)
    net = tv.models.vgg11_bn(num_classes=10)
    net.features[0] = nn.Conv2d(1, 64, 3, padding=1)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1)
            m.running_var.uniform_(0.5, 2.0)
    net = net.double().eval()
    spec = from_torch(net, (1, 32, 32))
    assert spec.layers[-3].weight.shape == (4096, 512)  # the folded Linear reads the 512 channels
    images = np.random.default_rng(9).integers(0, 256, (2, 1, 32, 32)).astype(np.uint8)
    with torch.no_grad():
        want = net(torch.from_numpy(images).double() / 255.0).numpy()
    np.testing.assert_allclose(_logits(spec, images), want, rtol=1e-8, atol=1e-8)
