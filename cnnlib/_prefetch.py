"""From an empty cache, compile a layer's backward kernels in a second process (issue 11).

On Colab or a new Binder machine every kernel is compiled the first time it is called: a
convolution layer's forward (3.0 s for float32 on a 2-core machine on 2026-12-07, 1.6 s since
the offsets and scratch come from Python) and then its backward (2.7 s, now 1.7 s), one after
the other on one core, while the second core idles. But the backward's
argument types are known as soon as the forward has run: they are the arrays of the forward's
cache. So when a layer's forward had to compile something (the cache was cold),
``after_forward`` sends a copy of the layer, its cache and the output's shape to a helper
process, which calls the layer's ``_backward`` once on a zero gradient. That compiles the
backward kernels on the second core and writes them to Numba's disk cache, while this process
goes on with the next layers' forward kernels and the cells in between. When this process then
calls the backward, Numba finds them on disk and loads them in milliseconds.
``wait`` waits for the jobs of that layer's class still in flight, rather than
compiling the same kernels a second time next to the helper.

A convolution does not even wait for its forward: its cache holds only the converted input,
the weights, the hyper-parameters and the output's shape (``conv._prepare``), nothing the
forward computes. So ``conv2d_forward`` sends ``conv2d_backward`` to the helper (``early``)
before it computes anything, the first time it meets a dtype for which the backward's kernel
has no version in the disk cache: the helper compiles the convolution's backward while this
process compiles its forward, for a ``Conv2d`` layer and for the functional API alike.

Measured on the 2-core machine, empty cache (2026-12-07). The shapes CNN of notebook 06 (batch
64, float32), a backward right after the forward: 3.35 s without the helper, 2.6 s when only
``after_forward`` sent jobs, 1.2 s with the convolution's early job; 3 s after the forward,
0.08 s. Run All in small mode (``bench_cold_start.py``, two rounds, helper off / on
alternating, 23:13–23:18, load 0.9–1.4): notebook 06 25.9 / 26.2 s → 23.1 / 20.9 s, 05 13.4 /
14.0 → 12.7 / 11.9 s (its hand example's float64 convolution, forward then backward in one cell:
5.7 / 6.0 → 4.4 / 4.2 s), 03 12.8 / 14.1 → 11.9 / 11.9 s; 01 (11.9 / 13.1 → 12.0 / 11.7 s) and
07 (11.1 / 10.4 → 11.1 / 9.4 s), which never call the convolution's backward, lose nothing. The
helper is a second Python process of about 150 MB for the minute it lives.

Nothing happens when the cache is warm (the forward compiles nothing: a hub image, a second
session), when there is no disk cache to share (``_jit._disk_cache`` False), for layers defined
outside cnnlib (the helper could not import them), or with ``CNNLIB_PREFETCH=0``. The helper
starts with the first job (a notebook whose layers and convolutions find their kernels on disk
starts none), imports the same cnnlib (same source files, so the same cache entries), leaves after
``IDLE_SECONDS`` without work or when this process ends, and a helper that fails only costs the
compilation this process then does itself. The numerical results never depend on it: the
helper computes nothing this process uses.
"""

from __future__ import annotations

import copy
import os
import pickle
import queue
import struct
import subprocess
import sys
import threading
from collections.abc import Callable

import numpy as np
from numba.core import event as _event

#: The helper exits after this long without a job (it costs a Python process's memory).
IDLE_SECONDS = 60.0
#: The longest ``wait`` waits for a job; after that this process compiles itself.
WAIT_SECONDS = 120.0

_compiles = 0  # how many of cnnlib's kernels this process has compiled
_lock = threading.Lock()
_helper: _Helper | None = None
_pending: dict[object, list[threading.Event]] = {}  # layer class or name → jobs in flight
_asked: set[tuple] = set()  # (name, dtype) that ``early`` has looked at


class _Count(_event.Listener):
    """Counts the compilations of cnnlib's kernels (``after_forward`` compares the count)."""

    def on_start(self, ev: _event.Event) -> None:
        global _compiles
        func = getattr(ev.data.get("dispatcher"), "py_func", None)
        if getattr(func, "__module__", "").startswith("cnnlib."):
            _compiles += 1

    def on_end(self, ev: _event.Event) -> None:
        pass


def enabled() -> bool:
    """Whether jobs may be sent: a disk cache to share, a POSIX system, no CNNLIB_PREFETCH=0."""
    from cnnlib import _jit

    # os.name: the helper waits on a pipe with select(), which Windows does not offer for pipes
    return (_jit._disk_cache and os.name == "posix"
            and os.environ.get("CNNLIB_PREFETCH", "1") != "0")


def compiles() -> int:
    """How many of cnnlib's kernels this process has compiled so far."""
    return _compiles


def early(key: str, backward: object, cache: object, shape: tuple, dtype: np.dtype,
          kernel: Callable[[], object]) -> None:
    """Called by a functional forward whose cache needs nothing it computes (``conv2d_forward``),
    before it runs: send ``backward(zeros(shape, dtype), cache)`` to the helper, the first time
    ``key`` meets ``dtype``, if ``kernel()`` (the backward's main kernel) has no version in this
    process or in Numba's disk cache yet. ``wait(key)`` in the backward waits for it."""
    tag = (key, np.dtype(dtype))
    if tag in _asked or not enabled():
        return
    _asked.add(tag)
    if not _compiled_for(kernel(), np.dtype(dtype)):
        _send(key, backward, cache, shape, dtype)


