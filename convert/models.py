"""The two ANNs of Diehl et al. 2015 (zero bias everywhere, ReLU, dropout), and two deeper networks beyond the
paper (bias, BatchNorm, max-pooling, residual connections).

* MLP 784-1200-1200-10: dropout on the input (p=0.2) and on both hidden layers (p=0.5).
* CNN 28x28-12c5-2s-64c5-2s-10o: conv 12@5x5 → ReLU → avg-pool 2 → conv 64@5x5 → ReLU → avg-pool 2 →
  flatten 1024 → dropout 0.25 → linear 10.

Both are ``nn.Sequential`` chains of Flatten/Linear/Conv2d/AvgPool2d/ReLU/Dropout only, so that
:mod:`convert.extract` can copy them module by module into a :class:`~convert.contract.spec.NetworkSpec`.
The output layer has no ReLU in the ANN (logits); as spiking neurons it becomes an IF layer like the others.

The deeper networks are read by :func:`convert.from_torch.from_torch` (BatchNorm folded into the convolution
before it, max-pooling as the spike gate, each residual sum as a skip edge):

* ``vgg``: [conv 3×3 + BN + ReLU] ×2 (c1 channels) → max-pool 2 → [conv 3×3 + BN + ReLU] ×2 (c2) → max-pool 2
  → flatten → dropout → linear (hidden, bias) + ReLU → dropout → linear 10;
* ``resnet``: conv 3×3 (c1) + BN + ReLU → residual block (c1, identity shortcut) → block (c2, stride 2, 1×1
  convolution + BN shortcut) → block (c3, stride 2) → global average pooling (7×7) → dropout → linear 10.

Each is built with ReLU (the default) or with :class:`convert.qcfs.QCFS` in place of every ReLU
(``build(name, activation="qcfs", levels=L)``: Bu et al. 2022); a QCFS model is read by ``from_torch`` too.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from convert.qcfs import QCFS

PAPER_MODELS = ("mlp", "cnn")  # the paper's two: nn.Sequential chains, zero bias
DEEPER_MODELS = ("vgg", "resnet")  # beyond the paper: read through torch.fx
MODELS = (*PAPER_MODELS, *DEEPER_MODELS)
ACTIVATIONS = ("relu", "qcfs")  # relu: the paper's; qcfs: convert.qcfs.QCFS in place of every ReLU

Act = Callable[[], nn.Module]  # makes one rectifier module


def mlp(hidden: int = 1200, p_in: float = 0.2, p_hidden: float = 0.5, act: Act = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(p_in),
        nn.Linear(784, hidden, bias=False),
        act(),
        nn.Dropout(p_hidden),
        nn.Linear(hidden, hidden, bias=False),
        act(),
        nn.Dropout(p_hidden),
        nn.Linear(hidden, 10, bias=False),
    )


def cnn(c1: int = 12, c2: int = 64, p: float = 0.25, act: Act = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, bias=False),
        act(),
        nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, 5, bias=False),
        act(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(p),
        nn.Linear(c2 * 16, 10, bias=False),
    )


def vgg(c1: int = 32, c2: int = 64, hidden: int = 256, p: float = 0.5, act: Act = nn.ReLU) -> nn.Sequential:
    def block(cin: int, cout: int) -> list[nn.Module]:
        return [nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), act()]

    return nn.Sequential(
        *block(1, c1),
        *block(c1, c1),
        nn.MaxPool2d(2),
        *block(c1, c2),
        *block(c2, c2),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Dropout(p),
        nn.Linear(c2 * 49, hidden),
        act(),
        nn.Dropout(p),
        nn.Linear(hidden, 10),
    )


class Block(nn.Module):
    """A residual block: conv-BN-ReLU-conv-BN plus the shortcut (identity, or a strided 1×1 conv with BN), then
    ReLU: the sum is the second convolution's pre-activation plus the block's rectified input. With ``act``
    (a QCFS model) its two rectifiers are modules ``a1``, ``a2``; without, ``F.relu`` as before."""

    def __init__(self, cin: int, cout: int, stride: int, act: Act | None = None) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout)
        self.c2, self.b2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
        self.a1, self.a2 = (act(), act()) if act is not None else (F.relu, F.relu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.b2(self.c2(self.a1(self.b1(self.c1(x)))))
        return self.a2(y + (x if self.down is None else self.down(x)))


class ResNet(nn.Module):
    """conv + BN + ReLU, three residual blocks (28 → 14 → 7), global average pooling, dropout, linear 10."""

    def __init__(self, c1: int = 24, c2: int = 48, c3: int = 96, p: float = 0.2, act: Act | None = None) -> None:
        super().__init__()
        self.stem, self.bn = nn.Conv2d(1, c1, 3, padding=1, bias=False), nn.BatchNorm2d(c1)
        self.act = act() if act is not None else F.relu
        self.blocks = nn.Sequential(Block(c1, c1, 1, act), Block(c1, c2, 2, act), Block(c2, c3, 2, act))
        self.pool, self.drop, self.head = nn.AdaptiveAvgPool2d(1), nn.Dropout(p), nn.Linear(c3, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.act(self.bn(self.stem(x))))
        return self.head(self.drop(torch.flatten(self.pool(x), 1)))


def rectifier(activation: str = "relu", levels: int | None = None) -> Act | None:
    """What makes one rectifier of a model built with ``activation``: None for ``relu`` (each model's own
    ReLU, so a ReLU model is built exactly as before), a QCFS of ``levels`` levels (λ starting at 8, as the
    reference code) for ``qcfs``; anything else is a ValueError."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {', '.join(ACTIVATIONS)}; got {activation!r}")
    if activation == "relu":
        if levels is not None:
            raise ValueError(f"levels={levels!r} is for activation='qcfs' only (a ReLU has no levels)")
        return None
    if levels is None:
        raise ValueError("activation='qcfs' needs levels: the QCFS quantization steps L (an integer >= 1)")
    QCFS(levels)  # validates L with QCFS's own message
    return lambda: QCFS(levels)


