"""A read-only install as on a JupyterHub image, and a student who uses it.

``make_image(folder)`` copies the cnnlib package into ``folder/site``, runs
``python -m cnnlib.warmup`` there as the image build does, then makes the copy read-only
(``chmod -R a-w``). ``run_student(site, home)`` runs ``STUDENT`` as the unprivileged user
``nobody`` (``setpriv``) with that ``HOME`` (``None``: no HOME at all) and returns what it
printed: whether import worked, the seconds of each layer's first forward + backward, and
Numba's cache log (``NUMBA_DEBUG_CACHE``), where ``data saved`` means a kernel was compiled.

Used by ``tests/test_readonly_install.py`` (which checks that nothing is compiled) and
``benchmarks/bench_readonly_install.py`` (which reports the seconds). Needs root and setpriv.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOBODY = 65534

# Every layer's first forward and backward, float32 as the layers default, on a notebook-sized
# batch; then BatchNorm in eval mode and the loss.
STUDENT = r"""
import json, sys, time
t0 = time.perf_counter()
import numpy as np
import cnnlib as cl
result = {"import_s": time.perf_counter() - t0, "layers": {}}
rng = np.random.default_rng(0)
x = rng.standard_normal((8, 3, 12, 12)).astype(np.float32)
layers = {
    "Conv2d": cl.Conv2d(3, 4, 3, padding=1, rng=rng), "MaxPool2d": cl.MaxPool2d(2),
    "AvgPool2d": cl.AvgPool2d(2), "BatchNorm2d": cl.BatchNorm2d(3),
    "LayerNorm2d": cl.LayerNorm2d(3), "GroupNorm": cl.GroupNorm(1, 3), "ReLU": cl.ReLU(),
    "LeakyReLU": cl.LeakyReLU(),
    "ELU": cl.ELU(), "GELU": cl.GELU(), "Sigmoid": cl.Sigmoid(), "Tanh": cl.Tanh(),
    "Flatten": cl.Flatten(),
}
for name, layer in layers.items():
    t = time.perf_counter()
    out = layer.forward(x)
    layer.backward(np.ones_like(out))
    result["layers"][name] = time.perf_counter() - t
t = time.perf_counter()
lin = cl.Linear(432, 10, rng=rng)
logits = lin.forward(x.reshape(8, -1))
loss, dlogits = cl.softmax_cross_entropy(logits, np.arange(8))
lin.backward(dlogits)
result["layers"]["Linear + softmax_cross_entropy"] = time.perf_counter() - t
bn = layers["BatchNorm2d"].eval()
t = time.perf_counter()
bn.backward(np.ones_like(bn.forward(x)))
result["layers"]["BatchNorm2d (eval)"] = time.perf_counter() - t
print("RESULT " + json.dumps(result))
"""


def make_image(folder: Path, python: str = sys.executable) -> Path:
    """A warmed-up, read-only copy of the package in ``folder/site``; returns ``site``."""
    site = folder / "site"
    shutil.copytree(REPO / "cnnlib", site / "cnnlib",
                    ignore=shutil.ignore_patterns("__pycache__"))
    env = {**os.environ, "PYTHONPATH": str(site)}
    env.pop("NUMBA_CACHE_DIR", None)
    subprocess.run([python, "-m", "cnnlib.warmup"], env=env, check=True, cwd=folder,
                   capture_output=True, timeout=900)
    subprocess.run(["chmod", "-R", "a-w", str(site)], check=True)
    for path in (folder, *folder.parents):  # nobody must be able to reach the copy
        if path == Path("/"):
            break
        mode = path.stat().st_mode
        if not mode & stat.S_IXOTH:
            os.chmod(path, mode | stat.S_IXOTH | stat.S_IROTH)
    return site


def student_home(folder: Path) -> Path:
    """A writable home directory owned by ``nobody``."""
    home = folder / "home"
    home.mkdir()
    os.chown(home, NOBODY, NOBODY)
    return home


def run_student(site: Path, home: Path | None, python: str = sys.executable,
                tmpdir: Path | None = None) -> dict:
    """Run ``STUDENT`` as ``nobody``; returns ``{"returncode", "result", "saved", "loaded",
    "stderr"}`` (``result`` None when the script failed)."""
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(site),
           "NUMBA_DEBUG_CACHE": "1", "LANG": "C.UTF-8"}
    if home is not None:
        env["HOME"] = str(home)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)
    cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
           python, "-c", STUDENT]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900,
                          cwd="/")
    lines = proc.stdout.splitlines()
    result = next((json.loads(line[7:]) for line in lines if line.startswith("RESULT ")), None)
    return {
        "returncode": proc.returncode,
        "result": result,
        "saved": [line for line in lines if "data saved" in line],
        "loaded": [line for line in lines if "data loaded" in line],
        "stderr": proc.stderr,
    }


def can_run() -> str | None:
    """Why this machine cannot run the check (None when it can)."""
    if not hasattr(os, "getuid") or os.getuid() != 0:
        return "needs root, to run the student as the user nobody"
    if shutil.which("setpriv") is None:
        return "needs setpriv (util-linux)"
    return None
