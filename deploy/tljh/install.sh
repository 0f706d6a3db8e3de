#!/bin/bash
# Prepare a The Littlest JupyterHub server for the cnnlib course. Run as root on the TLJH server,
# from a checkout of the course (ideally of a tag, as for Binder):
#
#   sudo deploy/tljh/install.sh
#
# It installs the course's pinned packages into TLJH's user environment (/opt/tljh/user, which
# every student's server uses), cnnlib itself, the class settings of JupyterLab, the Japanese
# language pack and nbgitpuller; compiles every Numba kernel once into /opt/tljh/cnnlib; and sets
# the per-student limits. Not tested here (TLJH needs systemd); the same steps are those of
# binder/postBuild, which tests/test_binder.py runs.
set -euo pipefail
repo="$(cd "$(dirname "$0")/../.." && pwd)"
user_python=/opt/tljh/user/bin/python
shared=/opt/tljh/cnnlib

"$user_python" -m pip install --no-cache-dir -r "$repo/binder/requirements.txt"
"$user_python" -m pip install --no-cache-dir --no-deps "$repo"

# JupyterLab's class settings (no Jupyter-news pop-up, notebooks listed first).
settings=/opt/tljh/user/share/jupyter/lab/settings
mkdir -p "$settings"
cp "$repo/binder/overrides.json" "$settings/overrides.json"

# Every kernel compiled once, readable by all; deploy/tljh/start copies it into each home.
mkdir -p "$shared"
install -m 755 "$repo/deploy/tljh/start" "$shared/start"
(cd / && NUMBA_CACHE_DIR="$shared/numba-cache" "$user_python" -m cnnlib.warmup)
chmod -R a+rX "$shared"

# Fashion-MNIST for notebook 06, once for everyone (cnnlib looks in this Debian path too).
if [[ ! -d /usr/share/datasets/fashion-mnist ]]; then
    CNNLIB_DATA=/usr/share/datasets "$user_python" - <<'PY'
from cnnlib.data import load_fashion_mnist

for split in ("train", "test"):
    load_fashion_mnist(split, progress=False)
PY
    chmod -R a+rX /usr/share/datasets
fi

cp "$repo/deploy/tljh/jupyterhub_config.d/cnnlib.py" /opt/tljh/config/jupyterhub_config.d/
tljh-config set limits.cpu 1.0
tljh-config set limits.memory 2G
tljh-config set user_environment.default_app jupyterlab
tljh-config set services.cull.enabled true
tljh-config set services.cull.timeout 3600
tljh-config set services.cull.every 300
tljh-config reload
