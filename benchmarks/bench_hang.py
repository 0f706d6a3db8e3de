"""Run All, again and again, each time in a fresh kernel: does the Jupyter stack ever hang?

    python benchmarks/bench_hang.py                       # 10 runs with this Python (~2 min)
    python benchmarks/bench_hang.py --runs 100 \\
        --python /work/venvs/stack-pinned/bin/python --python /work/venvs/stack-latest/bin/python

Issue 15: with ipykernel 7, ``jupyter execute`` sometimes sat forever in a notebook, the kernel
idle, the client waiting for a reply that never came. This script counts how often that happens.

Each run executes one notebook (``--notebooks``, taken in turn) top to bottom in small mode
(``CNNLIB_SMALL=1``, as the tests run them) in a worker process started with the Python of the
stack under test: the worker's nbclient (what ``jupyter execute`` uses) starts a new
``python3`` kernel of that same Python, runs every cell, and shuts the kernel down. A run ends as

* **ok**: every cell ran;
* **hang**: a cell (or the kernel's start-up) got no reply within ``--cell-timeout`` seconds
  while the kernel was not busy with it, or the whole run outlived ``--run-timeout`` (the worker
  and its kernel are then killed);
* **stall**: every cell ran, but the reply to one reached the client only when the client's wait
  for it timed out (it took the cell timeout to the second): the client froze for the whole
  timeout and then found the reply that had been waiting. With ``jupyter execute``'s default (no
  timeout) this run would never have ended, so it counts with the hangs;
* **slow**: a cell took longer than ``--cell-timeout`` because the kernel was still running it
  (a machine too busy for the timeout, not a lost message);
* **fail**: anything else (an error in a cell, a kernel that died).

When a cell times out, the worker looks before giving up, to tell where the message was lost:
whether the reply is waiting unread in the client's own socket (the client missed its wake-up),
and, through a second connection, whether the kernel ever ran the cell (``len(In)``): if it did
not, the kernel lost the request (ipykernel 7's bug); if it did, the reply was lost on the way.

With several ``--python``, the stacks take turns run by run, so that the load of a shared machine
falls on them alike. One worker at a time. Every run is appended as a JSON line to ``--log``; the
table at the end gives the counts per stack with the versions of its Jupyter packages
(``--summarize LOG`` prints it again from a log, also of a run that was stopped). Exit code 1 if
the first stack (the one the project installs) had a hang, a stall or a failure.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
DEFAULT_NOTEBOOKS = ["00", "02", "01", "00", "02", "04"]  # the cheapest, and two more
PACKAGES = ["ipykernel", "jupyter_client", "pyzmq", "tornado", "nbclient", "ipython"]


# --- the worker: runs in the Python of the stack under test ------------------------------------


def worker(notebook: str, cell_timeout: float, client_kind: str) -> None:
    """Execute ``notebook`` in a new kernel; print one JSON line saying how it went."""
    import nbformat

    nb = nbformat.read(notebook, as_version=4)
    cwd = str(Path(notebook).parent)
    state = {"running": None, "started": {}, "took": {}, "diagnosis": None}
    result = {"python": sys.executable, "client": client_kind}
    start = time.monotonic()
    run = run_nbclient if client_kind == "nbclient" else run_blocking
    result.update(run(nb, cwd, cell_timeout, state))
    result["seconds"] = round(time.monotonic() - start, 2)
    took = state["took"]
    if took:  # a stall that ended by itself shows here (a run that was ok, but slow)
        slowest = max(took, key=took.get)
        result.update(slowest_cell=slowest, slowest_s=round(took[slowest], 2),
                      cells_s=round(sum(took.values()), 2))
    print("RESULT " + json.dumps(result), flush=True)


def cell_started(state: dict, index: int) -> None:
    state["running"] = index
    state["started"][index] = time.monotonic()
    print(f"CELL {index}", flush=True)


def cell_done(state: dict, index: int) -> None:
    state["took"][index] = time.monotonic() - state["started"][index]


def diagnose(kc, km, sent: int) -> dict:
    """Where is the lost message? (called when a cell times out, the kernel still running)"""
    import zmq

    found = {"requests_sent": sent}
    for name in ("shell", "iopub"):
        events = getattr(kc, f"{name}_channel").socket.getsockopt(zmq.EVENTS)
        found[f"unread_{name}_at_client"] = bool(events & zmq.POLLIN)
    probe = km.blocking_client()
    probe.start_channels(shell=True, iopub=False, stdin=False, hb=False, control=False)
    try:
        msg_id = probe.execute("", silent=True, store_history=False,
                               user_expressions={"n": "len(In) - 1"})
        reply = probe.get_shell_msg(timeout=10)
        assert reply["parent_header"]["msg_id"] == msg_id
        found["cells_run_by_kernel"] = int(
            reply["content"]["user_expressions"]["n"]["data"]["text/plain"])
    except Exception as e:  # a kernel that does not answer a second client either
        found["cells_run_by_kernel"] = f"no answer: {type(e).__name__}"
    finally:
        probe.stop_channels()
    run = found["cells_run_by_kernel"]
    found["verdict"] = (
        "reply waiting unread in the client's socket" if found["unread_shell_at_client"]
        else "kernel never ran the cell: request lost" if run == sent - 1
        else "kernel ran the cell, no reply at the client" if run == sent
        else "kernel busy: no answer to a second client" if isinstance(run, str)
        else "unclear")
    return found


def run_nbclient(nb, cwd: str, cell_timeout: float, state: dict) -> dict:
    """nbclient's asyncio client, as ``jupyter execute`` and nbconvert run a notebook."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

    class Client(NotebookClient):
        async def _async_handle_timeout(self, timeout, cell=None):
            state["diagnosis"] = diagnose(self.kc, self.km, self.code_cells_executed)
            return await super()._async_handle_timeout(timeout, cell)

    client = Client(nb, timeout=cell_timeout, startup_timeout=cell_timeout, kernel_name="python3",
                    allow_errors=False, resources={"metadata": {"path": cwd}})
    # jupyter_client starts the kernel in a process group of its own: tell the driver its pid,
    # so that it can kill the kernel too if this worker has to be killed.
    client.on_notebook_start = lambda **_: print(f"KERNEL_PID {client.km.provisioner.pid}",
                                                 flush=True)
    client.on_cell_execute = lambda cell, cell_index: cell_started(state, cell_index)
    client.on_cell_executed = lambda cell, cell_index, **_: cell_done(state, cell_index)
    try:
        client.execute()
        return {"outcome": "ok"}
    except CellTimeoutError as e:
        return {"outcome": "hang", "cell": state["running"], "diagnosis": state["diagnosis"],
                "detail": str(e).splitlines()[0]}
    except RuntimeError as e:  # "Kernel didn't respond in N seconds" (no kernel_info_reply)
        hang = "didn't respond" in str(e)
        return {"outcome": "hang" if hang else "fail", "cell": state["running"],
                "detail": str(e)[:300]}
    except DeadKernelError as e:
        return {"outcome": "fail", "cell": state["running"], "detail": f"kernel died: {e}"[:300]}
    except CellExecutionError as e:
        return {"outcome": "fail", "cell": state["running"], "detail": str(e)[-300:]}


