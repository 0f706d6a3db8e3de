"""Shared by ``test_binder.py`` and ``test_browser.py``: prerequisites, a repository copy, and a
JupyterLab server on loopback that the tests start and always stop.

Both tests need things a student's machine may lack (Python 3.12, Chromium, Playwright). There
they skip with a reason that says what to install; with ``CI=true`` a missing prerequisite fails
instead, because CI must never pass by skipping.
"""

from __future__ import annotations

import json
import os
import re
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

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
ARTIFACTS = ROOT / "artifacts"

# Flags for Debian's Chromium as root in a container without a network: no sandbox (root), no GPU,
# and none of the background connections that this machine's closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# Copies of the repository leave out what is not part of it (and is large or machine-specific).
_NOT_COPIED = shutil.ignore_patterns(
    ".git", ".venv", "venv", "artifacts", "build", "dist", "__pycache__", "*.egg-info",
    ".pytest_cache", ".ruff_cache", ".hypothesis", ".ipynb_checkpoints", "*.nbi", "*.nbc",
)


def nbval_cell_timeout() -> float:
    """Seconds one notebook cell may run in the tests: ``--nbval-cell-timeout`` in pyproject.toml.

    The project's pytest run (nbval), the Binder-style build and the browser test all use this one
    number, so that a cell whose reply never comes (ipykernel 7's lost request, issue 15) fails
    as that notebook's cell within minutes instead of stalling the run.
    """
    try:
        import tomllib
    except ImportError:  # Python 3.10; pytest itself depends on tomli there
        import tomli as tomllib
    with open(ROOT / "pyproject.toml", "rb") as f:
        addopts = tomllib.load(f)["tool"]["pytest"]["ini_options"]["addopts"]
    found = [m.group(1) for opt in addopts
             if (m := re.fullmatch(r"--nbval-cell-timeout=(\d+(?:\.\d+)?)", opt))]
    assert len(found) == 1, f"pyproject.toml's addopts: set --nbval-cell-timeout once ({addopts})"
    return float(found[0])


CELL_TIMEOUT_S = nbval_cell_timeout()


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require(ok: object, reason: str) -> None:
    """Skip the test with ``reason`` unless ``ok``; under ``CI=true`` fail instead."""
    if ok:
        return
    if in_ci():
        pytest.fail(f"CI=true, so this prerequisite must be present: {reason}", pytrace=False)
    pytest.skip(reason)


def copy_repo(dest: Path) -> Path:
    """Copy the working tree to ``dest`` (as repo2docker copies a repository into its image)."""
    shutil.copytree(ROOT, dest, ignore=_NOT_COPIED)
    return dest


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def jupyter_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment for a Jupyter process whose config, data and runtime live under ``home``.

    Nothing from the user's own Jupyter set-up (kernels, settings, workspaces) leaks in, so the
    kernel is always the ``python3`` kernel of the interpreter that starts the server.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    for name in ("config", "data", "runtime", "settings", "workspaces"):
        (home / name).mkdir(parents=True, exist_ok=True)
    env.update(
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
        JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"),
        CNNLIB_SMALL="1",
    )
    env.update(extra)
    return env


# JupyterLab user settings for the browser run: every cell stays in the DOM (no virtual
# scrolling), nothing is saved back over the notebooks, and no news or update check is fetched.
LAB_SETTINGS = {
    "@jupyterlab/notebook-extension/tracker": {"windowingMode": "none"},
    "@jupyterlab/docmanager-extension/plugin": {"autosave": False},
    "@jupyterlab/apputils-extension/notification": {
        "fetchNews": "false",
        "checkForUpdates": False,
    },
}


@dataclass
class LabServer:
    url: str
    token: str
    root: Path
    log: Path

    def page_url(self, path: str) -> str:
        """``path`` opened alone, in a workspace of its own (no tabs restored from earlier)."""
        workspace = secrets.token_hex(4)
        return f"{self.url}/lab/workspaces/{workspace}/tree/{path}?token={self.token}"

    def api(self, path: str, method: str = "GET") -> object:
        request = urllib.request.Request(
            f"{self.url}/api/{path}", method=method,
            headers={"Authorization": f"token {self.token}"},
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            body = response.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        for kernel in self.api("kernels"):
            self.api(f"kernels/{kernel['id']}", method="DELETE")


@contextmanager
def jupyter_lab(root_dir: Path, home: Path, python: str = sys.executable) -> Iterator[LabServer]:
    """Start JupyterLab on 127.0.0.1 (free port, random token, no browser); always stop it."""
    for plugin, values in LAB_SETTINGS.items():
        path = home / "settings" / f"{plugin}.jupyterlab-settings"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(values))
    env = jupyter_env(home)
    port, token = free_port(), secrets.token_hex(16)
    command = [
        python, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
        f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={root_dir}",
        "--ServerApp.port_retries=0", "--LabApp.expose_app_in_browser=True",
        "--LabApp.extension_manager=readonly",
    ]
    if os.geteuid() == 0:
        command.append("--allow-root")
    log = home / "jupyterlab.log"
    with open(log, "wb") as log_file:
        process = subprocess.Popen(command, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                   start_new_session=True)
    server = LabServer(url=f"http://127.0.0.1:{port}", token=token, root=root_dir, log=log)
    try:
        _wait_until_up(server, process)
        yield server
    finally:
        _stop(process)


def _wait_until_up(server: LabServer, process: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with {process.returncode}:\n"
                               f"{server.log.read_text(errors='replace')[-3000:]}")
        try:
            server.api("status")
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.5)
    raise RuntimeError(f"JupyterLab did not answer within {timeout:.0f} s:\n"
                       f"{server.log.read_text(errors='replace')[-3000:]}")


def _stop(process: subprocess.Popen) -> None:
    """SIGTERM the server's process group (it takes its kernels along), then SIGKILL."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
