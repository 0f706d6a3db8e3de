#!/usr/bin/env bash
# Start the course's JupyterHub on this machine (one command; Ctrl-C stops it and every server).
#
#   CNNLIB_HUB_PASSWORD='a class password' deploy/jupyterhub/run.sh
#
# Installs on first use what is missing: the hub's Python packages (requirements.txt of the
# course and of this folder) into the Python it runs with (.venv/ unless PYTHON is set), with
# every Numba kernel compiled once, and configurable-http-proxy from npm into
# deploy/jupyterhub/node_modules. Students open http://127.0.0.1:8000 (CNNLIB_HUB_IP and
# CNNLIB_HUB_PORT change that), log in with any name and the class password, then click the
# course's nbgitpuller link (README, "JupyterHub for a whole class").
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cd "$root"  # requirements.txt installs the course with `-e .`
python="${PYTHON:-$root/.venv/bin/python}"

if [[ ! -x "$python" ]]; then
    python3 -m venv "$root/.venv"
    python="$root/.venv/bin/python"
fi
if ! "$python" -c "import jupyterhub, nbgitpuller, cnnlib" 2>/dev/null; then
    "$python" -m pip install -q -r "$root/requirements.txt" -r "$here/requirements.txt"
    (cd / && "$python" -m cnnlib.warmup)  # compile every kernel once, for all students
fi
if [[ ! -x "$here/node_modules/.bin/configurable-http-proxy" ]]; then
    npm ci --prefix "$here" --no-audit --no-fund
fi
if [[ -z "${CNNLIB_HUB_PASSWORD:-}" ]]; then
    echo "deploy/jupyterhub/run.sh: set CNNLIB_HUB_PASSWORD (8 characters or more), the password" \
         "students log in with" >&2
    exit 2
fi
exec "$python" -m jupyterhub -f "$here/jupyterhub_config.py" "$@"
