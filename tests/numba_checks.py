"""A check shared by the kernel tests: float32 kernels must not compute in float64.

Numba types an untyped literal such as ``0.5`` as float64, so ``0.5 * x[k]`` on a float32
array silently runs in double precision.  We look for double-precision instructions in the
LLVM IR of a fresh serial compile (kernels loaded from the disk cache cannot be inspected).
"""

import re

import numba

FLOAT64_OP = re.compile(r"\b(fadd|fsub|fmul|fdiv|fcmp|fpext|call)\b.*\bdouble\b")


def float64_instructions(py_func, *args):
    """IR lines of ``njit(py_func)(*args)`` that compute in double precision.

    ``PyFloat_AsDouble`` only unboxes a Python float argument in the wrapper, so it is ignored.
    """
    compiled = numba.njit(py_func)
    compiled(*args)
    ir = compiled.inspect_llvm(compiled.signatures[0])
    return [ln for ln in ir.splitlines() if FLOAT64_OP.search(ln) and "PyFloat_AsDouble" not in ln]
