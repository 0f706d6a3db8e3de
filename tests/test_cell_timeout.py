"""A notebook cell that never ends must fail the tests within minutes, naming the cell (issue 15).

ipykernel 7 sometimes loses a request: the cell's spinner never ends while the kernel sits idle.
Every notebook execution in the tests has a per-cell timeout, the ``--nbval-cell-timeout`` of
pyproject.toml's addopts: the project's own pytest run (nbval), the Binder-style build (nbval
under ``binder/start``, ``test_binder.nbval_command``) and the browser test (``run_in_lab``; its
own check that the timeout fires is ``test_browser.test_a_cell_that_never_ends_fails_naming_it``).
Here a tiny notebook whose second cell sleeps far longer than a short timeout goes through the
first two mechanisms, which must stop it at that cell and say so.
"""

from __future__ import annotations

import inspect
import os
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest
import test_binder
import test_browser
from browser_helpers import CELL_TIMEOUT_S, ROOT

SHORT_TIMEOUT_S = 3
SLEEP_S = 120


@pytest.fixture
def sleepy(tmp_path: Path) -> Path:
    """A notebook whose code cell 1 sleeps for SLEEP_S seconds."""
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# A cell that never ends"),
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell(f"import time\ntime.sleep({SLEEP_S})"),
        nbformat.v4.new_code_cell("x"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    path = tmp_path / "sleepy.ipynb"
    nbformat.write(nb, path)
    return path


def run(command: list[str], cwd: Path) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``command`` with this Python first on PATH (it is the ``python`` of the command)."""
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    start = time.monotonic()
    result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                            timeout=SLEEP_S + 60)
    return result, time.monotonic() - start


def check_stopped_at_the_sleep(result: subprocess.CompletedProcess, seconds: float) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-3000:]
    assert seconds < SLEEP_S - 30, f"took {seconds:.0f} s: the timeout did not stop the cell"
    assert f"Timeout of {SHORT_TIMEOUT_S} seconds exceeded" in output, output[-3000:]
    assert f"time.sleep({SLEEP_S})" in output, "the failure should show the cell's source"
    cells = test_binder.failed_cells(output)
    assert len(cells) == 1 and cells[0].endswith("sleepy.ipynb::Cell 1"), output[-3000:]
    assert "1 failed, 1 passed" in output, output[-3000:]  # the cell after it: xfail or xpass


def test_the_timeout_is_generous_but_minutes() -> None:
    """Generous for the slowest cell in small mode (about 1 min on a cold Numba cache on two busy
    cores), yet a hang fails in minutes, and the same number everywhere."""
    assert 120 <= CELL_TIMEOUT_S <= 600, CELL_TIMEOUT_S
    assert f"--nbval-cell-timeout={CELL_TIMEOUT_S:g}" in test_binder.nbval_command()
    default = inspect.signature(test_browser.run_in_lab).parameters["cell_timeout"].default
    assert default == CELL_TIMEOUT_S


@pytest.mark.slow
def test_nbval_with_the_project_settings_stops_a_cell_that_never_ends(sleepy: Path) -> None:
    """pytest with pyproject.toml's settings, as the README's test command runs the notebooks;
    only the timeout is shortened (a later option wins over addopts)."""
    result, seconds = run([sys.executable, "-m", "pytest", "-c", str(ROOT / "pyproject.toml"),
                           "--rootdir", str(sleepy.parent), "-p", "no:cacheprovider", "-rf",
                           f"--nbval-cell-timeout={SHORT_TIMEOUT_S}", str(sleepy)],
                          cwd=sleepy.parent)
    check_stopped_at_the_sleep(result, seconds)


@pytest.mark.slow
def test_the_binder_build_stops_a_cell_that_never_ends(sleepy: Path) -> None:
    """The command ``test_binder_build_runs_every_notebook`` runs each notebook with."""
    result, seconds = run([*test_binder.nbval_command(SHORT_TIMEOUT_S), str(sleepy)], cwd=ROOT)
    check_stopped_at_the_sleep(result, seconds)
