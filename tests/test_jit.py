"""cnnlib/_jit.py: the threads and OpenMP waiting that importing cnnlib sets up.

Each case runs in a new interpreter, because the settings only take effect before Numba loads.
"""

import json
import os
import subprocess
import sys

import pytest

from cnnlib import _jit

PROBE = """
import json, os
import cnnlib, numba
print(json.dumps({"threads": numba.config.NUMBA_NUM_THREADS,
                  "spin": os.environ.get("GOMP_SPINCOUNT"),
                  "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""

SETTINGS = ("CPU_LIMIT", "NUMBA_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY",
            "OPENBLAS_THREAD_TIMEOUT", "GOTO_THREAD_TIMEOUT")


def probe(code: str = PROBE, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_a_cpu_limit_openmp_still_waits_passively():
    # Issue 11: NumPy's and PyTorch's threads share the kernel, so idle workers never spin.
    if _jit._cpu_limit() is not None:
        pytest.skip("this machine's cgroup limits the CPUs")
    seen = probe()
    assert seen["spin"] is None and seen["policy"] == "PASSIVE"
    assert seen["threads"] == len(os.sched_getaffinity(0))


def test_a_cpu_limit_means_a_shared_machine_and_passive_waiting():
    seen = probe(CPU_LIMIT="1")
    assert seen == {"threads": 1, "spin": None, "policy": "PASSIVE"}


@pytest.mark.parametrize(("limit", "threads"), [("0.5", 1), ("1", 1), ("1.5", 2), ("999", 999)])
def test_cpu_limit_caps_the_threads(limit, threads):
    unlimited = probe()["threads"]  # every CPU, or the cgroup's quota if this machine has one
    assert probe(CPU_LIMIT=limit)["threads"] == min(threads, unlimited)


def test_a_nonsense_cpu_limit_is_ignored():
    assert probe(CPU_LIMIT="two")["threads"] == probe()["threads"]


def test_the_users_settings_are_kept():
    seen = probe(NUMBA_NUM_THREADS="1", CPU_LIMIT="4", OMP_WAIT_POLICY="ACTIVE")
    assert seen == {"threads": 1, "spin": None, "policy": "ACTIVE"}
    assert probe(CPU_LIMIT="1", GOMP_SPINCOUNT="1000")["policy"] is None


def test_numba_imported_first_keeps_its_thread_count():
    import numba

    code = "import numba\n" + PROBE
    assert probe(code, CPU_LIMIT="0.5")["threads"] == numba.config.NUMBA_DEFAULT_NUM_THREADS


def test_cgroup_quotas_are_read_along_the_path(monkeypatch):
    files = {
        "/proc/self/cgroup": "0::/user.slice/session.scope\n3:cpu,cpuacct:/kubepods/pod1\n",
        "/sys/fs/cgroup/user.slice/session.scope/cpu.max": "max 100000",
        "/sys/fs/cgroup/user.slice/cpu.max": "150000 100000",  # a parent's limit counts too
        "/sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_quota_us": "-1",
        "/sys/fs/cgroup/cpu/kubepods/pod1/cpu.cfs_period_us": "100000",
    }

    def read(path):
        if path not in files:
            raise FileNotFoundError(path)
        return files[path].strip()

    monkeypatch.setattr(_jit, "_read", read)
    monkeypatch.delenv("CPU_LIMIT", raising=False)
    assert _jit._cpu_limit() == 1.5
    files["/sys/fs/cgroup/cpu/kubepods/cpu.cfs_quota_us"] = "50000"
    files["/sys/fs/cgroup/cpu/kubepods/cpu.cfs_period_us"] = "100000"
    assert _jit._cpu_limit() == 0.5  # the smallest limit wins
    monkeypatch.setenv("CPU_LIMIT", "0.25")
    assert _jit._cpu_limit() == 0.25
    files["/sys/fs/cgroup/user.slice/cpu.max"] = "max 100000"
    del files["/sys/fs/cgroup/cpu/kubepods/cpu.cfs_quota_us"]
    monkeypatch.delenv("CPU_LIMIT")
    assert _jit._cpu_limit() is None


NOTICE = """
import sys, types
if {kernel}:
    sys.modules["ipykernel"] = types.ModuleType("ipykernel")  # as in a Jupyter kernel
import numpy as np
import cnnlib
x = np.ones((1, 1, 4, 4), np.float32)
cnnlib.relu_forward(x)
cnnlib.relu_forward(x.astype(np.float64))
print("{{}}")
"""


def test_a_notebook_is_told_when_kernels_compile_and_only_then(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    env["NUMBA_CACHE_DIR"] = str(tmp_path)

    def run(kernel: bool) -> str:
        return subprocess.run([sys.executable, "-c", NOTICE.format(kernel=kernel)], env=env,
                              capture_output=True, text=True, check=True).stdout

    notice = "カーネルを一度だけコンパイルしています"
    assert run(kernel=False).count(notice) == 0  # a script: no message (and the cache fills)
    env["NUMBA_CACHE_DIR"] = str(tmp_path / "empty")
    assert run(kernel=True).count(notice) == 1  # two compilations in a row: one line
    assert run(kernel=True).count(notice) == 0  # loaded from the cache: nothing to say


LAYER = """
import ctypes, json, os
if {preload}:
    ctypes.CDLL("libgomp.so.1")  # an OpenMP runtime loaded before cnnlib, as PyTorch's is
