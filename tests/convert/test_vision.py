"""convert.vision: torchvision's model builders import and run on the project's CPU torch."""

from __future__ import annotations

import subprocess
import sys

PROBE = """
import warnings
from convert.vision import VisionOpsWarning, compiled_ops, import_torchvision
ok, why = compiled_ops()
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    tv = import_torchvision()
import torch
net = tv.models.resnet18(num_classes=10).eval()
with torch.no_grad():
    out = net(torch.zeros(2, 3, 32, 32))
warned = any(issubclass(w.category, VisionOpsWarning) for w in caught)
said = "model builders work" in str(caught[0].message) if caught else True
print(ok, warned, list(out.shape) == [2, 10], said, sep="|")
"""


def _run(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)


def test_the_model_builders_work_and_a_missing_op_library_is_said_once():
    """In a fresh interpreter: the import succeeds, resnet18 gives (2, 10) logits, and the warning is given
    exactly when the compiled operators do not load (as with the CUDA wheel beside the CPU torch)."""
    result = _run(PROBE)
    assert result.returncode == 0, result.stderr[-2000:]
    ok, warned, shape, said = result.stdout.strip().splitlines()[-1].split("|")
    assert shape == "True" and said == "True"
    assert (ok == "False") == (warned == "True")


def test_a_plain_import_fails_only_where_the_ops_do_not_load():
    """What convert.vision works around: where the operator library does not load, a plain `import torchvision`
    fails on its meta registrations; where it loads, the plain import works too."""
    from convert.vision import compiled_ops

    ok, _ = compiled_ops()
    plain = _run("import torchvision")
    assert (plain.returncode == 0) == ok, plain.stderr[-500:]
    if not ok:
        assert "torchvision::" in plain.stderr and "does not exist" in plain.stderr
