"""A whole class on one hub: N students at once on the course's JupyterHub (not a timed test).

    python benchmarks/bench_class.py [--students 1 5 10 20] [--policy cnnlib] [--moves 10]

For each N, a new hub of ``deploy/jupyterhub/`` (real JupyterHub and configurable-http-proxy,
on loopback; each student's server with ``CPU_LIMIT`` and ``MEM_LIMIT`` as configured there)
and N simulated students at once, each only through the hub's REST API and their own server,
as a browser would:

1. the hub starts the student's server (``POST /hub/api/users/<name>/server``);
2. nbgitpuller clones the course from a local repository (a copy of this working tree), through
   the same ``git-pull`` API the course's link uses;
3. a kernel for notebook 01 (``POST /user/<name>/api/sessions``), then Run All: every code cell
   in order over the kernel's websocket, in small mode (``CNNLIB_SMALL=1``, as the tests; it
   does not change notebook 01);
4. a burst of slider moves on the convolution explorer: the message JupyterLab sends when a
   student releases the "カーネルの大きさ K" slider (a ``comm_msg`` that sets the slider's
   ``value``), each timed until the kernel is idle again with the new picture sent (exactly one
   PNG in a ``display_data`` for the explorer's output, made by ``Explorer.update`` as in the
   browser), with a think time of 0.5–2 s between moves.

Per N: Run-All time, slider latency (p50, p95; the browser then draws the PNG, which is not
included), CPU per student (seconds for Run All, milliseconds per slider move, and cores used
while moving sliders, think time included) and resident memory per student (server + kernel,
the peak of the sum),
and failures: servers that did not start, pulls that failed, kernels that died, cells that
raised, slider moves that sent no picture (or more than one) within 30 s. Without ``--sync``
each student moves sliders as soon as their own Run All is over, while others may still be
starting (the first minutes of a lesson); with it, only once everyone's Run All is over (the
rest of it).
``--policy`` chooses how the kernels' Numba threads wait (``POLICIES``); cnnlib's own choice is
``cnnlib``. Targets (issue 14): 10 students with no failure and slider p95 ≤ 250 ms, 20 students
with no failure; like the other benchmarks, the script exits with 1 when one is missed. The last
line reads
``class: N students, failures F, run-all p50 X s, slider p50 Y ms p95 Z ms, memory per student
M MB`` for the last N.

The machine's load is printed: a shared machine (other engineers' tests) slows every number.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "deploy" / "jupyterhub"))
import launch  # noqa: E402

NOTEBOOK = "notebooks/01_convolution.ipynb"
SLIDER = "カーネルの大きさ K"
SLIDER_VALUES = [5, 7, 3, 9, 5, 3, 7, 11, 3, 5]
MOVE_TIMEOUT_S = 30
CELL_TIMEOUT_S = 600
# How idle Numba/OpenMP threads wait in each student's kernel. The hub gives every server
# CPU_LIMIT (1.0 as configured), so cnnlib runs one Numba thread and, in case there are more,
# makes idle ones sleep (OMP_WAIT_POLICY=PASSIVE). The alternatives: two threads (what Numba
# would start on this 2-core machine without cnnlib's cap), waiting passively or spinning
# (OpenMP's default, which cnnlib keeps outside containers).
POLICIES = {
    "cnnlib": {},
    "2-threads-passive": {"NUMBA_NUM_THREADS": "2", "OMP_WAIT_POLICY": "PASSIVE"},
    "2-threads-spin": {"NUMBA_NUM_THREADS": "2", "GOMP_SPINCOUNT": "300000"},
}
# Found in the kernel after Run All: the comm id of the convolution explorer's slider.
FIND_SLIDER = f"""
import ipywidgets as _w
_found = [m for m in list(_w.widgets.widget._instances.values())
          if isinstance(m, _w.IntSlider) and m.description == {SLIDER!r}]
