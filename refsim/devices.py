"""Brian2 devices behind a context manager: the only module of the project that calls ``set_device``.

Brian2 keeps its device and code-generation preferences as process-wide state. :func:`brian_device`
activates one device for a block and restores the previous device (with its build options) and every
preference it touched afterwards, also when the block raises:

* ``runtime``: Brian2's runtime device; ``target`` picks the code generation (``numpy``, the default, needs no
  compiler; ``cython`` compiles each code object once, ~100 s the first time, cached afterwards);
* ``cpp_standalone``: a C++ project written, compiled and run by :class:`refsim.runners.StandaloneRunner`;
* ``cuda_standalone``: the same through Brian2CUDA (Python ≥ 3.12, brian2 2.10.1, brian2cuda 1.0b1). CUDA 13's
  CUB/Thrust need C++17, so ``-std=c++17`` replaces ``-std=c++11`` for nvcc and for the host compiler.
  :func:`check_cuda` names whatever is missing (brian2cuda, nvcc, a GPU) before anything is built.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from refsim.brian import load as brian_load

DEVICES = ("runtime", "cpp_standalone", "cuda_standalone")
STANDALONE = ("cpp_standalone", "cuda_standalone")
TARGETS = ("numpy", "cython")
_GCC_ARGS = "codegen.cpp.extra_compile_args_gcc"
_NVCC_ARGS = "devices.cuda_standalone.cuda_backend.extra_compile_args_nvcc"
_MAKE_ARGS = "devices.cpp_standalone.extra_make_args_unix"


def make_jobs() -> list[str]:
    """``make``'s arguments for a standalone build: one compiler per core. Brian2's default, a bare ``-j``,
    starts a compiler for every source file at once: a network of many synapse objects (googlenet's spec, some
    200 files) then exhausts a 24 GiB box's memory and stalls it."""
    return [f"-j{os.cpu_count() or 1}"]


class DeviceUnavailable(RuntimeError):
    """A Brian2 device cannot run here; the message names what is missing."""


def check_device_name(name: str) -> None:
    if name not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {name!r}")


def check_cuda() -> None:
    """Raise :class:`DeviceUnavailable` naming every missing piece of ``cuda_standalone``."""
    missing = []
    try:
        brian_load()
        import brian2cuda  # noqa: F401  (registers the 'cuda_standalone' device)
    except ImportError as err:
        missing.append(f"the brian2cuda package ({err}; `pip install brian2cuda==1.0b1` on Python >= 3.12)")
    cuda_home = os.environ.get("CUDA_PATH") or os.environ.get("CUDA_HOME")
    nvcc = shutil.which("nvcc") or (cuda_home and shutil.which("nvcc", path=str(Path(cuda_home) / "bin")))
    if not nvcc:
        missing.append("the CUDA compiler nvcc (not on PATH, nor under $CUDA_PATH/bin)")
    if not _gpu_present():
        missing.append("an NVIDIA GPU (`nvidia-smi -L` lists none)")
    if missing:
        raise DeviceUnavailable("cuda_standalone is unavailable: missing " + "; ".join(missing))


def _gpu_present() -> bool:
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def _cxx17(args: list[str]) -> list[str]:
    """Compiler arguments with any ``-std=...`` replaced by ``-std=c++17``."""
    return [a for a in args if not a.startswith("-std=")] + ["-std=c++17"]


@contextlib.contextmanager
def brian_device(name: str, *, target: str = "numpy", threads: int = 0, dt_s: float | None = None) -> Iterator[Any]:
    """Activate Brian2 device ``name`` for the block; yield the device object.

    Standalone devices start from a clean state (``device.reinit()``) with ``build_on_run=False``; the caller
    builds and runs the project. ``threads`` > 0 turns on OpenMP in cpp_standalone. ``dt_s`` sets the
    ``defaultclock``'s time step for the block (refsim's networks run on the defaultclock: Brian2CUDA 1.0b1's
    synapse code refers to it by name).
    """
    check_device_name(name)
    if target not in TARGETS:
        raise ValueError(f"target must be one of {TARGETS}, got {target!r}")
    if name == "cuda_standalone":
        check_cuda()
    brian_load()
    from brian2 import prefs, second, set_device
    from brian2.devices.device import all_devices, reset_device

    saved = {key: prefs[key] for key in _touched_prefs(name)}
    device = all_devices[name]
    try:
        prefs["codegen.target"] = target
        if name in STANDALONE:
            device.reinit()
            prefs["devices.cpp_standalone.openmp_threads"] = int(threads)
            prefs[_MAKE_ARGS] = make_jobs()
        if name == "cuda_standalone":
            prefs[_GCC_ARGS] = _cxx17(list(prefs[_GCC_ARGS]))
            prefs[_NVCC_ARGS] = _cxx17(list(prefs[_NVCC_ARGS]))
        set_device(device, build_on_run=False)
        dt_before = device.defaultclock.dt
        try:
            if dt_s is not None:
                device.defaultclock.dt = dt_s * second
            yield device
        finally:
            device.defaultclock.dt = dt_before  # reset_device() hands this dt on to the previous device
            if name in STANDALONE:
                device.reinit()
            reset_device()
    finally:
        for key, value in saved.items():
            prefs[key] = value


def _touched_prefs(name: str) -> list[str]:
    keys = ["codegen.target"]
    if name in STANDALONE:
        keys += ["devices.cpp_standalone.openmp_threads", _MAKE_ARGS]
    if name == "cuda_standalone":
        keys += [_GCC_ARGS, _NVCC_ARGS]
    return keys


def build_key(parts: dict[str, Any], arrays: dict[str, Any]) -> str:
    """A short hex digest of JSON-able ``parts`` and numpy ``arrays`` (the cache key of a standalone build)."""
    import numpy as np

    h = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode())
    for key in sorted(arrays):
        arr = np.ascontiguousarray(arrays[key])
        h.update(f"{key}:{arr.dtype.str}:{arr.shape}".encode())
        h.update(arr.tobytes())
    return h.hexdigest()[:16]


def default_build_root(runs: str | os.PathLike[str] | None = None) -> Path:
    """Where standalone projects are built when no build folder is given: ``$SNN_BUILD`` if set, else
    ``build/refsim/`` under the results folder ``runs`` (default :func:`convert.contract.paths.default_runs`:
    ``$SNN_RUNS`` or ``runs/`` in the checkout). One VGG check builds ~4 GB there; the key in each project's folder name
    (:func:`build_key`) lets every run share it."""
    env = os.environ.get("SNN_BUILD")
    if env:
        return Path(env).expanduser()
    from convert.contract.paths import default_runs

    return Path(runs if runs is not None else default_runs()) / "build" / "refsim"


def build_directory(device: str, key: str, root: str | os.PathLike[str] | None = None) -> Path:
    """``<root>/<device>-<key>``; ``root`` defaults to :func:`default_build_root`."""
    return Path(root if root is not None else default_build_root()) / f"{device}-{key}"
