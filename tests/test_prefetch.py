"""cnnlib/_prefetch.py: from an empty cache, a helper process compiles the backward kernels.

Each case runs in a new interpreter with its own empty ``NUMBA_CACHE_DIR``, because what is
tested is what a first session on Colab does; the models are small (ReLU, max-pool, linear; one
small convolution) so that their kernels compile in seconds.
"""

import json
import os
import subprocess
import sys

PROGRAM = """
import json, os, time
import numpy as np
from numba.core import event
from cnnlib import _prefetch
from cnnlib.layers import Flatten, Linear, MaxPool2d, ReLU, Sequential

compiled = []
class Log(event.Listener):
    def on_start(self, ev):
        func = ev.data["dispatcher"].py_func
        if func.__module__.startswith("cnnlib."):
            compiled.append(func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Log())

rng = np.random.default_rng(0)
model = Sequential(ReLU(), MaxPool2d(2), Flatten(), Linear(3 * 4 * 4, 5, rng=rng))
x = rng.standard_normal((6, 3, 8, 8)).astype(np.float32)
out = model.forward(x)
in_forward = list(compiled)
helper = _prefetch._helper.proc.pid if _prefetch._helper is not None else None
{between}
del compiled[:]
start = time.perf_counter()
dx = model.backward(np.ones_like(out))
print(json.dumps({{"forward": in_forward, "backward": compiled, "helper": helper,
                  "seconds": time.perf_counter() - start,
                  "dx": dx.ravel().tolist(),
                  "dw": model.layers[3].grads["w"].ravel().tolist()}}))
"""


def run(tmp_path, cache: str = "cache", between: str = "", **env: str) -> dict:
    """The program in a new interpreter with the Numba cache in ``tmp_path / cache``."""
    full = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / cache), "CNNLIB_PREFETCH": "1", **env}
    done = subprocess.run([sys.executable, "-c", PROGRAM.format(between=between)], env=full,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_backward_compiles_nothing_here_when_the_helper_ran(tmp_path):
    with_helper = run(tmp_path, "a")
    assert with_helper["forward"], "the forward compiled nothing: the cache was not empty"
    assert with_helper["helper"] is not None
    assert with_helper["backward"] == []  # loaded from the disk cache the helper wrote
    # the control: without the helper, this process compiles the backward itself
    alone = run(tmp_path, "b", CNNLIB_PREFETCH="0")
    assert alone["helper"] is None
    assert "relu_backward_kernel" in alone["backward"]
    # and the numbers do not depend on who compiled
    assert with_helper["dx"] == alone["dx"] and with_helper["dw"] == alone["dw"]


CONV = """
import json
import numpy as np
from numba.core import event
from cnnlib import _prefetch
from cnnlib.conv import conv2d_backward, conv2d_forward
from cnnlib.layers import Conv2d

compiled = []
class Log(event.Listener):
    def on_start(self, ev):
        compiled.append(ev.data["dispatcher"].py_func.__qualname__)
    def on_end(self, ev):
        pass
event.register("numba:compile", Log())

rng = np.random.default_rng(0)
conv = Conv2d(1, 2, 3, rng=rng)
x = rng.random((2, 1, 6, 6), dtype=np.float32)
out = conv.forward(x)  # compiles the forward here; its backward was sent before it ran
jobs = {str(key): len(events) for key, events in _prefetch._pending.items()}
del compiled[:]
conv.backward(np.ones_like(out))
layer_backward = list(compiled)
# the functional API, in float64: the same, without a layer
out64, cache = conv2d_forward(x.astype(np.float64), np.ones((2, 1, 3, 3)), np.zeros(2))
jobs64 = {str(key): len(events) for key, events in _prefetch._pending.items()}
del compiled[:]
conv2d_backward(np.ones_like(out64), cache)
print(json.dumps({"jobs": jobs, "backward": layer_backward, "jobs64": jobs64,
                  "backward64": compiled}))
"""


def test_a_convolution_sends_its_backward_before_its_forward_runs(tmp_path):
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path), "CNNLIB_PREFETCH": "1"}

    def conv_run():
        done = subprocess.run([sys.executable, "-c", CONV], env=env, capture_output=True,
                              text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])

    cold = conv_run()
    assert cold["jobs"] == {"conv2d": 1}  # one job, from conv2d_forward; none from the layer
    assert cold["backward"] == []  # the helper compiled it
    assert cold["jobs64"] == {"conv2d": 1} and cold["backward64"] == []  # float64: once more
    warm = conv_run()  # the same cache, now holding both backwards: nothing to send
    assert warm["jobs"] == {} and warm["jobs64"] == {}
    assert warm["backward"] == [] and warm["backward64"] == []


def test_a_warm_cache_starts_no_helper(tmp_path):
    run(tmp_path, "warm", CNNLIB_PREFETCH="0")  # fills the cache
    warm = run(tmp_path, "warm")
    assert warm["forward"] == [] and warm["backward"] == []
    assert warm["helper"] is None


def test_a_helper_that_dies_costs_only_the_compilation(tmp_path):
    kill = "import signal; os.kill(helper, signal.SIGKILL); time.sleep(0.2)"
    result = run(tmp_path, "killed", between=kill)
    assert result["helper"] is not None
    assert result["seconds"] < 30  # nobody waits for a helper that has gone (it would be 120 s)
    assert result["dx"] == run(tmp_path, "plain", CNNLIB_PREFETCH="0")["dx"]


def test_only_cnnlib_layers_travel_and_unpicklable_ones_are_skipped(monkeypatch):
    import numpy as np

    from cnnlib import _prefetch
    from cnnlib.layers import Layer, ReLU

    reached = []  # the layers whose job got as far as starting a helper
    monkeypatch.setattr(_prefetch, "_compiles", 1)
    monkeypatch.setattr(_prefetch, "_helper", None)
    monkeypatch.setattr(_prefetch, "enabled", lambda: True)

    class Mine(Layer):  # a student's own layer: the helper could not import its class
        pass

    unpicklable = ReLU()
    unpicklable.note = lambda: None
    out = np.zeros((2, 3), np.float32)
    for layer, mark in [(Mine(), 0), (unpicklable, 0), (ReLU(), 1), (ReLU(), 0)]:
        monkeypatch.setattr(_prefetch, "_start_helper", lambda layer=layer: reached.append(layer))
        _prefetch.after_forward(layer, None, out, mark)  # mark 1: this forward compiled nothing
    assert len(reached) == 1 and type(reached[0]) is ReLU and reached[0] is not unpicklable


def test_switched_off(monkeypatch):
    from cnnlib import _jit, _prefetch

    monkeypatch.setenv("CNNLIB_PREFETCH", "0")
    assert not _prefetch.enabled()
    monkeypatch.setenv("CNNLIB_PREFETCH", "1")
    assert _prefetch.enabled() == _jit._disk_cache  # no shared disk cache: nothing to share