print(_found[-1].model_id if _found else "none")
"""


@dataclass
class Student:
    name: str
    spawn_s: float = float("nan")
    pull_s: float = float("nan")
    run_all_s: float = float("nan")
    moves_ms: list[float] = field(default_factory=list)
    cpu_run_all_s: float = float("nan")
    cpu_moves_s: float = float("nan")
    moves_wall_s: float = float("nan")
    peak_rss: int = 0
    failures: list[str] = field(default_factory=list)
    root_pid: int | None = None
    arrived: bool = False


class Gate:
    """With ``--sync``: nobody moves a slider before every student's Run All is over."""

    def __init__(self, n: int, sync: bool):
        self.left, self.sync, self.open = n, sync, asyncio.Event()

    def arrive(self, student: Student) -> None:
        if not student.arrived:
            student.arrived = True
            self.left -= 1
            if self.left <= 0:
                self.open.set()

    async def wait(self) -> None:
        if self.sync:
            await self.open.wait()


# ------------------------------------------------------------------------- processes


def student_root(name: str) -> int | None:
    """The pid of the student's ``singleuser.py`` (its server and kernel are below it)."""
    import psutil

    for process in psutil.process_iter():
        try:
            if (process.environ().get("JUPYTERHUB_USER") == name
                    and any("singleuser.py" in part for part in process.cmdline())):
                return process.pid
        except psutil.Error:
            continue
    return None


def tree(pid: int | None) -> list:
    import psutil

    if pid is None:
        return []
    try:
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    except psutil.Error:
        return []


def cpu_seconds(pid: int | None) -> float:
    total = 0.0
    for process in tree(pid):
        try:
            times = process.cpu_times()
            total += times.user + times.system
        except Exception:
            pass
    return total


def rss(pid: int | None) -> int:
    total = 0
    for process in tree(pid):
        try:
            total += process.memory_info().rss
        except Exception:
            pass
    return total


class MemorySampler(threading.Thread):
    """Every second, each student's resident memory (server + kernel); keeps the peaks."""

    def __init__(self, students: list[Student]):
        super().__init__(daemon=True)
        self.students, self.stop = students, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(1.0):
            for student in self.students:
                if student.root_pid is not None:
                    student.peak_rss = max(student.peak_rss, rss(student.root_pid))


# ------------------------------------------------------------------------- one student