def run_blocking(nb, cwd: str, cell_timeout: float, state: dict) -> dict:
    """jupyter_client's blocking client, one cell after the other, as nbval runs a notebook:
    it waits on the sockets with zmq's own poll, not through an asyncio event loop."""
    from queue import Empty

    from jupyter_client.manager import start_new_kernel

    km, kc = start_new_kernel(kernel_name="python3", startup_timeout=cell_timeout, cwd=cwd)
    print(f"KERNEL_PID {km.provisioner.pid}", flush=True)
    sent = 0
    try:
        for index, cell in enumerate(nb.cells):
            if cell.cell_type != "code" or not cell.source.strip():
                continue
            cell_started(state, index)
            msg_id = kc.execute(cell.source, store_history=True, allow_stdin=False)
            sent += 1
            deadline = time.monotonic() + cell_timeout
            for channel in ("shell", "iopub"):  # the reply, then the outputs until idle
                while True:
                    remaining = deadline - time.monotonic()
                    try:
                        if remaining <= 0:
                            raise Empty
                        msg = getattr(kc, f"get_{channel}_msg")(timeout=remaining)
                    except Empty:
                        return {"outcome": "hang", "cell": index,
                                "diagnosis": diagnose(kc, km, sent),
                                "detail": f"no {channel} message for {cell_timeout:.0f} s"}
                    if msg["parent_header"].get("msg_id") != msg_id:
                        continue
                    if channel == "shell":
                        reply = msg
                        break
                    if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                        break
            cell_done(state, index)
            if reply["content"]["status"] != "ok":
                return {"outcome": "fail", "cell": index,
                        "detail": f"{reply['content'].get('ename')}: "
                                  f"{reply['content'].get('evalue')}"[:300]}
        return {"outcome": "ok"}
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)


