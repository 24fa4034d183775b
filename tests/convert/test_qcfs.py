"""QCFS (Bu et al. 2022, convert/qcfs.py): the activation, its reading by from_torch, the exactness of its SNN
and a QCFS model trained end to end (docs/qcfs.md)."""

from __future__ import annotations

import contextlib
import json
import math
from fractions import Fraction

import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from torch import nn

from convert import methods, models
from convert.contract.spec import Dense, NetworkSpec, SpecError
from convert.from_torch import from_exported, from_torch
from convert.qcfs import QCFS
from convert.train import TrainConfig, images_to_tensor, record
from fastsim import simulate
from tests.conformance import reference

KERNELS = ("torch", "events")  # fastsim's two CPU engines, both in float64


def _formula(z: np.ndarray, levels: int, lam: float) -> np.ndarray:
    return lam / levels * np.clip(np.floor(z * levels / lam + 0.5), 0, levels)


def test_qcfs_computes_the_formula():
    z = np.linspace(-3, 12, 3001)
    for levels, lam in ((1, 1.0), (4, 8.0), (7, 2.5), (16, 0.75)):
        got = QCFS(levels, lam).double()(torch.from_numpy(z)).detach().numpy()
        np.testing.assert_allclose(got, _formula(z, levels, lam), rtol=1e-14, atol=0)
        assert len(np.unique(got)) == levels + 1  # 0, λ/L, ..., λ
    assert "levels=4, lam=8" in repr(QCFS(4))


@pytest.mark.parametrize("levels", [0, -1, 2.5, True, "4", None])
def test_levels_must_be_a_positive_integer(levels):
    with pytest.raises(ValueError, match="QCFS levels must be an integer >= 1"):
        QCFS(levels)


@pytest.mark.parametrize("lam", [0.0, -1.0, math.inf, math.nan])
def test_lambda_must_be_positive(lam):
    with pytest.raises(ValueError, match="positive finite"):
        QCFS(4, lam)


def test_straight_through_gradients():
    """The floor passes the gradient through, the clip only inside its range: with u = z·L/λ + ½, z gets 1
    where 0 ≤ floor(u) ≤ L, else 0; λ gets floor(u)/L − z/λ there, 1 above (a = λ), 0 below (the reference
    code's MyFloor)."""
    levels, lam = 4, 2.0
    z = [-1.0, -0.26, -0.25, 0.1, 0.6, 1.3, 1.74, 1.76, 2.2, 2.25, 5.0]
    z = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    act = QCFS(levels, lam).double()
    act(z).sum().backward()
    q = torch.floor(z.detach() * levels / lam + 0.5)
    inside = (q >= 0) & (q <= levels)
    np.testing.assert_array_equal(z.grad.numpy(), [0, 0, 1, 1, 1, 1, 1, 1, 1, 0, 0])
    np.testing.assert_array_equal(z.grad.numpy(), inside.double().numpy())
    d_lam = torch.where(inside, q / levels - z.detach() / lam, (q > levels).double())
    assert act.lam.grad.item() == pytest.approx(d_lam.sum().item(), abs=1e-12)


def test_models_are_built_with_qcfs_in_place_of_relu():
    """``models.build(..., activation="qcfs")`` puts a QCFS wherever the ReLU model has a ReLU; a ReLU model is
    built, recorded and keyed exactly as before."""
    for name in models.MODELS:
        relu, q = models.build(name), models.build(name, activation="qcfs", levels=4)
        n_relu = sum(isinstance(m, nn.ReLU) for m in relu.modules()) or {"resnet": 7}[name]  # F.relu in ResNet
        assert sum(isinstance(m, QCFS) for m in q.modules()) == n_relu
        assert models.architecture(name) == models.architecture(name, "relu", None)
        assert len(models.architecture(name, "qcfs", 4)) == len(models.architecture(name)) + n_relu
    assert "activation" not in record(TrainConfig()) and "levels" not in record(TrainConfig())
    assert record(TrainConfig(activation="qcfs", levels=8))["levels"] == 8
    with pytest.raises(ValueError, match="needs levels"):
        TrainConfig(activation="qcfs")
    with pytest.raises(ValueError, match="for activation='qcfs' only"):
        TrainConfig(levels=4)
    with pytest.raises(ValueError, match="activation must be one of relu, qcfs"):
        TrainConfig(activation="gelu")


def _tiny(lam1=2.0, lam2=0.5, levels=4) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(6, 5), QCFS(levels, lam1), nn.Dropout(0.1), nn.Linear(5, 4), QCFS(levels, lam2), nn.Linear(4, 3)
    ).double()