def build(
    name: str, dropout: tuple[float, ...] | None = None, activation: str = "relu", levels: int | None = None
) -> nn.Module:
    """The model called ``name`` (one of :data:`MODELS`), freshly initialised from torch's global RNG.

    ``dropout`` overrides the dropout probabilities: ``(p_in, p_hidden)`` for the MLP, ``(p,)`` for the others.
    Dropout is off in eval mode and absent from the spiking network, so it changes training only.
    ``activation="qcfs"`` puts a :class:`~convert.qcfs.QCFS` of ``levels`` levels in place of every ReLU."""
    builders = {
        "mlp": (mlp, ("p_in", "p_hidden")),
        "cnn": (cnn, ("p",)),
        "vgg": (vgg, ("p",)),
        "resnet": (ResNet, ("p",)),
    }
    if name not in builders:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    make, names = builders[name]
    act = rectifier(activation, levels)
    kwargs = {} if act is None else {"act": act}
    if dropout is None:
        return make(**kwargs)
    if len(dropout) != len(names) or not all(0 <= p < 1 for p in dropout):
        raise ValueError(f"dropout for {name} takes {len(names)} probabilities in [0, 1) ({names}); got {dropout}")
    return make(**dict(zip(names, dropout, strict=True)), **kwargs)


def input_shape(name: str) -> tuple[int, ...]:
    """Shape of one input sample as the spec sees it: always the image (1, 28, 28)."""
    build(name)  # validates the name
    return (1, 28, 28)


def architecture(name: str, activation: str = "relu", levels: int | None = None) -> list[tuple[str, tuple[int, ...]]]:
    """Every parameter and buffer of the model ``name`` with its shape: what a trained candidate's cache key
    holds, so that a changed architecture never reuses old weights."""
    return [(key, tuple(value.shape)) for key, value in build(name, None, activation, levels).state_dict().items()]
