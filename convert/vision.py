"""torchvision's model builders on the CPU torch of this project, with or without torchvision's compiled ops.

The only torchvision on PyPI for this torch (0.28.0) is a CUDA build: its operator library (``_C.so``: nms,
roi_align, deform_conv2d, ...) links CUDA libraries the CPU torch does not have, so it does not load. torchvision
copes with that everywhere but one place: on import it registers fake (meta) kernels for those operators
(``torchvision._meta_registrations``) whether they loaded or not, and ``import torchvision`` fails with
``RuntimeError: operator torchvision::nms does not exist``.

:func:`import_torchvision` loads the operator library first; if it does not load, it puts an empty module in
the place of those meta registrations (they only serve ``torch.compile`` and ``torch.export`` of the detection
operators), imports torchvision and warns once. Every model builder (``torchvision.models.resnet18`` ...) works;
the compiled operators raise torchvision's own "Couldn't load custom C++ ops" error if called. No classifier
uses them.
"""

from __future__ import annotations

import importlib.util
import sys
import types
import warnings
from pathlib import Path
from typing import Any

__all__ = ["import_torchvision", "compiled_ops", "VisionOpsWarning"]

_META = "torchvision._meta_registrations"


class VisionOpsWarning(UserWarning):
    """torchvision was imported without its compiled operators (module docstring)."""


def compiled_ops() -> tuple[bool, str]:
    """Whether torchvision's operator library loads into this torch, and why not (the loader's message)."""
    spec = importlib.util.find_spec("torchvision")
    if spec is None or spec.origin is None:
        return False, "torchvision is not installed"
    import torch

    libs = sorted(Path(spec.origin).parent.glob("_C*.so")) + sorted(Path(spec.origin).parent.glob("_C*.pyd"))
    if not libs:
        return False, "torchvision has no compiled operator library"
    try:
        torch.ops.load_library(str(libs[0]))
    except (OSError, ImportError, RuntimeError) as err:
        return False, str(err).splitlines()[0]
    return True, ""


def import_torchvision() -> Any:
    """``torchvision``, imported so that its model builders work on this torch (module docstring). A missing
    torchvision is an ImportError that says how to install it."""
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "models"):
        return sys.modules["torchvision"]
    if importlib.util.find_spec("torchvision") is None:
        raise ImportError(
            "torchvision is not installed in this environment: `make venv` installs the version pinned for this "
            "torch (constraints.txt); never `pip install torchvision` alone, which replaces the CPU torch"
        )
    ok, why = compiled_ops()
    if not ok:
        sys.modules.setdefault(_META, types.ModuleType(_META, "torchvision's meta kernels, left out (convert.vision)"))
        warnings.warn(
            f"torchvision's compiled operators (nms, roi_align, deform_conv2d, ...) do not load into this torch "
            f"({why[:160]}); imported without them: the model builders work, those operators do not",
            VisionOpsWarning,
            stacklevel=2,
        )
    import torchvision

    return torchvision
