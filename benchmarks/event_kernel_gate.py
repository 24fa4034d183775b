"""The event engine on a gated residual CNN and a gate-free CNN: wall time of 256 images x 100 steps (best of 3).

Not a test: a relative timing between two commits of the kernel (run it in each checkout, on the same box).
Results: benchmarks/event-kernel-gate.md. Usage: .venv/bin/python benchmarks/event_kernel_gate.py
"""

import time

import numpy as np

from convert.contract.spec import Conv2d, Dense, Flatten, MaxPool2d, NetworkSpec, Skip
from fastsim import simulate

rng = np.random.default_rng(0)


def w(*s, scale=1.0):
    return rng.normal(size=s) * scale / np.sqrt(np.prod(s[1:]))


gated = NetworkSpec(
    (1, 28, 28),
    (
        Conv2d(w(16, 1, 3, 3, scale=3), padding=1),
        MaxPool2d(2),
        Conv2d(w(32, 16, 3, 3, scale=3), padding=1),
        MaxPool2d(3, stride=2, padding=1),
        Conv2d(w(32, 32, 3, 3, scale=3), padding=1),
        Flatten(),
        Dense(w(10, 32 * 7 * 7, scale=3)),
    ),
    skips=(Skip(3, 4, 0.5),),
    reset="subtract",
)
plain = NetworkSpec(
    (1, 28, 28),
    (
        Conv2d(w(16, 1, 3, 3, scale=3), padding=1),
        Conv2d(w(32, 16, 3, 3, scale=3), padding=1, stride=2),
        Conv2d(w(32, 32, 3, 3, scale=3), padding=1, stride=2),
        Flatten(),
        Dense(w(10, 32 * 7 * 7, scale=3)),
    ),
    reset="subtract",
)
imgs = rng.random((256, 1, 28, 28))
for name, spec in (("gated", gated), ("plain", plain)):
    simulate(spec, imgs[:2], steps=4, progress=False)
    best = []
    for _ in range(3):
        t = time.perf_counter()
        r = simulate(spec, imgs, steps=100, progress=False)
        best.append(time.perf_counter() - t)
    print(name, r.meta["kernel"], f"{min(best):.3f} s", "spikes/img", float(r.layer_counts.sum(1).mean()))
