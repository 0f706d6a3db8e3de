"""cnnlib's additions to The Littlest JupyterHub (copied to /opt/tljh/config/jupyterhub_config.d/).

Every student's server starts through deploy/tljh/start (a copy of the compiled Numba cache in
their home), with the course's reserved share of the machine; TLJH's own config.yaml sets the
limits (deploy/tljh/config.yaml).
"""

c = get_config()  # noqa: F821  (defined by JupyterHub when it loads this file)

c.Spawner.cmd = ["/opt/tljh/cnnlib/start", "jupyterhub-singleuser"]
c.Spawner.cpu_guarantee = 0.1
c.Spawner.mem_guarantee = "1G"
c.Spawner.start_timeout = 300
