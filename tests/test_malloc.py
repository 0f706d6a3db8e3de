"""cnnlib/_malloc.py: a training step's freed buffers stay in the process (glibc's thresholds).

Each case runs in a new interpreter: the thresholds are process-wide and set at import.
"""

import json
import os
import subprocess
import sys

import pytest

from cnnlib import _malloc

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc only")

# Page faults per training step of a small CNN (batch 64 of 3×32×32, as bench_step's model b).
FAULTS = """
import json, os, resource
import numpy as np
import cnnlib as cl
from cnnlib.losses import softmax_cross_entropy
from cnnlib.optim import SGD

rng = np.random.default_rng(0)
model = cl.Sequential(cl.Conv2d(3, 16, 3, padding=1, rng=rng), cl.BatchNorm2d(16), cl.ReLU(),
                      cl.MaxPool2d(2), cl.Flatten(), cl.Linear(16 * 16 * 16, 10, rng=rng))
optimizer = SGD(model, lr=0.01)
x = rng.standard_normal((64, 3, 32, 32)).astype(np.float32)
labels = rng.integers(0, 10, 64)

def step():
    loss, dlogits = softmax_cross_entropy(model.forward(x), labels)
    model.backward(dlogits, input_grad=False)
    optimizer.step()

for _ in range(3):  # kernels loaded, heap grown
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    step()
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"faults_per_step": faults, "output_pages": 64 * 16 * 32 * 32 * 4 // 4096}))
"""


def run(**env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in _malloc.USER_SETTINGS and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", FAULTS],
                          env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_training_step_reuses_its_memory_instead_of_faulting_it_in_again():
    seen = run()
    assert seen["faults_per_step"] < seen["output_pages"] / 10  # measured: 0


def test_a_malloc_setting_of_the_user_is_left_alone():
    # any MALLOC_* choice (this one changes nothing else here): glibc's defaults stay, and
    # every step maps its large arrays anew (measured: about 2000 faults per step, i.e. the
    # behaviour before cnnlib set the thresholds)
    seen = run(MALLOC_ARENA_MAX="8")
    assert seen["faults_per_step"] > seen["output_pages"]


def test_setting_the_thresholds_reports_success_on_glibc():
    assert _malloc.keep_freed_memory() is True