def test_from_torch_reads_qcfs_as_the_rectifier_with_threshold_lambda():
    """θ = 1, W_l · λ_{l−1}/λ_l, b_l/λ_l; reset by subtraction and v_init ½ unless given; the provenance says qcfs."""
    model = _tiny().eval()
    spec = from_torch(model, input_shape=(6,))
    w = [m.weight.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    b = [m.bias.detach().numpy() for m in model if isinstance(m, nn.Linear)]
    lam = (1.0, 2.0, 0.5, 1.0)  # the input, the two QCFS, the logits
    for k, layer in enumerate(spec.layers):
        np.testing.assert_allclose(layer.weight, w[k] * lam[k] / lam[k + 1], rtol=1e-15)
        np.testing.assert_allclose(layer.bias, b[k] / lam[k + 1], rtol=1e-15)
    assert spec.thresholds == [1.0, 1.0, 1.0] and (spec.reset, spec.v_init) == ("subtract", 0.5)
    assert spec.provenance["method"] == "qcfs" and spec.provenance["divisors"] == [2.0, 0.25, 2.0]
    assert spec.provenance["qcfs"] == {"lambda": [2.0, 0.5, 1.0], "levels": [4, 4, None]}
    told = from_torch(model, input_shape=(6,), reset="zero", v_init=0.0)
    assert (told.reset, told.v_init) == ("zero", 0.0)
    relu = from_torch(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), input_shape=(6,))
    assert (relu.reset, relu.v_init, "qcfs" in relu.provenance) == ("zero", 0.0, False)


def test_the_method_qcfs_keeps_the_copy_and_needs_no_statistics():
    import convert

    model = _tiny().eval()
    spec, report = convert.to_snn(model, input_shape=(6,), check=False)  # no calibration: qcfs by default
    assert spec.provenance["method"] == "qcfs" and report.method == "qcfs"
    assert report.divisors == (2.0, 0.25, 2.0) and [i["lambda"] for i in report.layers] == [2.0, 0.5, 1.0]
    copy = from_torch(model, input_shape=(6,))
    assert all(np.array_equal(a.weight, c.weight) for a, c in zip(spec.layers, copy.layers, strict=True))
    relu_copy = from_torch(nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 3)), input_shape=(6,))
    with pytest.raises(SpecError, match="method 'qcfs' converts a model trained with QCFS"):
        methods.get("qcfs").apply(relu_copy)
    from validation.paper.rows import row_names

    assert "qcfs" in methods.names() and "qcfs" not in {m.name for m in methods.paper_methods()}
    assert "qcfs" not in row_names()  # the paper's Table 2 (ReLU networks) has no qcfs row


@pytest.mark.parametrize(
    "layers, node",
    [
        (lambda: [QCFS(4), nn.Linear(6, 3)], "_0"),  # on the input
        (lambda: [nn.Linear(6, 5), nn.ReLU(), QCFS(4), nn.Linear(5, 3)], "_2"),  # after another rectifier
        (lambda: [nn.Linear(6, 5), QCFS(4), QCFS(2), nn.Linear(5, 3)], "_2"),  # a second QCFS
    ],
)
def test_a_qcfs_without_a_weight_layer_before_it_is_refused_naming_it(layers, node):
    with pytest.raises(SpecError, match=rf"node `{node}` \(QCFS\) does not follow a Linear or Conv2d") as err:
        from_torch(nn.Sequential(*layers()), input_shape=(6,))
    assert "\n" not in str(err.value)


def test_a_qcfs_after_a_pool_is_refused_and_one_before_a_max_pool_is_read():
    conv = [nn.Conv2d(1, 2, 3), nn.AvgPool2d(2), QCFS(4), nn.Flatten(), nn.Linear(8, 3)]
    with pytest.raises(SpecError, match=r"node `_2` \(QCFS\) does not follow a Linear or Conv2d"):
        from_torch(nn.Sequential(*conv), input_shape=(1, 6, 6))
    gated = nn.Sequential(nn.Conv2d(1, 2, 3), nn.MaxPool2d(2), QCFS(4, 2.0), nn.Flatten(), nn.Linear(8, 3))
    spec = from_torch(gated, input_shape=(1, 6, 6))
    assert [type(x).__name__ for x in spec.layers] == ["Conv2d", "MaxPool2d", "Flatten", "Dense"]
    assert spec.provenance["qcfs"]["lambda"] == [2.0, 1.0]


