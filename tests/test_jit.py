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

SETTINGS = ("CPU_LIMIT", "NUMBA_NUM_THREADS", "GOMP_SPINCOUNT", "OMP_WAIT_POLICY")


def probe(code: str = PROBE, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in SETTINGS}
    result = subprocess.run([sys.executable, "-c", code], env={**clean, **env},
                            capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_default_is_passive_waiting_on_every_cpu():
    seen = probe()
    assert seen["spin"] is None and seen["policy"] == "PASSIVE"
    assert seen["threads"] == _jit._threads_for_this_machine()


@pytest.mark.parametrize(("limit", "threads"), [("0.5", 1), ("1", 1), ("1.5", 2), ("999", None)])
def test_cpu_limit_caps_the_threads(limit, threads):
    cpus = len(os.sched_getaffinity(0))
    if threads is not None and threads > cpus:
        pytest.skip(f"needs {threads} CPUs")
    assert probe(CPU_LIMIT=limit)["threads"] == (cpus if threads is None else threads)


def test_a_nonsense_cpu_limit_is_ignored():
    assert probe(CPU_LIMIT="two")["threads"] == len(os.sched_getaffinity(0))


def test_the_users_settings_are_kept():
    seen = probe(NUMBA_NUM_THREADS="1", CPU_LIMIT="4", OMP_WAIT_POLICY="ACTIVE")
    assert seen == {"threads": 1, "spin": None, "policy": "ACTIVE"}


def test_numba_imported_first_keeps_its_thread_count():
    code = "import numba\n" + PROBE
    assert probe(code, CPU_LIMIT="0.5")["threads"] == len(os.sched_getaffinity(0))


def test_cgroup_quota_is_read(monkeypatch):
    files = {"/sys/fs/cgroup/cpu.max": "150000 100000\n"}
    monkeypatch.setattr(_jit, "_read", lambda path: files[path].strip())
    monkeypatch.delenv("CPU_LIMIT", raising=False)
    assert _jit._cpu_limit() == 1.5
    files["/sys/fs/cgroup/cpu.max"] = "max 100000"
    assert _jit._cpu_limit() is None
    files.update({"/sys/fs/cgroup/cpu/cpu.cfs_quota_us": "50000",
                  "/sys/fs/cgroup/cpu/cpu.cfs_period_us": "100000"})
    assert _jit._cpu_limit() == 0.5
    monkeypatch.setenv("CPU_LIMIT", "0.25")  # the smaller limit wins
    assert _jit._cpu_limit() == 0.25
