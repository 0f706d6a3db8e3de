"""cnnlib/_malloc.py: a training step's freed buffers stay in the process (glibc's thresholds), and
cnnlib's own arrays get no huge-page advice from NumPy.

The malloc cases run in a new interpreter each: the thresholds are process-wide and set at
import.
"""

import json
import os
import subprocess
import sys

import numpy as np
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


# The same after an earlier training (notebook 06: the shapes CNN, then Fashion-MNIST): what
# the first one leaves in the heap sits below the top, so the second one's buffers (batch 128,
# 1×28×28) are freed at the top of the heap after every step.
FAULTS_AFTER_ANOTHER_TRAINING = """
import json, resource
import numpy as np
from cnnlib.models import make_cnn
from cnnlib.optim import SGD
from cnnlib.train import fit

rng = np.random.default_rng(0)
shapes = (rng.random((640, 3, 32, 32), np.float32), rng.integers(0, 5, 640))
first = make_cnn(3, 5, 32, rng=rng)
fit(first, SGD(first, lr=0.01), shapes, shapes, 1, 64, progress=False, verbose=False)
images = (rng.random((1280, 1, 28, 28), np.float32), rng.integers(0, 10, 1280))
second = make_cnn(1, 10, 28, rng=rng)
optimizer = SGD(second, lr=0.01)
fit(second, optimizer, images, None, 1, 128, progress=False, verbose=False)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
fit(second, optimizer, images, None, 1, 128, progress=False, verbose=False)  # 10 steps
faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 10
print(json.dumps({"faults_per_step": faults, "output_pages": 128 * 16 * 28 * 28 * 4 // 4096}))
"""


def run(script: str = FAULTS, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items()
             if k not in _malloc.USER_SETTINGS and k != "GLIBC_TUNABLES"}
    done = subprocess.run([sys.executable, "-c", script],
                          env={**clean, **env}, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_training_step_reuses_its_memory_instead_of_faulting_it_in_again():
    seen = run()
    assert seen["faults_per_step"] < seen["output_pages"] / 10  # measured: 0


def test_a_second_training_reuses_its_memory_too():
    seen = run(FAULTS_AFTER_ANOTHER_TRAINING)
    assert seen["faults_per_step"] < seen["output_pages"] / 10  # measured: 0.2


def test_a_trim_threshold_of_32_mb_was_too_small_for_that():
    # what cnnlib set before: the heap's top was returned after every step (measured: 4114
    # faults per step, 06's small Fashion-MNIST training 4.6 s instead of 2.9 s)
    seen = run(FAULTS_AFTER_ANOTHER_TRAINING, MALLOC_TRIM_THRESHOLD_=str(32 * 2**20),
               MALLOC_MMAP_THRESHOLD_=str(_malloc.MMAP_THRESHOLD))
    assert seen["faults_per_step"] > seen["output_pages"]


def test_a_malloc_setting_of_the_user_is_left_alone():
    # any MALLOC_* choice (this one changes nothing else here): glibc's defaults stay, and
    # every step maps its large arrays anew (measured: about 2000 faults per step, i.e. the
    # behaviour before cnnlib set the thresholds)
    seen = run(MALLOC_ARENA_MAX="8")
    assert seen["faults_per_step"] > seen["output_pages"]


def test_setting_the_thresholds_reports_success_on_glibc():
    assert _malloc.keep_freed_memory() is True


# --------------------------------------------------------------------------- huge pages

needs_switch = pytest.mark.skipif(not _malloc.ADVISE, reason="no NumPy switch, or the user chose")


def advice() -> bool:
    """NumPy's current setting (read by setting it and putting it back)."""
    now = _malloc._set_madvise_hugepage(False)
    _malloc._set_madvise_hugepage(now)
    return bool(now)


@needs_switch
def test_the_advice_is_off_inside_the_block_and_as_before_after_it():
    before = advice()
    with _malloc.no_huge_page_advice():
        assert advice() is False
        with _malloc.no_huge_page_advice():  # nested: the outer block's setting comes back
            assert advice() is False
        assert advice() is False
    assert advice() is before
    with pytest.raises(ZeroDivisionError), _malloc.no_huge_page_advice():
        1 / 0  # noqa: B018
    assert advice() is before


@needs_switch
def test_layers_and_data_generators_allocate_without_the_advice(monkeypatch):
    from cnnlib import data
    from cnnlib.layers import ReLU

    seen = []
    layer = ReLU()
    forward, backward = layer._forward, layer._backward

    def spy(method):
        def run(*args):
            seen.append(advice())
            return method(*args)
        return run

    monkeypatch.setattr(layer, "_forward", spy(forward))
    monkeypatch.setattr(layer, "_backward", spy(backward))
    monkeypatch.setattr(data, "_shape_mask", spy(data._shape_mask))
    before = advice()
    layer.backward(layer.forward(np.ones((2, 3), np.float32)))
    data.make_shapes(5)
    assert seen and not any(seen)
    assert advice() is before  # the user's own arrays keep NumPy's setting


def test_a_choice_of_the_user_is_left_alone():
    script = ("from cnnlib import _malloc\n"
              "_malloc._set_madvise_hugepage(True)\n"
              "with _malloc.no_huge_page_advice():\n"
              "    print(_malloc._set_madvise_hugepage(True))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "NUMPY_MADVISE_HUGEPAGE": "1"}, check=True)
    assert done.stdout.split() == ["True"]
