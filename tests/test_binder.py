"""The Binder set-up in ``binder/``, checked the way repo2docker uses it.

Fast checks: the files are well formed (``runtime.txt``, pinned third-party ``requirements.txt``,
LF-only executable scripts), ``binder/start`` turns ``CPU_LIMIT`` into ``NUMBA_NUM_THREADS``,
ipykernel is pinned below 7 alike in every place that installs it (issue 15), and the README has a
Binder and a Colab link for every notebook.

``test_binder_build_runs_every_notebook`` builds the environment as repo2docker's pip flavour
would, in a fresh virtual environment with the Python that ``runtime.txt`` names: first what
Binder's base image brings (JupyterLab 4, Notebook 7, ipywidgets 8, ipykernel, nbconvert), then
``binder/requirements.txt``, then ``binder/postBuild`` (cnnlib with ``--no-deps`` and the Numba
warm-up) in a copy of the repository. It then executes every notebook under ``binder/start`` with
``CPU_LIMIT=0.5`` (through nbval, each cell limited to pyproject.toml's ``--nbval-cell-timeout``),
after a probe notebook that asserts the kernel saw ``NUMBA_NUM_THREADS=1`` and runs the ipykernel
that ``binder/requirements.txt`` pins, not the base image's. The timings and the build log go to
``artifacts/binder/``.
"""

from __future__ import annotations

import glob
import json
import math
import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from urllib.parse import quote

import nbformat
import pytest
from browser_helpers import (
    ARTIFACTS,
    CELL_TIMEOUT_S,
    NOTEBOOKS,
    ROOT,
    copy_repo,
    jupyter_env,
    require,
)
from packaging.requirements import Requirement
from packaging.version import Version

try:
    import tomllib
except ImportError:  # Python 3.10; pytest itself depends on tomli there
    import tomli as tomllib

BINDER = ROOT / "binder"
REPO_URL = "https://github.com/cnnlib/cnnlib"
BRANCH = "main"

# What Binder's base image (repo2docker's conda environment for Python 3.x) already holds when
# binder/requirements.txt is installed: JupyterLab 4, Notebook 7, Jupyter Server 2, ipywidgets 8
# and the kernel (the newest ipykernel, which binder/requirements.txt must replace by its pin).
BASE_IMAGE = ["jupyterlab==4.*", "notebook==7.*", "jupyter_server==2.*", "ipywidgets==8.*",
              "ipykernel", "nbconvert"]


def nbval_command(cell_timeout: float = CELL_TIMEOUT_S) -> list[str]:
    """How the build executes a notebook: nbval under ``binder/start``, each cell limited to
    ``cell_timeout`` seconds, so that a lost reply fails as that cell (issue 15). The project's
    pytest settings are left out (-c /dev/null): they are for the project's own test run."""
    return ["binder/start", "python", "-m", "pytest", "-c", "/dev/null", "-p", "no:cacheprovider",
            "-q", "-rf", "--nbval-lax", f"--nbval-cell-timeout={cell_timeout:g}"]


def failed_cells(output: str) -> list[str]:
    """``notebooks/NN_x.ipynb::Cell K`` of each failed cell in pytest's ``-rf`` summary."""
    return re.findall(r"^FAILED (\S+::Cell \d+)", output, re.M)


def runtime_version() -> str:
    """``"3.12"`` from ``binder/runtime.txt`` (``python-3.12``)."""
    text = (BINDER / "runtime.txt").read_text()
    match = re.fullmatch(r"python-(3\.\d+)\n?", text)
    assert match, f"binder/runtime.txt should read like 'python-3.12', not {text!r}"
    return match.group(1)


