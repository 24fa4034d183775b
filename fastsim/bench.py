"""The benchmark (not a test): image-steps per second of fastsim next to a plain loop and SpikingJelly.

For each network (the paper's MLP and CNN, random weights balanced by data-based normalization on MNIST
test images, or specs given as files), dtype and batch size it times :func:`fastsim.simulate.simulate`
and, in the same process on the same images, the *plain loop* a user would write (one
:func:`fastsim.step.network_step` per time step, dense operators, ``torch.rand(B, n) < x`` input) and,
if installed, SpikingJelly's multi-step ``IFNode``. Each row carries the dense FLOP count per image-step,
2 · Σ_l (synapses of layer l), and the mean spike probability per neuron and step of every layer, since
the engine's speed depends on that activity. Results go to ``benchmarks/`` as JSON and Markdown.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from convert.contract.provenance import machine, package_versions, write_json_atomic, write_text_atomic
from convert.contract.spec import NetworkSpec
from convert.encoding import intensity
from convert.layers import family_of
from fastsim.fused import unavailable_reason
from fastsim.layers import fanout
from fastsim.network import Network
from fastsim.simulate import exact_float32, resolve_device, resolve_dtype, simulate
from fastsim.step import network_step
from fastsim.synthetic import mnist_like, random_spec


def dense_flops(spec: NetworkSpec) -> int:
    """2 · (number of synapses): the multiply-adds of one dense image-step."""
    shapes = spec.shapes
    return int(2 * sum(fanout(spec.layers[i], shapes[i]).sum() for i in spec.spiking_indices))


def bench_images(n: int) -> tuple[np.ndarray, str]:
    """MNIST test images when the dataset is prepared, else MNIST-like synthetic ones."""
    from convert import datasets

    try:
        return datasets.load("mnist", "test").images[:n], "mnist test"
    except (datasets.DatasetError, OSError):
        return mnist_like(n, np.random.default_rng(0)), "synthetic (mnist_like)"


def _timed_loop(loop: Callable[..., Any], spec: NetworkSpec, x: torch.Tensor, steps: int, dtype, batch: int) -> float:
    """Seconds for ``loop`` over all images of x in batches."""
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    start = time.perf_counter()
    with torch.inference_mode(), exact_float32():
        for lo in range(0, len(x), batch):
            loop(spec, x[lo : lo + batch], steps, dtype)
    if x.device.type == "cuda":
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - start


def plain_loop(spec: NetworkSpec, x: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor:
    """The baseline: a per-step loop over the network step with fresh ``torch.rand`` input each step."""
    net = Network(spec, x.device, dtype)
    synapses = [s.drive for s in net.stages]
    thresholds = [s.threshold for s in net.stages]
    step = network_step(spec.schedule)
    state = net.initial_state(len(x))
    counts = torch.zeros(len(x), net.sizes[-1], dtype=dtype, device=x.device)
    for _ in range(steps):
        s0 = (torch.rand(x.shape, device=x.device) < x).to(dtype).view(len(x), *spec.input_shape)
        spikes, state = step(s0, state, synapses, thresholds, spec.reset)
        counts += spikes[-1].reshape(len(x), -1)
    return counts


def spikingjelly_loop(spec: NetworkSpec, x: torch.Tensor, steps: int, dtype: torch.dtype) -> torch.Tensor | None:
    """SpikingJelly multi-step IFNode network (cascade order, its only one); None if not installed.

    Each layer is its family's torch module (:mod:`convert.layers`, ``to_module``: Linear, Conv2d, AvgPool2d,
    Flatten with the spec's weights) run over all T·B rows at once by SpikingJelly's ``SeqToANNContainer``,
    each spiking one followed by an ``IFNode``. A layer type no family knows raises ``SpecError`` naming it,
    installed or not."""
    families = [family_of(lay) for lay in spec.layers]
    modules = [family.module(lay) for family, lay in zip(families, spec.layers, strict=True)]
    try:
        from spikingjelly.activation_based import functional, layer, neuron
    except ImportError:
        return None
    mods: list[torch.nn.Module] = []
    v_reset = 0.0 if spec.reset == "zero" else None
    for family, lay, module in zip(families, spec.layers, modules, strict=True):
        mods.append(layer.SeqToANNContainer(module))
        if family.spiking:
            mods.append(neuron.IFNode(v_threshold=lay.threshold, v_reset=v_reset, step_mode="m"))
    model = torch.nn.Sequential(*mods).to(device=x.device, dtype=dtype)
    functional.reset_net(model)
    s0 = (torch.rand(steps, *x.shape, device=x.device) < x).to(dtype)
    return model(s0.view(steps, len(x), *spec.input_shape)).sum(0)


def agreement(record, reference) -> dict[str, float] | None:
    """Fractions of (image, neuron) pairs with equal spike counts and of images with equal predictions, of
    ``record`` against ``reference`` (same images; both with per-neuron counts); None without a reference."""
    if reference is None or record is reference:
        return None
    same = sum(int((a == b).sum()) for a, b in zip(record.neuron_counts, reference.neuron_counts, strict=True))
    total = sum(a.size for a in reference.neuron_counts)
    return {
        "neurons": same / total,
        "predictions": float(np.mean(record.predictions() == reference.predictions())),
    }


def _row(
    name: str,
    spec: NetworkSpec,
    images,
    x,
    steps: int,
    case: tuple[str, str],
    batch,
    compile: bool,
    repeats: int,
    reference=None,
    baselines: dict | None = None,
) -> tuple[dict, Any]:
    """One benchmark row and fastsim's record: fastsim, then the plain loop (and SpikingJelly) with the batch
    size it used; each timed ``repeats`` times, the median kept (the 2-core box's timings vary by about 10 %
    run to run). ``case``: (dtype, matmul, kernel); the baselines run in that dtype (cached in ``baselines`` by
    dtype and batch, so split-weight rows share the float32 ones). ``reference``: a float64 record of the
    same images, for the agreement columns."""
    dtype_name, matmul, kernel = case
    dtype = resolve_dtype(dtype_name)
    walls = []
    for _ in range(repeats):
        rec = simulate(
            spec,
            images,
            steps=steps,
            device=x.device,
            dtype=dtype,
            batch_size=batch,
            compile=compile,
            matmul=matmul,
            kernel=kernel,
            record_neurons=True,
        )
        walls.append(rec.meta["wall_s"])
    wall, used = float(np.median(walls)), rec.meta["batch_size"]
    baselines = {} if baselines is None else baselines
    if (dtype_name, used) not in baselines:
        plain = float(np.median([_timed_loop(plain_loop, spec, x, steps, dtype, used) for _ in range(repeats)]))
        jelly = None
        if spikingjelly_loop(spec, x[:2], 2, dtype) is not None:
            times = [_timed_loop(spikingjelly_loop, spec, x, steps, dtype, used) for _ in range(repeats)]
            jelly = float(np.median(times))
        baselines[(dtype_name, used)] = plain, jelly
    plain, jelly = baselines[(dtype_name, used)]
    work = len(x) * steps
    flops = dense_flops(spec)
    return {
        "network": name,
        "dtype": dtype_name,
        "matmul": matmul,
        "kernel": kernel,
        "batch_size": used,
        "batch_auto": batch is None,
        "chunk_steps": rec.meta["chunk_steps"],
        "compiled": rec.meta["compiled"],
        "images": len(x),
        "steps": steps,
        "repeats": repeats,
        "image_steps_per_s_all": [len(x) * steps / w for w in walls],
        "image_steps_per_s": work / wall,
        "dense_flops_per_image_step": flops,
        "dense_gflops_equivalent": work / wall * flops / 1e9,
        "plain_loop_image_steps_per_s": work / plain,
        "speedup_vs_plain_loop": plain / wall,
        "spikingjelly_image_steps_per_s": None if jelly is None else work / jelly,
        "speedup_vs_spikingjelly": None if jelly is None else jelly / wall,
        "spike_density_per_layer": densities(rec, spec),
        "agreement_vs_float64": agreement(rec, reference),
    }, rec


def densities(record, spec: NetworkSpec) -> list[float]:
    """Mean spike probability per neuron and step, per spiking layer."""
    sizes = np.asarray(spec.population_sizes, dtype=np.float64)
    return (record.layer_counts.sum(0) / (sizes * record.n_images * record.steps)).round(4).tolist()


def run_benchmark(
    device: str = "cpu",
    quick: bool = False,
    spec_paths: list[str] | None = None,
    compile: bool = True,
    repeats: int = 3,
    matmuls: tuple[str, ...] | None = None,
    kernels: tuple[str, ...] | None = None,
    n_images: int | None = None,
    steps: int | None = None,
) -> dict[str, Any]:
    """All rows of the benchmark; see the module docstring. ``compile``: torch.compile the engine's kernels
    (compiled once in a warm-up run, not timed); ``repeats``: timed runs per engine and row (median kept);
    ``matmuls``: the float32 product modes to time (default: fp32 on a CPU, also tf32x2 and tf32x3 on a GPU),
    each with its agreement against the float64 run of the same images; ``kernels``: by default ``torch`` and
    ``events`` (event-driven) on a CPU, ``torch`` and, with Triton, ``triton`` (fused Dense layers) on a GPU,
    each with every float32 product mode;
    ``n_images``, ``steps``: override the sizes that ``quick`` and the device choose."""
    for name, value, optional in (("repeats", repeats, False), ("n_images", n_images, True), ("steps", steps, True)):
        if optional and value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int{' or None' if optional else ''}, got {value!r}")
    dev = resolve_device(device)
    steps = steps or (100 if quick else 300)
    n_images = n_images or ((256 if quick else 1024) if dev.type == "cpu" else (8192 if quick else 10000))
    batches = (None, 128) if dev.type == "cpu" else (None, 2048)  # None: simulate's own choice
    images, source = bench_images(max(n_images, 256))
    if spec_paths:
        from convert.contract.io import load_spec

        nets = {Path(p).stem: load_spec(p) for p in spec_paths}
    else:
        nets = {arch: random_spec(arch, seed=0, calibration=images[:256]) for arch in ("mlp", "cnn")}
    if matmuls is None:
        matmuls = ("fp32",) if dev.type == "cpu" else ("fp32", "tf32x2", "tf32x3")
    if kernels is None:
        if dev.type == "cpu":
            kernels = ("torch", "events")
        else:
            kernels = ("torch",) if unavailable_reason(dev) else ("torch", "triton")
    # float64 first: the reference
    cases = [("float64", "fp32", "torch")] + [("float32", m, k) for k in kernels for m in matmuls]
    rows = []
    for name, spec in nets.items():
        x = torch.as_tensor(intensity(images[:n_images]).reshape(n_images, -1), device=dev)
        reference, baselines = None, {}
        for case in cases:
            warm = dict(steps=20, device=dev, dtype=case[0], compile=compile, matmul=case[1], kernel=case[2])
            simulate(spec, images[:8], **warm)  # compiles
            for batch in batches:
                row, rec = _row(
                    name, spec, images[:n_images], x, steps, case, batch, compile, repeats, reference, baselines
                )
                rows.append(row)
                reference = rec if reference is None else reference
    return {
        "device": str(dev),
        "quick": quick,
        "images_source": source,
        "networks": "spec files" if spec_paths else "random weights, data-based normalization (fastsim.synthetic)",
        "compile": compile,
        "machine": machine(),
        "versions": package_versions(),
        "rows": rows,
    }


def markdown(result: dict[str, Any]) -> str:
    """The benchmark as a Markdown table."""
    m = result["machine"]
    lines = [
        f"# fastsim benchmark, {result['device']}",
        "",
        f"Machine: {m.get('processor')}, {m.get('cpu_count')} CPUs, torch threads {m.get('torch_threads')}"
        + (f", GPU {m['gpu']}" if m.get("gpu") else "")
        + f"; torch {result['versions'].get('torch')}. Images: {result['images_source']}; networks: "
        f"{result['networks']}.",
        "",
        "| network | dtype | matmul | kernel | batch | image-steps/s | dense MFLOP/image-step | dense-equiv. GFLOP/s "
        "| plain loop /s | vs plain | vs SpikingJelly | same counts / predictions as float64 "
        "| spike density per layer |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---|",
    ]
    for r in result["rows"]:
        jelly = "n/a" if r["speedup_vs_spikingjelly"] is None else f"{r['speedup_vs_spikingjelly']:.2f}x"
        agree = r.get("agreement_vs_float64")
        same = "ref." if agree is None else f"{100 * agree['neurons']:.3f} % / {100 * agree['predictions']:.2f} %"
        lines.append(
            f"| {r['network']} | {r['dtype']} | {r.get('matmul', 'fp32')} | {r.get('kernel', 'torch')} "
            f"| {r['batch_size']}{' (auto)' if r.get('batch_auto') else ''} "
            f"| {r['image_steps_per_s']:,.0f} "
            f"| {r['dense_flops_per_image_step'] / 1e6:.2f} | {r['dense_gflops_equivalent']:.1f} "
            f"| {r['plain_loop_image_steps_per_s']:,.0f} | {r['speedup_vs_plain_loop']:.2f}x | {jelly} | {same} "
            f"| {', '.join(f'{d:.3f}' for d in r['spike_density_per_layer'])} |"
        )
    lines.append("")
    lines.append(
        f"{result['rows'][0]['images'] if result['rows'] else 0} images x "
        f"{result['rows'][0]['steps'] if result['rows'] else 0} steps per row, median of "
        f"{result['rows'][0].get('repeats', 1) if result['rows'] else 0} timed runs per engine; the plain loop and "
        "SpikingJelly run the same network on the same images in the same process."
    )
    return "\n".join(lines) + "\n"


def save(result: dict[str, Any], folder: str | Path = "benchmarks") -> tuple[Path, Path]:
    """Write ``fastsim-<device>[-quick].json`` and ``.md`` under ``folder`` atomically."""
    stem = f"fastsim-{result['device'].split(':')[0]}{'-quick' if result['quick'] else ''}"
    folder = Path(folder)
    json_path, md_path = folder / f"{stem}.json", folder / f"{stem}.md"
    write_json_atomic(json_path, result)
    write_text_atomic(md_path, markdown(result))
    return json_path, md_path
