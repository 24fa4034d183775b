"""The device context manager leaves Brian2 as it found it; cuda_standalone says what is missing."""

from __future__ import annotations

import numpy as np
import pytest

from refsim import devices
from refsim.devices import DeviceUnavailable, brian_device, build_key, check_cuda


def _brian_state():
    from brian2 import prefs
    from brian2.devices.device import get_device, previous_devices

    device = get_device()
    threads = prefs["devices.cpp_standalone.openmp_threads"]
    make = list(prefs["devices.cpp_standalone.extra_make_args_unix"])
    return device, float(device.defaultclock.dt_), prefs["codegen.target"], threads, make, len(previous_devices)


def test_a_standalone_build_runs_one_compiler_per_core(monkeypatch):
    """Brian2's bare ``-j`` starts a compiler per source file at once (a large network's build stalled a 24 GiB
    box); inside the block make gets ``-j<cores>``, and Brian2's own setting is back after it."""
    from brian2 import prefs

    monkeypatch.setattr(devices.os, "cpu_count", lambda: 3)
    before = list(prefs["devices.cpp_standalone.extra_make_args_unix"])
    with brian_device("cpp_standalone", target="numpy"):
        assert list(prefs["devices.cpp_standalone.extra_make_args_unix"]) == ["-j3"]
    assert list(prefs["devices.cpp_standalone.extra_make_args_unix"]) == before


@pytest.mark.parametrize("name", ["runtime", "cpp_standalone"])
def test_device_is_restored_after_the_block(name):
    from brian2.devices.device import get_device

    before = _brian_state()
    with brian_device(name, target="numpy", threads=2, dt_s=0.5e-3) as device:
        assert get_device() is device
        assert float(device.defaultclock.dt_) == 0.5e-3
        assert type(device).__name__ == {"runtime": "RuntimeDevice", "cpp_standalone": "CPPStandaloneDevice"}[name]
    assert _brian_state() == before


@pytest.mark.parametrize("name", ["runtime", "cpp_standalone"])
def test_device_is_restored_after_an_exception(name):
    from brian2 import prefs

    before = _brian_state()
    with pytest.raises(KeyError, match="boom"):
        with brian_device(name, target="numpy", threads=3, dt_s=2e-3):
            prefs["codegen.target"] = "cython"  # a change inside the block is undone too
            raise KeyError("boom")
    assert _brian_state() == before


def test_nested_devices_unwind_in_order():
    from brian2.devices.device import get_device

    before = _brian_state()
    with brian_device("cpp_standalone") as outer:
        with brian_device("runtime"):
            assert type(get_device()).__name__ == "RuntimeDevice"
        assert get_device() is outer
    assert _brian_state() == before


def test_unknown_device_and_target_are_named():
    with pytest.raises(ValueError, match="tpu"):
        with brian_device("tpu"):
            pass
    with pytest.raises(ValueError, match="fortran"):
        with brian_device("runtime", target="fortran"):
            pass


def test_cuda_check_names_every_missing_piece(monkeypatch):
    monkeypatch.setattr(devices.shutil, "which", lambda *a, **k: None)
    monkeypatch.setattr(devices, "_gpu_present", lambda: False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.delenv("CUDA_HOME", raising=False)
    with pytest.raises(DeviceUnavailable, match="nvcc") as err:
        check_cuda()
    assert "GPU" in str(err.value)
    before = _brian_state()
    with pytest.raises(DeviceUnavailable):
        with brian_device("cuda_standalone"):
            pass
    assert _brian_state() == before


def test_cxx17_replaces_the_language_standard():
    assert devices._cxx17(["-O3", "-std=c++11", "-w"]) == ["-O3", "-w", "-std=c++17"]
    assert devices._cxx17([]) == ["-std=c++17"]


def test_build_key_follows_every_part():
    w = np.arange(6.0)
    key = build_key({"steps": 10}, {"w": w})
    assert key == build_key({"steps": 10}, {"w": w.copy()})
    assert key != build_key({"steps": 11}, {"w": w})
    assert key != build_key({"steps": 10}, {"w": w + 1e-12})
    assert key != build_key({"steps": 10}, {"w": w.astype(np.float32)})