def requirements() -> dict[str, str]:
    """``binder/requirements.txt`` as {normalised name: pinned version}."""
    pins = {}
    for line in (BINDER / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([0-9][0-9A-Za-z.+-]*)", line)
        assert match, f"binder/requirements.txt: {line!r} is not pinned as name==version"
        pins[normalise(match.group(1))] = match.group(2)
    return pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def start(*command: str, **env: str) -> subprocess.CompletedProcess:
    """Run ``binder/start COMMAND`` with ``env`` on top of a copy of this process's environment."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("NUMBA_")}
    full.update(env)
    return subprocess.run([str(BINDER / "start"), *command], env=full, capture_output=True,
                          text=True, timeout=60)


# --- the files --------------------------------------------------------------------------------


def test_runtime_names_python_3() -> None:
    assert runtime_version().startswith("3.")


def test_requirements_are_pinned_third_party_packages() -> None:
    pins = requirements()
    assert "cnnlib" not in pins, "cnnlib is installed by postBuild (--no-deps), not here"
    with open(ROOT / "pyproject.toml", "rb") as f:
        project = tomllib.load(f)["project"]
    needed = {normalise(re.split(r"[<>=!~;\[ ]", dep, maxsplit=1)[0])
              for dep in project["dependencies"]}
    assert needed <= set(pins), f"pin these too: {sorted(needed - set(pins))}"
    # Agree with the base image instead of replacing its Jupyter: ipywidgets 8 only.
    assert pins["ipywidgets"].startswith("8."), pins["ipywidgets"]
    for server_side in ("jupyterlab", "notebook", "jupyter-server"):
        assert server_side not in pins, f"{server_side} comes with Binder's base image"
    # ...except the kernel: the base image's ipykernel 7 would hang Run All (issue 15).
    assert "ipykernel" in pins, "pin ipykernel: the base image's ipykernel 7 hangs Run All"


def ipykernel_specifiers() -> dict[str, str]:
    """Where the project installs ipykernel: {place: version specifier}."""
    with open(ROOT / "pyproject.toml", "rb") as f:
        extras = tomllib.load(f)["project"]["optional-dependencies"]
    found = {f"pyproject.toml [{extra}]": str(Requirement(dep).specifier)
             for extra, deps in extras.items() for dep in deps
             if normalise(Requirement(dep).name) == "ipykernel"}
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-") and normalise(Requirement(line).name) == "ipykernel":
            found["requirements.txt"] = str(Requirement(line).specifier)
    found["binder/requirements.txt"] = "==" + requirements()["ipykernel"]
    return found


def test_ipykernel_is_pinned_below_7_everywhere() -> None:
    """ipykernel 7 sometimes loses a request (https://github.com/ipython/ipykernel/issues/1471)."""
    places = ipykernel_specifiers()
    assert set(places) >= {"requirements.txt", "pyproject.toml [notebooks]",
                           "pyproject.toml [test]", "binder/requirements.txt"}, places
    ranges = {place: spec for place, spec in places.items() if not spec.startswith("==")}
    assert len(set(ranges.values())) == 1, f"one ipykernel range everywhere: {ranges}"
    spec = Requirement("ipykernel" + next(iter(ranges.values()))).specifier
    assert Version("7.4.0") not in spec and Version("7.0.0") not in spec, spec
    assert Version("6.31.0") in spec, spec
    binder = Version(requirements()["ipykernel"])
    assert binder in spec, f"binder/requirements.txt pins ipykernel {binder}, outside {spec}"
    for path in ("requirements.txt", "binder/requirements.txt"):
        text = (ROOT / path).read_text()
        assert "https://github.com/ipython/ipykernel/issues/1471" in text, (
            f"{path}: say why ipykernel is pinned, with the upstream issue")


@pytest.mark.parametrize("name", ["postBuild", "start"])
def test_scripts_are_executable_bash_with_lf(name: str) -> None:
    script = BINDER / name
    data = script.read_bytes()
    assert os.access(script, os.X_OK), f"chmod +x binder/{name} (repo2docker runs it directly)"
    assert data.startswith(b"#!/bin/bash\n"), f"binder/{name} should start with #!/bin/bash"
    assert b"\r" not in data, f"binder/{name} has CR line ends"
    assert b"set -euo pipefail" in data
    subprocess.run(["bash", "-n", str(script)], check=True)


def test_gitattributes_keep_scripts_lf() -> None:
    require(shutil.which("git") and (ROOT / ".git").exists(), "needs git and a git checkout")
    paths = ["binder/postBuild", "binder/start", "some/script.sh"]
    out = subprocess.run(["git", "check-attr", "eol", "--", *paths], cwd=ROOT,
                         capture_output=True, text=True, check=True).stdout
    for path in paths:
        assert f"{path}: eol: lf" in out, out


@pytest.mark.parametrize(("cpu_limit", "ceiling"), [
    ("0.5", 1), ("1", 1), ("1.0", 1), ("1.2", 2), ("2", 2), ("3.5", 4), ("0", 1), (".25", 1),
])
def test_start_sets_numba_threads_from_cpu_limit(cpu_limit: str, ceiling: int) -> None:
    assert ceiling == max(1, math.ceil(float(cpu_limit)))
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    result = start("sh", "-c", 'echo "$NUMBA_NUM_THREADS"', CPU_LIMIT=cpu_limit)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(min(ceiling, cores))


@pytest.mark.parametrize("cpu_limit", [None, "", "two"])
def test_start_leaves_numba_alone_without_a_numeric_cpu_limit(cpu_limit: str | None) -> None:
    env = {} if cpu_limit is None else {"CPU_LIMIT": cpu_limit}
    result = start("sh", "-c", 'echo "${NUMBA_NUM_THREADS-unset}"', **env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "unset"
    if cpu_limit == "two":
        assert "not a number" in result.stderr


def test_start_keeps_an_explicit_setting_and_execs_the_command() -> None:
    result = start("sh", "-c", 'echo "$NUMBA_NUM_THREADS $1"; exit 7', "sh", "arg with spaces",
                   CPU_LIMIT="1", NUMBA_NUM_THREADS="3")
    assert result.returncode == 7
    assert result.stdout.strip() == "3 arg with spaces"


# --- the launch links ---------------------------------------------------------------------------


def test_readme_links_every_notebook_on_binder_and_colab() -> None:
    require(NOTEBOOKS, "no notebooks/NN_*.ipynb yet")
    readme = (ROOT / "README.md").read_text()
    binder = f"https://mybinder.org/v2/gh/cnnlib/cnnlib/{BRANCH}?urlpath="
    colab = f"https://colab.research.google.com/github/cnnlib/cnnlib/blob/{BRANCH}/notebooks/"
    for notebook in NOTEBOOKS:
        urlpath = quote(f"lab/tree/notebooks/{notebook.name}", safe="")
        assert binder + urlpath in readme, f"README: no Binder link for {notebook.name}"
        assert colab + notebook.name in readme, f"README: no Colab link for {notebook.name}"
    linked = set(re.findall(r"notebooks(?:/|%2F)(\d\d_\w+\.ipynb)", readme))
    missing = linked - {nb.name for nb in NOTEBOOKS}
    assert not missing, f"README links notebooks that do not exist: {sorted(missing)}"
    assert "https://mybinder.org/badge_logo.svg" in readme
    assert "https://colab.research.google.com/assets/colab-badge.svg" in readme
    assert "/hub/user-redirect/git-pull?repo=" in readme, "nbgitpuller link template"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_first_code_cell_installs_cnnlib_on_colab_only(notebook: Path) -> None:
    cells = nbformat.read(notebook, as_version=4).cells
    source = next(cell.source for cell in cells if cell.cell_type == "code")
    assert re.search(r"if ['\"]google\.colab['\"] in sys\.modules:", source), (
        "the first code cell should install cnnlib only when running in Colab")
    install = next((line for line in source.splitlines() if "pip install" in line), "")
    assert f"git+{REPO_URL}" in install, f"install cnnlib from git+{REPO_URL}: {install!r}"
    assert "--no-deps" in install, "Colab's numpy, matplotlib and ipywidgets must be left alone"
    assert "matplotlib-fontja" in install, "Colab has no Japanese font: the figures need one"
    # Colab's kernel is Google's own: the ipykernel pin (issue 15) does not apply there, and the
    # cell says so instead of replacing it.
    assert "ipykernel" not in install, f"leave Colab's kernel alone: {install!r}"
    assert re.search(r"Colab のカーネル.*Google", source), "say that Colab's kernel is Google's"


# --- the build ----------------------------------------------------------------------------------


def find_python(version: str) -> str | None:
    """A working ``pythonX.Y``: on PATH, or installed by pyenv, or in /usr/(local/)bin."""
    pyenv_root = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv"))
    candidates = [shutil.which(f"python{version}"),
                  *sorted(glob.glob(f"{pyenv_root}/versions/{version}*/bin/python{version}"),
                          reverse=True),
                  f"/usr/local/bin/python{version}", f"/usr/bin/python{version}"]
    for candidate in filter(None, candidates):
        try:  # a pyenv shim exists on PATH even where that version is not selected
            probe = subprocess.run(
                [candidate, "-c", "import sys, venv, ensurepip; "
                 "print('%d.%d' % sys.version_info[:2])"],
                capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        if probe.returncode == 0 and probe.stdout.strip() == version:
            return candidate
    return None


PROBE = """\
import os, sys
import numba
assert sys.prefix == {prefix!r}, sys.prefix
import ipykernel
assert ipykernel.__version__ == {ipykernel!r}, ipykernel.__version__  # the pin, not the base's
assert os.environ.get("NUMBA_NUM_THREADS") == "1", os.environ.get("NUMBA_NUM_THREADS")
assert numba.config.NUMBA_NUM_THREADS == 1 and numba.get_num_threads() == 1
import cnnlib
assert cnnlib.__file__.startswith({prefix!r}), cnnlib.__file__
print("kernel:", sys.executable, "ipykernel", ipykernel.__version__,
      "numba threads:", numba.get_num_threads())
"""


class Build:
    """A build directory with a log; ``run`` fails the test with the log's tail on error."""

    def __init__(self, base: Path, python: str):
        self.python = python
        self.venv = base / "venv"
        self.venv_python = str(self.venv / "bin" / "python")
        self.repo = base / "repo"
        self.log = base / "build.log"
        self.times: dict[str, float] = {}
        self.notes: list[str] = []
        self.env = {k: v for k, v in jupyter_env(base / "home").items()
                    if k != "VIRTUAL_ENV" and not k.startswith("NUMBA_")}
        self.env["PATH"] = f"{self.venv / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"

    def run(self, step: str, command: list[str], timeout: float, check: bool = True,
            **env: str) -> bool:
        """Run ``command`` in the repository copy, appending to the log; False if it failed."""
        t0 = time.monotonic()
        with open(self.log, "a") as log:
            log.write(f"\n$ {' '.join(command)}\n")
            log.flush()
            result = subprocess.run(command, cwd=self.repo, env={**self.env, **env},
                                    stdout=log, stderr=subprocess.STDOUT, timeout=timeout)
        self.times[step] = time.monotonic() - t0
        if result.returncode != 0 and check:
            tail = self.log.read_text(errors="replace")[-4000:]
            pytest.fail(f"{step} failed (exit {result.returncode}); end of {self.log}:\n{tail}",
                        pytrace=False)
        return result.returncode == 0

    def output(self, code: str) -> str:
        """What ``code`` prints, run by the venv's Python where the notebooks run."""
        return subprocess.run([self.venv_python, "-c", code], capture_output=True, text=True,
                              check=True, env=self.env, cwd=self.repo / "notebooks").stdout


@pytest.mark.slow
def test_binder_build_runs_every_notebook(tmp_path: Path) -> None:
    version = runtime_version()
    python = find_python(version)
    require(python, f"binder/runtime.txt asks for Python {version}, which is not installed: "
                    f"install it (for example `pyenv install {version}`, `uv python install "
                    f"{version}`, or your distribution's python{version}-venv)")
    require(NOTEBOOKS, "no notebooks/NN_*.ipynb yet")
    out_dir = ARTIFACTS / "binder"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    build = Build(tmp_path, python)
    copy_repo(build.repo)
    try:
        build_and_run(build, out_dir)
    finally:
        lines = [f"Binder-style build with {python}, {os.cpu_count()} cores", ""]
        width = max(map(len, build.times), default=5)
        lines += [f"{step:>{width}}: {seconds:6.1f} s" for step, seconds in build.times.items()]
        lines += [f"{'total':>{width}}: {sum(build.times.values()):6.1f} s", "", *build.notes]
        (out_dir / "timings.txt").write_text("\n".join(lines) + "\n")
        shutil.copy(build.log, out_dir / "build.log")
        print("\n".join(lines))


def build_and_run(build: Build, out_dir: Path) -> None:
    """repo2docker's steps, then every notebook under ``binder/start``."""
    pip = [build.venv_python, "-m", "pip", "install", "--quiet"]
    build.run("venv", [build.python, "-m", "venv", str(build.venv)], timeout=300)
    build.run("base image", [*pip, *BASE_IMAGE], timeout=900)
    build.run("requirements.txt", [*pip, "-r", "binder/requirements.txt"], timeout=900)
    build.run("pip check", [build.venv_python, "-m", "pip", "check"], timeout=120)
    installed = {normalise(p["name"]): p["version"] for p in json.loads(
        build.output("import json, importlib.metadata as m; print(json.dumps("
                     "[{'name': d.metadata['Name'], 'version': d.version}"
                     " for d in m.distributions()]))"))}
    assert installed["jupyterlab"].startswith("4."), installed["jupyterlab"]
    for name, pin in requirements().items():
        assert installed.get(name) == pin, f"{name}: pinned {pin}, got {installed.get(name)}"

    build.run("postBuild", ["binder/postBuild"], timeout=1200)
    package = Path(build.output("import cnnlib; print(cnnlib.__file__)").strip()).parent
    assert package.is_relative_to(build.venv), f"cnnlib imported from {package}"
    compiled = len(list(package.rglob("*.nbc")))
    assert compiled, f"postBuild left no Numba cache beside the installed package ({package})"

    probe = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(
        PROBE.format(prefix=str(build.venv), ipykernel=requirements()["ipykernel"]))])
    probe.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                    "language": "python"}
    nbformat.write(probe, build.repo / "notebooks" / "binder_probe.ipynb")  # the notebooks' cwd

    # The notebooks run through nbval, whose blocking kernel client waits on the sockets
    # directly. (nbconvert's asyncio client was seen here to sit out its whole cell timeout,
    # about one run in five, for a reply that had already arrived.)
    build.run("pytest, nbval", [*pip, "pytest", "nbval"], timeout=600)
    execute = nbval_command()
    run_env = {"CPU_LIMIT": "0.5", "CNNLIB_SMALL": "1"}
    build.run("probe (NUMBA_NUM_THREADS=1, pinned ipykernel)",
              [*execute, "notebooks/binder_probe.ipynb"], timeout=300, **run_env)
    failed = []
    for notebook in NOTEBOOKS:
        before = len(build.log.read_text(errors="replace"))
        if not build.run(notebook.name, [*execute, f"notebooks/{notebook.name}"],
                         timeout=1200, check=False, **run_env):
            output = build.log.read_text(errors="replace")[before:]
            failed.append(", ".join(failed_cells(output)) or notebook.name)
    added = len(list(package.rglob("*.nbc"))) - compiled
    build.notes.append(f"Numba cache: {compiled} compiled signatures after postBuild; "
                       f"{added} more were compiled while the notebooks ran")
    assert not failed, (f"under binder/start, these notebooks failed: {failed}; the "
                        f"failing cells are in {out_dir / 'build.log'}")
