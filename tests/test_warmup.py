import json
import subprocess
import sys

import numpy as np
import pytest

from cnnlib import activations, conv, linear, losses, norm, pool, warmup

# Every forward/backward pair of DESIGN.md's functional API, and the extra public functions.
PAIRS = {
    conv: ["conv2d"],
    pool: ["max_pool2d", "avg_pool2d"],
    norm: ["batch_norm", "layer_norm", "group_norm"],
    linear: ["linear"],
    activations: ["relu", "leaky_relu", "elu", "gelu", "sigmoid", "tanh"],
}
EXTRA = {norm: ["batch_norm_inference"], losses: ["softmax", "softmax_cross_entropy"]}


def _first_array_dtype(args):
    return next(np.asarray(a).dtype for a in args if isinstance(a, np.ndarray))


def test_warmup_runs_every_public_forward_and_backward_for_both_dtypes(monkeypatch, capsys):
    seen = set()

    def recording(name, fn):
        def wrapper(*args, **kwargs):
            seen.add((name, _first_array_dtype(args).name))
            return fn(*args, **kwargs)
        return wrapper

    expected = set()
    functions = {module: [f"{p}_{half}" for p in pairs for half in ("forward", "backward")]
                 for module, pairs in PAIRS.items()}
    for module, names in [*functions.items(), *EXTRA.items()]:
        for name in names:
            monkeypatch.setattr(module, name, recording(name, getattr(module, name)))
            expected |= {(name, "float32"), (name, "float64")}

    assert warmup.main() == 0
    assert expected <= seen, sorted(expected - seen)

    printed = capsys.readouterr().out
    assert "float32: conv2d, max_pool2d" in printed and "float64: conv2d" in printed
    assert "compiled signatures" in printed


# Inspect the kernels in a fresh process: other tests of this session call helper kernels
# directly for one dtype, which would hide (or fake) what the warm-up itself compiles.
_PROBE = """
import contextlib, inspect, io, json
from numba.core import types
from cnnlib import warmup
with contextlib.redirect_stdout(io.StringIO()):
    warmup.main()
report = {}
for name, k in warmup.kernels().items():
    floats = {str(arg.dtype) for sig in k.signatures for arg in sig
              if isinstance(arg, types.Array) and isinstance(arg.dtype, types.Float)}
    report[name] = {"signatures": len(k.signatures), "float_dtypes": sorted(floats),
                    "source": inspect.getsource(k.py_func)}
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def kernels_after_warmup():
    result = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.splitlines()[-1])


def test_every_compiled_kernel_has_float32_and_float64_versions(kernels_after_warmup):
    assert len(kernels_after_warmup) >= 20  # conv, pool, norm, activations, linear, losses
    compiled = 0
    for name, k in kernels_after_warmup.items():
        if k["float_dtypes"]:
            compiled += 1
            assert k["float_dtypes"] == ["float32", "float64"], name
    assert compiled >= 20


def test_kernels_without_a_signature_are_helpers_of_other_kernels(kernels_after_warmup):
    """A kernel the warm-up never compiled must be called from inside another kernel (and so
    compiled into it); otherwise the warm-up misses it."""
    for name, k in kernels_after_warmup.items():
        if not k["signatures"]:
            short = name.split(".")[1]
            callers = [other for other, o in kernels_after_warmup.items()
                       if other != name and f"{short}(" in o["source"]]
            assert callers, f"{name} is neither compiled by the warm-up nor called by a kernel"
