"""cnnlib's additions to The Littlest JupyterHub (copied to /opt/tljh/config/jupyterhub_config.d/).

Every student's server starts through deploy/tljh/start (a copy of the compiled Numba cache in
their home). TLJH's own config.yaml sets the limits (deploy/tljh/config.yaml); the guarantees
below are the course's sizing, passed to each server as CPU_GUARANTEE and MEM_GUARANTEE (a
spawner that cannot reserve them, as on one machine, only records them).
"""

c = get_config()  # noqa: F821  (defined by JupyterHub when it loads this file)

c.Spawner.cmd = ["/opt/tljh/cnnlib/start", "jupyterhub-singleuser"]
c.Spawner.cpu_guarantee = 0.2
c.Spawner.mem_guarantee = "1G"
c.Spawner.start_timeout = 300
