"""A read-only, warmed-up install used by an unprivileged student (a JupyterHub image).

Import must work with HOME writable and with HOME missing, and the first forward and backward
of every layer must load the image's compiled kernels instead of compiling them (Numba's cache
log shows no "data saved"). The seconds are reported by benchmarks/bench_readonly_install.py.
"""

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
import readonly_install as ro

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(ro.can_run() is not None, reason=ro.can_run() or "")]


@pytest.fixture(scope="module")
def image():
    # not pytest's tmp_path: other pytest runs on the machine may clean that up meanwhile
    folder = Path(tempfile.mkdtemp(prefix="cnnlib-hub-image-"))
    try:
        yield folder, ro.make_image(folder)
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


def _check(run):
    assert run["returncode"] == 0, run["stderr"][-2000:]
    assert run["result"] is not None
    assert run["loaded"], "the image's cache was not used"
    assert not run["saved"], "kernels were compiled again:\n" + "\n".join(run["saved"][:5])
    assert set(run["result"]["layers"]) >= {"Conv2d", "MaxPool2d", "BatchNorm2d", "GELU",
                                            "Linear + softmax_cross_entropy"}


def test_student_with_a_writable_home_uses_the_image_cache(image):
    folder, site = image
    _check(ro.run_student(site, ro.student_home(folder)))


def test_student_without_a_home_imports_and_uses_the_image_cache(image):
    _, site = image
    _check(ro.run_student(site, None))


def test_student_whose_home_is_not_writable(image):
    _, site = image
    _check(ro.run_student(site, ro.REPO))  # root's checkout: not writable for nobody