class Kernel:
    """A kernel's websocket (Jupyter's JSON protocol), as JupyterLab uses it."""

    def __init__(self, connection):
        self.connection, self.session = connection, uuid.uuid4().hex

    def send(self, channel: str, msg_type: str, content: dict) -> str:
        msg_id = uuid.uuid4().hex
        self.connection.write_message(json.dumps({
            "header": {"msg_id": msg_id, "msg_type": msg_type, "username": "student",
                       "session": self.session, "date": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel,
            "buffers": []}))
        return msg_id

    async def until_idle(self, msg_id: str, timeout: float) -> list[dict]:
        """The iopub messages of request ``msg_id`` until the kernel is idle after it."""
        seen = []
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer within {timeout:.0f} s")
            raw = await asyncio.wait_for(self.connection.read_message(), left)
            if raw is None:
                raise ConnectionError("the kernel's websocket closed")
            if isinstance(raw, bytes):
                continue  # messages with binary buffers (widget state): not needed here
            message = json.loads(raw)
            if message.get("channel") != "iopub":
                continue
            kind, content = message["msg_type"], message["content"]
            if kind == "status" and content["execution_state"] in ("dead", "restarting",
                                                                   "autorestarting"):
                raise ConnectionError(f"kernel {content['execution_state']}")
            if message["parent_header"].get("msg_id") != msg_id:
                continue
            seen.append(message)
            if kind == "status" and content["execution_state"] == "idle":
                return seen

    async def execute(self, code: str, timeout: float = CELL_TIMEOUT_S) -> list[dict]:
        msg_id = self.send("shell", "execute_request", {
            "code": code, "silent": False, "store_history": True, "user_expressions": {},
            "allow_stdin": False, "stop_on_error": True})
        return await self.until_idle(msg_id, timeout)


async def api(hub: launch.Hub, path: str, method: str = "GET", body: object = None,
              timeout: float = 600, stream=None) -> object:
    from tornado.httpclient import AsyncHTTPClient, HTTPRequest

    request = HTTPRequest(
        hub.url + path, method=method, headers={"Authorization": f"token {hub.token}"},
        body=None if body is None and method == "GET" else json.dumps(body or {}),
        request_timeout=timeout, streaming_callback=stream, allow_nonstandard_methods=True)
    response = await AsyncHTTPClient().fetch(request)
    return json.loads(response.body) if response.body and stream is None else None


async def one_student(hub: launch.Hub, student: Student, repo: Path, cells: list[str],
                      think: tuple[float, float], moves: int, seed: int, gate: Gate) -> None:
    from tornado.httpclient import HTTPRequest
    from tornado.websocket import websocket_connect

    name, rng = student.name, random.Random(seed)
    await asyncio.sleep(rng.uniform(0, 2))  # students do not click at the same millisecond
    start = time.monotonic()
    await api(hub, f"/hub/api/users/{name}", "POST")
    await api(hub, f"/hub/api/users/{name}/server", "POST")
    while True:
        user = await api(hub, f"/hub/api/users/{name}")
        server = user["servers"].get("")
        if server and server["ready"]:
            break
        if not server or not server.get("pending"):
            raise RuntimeError("the server did not start")
        await asyncio.sleep(0.5)
    student.spawn_s = time.monotonic() - start
    student.root_pid = await asyncio.to_thread(student_root, name)

    start, events = time.monotonic(), []
    query = f"repo={repo.as_uri()}&branch=main&targetpath=cnnlib"
    await api(hub, f"/user/{name}/git-pull/api?{query}", stream=events.append)
    if b'"phase": "finished"' not in b"".join(events):
        raise RuntimeError(f"nbgitpuller: {b''.join(events)[-300:]!r}")
    student.pull_s = time.monotonic() - start

    session = await api(hub, f"/user/{name}/api/sessions", "POST", {
        "path": f"cnnlib/{NOTEBOOK}", "type": "notebook", "name": "",
        "kernel": {"name": "python3"}})
    url = hub.url.replace("http", "ws", 1) + f"/user/{name}/api/kernels/" \
        f"{session['kernel']['id']}/channels"
    connection = await websocket_connect(
        HTTPRequest(url, headers={"Authorization": f"token {hub.token}"}),
        max_message_size=256 * 1024 * 1024)
    kernel = Kernel(connection)
    try:
        await kernel.until_idle(kernel.send("shell", "kernel_info_request", {}), 120)
        cpu, start = cpu_seconds(student.root_pid), time.monotonic()
        for code in cells:
            for message in await kernel.execute(code):
                if message["msg_type"] == "error":
                    student.failures.append(f"cell raised {message['content']['ename']}")
            if student.failures:
                return
        student.run_all_s = time.monotonic() - start
        student.cpu_run_all_s = cpu_seconds(student.root_pid) - cpu
        gate.arrive(student)
        await gate.wait()

        found = await kernel.execute(FIND_SLIDER, 60)
        comm_id = next((m["content"]["text"].strip() for m in found
                        if m["msg_type"] == "stream"), "none")
        if comm_id == "none":
            student.failures.append("no kernel-size slider after Run All")
            return
        cpu, start = cpu_seconds(student.root_pid), time.monotonic()
        for k in range(moves):
            await asyncio.sleep(rng.uniform(*think))
            sent = time.monotonic()
            msg_id = kernel.send("shell", "comm_msg", {"comm_id": comm_id, "data": {
                "method": "update", "state": {"value": SLIDER_VALUES[k % len(SLIDER_VALUES)]},
                "buffer_paths": []}})
            try:
                replies = await kernel.until_idle(msg_id, MOVE_TIMEOUT_S)
            except TimeoutError:
                student.failures.append(f"slider move {k}: no answer in {MOVE_TIMEOUT_S} s")
                continue
            pictures = sum(m["msg_type"] == "display_data" and "image/png" in m["content"]["data"]
                           for m in replies)
            if pictures != 1:  # none: the explorer is broken; more: a figure drawn twice
                student.failures.append(f"slider move {k}: {pictures} pictures, not 1")
                continue
            student.moves_ms.append((time.monotonic() - sent) * 1000)
        student.moves_wall_s = time.monotonic() - start
        student.cpu_moves_s = cpu_seconds(student.root_pid) - cpu
    finally:
        connection.close()


async def run_class(hub: launch.Hub, students: list[Student], repo: Path, cells: list[str],
                    think: tuple[float, float], moves: int, sync: bool) -> None:
    from tornado.httpclient import AsyncHTTPClient

    AsyncHTTPClient.configure(None, max_clients=4 * len(students) + 10)
    gate = Gate(len(students), sync)

    async def guarded(i: int, student: Student) -> None:
        try:
            await one_student(hub, student, repo, cells, think, moves, seed=i, gate=gate)
        except Exception as error:  # one student's failure must not end the class
            student.failures.append(f"{type(error).__name__}: {str(error)[:200]}")
        finally:
            gate.arrive(student)

    await asyncio.gather(*(guarded(i, s) for i, s in enumerate(students)))


# ------------------------------------------------------------------------- the class


def course_repository(base: Path) -> Path:
    """The instructor's repository: this working tree, committed on ``main``."""
    repo = base / "cnnlib"
    shutil.copytree(ROOT, repo, ignore=shutil.ignore_patterns(
        ".git", ".venv", "artifacts", "__pycache__", "*.egg-info", ".pytest_cache",
        ".ruff_cache", "node_modules", "*.nbi", "*.nbc"))
    git = ["git", "-c", "user.name=Instructor", "-c", "user.email=instructor@example.org"]
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "course"]):
        subprocess.run([*git, *args], cwd=repo, check=True, capture_output=True)
    return repo


