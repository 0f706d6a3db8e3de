"""The base of every layer: ``Layer`` (uses, gradients summed over them, ``input_grad``) and
``Sequential``. Imported from ``cnnlib.layers``, which documents them."""

from __future__ import annotations

import inspect
from collections.abc import Iterator
from functools import cache, partial

import numpy as np

from cnnlib import _prefetch
from cnnlib._malloc import no_huge_page_advice

#: How many uses of one layer are remembered between two backward passes. A layer called in a
#: loop without backward (plots, widgets) forgets its oldest uses instead of growing without end;
#: a backward that would need a forgotten use raises instead of returning a wrong number.
MAX_USES = 64


@cache
def _takes_input_grad(function: object) -> bool:
    """Whether ``function`` (a class's ``backward``) has an ``input_grad`` parameter; looked up
    once per class (``inspect.signature`` takes about 30 µs)."""
    return "input_grad" in inspect.signature(function).parameters


def backward_params(layer: object, dout: np.ndarray) -> None:
    """``layer.backward(dout, input_grad=False)``: fill the parameter gradients, skip ∂L/∂x
    where the layer can; a hand-written layer whose ``backward(dout)`` has no ``input_grad``
    is called without it."""
    method = layer.backward
    if _takes_input_grad(getattr(method, "__func__", method)):
        layer.backward(dout, input_grad=False)
    else:
        layer.backward(dout)


