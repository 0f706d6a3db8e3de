"""The course's JupyterHub on one machine: `deploy/jupyterhub/run.sh` starts it.

What a Littlest-JupyterHub install does on one server, in a folder of its own: students log in
with the class password on the hub's login page, each gets a Jupyter server of their own (a
local process with its own home), started with the CPU and memory limits that Zero to
JupyterHub's KubeSpawner would give it (``CPU_LIMIT``, ``MEM_LIMIT``, … in its environment, the
memory limit enforced by ``singleuser.py``), and the course arrives through nbgitpuller links.

Everything is read from the environment, so that tests and benchmarks can start their own hub:

=========================  ==================================================================
``CNNLIB_HUB_DIR``         state: database, cookie secret, students' homes (``artifacts/hub``)
``CNNLIB_HUB_IP``          address the hub listens on (``127.0.0.1``; ``0.0.0.0`` for a room)
``CNNLIB_HUB_PORT``        its port (8000); the proxy's API and the hub itself use the next two
``CNNLIB_HUB_PASSWORD``    the class password (at least 8 characters; required)
``CNNLIB_HUB_API_TOKEN``   optional: a token for the ``class-admin`` service (benchmarks), which
                           may create students, start their servers and use them
=========================  ==================================================================

The limits below are the course's sizing (README, "JupyterHub for a whole class"); the same
numbers are in ``deploy/z2jh/config.yaml`` and ``deploy/tljh/config.yaml`` (checked by
``tests/test_deploy_config.py``).
"""

import os
import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
STATE = Path(os.environ.get("CNNLIB_HUB_DIR") or ROOT / "artifacts" / "hub").resolve()
IP = os.environ.get("CNNLIB_HUB_IP", "127.0.0.1")
PORT = int(os.environ.get("CNNLIB_HUB_PORT", "8000"))

# Per student, as KubeSpawner sets them (z2jh: singleuser.cpu / singleuser.memory). Measured
# (benchmarks/bench_class.py, README): server + kernel hold about 400 MB after notebook 01, and a
# slider move costs about 0.1 CPU seconds; notebook 06, which trains on all of Fashion-MNIST,
# took its kernel to 1.23 GB, hence a 2 GB limit. One CPU at most, so that a student's Run All
# is quick when the machine has room; 0.2 reserved: a student moving a slider every second or so
# uses 0.1 CPU, and a core loaded to half answers about as fast as an idle one (5 per core).
CPU_LIMIT = 1.0
CPU_GUARANTEE = 0.2
MEM_LIMIT = "2G"
MEM_GUARANTEE = "1G"
# The page a student lands on after logging in (nbgitpuller links bring their own).
DEFAULT_URL = "/lab"

c = get_config()  # noqa: F821  (defined by JupyterHub when it loads this file)

STATE.mkdir(parents=True, exist_ok=True)
c.JupyterHub.bind_url = f"http://{IP}:{PORT}"
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{PORT + 1}"
c.JupyterHub.hub_bind_url = f"http://127.0.0.1:{PORT + 2}"
c.ConfigurableHTTPProxy.command = [str(HERE / "node_modules" / ".bin" / "configurable-http-proxy")]
c.JupyterHub.db_url = f"sqlite:///{STATE / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(STATE / "jupyterhub_cookie_secret")
c.JupyterHub.pid_file = str(STATE / "jupyterhub.pid")

# Login page with one class password (JupyterHub's shared-password authenticator): any name
# is a new student. A campus hub uses its own login (LDAP, OAuth) instead.
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ.get("CNNLIB_HUB_PASSWORD")
c.Authenticator.allow_all = True

# One local process per student, in their own home under the state folder. As root the
# processes run as root (SimpleLocalProcessSpawner has no Unix accounts; TLJH creates one per
# student, see deploy/tljh/), hence --allow-root.
c.JupyterHub.spawner_class = "simple"
c.SimpleLocalProcessSpawner.home_dir_template = str(STATE / "homes" / "{username}")
c.Spawner.cmd = [sys.executable, str(HERE / "singleuser.py")]
c.Spawner.args = ["--allow-root"] if os.geteuid() == 0 else []
c.Spawner.default_url = DEFAULT_URL
c.Spawner.cpu_limit = CPU_LIMIT
c.Spawner.cpu_guarantee = CPU_GUARANTEE
c.Spawner.mem_limit = MEM_LIMIT
c.Spawner.mem_guarantee = MEM_GUARANTEE
# Two busy cores start twenty servers slowly; the hub waits for each.
c.Spawner.start_timeout = 300
c.Spawner.http_timeout = 300
# The environment the course reads, when the hub's starter sets it (tests: CNNLIB_SMALL; the
# class benchmark: OMP_WAIT_POLICY, NUMBA_NUM_THREADS).
c.Spawner.env_keep = [
    "PATH", "PYTHONPATH", "VIRTUAL_ENV", "LANG", "LC_ALL", "LD_LIBRARY_PATH",
    "JUPYTERHUB_SINGLEUSER_APP", "CNNLIB_SMALL", "CNNLIB_DATA", "OMP_WAIT_POLICY",
    "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS", "NUMBA_CACHE_DIR",
]

# JupyterLab's class settings (binder/overrides.json: no news pop-up, …), the same as on Binder,
# given to every server as default settings through a Jupyter config folder of the hub's own.
lab_config = STATE / "jupyter-config" / "labconfig"
lab_config.mkdir(parents=True, exist_ok=True)
shutil.copyfile(ROOT / "binder" / "overrides.json", lab_config / "default_setting_overrides.json")
c.Spawner.environment = {"JUPYTER_CONFIG_PATH": str(STATE / "jupyter-config")}

# For the class benchmark (benchmarks/bench_class.py): a service that drives students' servers
# through the REST API, as an instructor's script would.
token = os.environ.get("CNNLIB_HUB_API_TOKEN")
if token:
    c.JupyterHub.services = [{"name": "class-admin", "api_token": token}]
    c.JupyterHub.load_roles = [{
        "name": "class-admin",
        "scopes": ["admin:users", "admin:servers", "access:servers", "read:users"],
        "services": ["class-admin"],
    }]
