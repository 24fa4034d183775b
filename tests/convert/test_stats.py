"""The activation statistics' bounded sample (convert/stats.py): exactly the positives with the smallest keys."""

from __future__ import annotations

import numpy as np
import torch

from convert.ann import activations, as_input
from convert.contract.spec import Dense, Flatten, NetworkSpec
from convert.stats import collect_stats


def test_the_sample_is_the_positive_activations_with_the_smallest_keys():
    rng = np.random.default_rng(4)
    spec = NetworkSpec(
        (1, 4, 4), (Flatten(), Dense(rng.normal(size=(12, 16)) * 0.1), Dense(rng.normal(size=(5, 12)) * 0.3))
    )
    images = rng.integers(0, 256, size=(60, 1, 4, 4)).astype(np.uint8)
    for max_samples in (0, 10, 100, 10_000):  # none, full early, full late, never full (exact percentiles)
        stats = collect_stats(spec, images, batch_size=7, max_samples=max_samples, seed=3)
        gen = torch.Generator().manual_seed(3)  # the brute force: every key drawn in the same order
        values: list[list[torch.Tensor]] = [[], []]
        keys: list[list[torch.Tensor]] = [[], []]
        for start in range(0, len(images), 7):
            acts, _ = activations(spec, as_input(spec, images[start : start + 7]))
            for li, a in enumerate(acts):
                pos = a[a > 0]
                values[li].append(pos)
                keys[li].append(torch.rand(pos.numel(), generator=gen, dtype=torch.float64))
        for li in range(2):
            v, k = torch.cat(values[li]), torch.cat(keys[li])
            chosen = torch.argsort(k)[:max_samples]
            np.testing.assert_array_equal(stats.samples[li], np.sort(v[chosen].numpy()))
            assert stats.max[li] == float(v.max()) and stats.n_positive[li] == len(v)


def test_progress_is_a_bar_of_images_on_stderr_and_nothing_else(capsys):
    """collect_stats, the slowest step of a conversion, shows a bar of images when asked; it prints nothing else."""
    rng = np.random.default_rng(5)
    spec = NetworkSpec((1, 4, 4), (Flatten(), Dense(rng.normal(size=(5, 16)) * 0.1)))
    images = rng.integers(0, 256, size=(30, 1, 4, 4)).astype(np.uint8)
    collect_stats(spec, images, batch_size=7)
    assert capsys.readouterr() == ("", "")
    collect_stats(spec, images, batch_size=7, progress=True)
    out, err = capsys.readouterr()
    assert out == "" and "activation stats" in err and "30/30" in err and "img" in err