def after_forward(layer: object, cache: object, out: np.ndarray, mark: int) -> None:
    """Called by ``Layer.forward`` with ``mark = compiles()`` from before ``_forward``: if that
    forward compiled something, send the layer's backward to the helper (not for a layer whose
    functional forward sends its own, ``_backward_sent_early``)."""
    if _compiles == mark or getattr(layer, "_backward_sent_early", False) or not enabled():
        return
    if not type(layer).__module__.startswith("cnnlib."):
        return  # the helper could not import a class defined in a notebook
    clone = copy.copy(layer)
    clone.__dict__.update(_uses=[], _pending=0)  # only this use travels
    _send(type(layer), clone._backward, cache, out.shape, out.dtype, True)


def _send(key: object, backward: object, cache: object, shape: tuple, dtype: np.dtype,
          *more: object) -> bool:
    """Queue the job ``backward(zeros(shape, dtype), cache, *more)`` for the helper."""
    try:
        job = pickle.dumps((backward, cache, shape, dtype, more),
                           protocol=pickle.HIGHEST_PROTOCOL)
    except Exception:  # something in the layer does not pickle: compile here, later
        return False
    with _lock:
        helper = _helper if _helper is not None and _helper.alive() else _start_helper()
        if helper is None:
            return False
        done = threading.Event()
        if not helper.send(job, done):
            return False
        _pending.setdefault(key, []).append(done)
    return True


def _compiled_for(kernel: object, dtype: np.dtype) -> bool:
    """Whether ``kernel`` has a version whose first argument is an array of ``dtype``, in this
    process or in Numba's disk cache. True when that cannot be told (Numba's internals moved):
    then nothing is sent early."""
    from numba import from_dtype

    want = from_dtype(dtype)

    def has(signatures) -> bool:
        return any(getattr(sig[0], "dtype", None) == want for sig in signatures if sig)

    if has(kernel.signatures):
        return True
    try:
        index = kernel._cache._cache_file._load_index()  # {(signature, machine, ...): file}
    except Exception:
        return True
    return has(key[0] for key in index)


def wait(key: object) -> None:
    """Wait for the helper's jobs under ``key`` still in flight: a layer's class (the second
    ``BatchNorm2d`` of a model needs the kernels the job of the first one compiles), or the
    name a functional forward sent its job under (``"conv2d"``)."""
    if not _pending:
        return
    for done in _pending.pop(key, ()):
        done.wait(WAIT_SECONDS)


def _start_helper() -> _Helper | None:
    global _helper
    try:
        _helper = _Helper()
    except OSError:  # no process could be started (a sandbox): compile here
        _helper = None
    return _helper


class _Helper:
    """The helper process: length-prefixed pickled jobs on its stdin, one line per finished
    job on its stdout (read by a daemon thread, which sets the job's event)."""

    def __init__(self) -> None:
        package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        env = {**os.environ, "CNNLIB_PREFETCH": "0", "NUMBA_NUM_THREADS": "1",
               "PYTHONPATH": os.pathsep.join(
                   p for p in (package_parent, os.environ.get("PYTHONPATH")) if p)}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from cnnlib._prefetch import serve; serve()"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env,
            close_fds=True)
        self.events: list[threading.Event] = []  # in the order the jobs were sent
        self.io = threading.Lock()
        self.jobs: queue.SimpleQueue[bytes] = queue.SimpleQueue()
        threading.Thread(target=self._read, daemon=True, name="cnnlib-prefetch-read").start()
        threading.Thread(target=self._write, daemon=True, name="cnnlib-prefetch-write").start()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def send(self, job: bytes, done: threading.Event) -> bool:
        """Queue the job; a thread writes it (a job of a few MB fills the pipe, and writing
        would wait until the helper has finished the job before)."""
        with self.io:
            if self.proc.poll() is not None:
                return False
            self.events.append(done)
        self.jobs.put(job)
        return True

    def _write(self) -> None:
        while True:
            job = self.jobs.get()
            try:
                self.proc.stdin.write(struct.pack("<Q", len(job)) + job)
                self.proc.stdin.flush()
            except (OSError, ValueError):  # the helper has gone; _read releases the waiters
                return

    def _read(self) -> None:
        for _ in self.proc.stdout:  # one line per job, in order
            with self.io:
                if self.events:
                    self.events.pop(0).set()
        with self.io:  # the helper has gone (idle, or failed): nobody waits for it any more
            for done in self.events:
                done.set()
            self.events.clear()
        self.proc.wait()  # reap it


def serve() -> None:
    """The helper's loop: run each job's backward once (compiling and caching its kernels)."""
    import select

    stdin = sys.stdin.fileno()
    # the replies get a descriptor of their own: anything a kernel prints goes nowhere
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    sys.stdout = open(os.devnull, "w")  # for the life of the process
    os.dup2(sys.stdout.fileno(), 1)
    while select.select([stdin], [], [], IDLE_SECONDS)[0]:
        header = _read_exactly(stdin, 8)
        if len(header) < 8:
            return  # the notebook's process has ended
        job = _read_exactly(stdin, struct.unpack("<Q", header)[0])
        try:
            backward, cache, shape, dtype, more = pickle.loads(job)
            backward(np.zeros(shape, dtype), cache, *more)
        except Exception:  # the notebook's process compiles what was not done here
            pass
        replies.write("done\n")
        replies.flush()


def _read_exactly(fd: int, n: int) -> bytes:
    """n bytes from the file descriptor (fewer only at its end); unbuffered, so that
    ``select`` sees whether another job is waiting."""
    parts, got = [], 0
    while got < n:
        part = os.read(fd, n - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


_event.register("numba:compile", _Count())
