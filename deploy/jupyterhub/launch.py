"""Start the course's JupyterHub (``jupyterhub_config.py``) from Python, and always stop it.

For ``tests/test_hub.py`` and ``benchmarks/bench_class.py``: a hub of their own in a folder of
their own, on free loopback ports, with an API token for the ``class-admin`` service::

    with local_hub(tmp_path / "hub", password="...", env={"CNNLIB_SMALL": "1"}) as hub:
        hub.api("users/ana", method="POST")
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "jupyterhub_config.py"
PROXY = HERE / "node_modules" / ".bin" / "configurable-http-proxy"


def missing(python: str = sys.executable) -> str | None:
    """What is missing to run the hub (with a hint how to install it), or None."""
    probe = subprocess.run([python, "-c", "import jupyterhub, nbgitpuller, psutil"],
                           capture_output=True, text=True)
    if probe.returncode:
        return ("JupyterHub or nbgitpuller is not installed: "
                "`pip install -r deploy/jupyterhub/requirements.txt`")
    if not PROXY.exists():
        return ("configurable-http-proxy is not installed: "
                "`npm ci --prefix deploy/jupyterhub` (needs Node.js and npm)")
    if shutil.which("git") is None:
        return "git is missing (nbgitpuller runs it): `apt-get install git`"
    return None


@dataclass
class Hub:
    url: str
    token: str
    state: Path
    log: Path
    password: str

    def api(self, path: str, method: str = "GET", body: object = None,
            timeout: float = 60) -> object:
        """The hub's REST API (``/hub/api/<path>``) as the ``class-admin`` service."""
        return self.request(f"/hub/api/{path}", method, body, timeout)

    def request(self, path: str, method: str = "GET", body: object = None,
                timeout: float = 60) -> object:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method,
                                         headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
        return json.loads(text) if text.strip() else None

    def home(self, user: str) -> Path:
        return self.state / "homes" / user


def _free_base_port() -> int:
    """A port p such that p, p + 1 and p + 2 (hub, proxy API, hub API) are free on loopback."""
    for _ in range(50):
        base = secrets.randbelow(20000) + 30000
        try:
            for port in (base, base + 1, base + 2):
                with socket.socket() as sock:
                    sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        return base
    raise RuntimeError("no three free consecutive ports on 127.0.0.1")


@contextmanager
def local_hub(state: Path, password: str | None = None, env: dict[str, str | None] | None = None,
              python: str = sys.executable, timeout: float = 120) -> Iterator[Hub]:
    """Run ``jupyterhub -f jupyterhub_config.py`` with its state in ``state``; stop it after.

    ``env`` is set on top of this process's environment (a value of None removes the
    variable). Stopping the hub stops every student's server (the hub's ``cleanup_servers``);
    anything left of them is killed.
    """
    state.mkdir(parents=True, exist_ok=True)
    port = _free_base_port()
    password = password or secrets.token_urlsafe(12)
    token = secrets.token_hex(32)
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("JUPYTER")}
    for name, value in (env or {}).items():
        if value is None:
            full_env.pop(name, None)
        else:
            full_env[name] = value
    full_env.update(CNNLIB_HUB_DIR=str(state), CNNLIB_HUB_PORT=str(port),
                    CNNLIB_HUB_PASSWORD=password, CNNLIB_HUB_API_TOKEN=token,
                    CNNLIB_HUB_IP="127.0.0.1")
    # The students' servers are started with the hub's Python: its folder comes first on PATH.
    full_env["PATH"] = os.pathsep.join([str(Path(python).parent), full_env.get("PATH", "")])
    log = state / "jupyterhub.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen([python, "-m", "jupyterhub", "-f", str(CONFIG)], cwd=state,
                                   env=full_env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    hub = Hub(url=f"http://127.0.0.1:{port}", token=token, state=state, log=log,
              password=password)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"JupyterHub exited with {process.returncode}:\n"
                                   f"{log.read_text(errors='replace')[-3000:]}")
            try:
                hub.api("")
                break
            except (urllib.error.URLError, ConnectionError):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"JupyterHub did not answer within {timeout:.0f} s:\n"
                                       f"{log.read_text(errors='replace')[-3000:]}") from None
                time.sleep(0.5)
        yield hub
    finally:
        _stop(process)
        _kill_leftovers(state / "homes")


def _kill_leftovers(homes: Path) -> None:
    """Kill any student's server or kernel of this hub that outlived it (their HOME is here)."""
    try:
        import psutil
    except ImportError:
        return
    for process in psutil.process_iter():
        try:
            if process.environ().get("HOME", "").startswith(str(homes)):
                process.kill()
        except psutil.Error:
            pass


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)  # the hub stops the servers and the proxy
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
    try:
        os.killpg(process.pid, signal.SIGKILL)  # the proxy, if it outlived the hub
    except ProcessLookupError:
        pass


def load_config(state: Path):
    """The hub's configuration as JupyterHub reads it (a traitlets ``Config``).

    Loading it creates ``state`` (its state folder) and writes the class settings there.
    """
    from traitlets.config.loader import PyFileConfigLoader

    saved = os.environ.get("CNNLIB_HUB_DIR")
    os.environ["CNNLIB_HUB_DIR"] = str(state)
    try:
        return PyFileConfigLoader(CONFIG.name, path=str(HERE)).load_config()
    finally:
        if saved is None:
            del os.environ["CNNLIB_HUB_DIR"]
        else:
            os.environ["CNNLIB_HUB_DIR"] = saved


def to_bytes(size: str | int) -> int:
    """A memory size as JupyterHub reads it ("1G" is 1024**3 bytes)."""
    if isinstance(size, int):
        return size
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    return int(float(size[:-1]) * units[size[-1].upper()]) if size[-1].isalpha() else int(size)
