"""Softmax and cross-entropy for notebook 06 §1 (lecture 八, step 6: the Softmax layer).

    p_k = exp(z_k / T) / Σ_j exp(z_j / T),   L = −ln p_y,   ∂L/∂z = p − y  (T = 1)

* ``softmax_explorer()``: logit and temperature sliders → the probabilities, the loss and the
  gradient p − y, as bars.
* ``check_softmax_by_hand(answer)``: the hand exercise (loss and gradient for three logits).
* ``check_softmax_cross_entropy(fn)``: the student's batched ``fn(z, y) -> (loss, dz)`` against
  ``cnnlib.losses.softmax_cross_entropy``, including huge logits (the max-subtraction trick).
The maths is ``cnnlib.losses``; this module only draws and judges.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from cnnlib.losses import softmax, softmax_cross_entropy
from cnnlib.widgets._base import (
    Explorer,
    Feedback,
    call_student,
    dropdown,
    exercise,
    feedback,
    float_slider,
    is_placeholder,
)

HAND_LOGITS = np.array([2.0, 1.0, 0.0])  # the worked example: right class 0
HAND_LABEL = 0
EXERCISE_LOGITS = np.array([0.0, math.log(2.0), math.log(5.0)])  # exp → 1, 2, 5 (sum 8)
EXERCISE_LABEL = 1


def softmax_loss(logits: Sequence[float], label: int, temperature: float = 1.0) -> dict:
    """p = softmax(z / T), L = −ln p_label and ∂L/∂z for one sample of logits z (K,).

    ∂L/∂z = (p − y) / T, with y the one-hot label: returned as ``"grad"``.
    """
    if temperature <= 0:
        raise ValueError(f"温度（temperature）T は正の数にしてください（T = {temperature}）")
    z = np.asarray(logits, dtype=np.float64)
    if not 0 <= label < z.size:
        raise ValueError(f"正解のクラス（label）は 0〜{z.size - 1} のどれかです（{label}）")
    loss, dz = softmax_cross_entropy(z[None] / temperature, np.array([label]))
    return {"z": z, "p": softmax(z / temperature), "loss": loss, "grad": dz[0] / temperature,
            "label": label, "temperature": temperature}


def softmax_explorer(logits: Sequence[float] = (2.0, 1.0, 0.0, -1.0), label: int = 0,
                     temperature: float = 1.0) -> Explorer:
    """Sliders for four logits z_k, the temperature T and the right class y."""
    controls = {f"z{k}": float_slider(float(v), -6.0, 6.0, f"z{k}", step=0.1)
                for k, v in enumerate(logits)}
    controls["temperature"] = float_slider(temperature, 0.1, 5.0, "T", step=0.05)
    controls["label"] = dropdown([str(k) for k in range(len(logits))], str(label), "y")

    def compute(temperature: float, label: str, **z: float) -> dict:
        values = [z[f"z{k}"] for k in range(len(logits))]
        return softmax_loss(values, int(label), temperature)

    def draw(r: dict) -> Figure:
        k = np.arange(r["p"].size)
        colours = ["#C44E52" if c == r["label"] else "#4C72B0" for c in k]
        fig, axes = plt.subplots(1, 3, figsize=(10, 3.0))
        axes[0].bar(k, r["z"] / r["temperature"], color=colours)
        axes[0].set_title("z / T")
        axes[1].bar(k, r["p"], color=colours)
        axes[1].axhline(1 / r["p"].size, color="grey", ls=":", lw=1)
        axes[1].set_ylim(0, 1)
        axes[1].set_title(f"p = softmax(z / T),  L = -ln p_{r['label']} = {r['loss']:.3f}")
        axes[2].bar(k, r["grad"], color=colours)
        axes[2].axhline(0, color="black", lw=0.8)
        axes[2].set_ylim(-1 / r["temperature"] - 0.05, 1 / r["temperature"] + 0.05)
        axes[2].set_title("dL/dz = (p - y) / T")
        for ax in axes:
            ax.set_xticks(k)
            ax.set_xlabel("k")
        fig.tight_layout()
        return fig

    return Explorer(controls, compute, draw,
                    rows=[[f"z{k}" for k in range(len(logits))], ["temperature", "label"]])


def _as_numbers(value: object, size: int | None = None) -> np.ndarray | None:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        return None
    if size is not None and arr.shape != (size,):
        return None
    return arr


@exercise
def check_softmax_by_hand(answer: object) -> Feedback:
    """演習: z = (0, ln 2, ln 5), y = 1 → answer ``(L, [∂L/∂z_0, ∂L/∂z_1, ∂L/∂z_2])``."""
    try:
        if is_placeholder(answer):
            return feedback(None)
        if not isinstance(answer, (tuple, list)) or len(answer) != 2:
            return feedback(False, "(L, [∂L/∂z0, ∂L/∂z1, ∂L/∂z2]) の形で答えてください"
                                   "（例: (1.0, [0.1, -0.2, 0.1])）")
        loss = _as_numbers(answer[0])
        grad = _as_numbers(answer[1], EXERCISE_LOGITS.size)
        if loss is None or loss.ndim != 0:
            return feedback(False, "L は 1 つの数で答えてください（式でも構いません: np.log(4)）")
        if grad is None:
            return feedback(False, "勾配は 3 つの数のリストで答えてください")
        r = softmax_loss(EXERCISE_LOGITS, EXERCISE_LABEL)
        loss_ok = math.isclose(float(loss), r["loss"], abs_tol=1e-2)
        grad_ok = np.allclose(grad, r["grad"], atol=1e-2)
        if loss_ok and grad_ok:
            return feedback(True, "e^z = (1, 2, 5)、和は 8 なので p = (1/8, 2/8, 5/8)。"
                                  "L = −ln(2/8) = ln 4 ≈ 1.386、∂L/∂z = p − y = "
                                  "(0.125, −0.75, 0.625)。勾配の和は 0 です")
        hints = []
        if not loss_ok:
            if math.isclose(float(loss), -r["loss"], abs_tol=1e-2):
                hints.append("L の符号が逆です: L = −ln p_y は 0 以上です")
            elif any(math.isclose(float(loss), -math.log(q), abs_tol=1e-2) for q in r["p"]):
                hints.append("L には正解のクラス y = 1 の確率 p_1 を使います")
            else:
                hints.append("L が違います: まず e^z を計算して、合計で割って p を求めましょう")
        if not grad_ok:
            if np.allclose(grad, -r["grad"], atol=1e-2):
                hints.append("勾配の符号が逆です: ∂L/∂z = p − y（y − p ではありません）")
            elif np.allclose(grad, r["p"], atol=1e-2):
                hints.append("勾配は p そのものではなく p − y です（正解のクラスから 1 を引く）")
            elif not math.isclose(float(np.sum(grad)), 0.0, abs_tol=1e-2):
                hints.append("p − y の成分の和は 1 − 1 = 0 になるはずです")
            else:
                hints.append("勾配が違います: ∂L/∂z_k = p_k − y_k")
        return feedback(False, "。".join(hints))
    except Exception as exc:  # never crash the notebook on an odd answer
        return feedback(False, f"答えを読めませんでした: {type(exc).__name__}: {exc}")


def _reference(z: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    return softmax_cross_entropy(z, y)


def _cases() -> list[tuple[str, np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(12)
    return [
        ("手計算の例（1 サンプル）", HAND_LOGITS[None].copy(), np.array([HAND_LABEL])),
        ("ランダムな 4 サンプル・5 クラス", rng.normal(size=(4, 5)), rng.integers(0, 5, 4)),
        ("大きな logits（1000 前後）", np.array([[1000.0, 999.0, 998.0], [-1000.0, 0.0, 1000.0]]),
         np.array([0, 2])),
    ]


@exercise
def check_softmax_cross_entropy(fn: Callable) -> Feedback:
    """演習: ``fn(z (N, K), y (N,)) -> (loss, dz)``, loss the batch mean, dz = (p − y) / N."""
    try:
        if is_placeholder(fn):
            return feedback(None)
        for name, z, y in _cases():
            with np.errstate(all="ignore"):  # an overflow is reported below, not warned about
                got, verdict = call_student(lambda a, b: _pair(fn(a.copy(), b.copy())), z, y)
            if verdict is not None:
                return verdict
            if got is None:
                return feedback(None)
            if got.shape != (1 + z.size,):
                return feedback(False, f"{name}: (loss, dz) の組を返してください。"
                                       f"loss は 1 つの数、dz は z と同じ形 {z.shape} です")
            loss, dz = float(got[0]), got[1:].reshape(z.shape)
            want_loss, want_dz = _reference(z, y)
            n = z.shape[0]
            if not (np.isfinite(loss) and np.all(np.isfinite(dz))):
                return feedback(False, f"{name}: nan か inf が出ました（overflow）。exp の前に"
                                       "各行の最大値を引きましょう: "
                                       "softmax(z) = softmax(z − max z)")
            if not math.isclose(loss, want_loss, rel_tol=1e-6, abs_tol=1e-9):
                if n > 1 and math.isclose(loss, want_loss * n, rel_tol=1e-6):
                    return feedback(False, f"{name}: loss が合計になっています。N = {n} で割って"
                                           "平均にしてください")
                return feedback(False, f"{name}: loss = {loss:.6g}、正しくは {want_loss:.6g}。"
                                       "L = −ln p_y をサンプルごとに求め、平均します")
            if not np.allclose(dz, want_dz, rtol=1e-6, atol=1e-9):
                bad = np.unravel_index(np.argmax(np.abs(dz - want_dz)), dz.shape)
                where = f"dz[{bad[0]}, {bad[1]}] = {dz[bad]:.6g}（正しくは {want_dz[bad]:.6g}）"
                if n > 1 and np.allclose(dz, want_dz * n, rtol=1e-6, atol=1e-9):
                    return feedback(False, f"{name}: {where}。loss を平均にしたので、dz も N = {n} "
                                           "で割ります: dz = (p − y) / N")
                return feedback(False, f"{name}: {where}。dz = (p − y) / N で、"
                                       "y は正解のクラスだけ 1 の one-hot です")
        return feedback(True, "大きな logits でも有限の値が出ます。cnnlib.losses."
                              "softmax_cross_entropy と同じ計算です")
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # never crash the notebook on an odd answer
        return feedback(False, f"答えを調べられませんでした: {type(exc).__name__}: {exc}")


def _pair(result: object) -> np.ndarray | None:
    """``(loss, dz)`` flattened to one array ``[loss, *dz]`` (``None`` stays ``None``)."""
    if result is None:
        return None
    if not isinstance(result, (tuple, list)) or len(result) != 2:
        raise TypeError("(loss, dz) の 2 つを返してください")
    loss = np.asarray(result[0], dtype=np.float64)
    if loss.size != 1:
        raise TypeError(f"loss は 1 つの数にしてください（形 {loss.shape} の配列でした）")
    return np.concatenate([loss.reshape(1), np.asarray(result[1], dtype=np.float64).ravel()])


__all__ = [
    "EXERCISE_LABEL",
    "EXERCISE_LOGITS",
    "HAND_LABEL",
    "HAND_LOGITS",
    "check_softmax_by_hand",
    "check_softmax_cross_entropy",
    "softmax_explorer",
    "softmax_loss",
]
