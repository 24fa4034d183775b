"""Fine-tuning a QCFS model from a trained ReLU checkpoint (convert.finetune, TrainConfig.init, --init)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from convert import finetune, models
from convert.qcfs import QCFS
from convert.train import TrainConfig, record, start_state, train_model


def _save(path, name, model, **fields):
    torch.save({"model": name, **fields, "state_dict": model.state_dict()}, path)
    return path


@pytest.fixture
def relu_resnet(tmp_path):
    torch.manual_seed(3)
    net = models.build("resnet").eval()
    return net, _save(tmp_path / "relu.pt", "resnet", net)


def test_start_loads_every_weight_and_sets_lambda_to_the_relu_percentile(relu_resnet):
    relu, path = relu_resnet
    q = models.build("resnet", activation="qcfs", levels=8)
    images = torch.rand(40, 1, 28, 28)
    lams = finetune.start_from(q, start_state(path, "resnet"), images)
    qstate = q.state_dict()
    assert sorted(qstate) == sorted([*relu.state_dict(), *(k for k in qstate if k.endswith(".lam"))])
    for k, v in relu.state_dict().items():
        assert torch.equal(v, qstate[k]), k  # every ReLU parameter and buffer, unchanged
    rect = [m for m in q.modules() if isinstance(m, QCFS)]
    assert [float(m.lam.detach()) for m in rect] == pytest.approx(lams)
    assert len(lams) == 1 + 2 * 3  # the stem and two per block
    # oracle: the stem's pre-activation is the first conv + BN of the ReLU network (eval mode)
    with torch.no_grad():
        z = relu.bn(relu.stem(images)).reshape(-1).numpy()
    assert lams[0] == pytest.approx(float(np.percentile(z[z > 0], finetune.LAMBDA_PERCENTILE)), rel=1e-5)
    assert all(type(m).forward is QCFS.forward and "forward" not in vars(m) for m in rect)  # restored


def test_the_measured_lambda_is_the_percentile_of_a_known_layer(tmp_path):
    """One Linear then QCFS: λ is the 99.9th percentile of the positive pre-activations (numpy oracle)."""
    torch.manual_seed(0)
    relu = models.build("mlp").eval()
    path = _save(tmp_path / "mlp.pt", "mlp", relu)
    q = models.build("mlp", activation="qcfs", levels=4)
    x = torch.rand(64, 1, 28, 28)
    lams = finetune.start_from(q, start_state(path, "mlp"), x)
    first = next(m for m in relu.modules() if isinstance(m, torch.nn.Linear))
    z = (x.reshape(64, -1) @ first.weight.T.detach()).reshape(-1).numpy()
    assert lams[0] == pytest.approx(float(np.percentile(z[z > 0], 99.9)), rel=1e-4)
    assert q.training  # the mode it came in with


def test_the_start_is_keyed_by_content_not_path(relu_resnet, tmp_path):
    _, path = relu_resnet
    copy = shutil.copy(path, tmp_path / "elsewhere.pt")
    cfg = TrainConfig(model="resnet", dataset="fashion", activation="qcfs", levels=8, init=str(path))
    same = TrainConfig(model="resnet", dataset="fashion", activation="qcfs", levels=8, init=str(copy))
    assert record(cfg) == record(same) and "weights_sha256" in record(cfg)["init"]
    other = models.build("resnet")
    with torch.no_grad():
        next(other.parameters()).add_(1.0)
    changed = _save(tmp_path / "changed.pt", "resnet", other)
    moved = TrainConfig(model="resnet", dataset="fashion", activation="qcfs", levels=8, init=str(changed))
    assert record(cfg) != record(moved)
    assert "init" not in record(TrainConfig(model="resnet", activation="qcfs", levels=8))  # earlier keys hold


def test_bad_starts_are_refused_with_their_reason(relu_resnet, tmp_path):
    _, path = relu_resnet
    with pytest.raises(ValueError, match="fine-tunes a QCFS model"):
        TrainConfig(model="resnet", init=str(path))
    with pytest.raises(ValueError, match="checkpoint of model 'resnet', not 'vgg'"):
        TrainConfig(model="vgg", activation="qcfs", levels=8, init=str(path))
    with pytest.raises(FileNotFoundError, match="no such checkpoint"):
        TrainConfig(model="resnet", activation="qcfs", levels=8, init=str(tmp_path / "none.pt"))
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a checkpoint"):
        TrainConfig(model="resnet", activation="qcfs", levels=8, init=str(bad))


def test_fine_tuning_trains_from_the_start(tmp_path):
    """A step of training begins at the checkpoint: with lr tiny the weights stay near it, unlike a fresh model."""
    torch.manual_seed(5)
    relu = models.build("cnn").eval()
    path = _save(tmp_path / "cnn.pt", "cnn", relu)
    x, y = torch.rand(64, 1, 28, 28), torch.randint(0, 10, (64,))
    cfg = TrainConfig(model="cnn", activation="qcfs", levels=8, init=str(path), epochs=1, lr=1e-9, batch_size=64)
    model, _ = train_model(cfg, x, y)
    w0 = next(relu.parameters())
    assert torch.allclose(next(model.parameters()), w0, atol=1e-6)