def test_an_exported_qcfs_program_is_refused_naming_its_floor():
    """torch.export writes a QCFS out as mul/div/add/floor/sub/detach/add/clamp/mul/div: only from_torch reads it."""
    model = _tiny().eval()
    program = torch.export.export(model, (torch.zeros(2, 6, dtype=torch.float64),))
    with pytest.raises(SpecError, match=r"node `floor\w*` \(aten.floor.default\).*convert the nn.Module"):
        from_exported(program)


# ---- exactness (docs/qcfs.md): dyadic weights, inputs and thresholds, so that every sum is exact ----------------


def _dyadic(bits: int, lo: int, hi: int):
    return st.integers(lo, hi).map(lambda k: k / 2**bits)


@st.composite
def _dense_case(draw):
    n_in, n_out = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    weight = np.array(draw(st.lists(_dyadic(3, -16, 16), min_size=n_in * n_out, max_size=n_in * n_out)))
    # some synapse: fastsim's event kernel fails on a spec with none at all (run_len.max() of an empty array)
    assume(weight.any())
    bias = np.array(draw(st.lists(_dyadic(3, -8, 8), min_size=n_out, max_size=n_out)))
    x = np.array(draw(st.lists(_dyadic(4, 0, 16), min_size=3 * n_in, max_size=3 * n_in))).reshape(3, n_in)
    theta = draw(_dyadic(2, 1, 16))  # 1/4 .. 4
    steps = draw(st.integers(1, 40))
    return weight.reshape(n_out, n_in), bias, x, theta, steps


@settings(max_examples=50, deadline=None)
@given(_dense_case())
def test_a_dense_layer_with_constant_current_fires_the_qcfs_count(case):
    """One Dense layer, `current` input x, v(0) = θ/2, reset by subtraction, cascade: after T steps each neuron
    has fired exactly clip(floor(a·T/θ + ½), 0, T) times, a = W x + b (computed here in exact rationals)."""
    weight, bias, x, theta, steps = case
    spec = NetworkSpec(
        input_shape=(weight.shape[1],),
        layers=(Dense(weight, bias=bias, threshold=theta),),
        reset="subtract",
        schedule="cascade",
        encoding="current",
        v_init=0.5,
    )
    a = [[sum(Fraction(w) * Fraction(v) for w, v in zip(row, xi, strict=True)) + Fraction(b) for row, b in
          zip(weight, bias, strict=True)] for xi in x]  # fmt: skip
    want = np.array([[min(max(math.floor(ai * steps / Fraction(theta) + Fraction(1, 2)), 0), steps) for ai in row]
                     for row in a])  # fmt: skip
    for kernel in KERNELS:
        record = simulate(spec, x, steps=steps, kernel=kernel, dtype="float64", record_neurons=True)
        np.testing.assert_array_equal(record.neuron_counts[0], want, err_msg=kernel)
    trains = reference.simulate(spec, np.repeat(x[:, None, :], steps, axis=1)).spikes[0]
    np.testing.assert_array_equal(trains.sum(axis=1), want, err_msg="reference loop")


@st.composite
def _qcfs_case(draw):
    n_in, n_hidden = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    weight = draw(st.lists(_dyadic(3, -16, 16), min_size=n_in * n_hidden, max_size=n_in * n_hidden))
    bias = draw(st.lists(_dyadic(3, -8, 8), min_size=n_hidden, max_size=n_hidden))
    x = draw(st.lists(_dyadic(4, 0, 16), min_size=4 * n_in, max_size=4 * n_in))
    lam = 2.0 ** draw(st.integers(-1, 3))  # a power of two: W/λ and b/λ are exact
    levels = draw(st.integers(1, 16))
    return np.array(weight).reshape(n_hidden, n_in), np.array(bias), np.array(x).reshape(4, n_in), lam, levels


@settings(max_examples=50, deadline=None)
@given(_qcfs_case())
def test_the_first_layer_of_a_converted_qcfs_network_counts_its_activations(case):
    """A QCFS network read by from_torch, run for T = L steps on the analog input (cascade): each neuron of its
    first spiking layer fires exactly QCFS(z)·L/λ times (dyadic weights and inputs, λ a power of two)."""
    weight, bias, x, lam, levels = case
    first = nn.Linear(weight.shape[1], weight.shape[0]).double()
    with torch.no_grad():
        first.weight.copy_(torch.from_numpy(weight))
        first.bias.copy_(torch.from_numpy(bias))
    act = QCFS(levels, lam).double()
    model = nn.Sequential(first, act, nn.Linear(weight.shape[0], 2).double()).eval()
    spec = from_torch(model, input_shape=(weight.shape[1],), schedule="cascade", encoding="current")
    with torch.no_grad():
        z = first(torch.from_numpy(x))
        activation = act(z).numpy()
        want = act.steps(z).numpy()
    np.testing.assert_allclose(activation * levels / lam, want, rtol=0, atol=1e-12)  # the integer levels
    for kernel in KERNELS:
        record = simulate(spec, x, steps=levels, kernel=kernel, dtype="float64", record_neurons=True)
        np.testing.assert_array_equal(record.neuron_counts[0], want, err_msg=kernel)


