"""The deployment files agree with each other and with the local hub that the tests run.

``deploy/jupyterhub/jupyterhub_config.py`` is what ``tests/test_hub.py`` and
``benchmarks/bench_class.py`` run; Zero to JupyterHub's ``deploy/z2jh/config.yaml`` and The
Littlest JupyterHub's ``deploy/tljh/`` must give students the same limits, the same culling and
the same packages (nbgitpuller, the Japanese language pack), and JupyterLab the same class
settings (``binder/overrides.json``), which must name settings JupyterLab really has.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

import pytest
import yaml
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
sys.path.insert(0, str(DEPLOY / "jupyterhub"))
import launch  # noqa: E402


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local hub's configuration, as JupyterHub loads it."""
    return launch.load_config(tmp_path_factory.mktemp("hub-config"))


@pytest.fixture(scope="module")
def z2jh() -> dict:
    return yaml.safe_load((DEPLOY / "z2jh" / "config.yaml").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def tljh() -> dict:
    return yaml.safe_load((DEPLOY / "tljh" / "config.yaml").read_text(encoding="utf-8"))


def pins(path: Path) -> dict[str, str]:
    found = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if "==" in line:
            name, version = line.split("==", 1)
            found[re.sub(r"[-_.]+", "-", name).lower()] = version
    return found


def test_local_hub_is_configured_like_kubespawner(local) -> None:
    spawner = local.Spawner
    assert local.JupyterHub.spawner_class == "simple"
    assert 0 < spawner.cpu_guarantee <= spawner.cpu_limit
    assert 0 < launch.to_bytes(spawner.mem_guarantee) <= launch.to_bytes(spawner.mem_limit)
    assert spawner.cmd[-1].endswith("singleuser.py")  # enforces MEM_LIMIT
    assert local.JupyterHub.authenticator_class == "shared-password"


def test_z2jh_matches_local_hub(local, z2jh) -> None:
    spawner, single = local.Spawner, z2jh["singleuser"]
    assert single["cpu"]["limit"] == spawner.cpu_limit
    assert single["cpu"]["guarantee"] == spawner.cpu_guarantee
    assert launch.to_bytes(single["memory"]["limit"]) == launch.to_bytes(spawner.mem_limit)
    assert (launch.to_bytes(single["memory"]["guarantee"])
            == launch.to_bytes(spawner.mem_guarantee))
    assert single["defaultUrl"] == spawner.default_url
    assert single["startTimeout"] == spawner.start_timeout
    # The Numba cache belongs to the image's user (repo2docker's --user-id in the comment).
    text = (DEPLOY / "z2jh" / "config.yaml").read_text(encoding="utf-8")
    assert f"--user-id {single['uid']}" in text
    assert z2jh["cull"]["enabled"] is True and z2jh["cull"]["timeout"] > 0
    hub = z2jh["hub"]["config"]
    assert hub["JupyterHub"]["authenticator_class"] == local.JupyterHub.authenticator_class
    assert hub["SharedPasswordAuthenticator"]["user_password"] is None  # set by the instructor


def test_tljh_matches_local_hub(local, tljh) -> None:
    spawner = local.Spawner
    assert tljh["limits"]["cpu"] == spawner.cpu_limit
    assert launch.to_bytes(tljh["limits"]["memory"]) == launch.to_bytes(spawner.mem_limit)
    extra = PyFileConfigLoader("cnnlib.py", path=str(DEPLOY / "tljh" / "jupyterhub_config.d"))
    tljh_spawner = extra.load_config().Spawner
    assert tljh_spawner.cpu_guarantee == spawner.cpu_guarantee
    assert tljh_spawner.mem_guarantee == spawner.mem_guarantee
    assert tljh_spawner.start_timeout == spawner.start_timeout
    # install.sh sets exactly what config.yaml says.
    script = (DEPLOY / "tljh" / "install.sh").read_text(encoding="utf-8")
    assert f"tljh-config set limits.cpu {tljh['limits']['cpu']}" in script
    assert f"tljh-config set limits.memory {tljh['limits']['memory']}" in script
    for key, value in tljh["services"]["cull"].items():
        assert f"tljh-config set services.cull.{key} {str(value).lower()}" in script
    assert tljh_spawner.cmd[0] == "/opt/tljh/cnnlib/start"
    assert '"$shared/start"' in script  # install.sh puts start where the config expects it


def test_both_culls_agree(z2jh, tljh) -> None:
    assert z2jh["cull"] == tljh["services"]["cull"]


def test_same_packages_on_every_hub() -> None:
    binder = pins(ROOT / "binder" / "requirements.txt")
    hub = pins(DEPLOY / "jupyterhub" / "requirements.txt")
    for name in ("nbgitpuller", "jupyterlab-language-pack-ja-jp"):
        assert name in binder and name in hub, name
        assert binder[name] == hub[name], (name, binder[name], hub[name])


def test_class_settings_are_real_jupyterlab_settings() -> None:
    """Every key of binder/overrides.json is a setting of the installed JupyterLab, and valid."""
    schemas = Path(sys.prefix) / "share" / "jupyter" / "lab" / "schemas"
    if not schemas.exists():
        pytest.skip("JupyterLab is not installed in this Python: `pip install jupyterlab`")
    overrides = json.loads((ROOT / "binder" / "overrides.json").read_text(encoding="utf-8"))
    assert overrides["@jupyterlab/apputils-extension:notification"]["fetchNews"] == "false"
    for plugin, values in overrides.items():
        package, name = plugin.split(":")
        schema = json.loads((schemas / package / f"{name}.json").read_text(encoding="utf-8"))
        for key, value in values.items():
            assert key in schema["properties"], f"{plugin} has no setting {key!r}"
            prop = schema["properties"][key]
            if "oneOf" in prop:
                assert value in [choice["const"] for choice in prop["oneOf"]], (plugin, key)
            else:
                kind = {"boolean": bool, "string": str}[prop["type"]]
                assert isinstance(value, kind), (plugin, key, value)


def test_every_hub_installs_the_class_settings() -> None:
    settings = "share/jupyter/lab/settings"
    assert "binder/overrides.json" in (ROOT / "binder" / "postBuild").read_text()
    assert settings in (ROOT / "binder" / "postBuild").read_text()
    install = (DEPLOY / "tljh" / "install.sh").read_text()
    assert "binder/overrides.json" in install and settings in install
    assert '"binder" / "overrides.json"' in (DEPLOY / "jupyterhub" / "jupyterhub_config.py"
                                              ).read_text()


# A cnnlib kernel, called once; prints how often Numba found it in a cache and compiled it.
CALL_KERNEL = """
import numpy as np
from cnnlib.activations import relu_forward_kernel, relu_forward
relu_forward(np.ones(4))
stats = relu_forward_kernel.stats
print(sum(stats.cache_hits.values()), sum(stats.cache_misses.values()))
"""


def test_tljh_start_gives_each_student_the_compiled_numba_cache(tmp_path_factory) -> None:
    """As a student's own Unix account (``nobody``), ``deploy/tljh/start`` makes the kernels that
    root compiled into ``NUMBA_CACHE_DIR`` load from the cache. (Without it the student's
    kernels still work: cnnlib then reads the package's own read-only cache, or compiles;
    ``tests/test_readonly_install.py`` tests that path.)"""
    import os
    import shutil
    import subprocess
    import tempfile

    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv (util-linux) to run as another Unix account")
    base = Path(tempfile.mkdtemp(prefix="tljh-cache-"))
    try:
        base.chmod(0o755)
        shared, home = base / "shared", base / "home"
        home.mkdir()
        os.chown(home, 65534, 65534)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("NUMBA", "PYTHON"))}
        env["PYTHONPATH"] = str(ROOT)
        as_root = subprocess.run([sys.executable, "-c", CALL_KERNEL], capture_output=True,
                                 text=True, env={**env, "NUMBA_CACHE_DIR": str(shared)},
                                 cwd=base, timeout=300)
        assert as_root.returncode == 0, as_root.stderr
        subprocess.run(["chmod", "-R", "a+rX", str(shared)], check=True)
        # The student's account: nobody, which may read everything (CAP_DAC_READ_SEARCH, since
        # this machine's Python may live in root's home; on a TLJH server /opt/tljh/user is
        # readable by all) but write only its own home.
        student = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                   "--inh-caps=-all,+dac_read_search", "--ambient-caps=-all,+dac_read_search"]
        probe = subprocess.run([*student, sys.executable, "-c", "import cnnlib"], cwd=base,
                               env={**env, "HOME": str(home)}, capture_output=True, text=True)
        if probe.returncode:
            pytest.skip(f"this Python or checkout is not readable by other accounts: "
                        f"{probe.stderr.strip()[-200:]}")

        def as_student(*start: str) -> tuple[int, int]:
            done = subprocess.run(
                [*student, *start, sys.executable, "-c", CALL_KERNEL], cwd=base, timeout=300,
                env={**env, "HOME": str(home), "CNNLIB_NUMBA_CACHE": str(shared)},
                capture_output=True, text=True)
            assert done.returncode == 0, done.stderr
            hits, misses = done.stdout.split()
            return int(hits), int(misses)

        assert sum(as_student()) == 1  # without start: loaded or compiled, never an error
        assert as_student(str(DEPLOY / "tljh" / "start")) == (1, 0)
    finally:
        shutil.rmtree(base, ignore_errors=True)


# A server whose child (the "kernel") takes 200 MB and waits; the server reports how it ended.
GREEDY_SERVER = """
import subprocess, sys
child = subprocess.Popen([sys.executable, "-c",
                          "import time; x = b'1' * (200 << 20); time.sleep(60)"])
print(child.wait())
"""


@pytest.mark.parametrize("limit_mb", [100, 0])
def test_singleuser_enforces_the_memory_limit(limit_mb: int, capfd) -> None:
    """Over MEM_LIMIT the largest process is killed, as a container's OOM killer would."""
    import singleuser

    start = time.monotonic()
    if limit_mb:
        assert singleuser.watch([sys.executable, "-c", GREEDY_SERVER], limit_mb << 20) == 0
        out, err = capfd.readouterr()
        assert out.strip() == "-9", out  # the child was killed, the server went on
        assert "memory limit" in err
        assert time.monotonic() - start < 30
    else:  # control: without a limit nothing is killed (a shorter wait, then a clean exit)
        quick = GREEDY_SERVER.replace("time.sleep(60)", "time.sleep(2)")
        assert singleuser.watch([sys.executable, "-c", quick], 0) == 0
        out, err = capfd.readouterr()
        assert out.strip() == "0" and "memory limit" not in err