def code_cells(repo: Path) -> list[str]:
    notebook = json.loads((repo / NOTEBOOK).read_text(encoding="utf-8"))
    cells = []
    for cell in notebook["cells"]:
        if cell["cell_type"] == "code":
            source = cell["source"]
            cells.append("".join(source) if isinstance(source, list) else source)
    return cells


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def one_class(n: int, policy: str, repo: Path, cells: list[str], think: tuple[float, float],
              moves: int, sync: bool, keep: Path | None) -> dict:
    state = Path(tempfile.mkdtemp(prefix=f"class{n}-", dir=keep))
    students = [Student(f"student{i + 1:02d}") for i in range(n)]
    # Only the policy's variables: none inherited from whoever runs the benchmark.
    env: dict[str, str | None] = dict.fromkeys(
        ["OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "NUMBA_NUM_THREADS"])
    env.update(CNNLIB_SMALL="1", **POLICIES[policy])
    sampler = MemorySampler(students)
    load_before = os.getloadavg()
    wall = time.monotonic()
    try:
        with launch.local_hub(state, env=env) as hub:
            sampler.start()
            asyncio.run(run_class(hub, students, repo, cells, think, moves, sync))
            wall = time.monotonic() - wall
            sampler.stop.set()
            sampler.join()
            oom = hub.log.read_text(errors="replace").count("memory limit")
    finally:
        sampler.stop.set()
        if keep is None:
            shutil.rmtree(state, ignore_errors=True)
    failures = [f"{s.name}: {f}" for s in students for f in s.failures]
    failures += [f"memory limit: a process was killed ({oom}×)"] * bool(oom)
    slider = [ms for s in students for ms in s.moves_ms]
    return {
        "n": n, "policy": policy, "failures": failures, "wall_s": wall,
        "load_before": load_before, "load_after": os.getloadavg(),
        "spawn_p50": median([s.spawn_s for s in students]),
        "spawn_max": max((s.spawn_s for s in students if s.spawn_s == s.spawn_s), default=0),
        "run_all_p50": median([s.run_all_s for s in students]),
        "run_all_max": max((s.run_all_s for s in students if s.run_all_s == s.run_all_s),
                           default=float("nan")),
        "slider_p50": percentile(slider, 50), "slider_p95": percentile(slider, 95),
        "slider_max": max(slider, default=float("nan")), "moves": len(slider),
        "cpu_run_all": median([s.cpu_run_all_s for s in students]),
        "cores_moves": median([s.cpu_moves_s / s.moves_wall_s for s in students
                               if s.moves_wall_s == s.moves_wall_s]),
        "cpu_ms_move": median([1000 * s.cpu_moves_s / len(s.moves_ms) for s in students
                               if s.moves_ms]),
        "mem_p50": median([s.peak_rss / 2**20 for s in students if s.peak_rss]),
        "mem_max": max((s.peak_rss / 2**20 for s in students), default=0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, nargs="+", default=[1, 5, 10, 20])
    parser.add_argument("--policy", choices=sorted(POLICIES), nargs="+", default=["cnnlib"])
    parser.add_argument("--moves", type=int, default=10, help="slider moves per student")
    parser.add_argument("--think", type=float, nargs=2, default=(0.5, 2.0),
                        help="think time between two moves: uniform in [low, high] seconds")
    parser.add_argument("--sync", action="store_true",
                        help="sliders only once every student's Run All is over (steady state)")
    parser.add_argument("--keep", type=Path, help="keep each hub's folder (logs) under here")
    args = parser.parse_args()
    problem = launch.missing()
    if problem:
        print(f"bench_class: not run: {problem}")
        return 0
    print(f"machine: {os.cpu_count()} CPUs, shared; load average before: "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(prefix="hubconfig-") as folder:
        config = launch.load_config(Path(folder)).Spawner
    print(f"each student's server: CPU_LIMIT {config.cpu_limit}, MEM_LIMIT {config.mem_limit}; "
          f"{args.moves} slider moves, think time {args.think[0]}–{args.think[1]} s"
          + (", sliders after every Run All (--sync)" if args.sync else ""))
    with tempfile.TemporaryDirectory(prefix="bench-class-") as base:
        repo = course_repository(Path(base))
        cells = code_cells(repo)
        results = []
        header = (f"{'policy':<18} {'N':>3} {'fail':>4} {'spawn p50/max s':>16} "
                  f"{'run-all p50/max s':>18} {'slider p50/p95/max ms':>22} "
                  f"{'CPU s run-all':>13} {'CPU ms/move':>11} {'cores sliding':>13} "
                  f"{'MB p50/max':>12} "
                  f"{'wall s':>7} {'load before→after':>18}")
        print(header)
        for policy in args.policy:
            for n in args.students:
                r = one_class(n, policy, repo, cells, tuple(args.think), args.moves, args.sync,
                              args.keep)
                results.append(r)
                print(f"{policy:<18} {n:>3} {len(r['failures']):>4} "
                      f"{r['spawn_p50']:>7.1f}/{r['spawn_max']:<8.1f} "
                      f"{r['run_all_p50']:>8.1f}/{r['run_all_max']:<9.1f} "
                      f"{r['slider_p50']:>7.0f}/{r['slider_p95']:.0f}/{r['slider_max']:<6.0f} "
                      f"{r['cpu_run_all']:>13.1f} {r['cpu_ms_move']:>11.0f} "
                      f"{r['cores_moves']:>13.2f} "
                      f"{r['mem_p50']:>5.0f}/{r['mem_max']:<6.0f} {r['wall_s']:>7.0f} "
                      f"{r['load_before'][0]:>8.2f}→{r['load_after'][0]:<.2f}", flush=True)
                for failure in r["failures"][:10]:
                    print(f"    failure: {failure}")
    missed = [f"{r['n']} students ({r['policy']}): {len(r['failures'])} failures"
              for r in results if r["n"] in (10, 20) and r["failures"]]
    missed += [f"10 students ({r['policy']}): slider p95 {r['slider_p95']:.0f} ms > 250 ms"
               for r in results if r["n"] == 10 and not r["slider_p95"] <= 250]
    measured = {10, 20} & {r["n"] for r in results}
    verdict = ("; ".join(missed) + " — missed" if missed
               else "met" if measured == {10, 20} else "not measured (needs N = 10 and 20)")
    print("targets (10 students: 0 failures, slider p95 ≤ 250 ms; 20 students: 0 failures): "
          + verdict)
    for r in results:
        print(f"class ({r['policy']}): {r['n']} students, failures {len(r['failures'])}, "
              f"run-all p50 {r['run_all_p50']:.1f} s, slider p50 {r['slider_p50']:.0f} ms "
              f"p95 {r['slider_p95']:.0f} ms, memory per student {r['mem_p50']:.0f} MB")
    last = results[-1]
    print(f"class: {last['n']} students, failures {len(last['failures'])}, "
          f"run-all p50 {last['run_all_p50']:.1f} s, slider p50 {last['slider_p50']:.0f} ms "
          f"p95 {last['slider_p95']:.0f} ms, memory per student {last['mem_p50']:.0f} MB")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