# ---- end to end --------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _one_thread():
    """Train on one thread: a tiny MLP gains nothing from more, and on a loaded box thread contention made its
    600 steps take 40 s instead of 1."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _train_tiny(act, x, y, steps=600):
    torch.manual_seed(0)
    model = models.mlp(hidden=64, p_in=0.0, p_hidden=0.0, act=act)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(0)
    with _one_thread():
        for _ in range(steps):
            idx = torch.randint(0, len(x), (32,), generator=gen)
            opt.zero_grad()
            nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
    return model.eval()


def test_a_tiny_qcfs_mlp_matches_its_relu_twin_and_its_snn_matches_it(mnist_train, mnist_test):
    """784-64-64-10, QCFS L = 4 (λ from 8), 600 Adam steps on 1000 MNIST training images, scored on 500 test
    images.

    Measured (CPU, float64 events kernel): the ReLU twin 93.0 %, the QCFS ANN 90.6 % (λ 8 → 7.22, 7.53); its
    SNN (`current` input, cascade, reset by subtraction, v(0) = θ/2, membrane readout) gives the ANN's class to
    99.0, 97.8, 98.2, 97.8, 97.4 % of the images at T = 4..8 (accuracy 90.8-92.2 %). With the spikes readout
    (θ = 1 on the logits) the match was 87-91 %: the output layer saturates, so the test reads the membrane. The
    whole test takes about 2 s."""
    x, y = images_to_tensor(mnist_train.images[:1000]), torch.from_numpy(mnist_train.labels[:1000].astype(np.int64))
    images, labels = mnist_test.images[5000:5500], mnist_test.labels[5000:5500]
    levels = 4
    relu = _train_tiny(nn.ReLU, x, y)
    qcfs = _train_tiny(lambda: QCFS(levels), x, y)
    with torch.inference_mode():
        relu_pred = relu(images_to_tensor(images)).argmax(1).numpy()
        ann_pred = qcfs(images_to_tensor(images)).argmax(1).numpy()
    relu_acc, ann_acc = (relu_pred == labels).mean(), (ann_pred == labels).mean()
    assert relu_acc > 0.85 and abs(ann_acc - relu_acc) <= 0.03, (relu_acc, ann_acc)
    spec = from_torch(qcfs, dataset="mnist", schedule="cascade", encoding="current", readout="membrane")
    for steps in range(levels, 2 * levels + 1):
        record = simulate(spec, images, steps=steps, kernel="events", dtype="float64")
        match = (record.predictions() == ann_pred).mean()
        assert match >= 0.95, (steps, match)


def test_train_cli_with_qcfs_writes_a_checkpoint_that_converts(tmp_path, capsys):
    """`convert train --activation qcfs --levels 4`: the checkpoint and its metrics record it, load_model rebuilds
    it, and `convert normalize --method qcfs` reads it through from_torch (reset by subtraction, v(0) = θ/2)."""
    from convert.__main__ import main
    from convert.contract.io import load_spec
    from convert.train import load_model

    common = ["--dataset", "mnist", "--model", "mlp", "--runs", str(tmp_path)]
    argv = ["train", *common, "--epochs", "1", "--train-images", "256", "--activation", "qcfs", "--levels", "4"]
    with _one_thread():
        assert main(argv) == 0
    metrics = json.loads((tmp_path / "models" / "mnist-mlp.json").read_text())
    assert (metrics["config"]["activation"], metrics["config"]["levels"]) == ("qcfs", 4)
    net = load_model(tmp_path / "models" / "mnist-mlp.pt")
    acts = [m for m in net.modules() if isinstance(m, QCFS)]
    assert [m.levels for m in acts] == [4, 4] and all(m.lam.item() != 8.0 for m in acts)  # λ trained
    out = tmp_path / "q.npz"
    assert main(["normalize", *common, "--method", "qcfs", "--out", str(out)]) == 0
    spec = load_spec(out)
    assert (spec.reset, spec.v_init, spec.provenance["method"]) == ("subtract", 0.5, "qcfs")
    assert spec.provenance["qcfs"]["lambda"][:2] == [m.lam.item() for m in acts]
    capsys.readouterr()
    assert main(["train", *common, "--levels", "4"]) == 2
    assert "levels=4 is for activation='qcfs' only" in capsys.readouterr().err
