"""The two ANNs of Diehl et al. 2015, zero bias everywhere, ReLU, dropout.

* MLP 784-1200-1200-10: dropout on the input (p=0.2) and on both hidden layers (p=0.5).
* CNN 28x28-12c5-2s-64c5-2s-10o: conv 12@5x5 → ReLU → avg-pool 2 → conv 64@5x5 → ReLU → avg-pool 2 →
  flatten 1024 → dropout 0.25 → linear 10.

Both are ``nn.Sequential`` chains of Flatten/Linear/Conv2d/AvgPool2d/ReLU/Dropout only, so that
:mod:`convert.extract` can copy them module by module into a :class:`~convert.contract.spec.NetworkSpec`.
The output layer has no ReLU in the ANN (logits); as spiking neurons it becomes an IF layer like the others.
"""

from __future__ import annotations

from torch import nn

MODELS = ("mlp", "cnn")


def mlp(hidden: int = 1200, p_in: float = 0.2, p_hidden: float = 0.5) -> nn.Sequential:
    return nn.Sequential(
        nn.Flatten(),
        nn.Dropout(p_in),
        nn.Linear(784, hidden, bias=False),
        nn.ReLU(),
        nn.Dropout(p_hidden),
        nn.Linear(hidden, hidden, bias=False),
        nn.ReLU(),
        nn.Dropout(p_hidden),
        nn.Linear(hidden, 10, bias=False),
    )


def cnn(c1: int = 12, c2: int = 64, p: float = 0.25) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(1, c1, 5, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Conv2d(c1, c2, 5, bias=False),
        nn.ReLU(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Dropout(p),
        nn.Linear(c2 * 16, 10, bias=False),
    )


def build(name: str, dropout: tuple[float, ...] | None = None) -> nn.Sequential:
    """The model called ``name`` (``mlp`` or ``cnn``), freshly initialised from torch's global RNG.

    ``dropout`` overrides the dropout probabilities: ``(p_in, p_hidden)`` for the MLP, ``(p,)`` for the CNN.
    Dropout is off in eval mode and absent from the spiking network, so it changes training only."""
    builders = {"mlp": (mlp, ("p_in", "p_hidden")), "cnn": (cnn, ("p",))}
    if name not in builders:
        raise ValueError(f"model must be one of {', '.join(MODELS)}; got {name!r}")
    make, names = builders[name]
    if dropout is None:
        return make()
    if len(dropout) != len(names) or not all(0 <= p < 1 for p in dropout):
        raise ValueError(f"dropout for {name} takes {len(names)} probabilities in [0, 1) ({names}); got {dropout}")
    return make(**dict(zip(names, dropout, strict=True)))


def input_shape(name: str) -> tuple[int, ...]:
    """Shape of one input sample as the spec sees it: always the image (1, 28, 28)."""
    build(name)  # validates the name
    return (1, 28, 28)