import numpy as np
import cnnlib, numba
cnnlib.relu_forward(np.ones((64, 4096), np.float32))  # starts Numba's threads
print(json.dumps({{"layer": numba.threading_layer()}}))
"""


@pytest.mark.parametrize(("preload", "env", "layer"), [
    (False, {}, "omp"),  # Numba's OpenMP layer, passive
    (True, {}, "omp"),  # OpenMP already loaded (PyTorch first): one pool shared, not two
    (True, {"OMP_WAIT_POLICY": "PASSIVE"}, "omp"),
    (True, {"NUMBA_THREADING_LAYER": "workqueue"}, "workqueue"),  # the user's choice of layer
])
def test_an_openmp_runtime_started_before_cnnlib_is_shared(preload, env, layer):
    pytest.importorskip("threadpoolctl")
    clean = {k: v for k, v in os.environ.items()
             if k not in (*SETTINGS, "NUMBA_THREADING_LAYER")}
    done = subprocess.run([sys.executable, "-c", LAYER.format(preload=preload)],
                          env={**clean, **env}, capture_output=True, text=True, check=True)
    assert json.loads(done.stdout.strip().splitlines()[-1])["layer"] == layer


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
@pytest.mark.parametrize(("preload", "env", "warned"), [
    (True, {}, True),  # PyTorch (or anyone) started OpenMP first, with its spinning default
    (True, {"OMP_WAIT_POLICY": "PASSIVE"}, False),  # the user's fix: idle threads sleep
    (False, {}, False),  # cnnlib first: it sets the passive default itself, nothing to say
])
def test_an_openmp_runtime_that_already_spins_is_named_with_the_fix(preload, env, warned):
    code = ("import ctypes\n" + ("ctypes.CDLL('libgomp.so.1')\n" if preload else "")
            + "import cnnlib\n")
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    done = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                          capture_output=True, text=True, check=True)
    assert ("Import cnnlib first" in done.stderr) == warned, done.stderr
    if warned:
        assert "OMP_WAIT_POLICY=PASSIVE" in done.stderr


SHARED = """
import ctypes, hashlib, json, warnings
if {preload}:
    ctypes.CDLL("libgomp.so.1")  # PyTorch imported first: OpenMP loaded, threads spinning
warnings.simplefilter("ignore")
import numpy as np
from cnnlib import _conv_fast
from cnnlib.conv import conv2d_backward, conv2d_forward
rng = np.random.default_rng(0)
digest = hashlib.sha256()
for stride, padding in ((1, 1), (2, 0)):
    x = rng.standard_normal((16, 3, 12, 12)).astype(np.float32)
    w = rng.standard_normal((5, 3, 3, 3)).astype(np.float32)
    out, cache = conv2d_forward(x, w, np.zeros(5, np.float32), stride, padding)
    for a in (out, *conv2d_backward(rng.standard_normal(out.shape).astype(np.float32), cache)):
        digest.update(np.ascontiguousarray(a).tobytes())
print(json.dumps({{"digest": digest.hexdigest(),
                  "shared": [len(_conv_fast._forward_shared.signatures),
                             len(_conv_fast._backward_shared.signatures)]}}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")
def test_with_a_spinning_openmp_pool_the_convolution_shares_it_with_the_same_numbers():
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    clean["NUMBA_NUM_THREADS"] = "2"  # two chunks, so that the chunks really are split
    runs = {}
    for preload in (True, False):
        done = subprocess.run([sys.executable, "-c", SHARED.format(preload=preload)], env=clean,
                              capture_output=True, text=True, check=True)
        runs[preload] = json.loads(done.stdout.strip().splitlines()[-1])
    assert runs[True]["shared"] == [1, 1]  # the prange over the chunks ran, on OpenMP's pool
    assert runs[False]["shared"] == [0, 0]  # cnnlib first: its own workers, nothing compiled
    assert runs[True]["digest"] == runs[False]["digest"]  # the same chunks: the same bits


OPENBLAS = """
import json, os, time
import numpy as np

def idle_cpu_ticks():  # CPU time (1/100 s) of every thread but the main one
    ticks = 0
    for tid in os.listdir("/proc/self/task"):
        if tid != str(os.getpid()):
            fields = open(f"/proc/self/task/{tid}/stat").read().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
    return ticks

a = np.random.default_rng(0).random((12544, 200)).astype(np.float32)
b = np.random.default_rng(1).random((200, 32)).astype(np.float32)
expected = a.astype(np.float64) @ b
import cnnlib
spent = 0
for _ in range(3):  # after each product, OpenBLAS's idle thread would spin for about 0.1 s
    got = a @ b
    start = idle_cpu_ticks()
    time.sleep(0.3)
    spent += idle_cpu_ticks() - start
np.testing.assert_allclose(got, expected, rtol=1e-4)
print(json.dumps({"ticks": spent, "timeout": os.environ.get("OPENBLAS_THREAD_TIMEOUT")}))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_numpys_openblas_threads_sleep_once_a_product_is_done():
    pytest.importorskip("threadpoolctl")
    seen = probe(OPENBLAS)
    assert seen["timeout"] == "4"
    assert seen["ticks"] <= 3  # 0.9 s of sleeping: idle threads took at most 0.03 s of CPU
    kept = probe(OPENBLAS, OPENBLAS_THREAD_TIMEOUT="28")  # the user's setting wins
    assert kept["timeout"] == "28"
