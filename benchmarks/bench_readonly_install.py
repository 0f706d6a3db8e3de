"""A JupyterHub image: cnnlib installed read-only and warmed up by root, used by a student.

    sudo python benchmarks/bench_readonly_install.py

Copies the package, runs ``python -m cnnlib.warmup`` in the copy (as the image build does),
makes it read-only (``chmod -R a-w``), then runs a student script as the user ``nobody`` with a
writable HOME and with no HOME: import, then the first forward + backward of every layer.
Reports the seconds of each and how many kernels Numba loaded from the image's cache and how
many it had to compile. Target (issue 10): import works in both cases, and every layer's first
forward + backward takes ≤ 3 s (no recompilation). Needs root (for ``setpriv``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
import readonly_install as ro

TARGET_SECONDS = 3.0


def main() -> int:
    reason = ro.can_run()
    if reason:
        print(f"skipped: {reason}")
        return 0
    folder = Path(tempfile.mkdtemp(prefix="cnnlib-bench-image-"))
    try:
        t0 = time.perf_counter()
        site = ro.make_image(folder)
        print(f"image: copy + warm-up as root + chmod -R a-w: {time.perf_counter() - t0:.1f} s")
        ok = True
        for label, home in (("HOME writable", ro.student_home(folder)), ("no HOME", None)):
            run = ro.run_student(site, home)
            if run["result"] is None:
                print(f"{label}: FAILED (exit {run['returncode']})\n{run['stderr'][-1500:]}")
                ok = False
                continue
            layers = run["result"]["layers"]
            slowest = max(layers, key=layers.get)
            print(f"{label}: import {run['result']['import_s']:.2f} s; first forward + backward "
                  f"of {len(layers)} layers {sum(layers.values()):.2f} s in all, slowest "
                  f"{slowest} {layers[slowest]:.2f} s; kernels loaded from the image "
                  f"{len(run['loaded'])}, compiled {len(run['saved'])}")
            ok &= layers[slowest] <= TARGET_SECONDS and not run["saved"]
        print("target met" if ok else "target NOT met")
        return 0 if ok else 1
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(folder)], check=False)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