# --- the driver --------------------------------------------------------------------------------


def notebook_path(key: str) -> Path:
    found = sorted(NOTEBOOKS.glob(f"{key}*.ipynb"))
    if len(found) != 1:
        raise SystemExit(f"--notebooks: {key!r} matches {[p.name for p in found]}")
    return found[0]


def run_once(python: str, notebook: Path, cell_timeout: float, run_timeout: float,
             home: Path, client: str = "nbclient") -> dict:
    """One Run All in a worker process of ``python``; the worker is killed after run_timeout."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTER", "PYTHON"))}
    bin_dir = str(Path(python).parent)
    env.update(
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),  # the kernel's "python" is this one
        VIRTUAL_ENV=str(Path(python).parent.parent),
        CNNLIB_SMALL="1",
        # Only the kernel of the worker's own Python: no user or system kernelspecs.
        JUPYTER_CONFIG_DIR=str(home / "config"),
        JUPYTER_DATA_DIR=str(home / "data"),
        JUPYTER_RUNTIME_DIR=str(home / "runtime"),
        IPYTHONDIR=str(home / "ipython"),
    )
    env.pop("MPLBACKEND", None)
    command = [python, str(Path(__file__).resolve()), "--worker", str(notebook),
               "--cell-timeout", str(cell_timeout), "--client", client]
    start = time.monotonic()
    process = subprocess.Popen(command, cwd=notebook.parent, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, start_new_session=True)
    timed_out = False
    try:
        out, err = process.communicate(timeout=run_timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        os.killpg(process.pid, signal.SIGKILL)
        out, err = process.communicate()
    for line in out.splitlines():  # a kernel left behind would keep a core busy
        if line.startswith("KERNEL_PID "):
            _kill_group(int(line.split()[1]))
    _kill_group(process.pid)
    if timed_out:
        cells = [int(line.split()[1]) for line in out.splitlines() if line.startswith("CELL ")]
        return {"outcome": "hang", "cell": cells[-1] if cells else None,
                "detail": f"the whole run outlived {run_timeout:.0f} s (killed)",
                "seconds": round(time.monotonic() - start, 2)}
    for line in out.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    return {"outcome": "fail", "cell": None, "seconds": round(time.monotonic() - start, 2),
            "detail": f"worker exited with {process.returncode}: {err.strip()[-300:]}"}


OUTCOMES = ("ok", "hang", "stall", "slow", "fail")


def classify(record: dict, cell_timeout: float) -> str:
    """One of OUTCOMES (see the module's docstring)."""
    diagnosis = record.get("diagnosis") or {}
    if record["outcome"] == "hang" and diagnosis.get("verdict", "").startswith("kernel busy"):
        return "slow"
    timeout = record.get("cell_timeout", cell_timeout)
    if record["outcome"] == "ok" and record.get("slowest_s", 0) >= timeout - 1:
        return "stall"
    return record["outcome"]


def versions_of(python: str) -> str:
    """The versions of the Jupyter packages that ``python`` imports."""
    code = ("from importlib import metadata as m\n"
            f"for name in {PACKAGES!r}:\n"
            "    try: print(name, m.version(name))\n"
            "    except m.PackageNotFoundError: print(name, 'missing')\n")
    try:
        out = subprocess.run([python, "-c", code], capture_output=True, text=True,
                             timeout=60).stdout
    except OSError as e:
        return f"({e})"
    return ", ".join(out.split("\n")[:-1])


def stack(record: dict) -> str:
    """``python [client]``: what a run tested."""
    return f"{record['python']} [{record.get('client', 'nbclient')}]"


def summary(records: list[dict], pythons: list[str],
            cell_timeout: float) -> dict[str, dict[str, int]]:
    """Print the counts per stack (and each run that was not ok); return them."""
    counts = {p: dict.fromkeys(OUTCOMES, 0) for p in pythons}
    for record in records:
        counts.setdefault(stack(record), dict.fromkeys(OUTCOMES, 0))
        counts[stack(record)][classify(record, cell_timeout)] += 1
    print(f"\n{'stack (Python [client])':<50} | runs | " + " | ".join(f"{o:>5}" for o in OUTCOMES)
          + " | versions")
    print("-" * 140)
    for key, c in counts.items():
        python = key.split(" [")[0]
        print(f"{key:<50} | {sum(c.values()):4d} | "
              + " | ".join(f"{c[o]:5d}" for o in OUTCOMES) + f" | {versions_of(python)}")
    for record in records:
        outcome = classify(record, cell_timeout)
        timed = "slowest_s" in record or record["outcome"] != "ok"
        if outcome == "ok" and (timed or record["seconds"] < record.get("cell_timeout",
                                                                       cell_timeout)):
            continue
        what = (f"cell {record.get('slowest_cell')} took {record.get('slowest_s')} s"
                if outcome == "stall" else
                f"{record['seconds']} s in all, no per-cell times: a stall?" if outcome == "ok"
                else f"cell {record.get('cell')}: {record.get('detail', '')[:100]}")
        diagnosis = (record.get("diagnosis") or {}).get("verdict", "")
        print(f"  {outcome}: {stack(record)} run {record['run'] + 1} {record['notebook']} "
              f"{what} {f'({diagnosis})' if diagnosis else ''}")
    return counts


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--python", action="append",
                        help="Python of a stack to test (repeat to compare; default: this one)")
    parser.add_argument("--runs", type=int, default=10, help="Run-All executions per stack")
    parser.add_argument("--notebooks", nargs="+", default=DEFAULT_NOTEBOOKS,
                        help="notebook numbers, executed in turn (default: %(default)s)")
    parser.add_argument("--cell-timeout", type=float, default=60,
                        help="seconds one cell may take (a few seconds each on a quiet machine)")
    parser.add_argument("--run-timeout", type=float, default=180,
                        help="seconds one Run All may take in all, kernel start included")
    parser.add_argument("--client", choices=["nbclient", "blocking"], default="nbclient",
                        help="nbclient (as jupyter execute) or a blocking client (as nbval)")
    parser.add_argument("--log", type=Path, help="append one JSON line per run here")
    parser.add_argument("--summarize", type=Path, metavar="LOG",
                        help="print the table of a log written by --log, and exit")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker, args.cell_timeout, args.client)
        return 0
    if args.summarize:
        records = [json.loads(line) for line in args.summarize.read_text().splitlines() if line]
        summary(records, list(dict.fromkeys(stack(r) for r in records)), args.cell_timeout)
        return 0

    pythons = args.python or [sys.executable]
    notebooks = [notebook_path(key) for key in args.notebooks]
    records: list[dict] = []
    print(f"{args.runs} runs per stack, cell timeout {args.cell_timeout:.0f} s, run timeout "
          f"{args.run_timeout:.0f} s, notebooks in turn: {' '.join(args.notebooks)}", flush=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench_hang_") as tmp:
        for k in range(args.runs):
            notebook = notebooks[k % len(notebooks)]
            for python in pythons:
                result = run_once(python, notebook, args.cell_timeout, args.run_timeout,
                                  Path(tmp), args.client)
                record = {"run": k, "python": python, "notebook": notebook.name,
                          "load1": round(os.getloadavg()[0], 2),
                          "cell_timeout": args.cell_timeout, "client": args.client, **result}
                records.append(record)
                if args.log:
                    with open(args.log, "a") as log:
                        log.write(json.dumps(record) + "\n")
                outcome = classify(record, args.cell_timeout)
                tag = f"{outcome:<4}"
                if outcome != "ok":
                    tag += f" cell {result.get('cell')}: {result.get('detail', '')[:120]}"
                    if result.get("diagnosis"):
                        tag += f" ({result['diagnosis']['verdict']})"
                print(f"[{time.monotonic() - t0:7.0f} s] run {k + 1:3d} {notebook.name:<40} "
                      f"{result['seconds']:6.1f} s  {python}: {tag}", flush=True)
    keys = [f"{python} [{args.client}]" for python in pythons]
    first = summary(records, keys, args.cell_timeout)[keys[0]]
    return 1 if first["hang"] or first["stall"] or first["fail"] else 0


if __name__ == "__main__":
    sys.exit(main())