class Layer:
    """Base class: ``forward(x) -> out``, ``backward(dout, input_grad=True) -> dx``,
    ``params``/``grads`` dicts.

    ``layer(x)`` is ``layer.forward(x)``. ``backward`` raises ``RuntimeError`` when ``forward``
    has not run. ``backward(dout, input_grad=False)`` fills ``grads`` and returns None: for a
    first layer, whose input is data (``Conv2d`` then skips computing ∂L/∂x). ``train()`` /
    ``eval()`` set ``training`` and return the layer, as in PyTorch.

    Uses: every ``forward`` since the last round began pushes its cache; ``backward`` takes them
    back latest first, overwriting ``grads`` at the first and adding at the next ones. After the
    earliest use, another ``backward`` starts again from the latest (a repeated backward pass
    gives the same gradients). A ``forward`` after a ``backward`` begins a new round.
    """

    def __init__(self) -> None:
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self.training = True
        self._new_round()

    # -- what a subclass writes
    def _forward(self, x: np.ndarray) -> tuple[np.ndarray, object]:
        raise NotImplementedError

    def _backward(self, dout: np.ndarray, cache: object,
                  input_grad: bool) -> tuple[np.ndarray | None, dict[str, np.ndarray]]:
        raise NotImplementedError

    # -- uses and gradients
    def _new_round(self) -> None:
        self._uses: list[object] = []  # one forward cache per use, oldest first
        self._pending = 0  # uses still waiting for their backward in this pass
        self._forgotten = 0  # uses dropped beyond MAX_USES
        self._backward_done = False

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self._backward_done:
            self._new_round()
        mark = _prefetch.compiles()
        with no_huge_page_advice():  # a layer's arrays: see _malloc.py
            out, cache = self._forward(x)
        _prefetch.after_forward(self, cache, out, mark)  # a cold cache: see _prefetch.py
        self._uses.append(cache)
        if len(self._uses) > MAX_USES:
            del self._uses[0]
            self._forgotten += 1
        self._pending = len(self._uses)
        return out

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        name = type(self).__name__
        if not self._uses:
            raise RuntimeError(f"{name}.backward: call forward before backward")
        if self._pending == 0:  # every use is done: a repeated backward pass
            if self._forgotten:
                raise RuntimeError(
                    f"{name}.backward was called more often than this layer can remember: it "
                    f"keeps its last {MAX_USES} uses since the previous backward pass. Run the "
                    f"forward pass again before calling backward.")
            self._pending = len(self._uses)
        accumulate = self._pending < len(self._uses)
        self._pending -= 1
        _prefetch.wait(type(self))
        with no_huge_page_advice():
            dx, grads = self._backward(dout, self._uses[self._pending], bool(input_grad))
        for key, g in grads.items():
            if accumulate:
                self.grads[key] += g
            else:
                self.grads[key][...] = g  # in place: optimisers hold these arrays
        self._backward_done = True
        return dx if input_grad else None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    def train(self, mode: bool = True) -> Layer:
        self.training = bool(mode)
        return self

    def eval(self) -> Layer:
        return self.train(False)

    def parameters(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """Yield ``(param, grad)`` array pairs, each array once: what an optimiser updates."""
        for _, p, g in self.named_parameters():
            yield p, g

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        """Yield ``(name, param, grad)``, e.g. ``("w", …, …)``; ``Sequential`` uses ``"0.w"``."""
        grads = self.grads
        for name, p in self.params.items():
            yield name, p, grads[name]

    def num_parameters(self) -> int:
        """How many numbers the layer learns (Σ of the parameter sizes)."""
        return sum(p.size for p, _ in self.parameters())

    def zero_grad(self) -> None:
        """Set every gradient to 0 in place."""
        for _, g in self.parameters():
            g.fill(0)

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


# ------------------------------------------------------------------------------------ model


class Sequential(Layer):
    """A chain of layers: forward in order, backward in reverse.

    ``params`` / ``grads`` are read-only views keyed ``"<index>.<name>"`` (``"0.w"``) over the
    layers' own dicts (the arrays are shared, not copied). A ``ValueError`` / ``TypeError``
    raised inside a layer is re-raised with the layer's index and repr in front of the message.
    ``backward(dout, input_grad=False)`` fills every layer's ``grads`` but returns None instead
    of ∂L/∂x: a training step needs no gradient of the images, and a first ``Conv2d`` then
    skips computing it (as PyTorch does for inputs that do not require grad).

    A layer object may appear several times (``act = ReLU(); Sequential(c1, act, c2, act)``, or
    a ``Linear`` used twice for tied weights): its gradients are summed over its uses, and
    ``parameters()`` yields each array once, under the name of its first position.
    """

    _running = 0  # how many Sequential.forward calls are on the stack (nested models)

    def __init__(self, *layers: Layer) -> None:
        for k, layer in enumerate(layers):
            if isinstance(layer, type) and issubclass(layer, Layer):
                raise TypeError(f"layer {k} is the class {layer.__name__}, not a layer; "
                                f"write {layer.__name__}(…) with parentheses")
            if not isinstance(layer, Layer):
                hint = (" Unpack a list with Sequential(*layers)."
                        if isinstance(layer, (list, tuple)) else "")
                raise TypeError(f"layer {k} is a {type(layer).__name__}, not a cnnlib layer."
                                f"{hint}")
        self.layers: list[Layer] = list(layers)
        self.training = True

    @property
    def params(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {name: p for name, p, _ in self.named_parameters()}

    @property
    def grads(self) -> dict[str, np.ndarray]:  # type: ignore[override]
        return {name: g for name, _, g in self.named_parameters()}

    def named_parameters(self) -> Iterator[tuple[str, np.ndarray, np.ndarray]]:
        seen: set[tuple[int, int]] = set()
        for k, layer in enumerate(self.layers):
            for name, p, g in layer.named_parameters():
                if (id(p), id(g)) not in seen:  # a layer used twice holds its arrays once
                    seen.add((id(p), id(g)))
                    yield f"{k}.{name}", p, g

    def _new_round(self) -> None:
        for layer in self.layers:
            layer._new_round()

    def forward(self, x: np.ndarray) -> np.ndarray:
        if Sequential._running == 0:  # the outermost model: every layer starts a new round
            self._new_round()
        Sequential._running += 1
        try:
            for k, layer in enumerate(self.layers):
                x = self._run(k, layer.forward, x)
        finally:
            Sequential._running -= 1
        return x

    def backward(self, dout: np.ndarray, input_grad: bool = True) -> np.ndarray | None:
        for k in reversed(range(1, len(self.layers))):
            dout = self._run(k, self.layers[k].backward, dout)
        if not self.layers:
            return dout if input_grad else None
        if input_grad:
            return self._run(0, self.layers[0].backward, dout)
        self._run(0, partial(backward_params, self.layers[0]), dout)
        return None

    def _run(self, k: int, method, array: np.ndarray, **options: bool) -> np.ndarray:
        try:
            return method(array, **options)
        except (ValueError, TypeError, RuntimeError) as exc:
            if type(exc) not in (ValueError, TypeError, RuntimeError):
                raise
            layer = self.layers[k]
            label = "Sequential" if isinstance(layer, Sequential) else repr(layer)
            raise type(exc)(f"layer {k} ({label}): {exc}") from exc

    def train(self, mode: bool = True) -> Sequential:
        super().train(mode)
        for layer in self.layers:
            layer.train(mode)
        return self

    def __len__(self) -> int:
        return len(self.layers)

    def __getitem__(self, k: int) -> Layer:
        return self.layers[k]

    def __iter__(self) -> Iterator[Layer]:
        return iter(self.layers)

    def __repr__(self) -> str:
        lines = [f"({k}): " + repr(layer).replace("\n", "\n  ") for k, layer in
                 enumerate(self.layers)]
        return "Sequential(" + "".join(f"\n  {line}" for line in lines) + "\n)"
