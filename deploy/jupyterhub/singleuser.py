"""Start one student's Jupyter server under the memory limit that KubeSpawner would give it.

On Kubernetes the container's cgroup enforces ``MEM_LIMIT``: past it, the kernel's OOM killer
ends the largest process, normally the notebook's kernel, and JupyterLab says that the kernel
died. Here every student is a plain process, so this wrapper does the same from outside: it
starts ``jupyterhub-singleuser`` with the arguments it was given, adds up the resident memory of
that process and all its children twice a second and, over ``MEM_LIMIT`` (bytes, as JupyterHub
sets it), kills the largest one and says so on stderr (the hub's log).

``CPU_LIMIT`` is passed on as it is: cnnlib reads it to size its thread pool and to make idle
threads sleep. Nothing here caps the CPU time itself; on Kubernetes the cgroup's CPU quota does.
"""

import os
import shutil
import signal
import subprocess
import sys
import time

import psutil

POLL_S = 0.5


def tree_rss(root: psutil.Process) -> list[tuple[int, psutil.Process]]:
    """(resident bytes, process) for ``root`` and every descendant still alive."""
    found = []
    for process in [root, *root.children(recursive=True)]:
        try:
            found.append((process.memory_info().rss, process))
        except psutil.Error:
            pass
    return found


def watch(command: list[str], limit: int) -> int:
    """Run ``command``; while it runs, kill the largest process of its tree when the tree's
    resident memory exceeds ``limit`` bytes (0: no limit). Returns its exit code."""
    server = subprocess.Popen(command)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda signum, _: server.send_signal(signum))
    root = psutil.Process(server.pid)
    while server.poll() is None:
        time.sleep(POLL_S)
        used = tree_rss(root) if limit else []
        total = sum(rss for rss, _ in used)
        if total > limit and used:
            # As the kernel's OOM killer in a container: the largest process goes (normally the
            # notebook's kernel; if it is the server itself, the student's server ends).
            rss, biggest = max(used, key=lambda pair: pair[0])
            print(f"singleuser.py: memory limit {limit} B exceeded ({total} B): killing "
                  f"pid {biggest.pid} ({rss} B) as the OOM killer would", file=sys.stderr,
                  flush=True)
            try:
                biggest.kill()
            except psutil.Error:
                pass
    return server.returncode


def main() -> int:
    command = shutil.which("jupyterhub-singleuser", path=os.path.dirname(sys.executable))
    return watch([command or "jupyterhub-singleuser", *sys.argv[1:]],
                 int(os.environ.get("MEM_LIMIT") or 0))


if __name__ == "__main__":
    sys.exit(main())
