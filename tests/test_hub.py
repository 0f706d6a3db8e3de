"""A student's path through the course's JupyterHub, in a real browser (``deploy/jupyterhub/``).

The hub is the real one (``jupyterhub`` from PyPI, ``configurable-http-proxy`` from npm, the
configuration of ``deploy/jupyterhub/``), on loopback. The course comes from a local git
repository made from a copy of this working tree, so no network is needed:

1. the student logs in on the hub's login page (any name, the class password);
2. clicks the course's nbgitpuller link: the hub starts their server, nbgitpuller clones the
   course into their home and JupyterLab opens notebook 01;
3. Run All: no error, every widget rendered (the checks of ``test_browser.py``), each explorer's
   main control and the convolution explorer's kernel-size slider change the picture;
4. the student answers an exercise and saves; the instructor pushes a change to the same
   notebook; the student clicks the link again: their answer is still there and the
   instructor's change has arrived (nbgitpuller's merge).

Also checked on the way: the server runs with the CPU and memory limits of the configuration
(``CPU_LIMIT``, ``MEM_LIMIT``), and JupyterLab has the class settings (no news pop-up) and offers
the Japanese language pack. Needs what ``.ci/run`` installs: ``deploy/jupyterhub/requirements.txt``,
``npm ci --prefix deploy/jupyterhub``, Debian's ``chromium`` and Playwright.
"""

from __future__ import annotations

import json
import subprocess
import sys
import urllib.parse
from pathlib import Path
from types import SimpleNamespace

import pytest
from browser_helpers import CELL_TIMEOUT_S, LAB_SETTINGS, ROOT, copy_repo, require
from test_browser import (  # the same checks as the browser test of every notebook
    JS_KERNEL_IDLE,
    JS_MODEL,
    JS_PANEL_ID,
    JS_PICTURE,
    JS_WATCH_KERNEL,
    MOVE_TIMEOUT_S,
    RUN_TIMEOUT_S,
    Report,
    _check_outputs,
    _explain,
    _move,
    _move_explorers,
    _wait_until_done,
    browser,  # noqa: F401  (the module's Chromium, a fixture)
)

sys.path.insert(0, str(ROOT / "deploy" / "jupyterhub"))
import launch

pytestmark = pytest.mark.slow

STUDENT = "student1"
NOTEBOOK = "notebooks/01_convolution.ipynb"
ANSWER_CELL = "answer_1 = None"
STUDENT_ANSWER = "answer_1 = 4   # student1 の答え"
INSTRUCTOR_NOTE = "（講師より: 2026 年度の補足をここに追加しました）"
SPAWN_TIMEOUT_MS = 300_000  # start the server and clone the course, on two busy cores


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=Instructor", "-c", "user.email=instructor@example.org",
         *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture(scope="module")
def upstream(tmp_path_factory) -> Path:
    """The instructor's repository: this working tree, committed on ``main``."""
    require(launch.missing() is None, launch.missing() or "")
    repo = copy_repo(tmp_path_factory.mktemp("instructor") / "cnnlib")
    git("init", "-q", "-b", "main", cwd=repo)
    git("add", "-A", cwd=repo)
    git("commit", "-q", "-m", "course", cwd=repo)
    return repo


@pytest.fixture(scope="module")
def hub(upstream, tmp_path_factory):
    state = tmp_path_factory.mktemp("hub")
    # Test-only settings: the page exposes ``window.jupyterapp`` (as in test_browser.py) and every
    # cell stays in the DOM. The class settings themselves come from the hub's configuration.
    config = state / "jupyter-config"
    config.mkdir(parents=True)
    (config / "jupyter_server_config.json").write_text(
        json.dumps({"LabApp": {"expose_app_in_browser": True}}))
    settings = state / "homes" / STUDENT / ".jupyter" / "lab" / "user-settings"
    tracker = "@jupyterlab/notebook-extension/tracker"
    path = settings / f"{tracker}.jupyterlab-settings"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(LAB_SETTINGS[tracker]))
    with launch.local_hub(state, env={"CNNLIB_SMALL": "1"}) as running:
        yield running


def pull_link(hub: launch.Hub, repo: Path) -> str:
    """The course's nbgitpuller link (README), with the local repository instead of GitHub."""
    query = urllib.parse.urlencode({
        "repo": repo.as_uri(), "branch": "main", "urlpath": f"lab/tree/cnnlib/{NOTEBOOK}"})
    return f"{hub.url}/hub/user-redirect/git-pull?{query}"


def click_link(page, link: str):
    """Click the link as a student would, from a page that shows it; return the notebook panel."""
    page.goto("about:blank")  # a page of its own, with nothing of the hub's running in it
    page.set_content(f'<a id="course" href="{link}">01 畳み込み層</a>')
    page.click("#course")
    page.wait_for_function(JS_PANEL_ID, timeout=SPAWN_TIMEOUT_MS)
    panel = page.locator(f'[id="{page.evaluate(JS_PANEL_ID)}"]')
    panel.locator(".jp-Cell").first.wait_for(timeout=90_000)
    return panel


def test_student_path_through_the_hub(browser, hub: launch.Hub, upstream: Path) -> None:  # noqa: F811
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    try:
        # 1. The hub's login page.
        page.goto(f"{hub.url}/hub/login")
        page.fill("#username_input", STUDENT)
        page.fill("#password_input", hub.password)
        page.click("#login_submit")
        page.wait_for_url(lambda url: "/hub/login" not in url, timeout=60_000)

        # 2. The course's link: server started, course cloned, notebook 01 open.
        panel = click_link(page, pull_link(hub, upstream))
        assert page.url.endswith(f"/user/{STUDENT}/lab/tree/cnnlib/{NOTEBOOK}"), page.url
        clone = hub.home(STUDENT) / "cnnlib"
        assert (clone / NOTEBOOK).exists(), f"nbgitpuller did not clone the course into {clone}"
        check_server(hub)

        # 3. Run All, the checks of the browser test, then the kernel-size slider.
        page.wait_for_function(JS_KERNEL_IDLE, timeout=120_000)
        page.evaluate(JS_WATCH_KERNEL)
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        _wait_until_done(page, SimpleNamespace(log=hub.log), NOTEBOOK, RUN_TIMEOUT_S,
                         CELL_TIMEOUT_S)
        report = Report(name="01_convolution (hub)")
        _check_outputs(page, page.evaluate(JS_MODEL), report)
        _move_explorers(page, panel, report, MOVE_TIMEOUT_S)
        assert not report.problems, _explain(report)
        assert report.explorers, "no explorer was moved"
        move_kernel_size(page, panel)
        # Without binder/overrides.json, JupyterLab asks within seconds of opening whether to
        # fetch Jupyter news (a toast; seen by hand with JupyterLab 4.6). Not over a class.
        assert page.locator(".Toastify__toast", has_text="news").count() == 0

        # 4. The student's answer, saved; the instructor's push; the link again.
        assert page.evaluate(JS_SET_SOURCE, [ANSWER_CELL, STUDENT_ANSWER]), "no answer cell"
        page.evaluate("() => window.jupyterapp.commands.execute('docmanager:save')")
        page.wait_for_function(JS_CLEAN, timeout=30_000)
        assert STUDENT_ANSWER in (clone / NOTEBOOK).read_text(encoding="utf-8")

        instructor_pushes_a_note(upstream)
        click_link(page, pull_link(hub, upstream))
        # the notebook reloads from disk after the merge: wait for the instructor's note to show
        page.wait_for_function(
            """(note) => { const w = window.jupyterapp.shell.currentWidget;
                 return !!(w && w.content && w.content.model) &&
                        JSON.stringify(w.content.model.toJSON()).includes(note); }""",
            arg=INSTRUCTOR_NOTE, timeout=120_000)
        sources = [("".join(cell["source"]) if isinstance(cell["source"], list)
                    else cell["source"]) for cell in page.evaluate(JS_MODEL)["cells"]]
        assert any(STUDENT_ANSWER in s for s in sources), "the student's answer was lost"
        assert any(INSTRUCTOR_NOTE in s for s in sources), "the instructor's update did not arrive"
        on_disk = (clone / NOTEBOOK).read_text(encoding="utf-8")
        assert STUDENT_ANSWER in on_disk and INSTRUCTOR_NOTE in on_disk
        page.screenshot(path=str(screenshot_path()))
    finally:
        page.close()


# Set the source of the first cell that starts with ``marker`` (as if the student typed it).
JS_SET_SOURCE = """([marker, text]) => {
    const cells = window.jupyterapp.shell.currentWidget.content.model.cells;
    for (let i = 0; i < cells.length; i++) {
        const cell = cells.get(i);
        if (cell.sharedModel.getSource().startsWith(marker)) {
            cell.sharedModel.setSource(text);
            return true;
        }
    }
    return false;
}"""
JS_CLEAN = "() => !window.jupyterapp.shell.currentWidget.context.model.dirty"


def move_kernel_size(page, panel) -> None:
    """The convolution explorer's "カーネルの大きさ K" slider, one step: the picture must change."""
    cell = panel.locator(".jp-Cell", has=page.locator(".widget-slider",
                                                     has_text="カーネルの大きさ K")).first
    assert cell.count(), "no convolution explorer with a kernel-size slider"
    slider = cell.locator(".widget-slider", has_text="カーネルの大きさ K").locator("[role=slider]")
    before = cell.evaluate(JS_PICTURE)
    slider.scroll_into_view_if_needed()
    value, moved_to = _move(page, slider, "slider")
    assert moved_to != value, f"the kernel-size slider did not move from {value}"
    page.wait_for_function(
        "([cell, before]) => { const now = [...cell.querySelectorAll("
        "'.jp-Cell-outputArea img')].map(e => e.src);"
        " return now.length > 0 && now.join() !== before.join(); }",
        arg=[cell.element_handle(), before], timeout=MOVE_TIMEOUT_S * 1000)


def instructor_pushes_a_note(repo: Path) -> None:
    """A new sentence in notebook 01's first Markdown cell, committed on ``main``."""
    path = repo / NOTEBOOK
    notebook = json.loads(path.read_text(encoding="utf-8"))
    first = next(cell for cell in notebook["cells"] if cell["cell_type"] == "markdown")
    source = first["source"]
    first["source"] = ([*source, "\n\n", INSTRUCTOR_NOTE] if isinstance(source, list)
                       else f"{source}\n\n{INSTRUCTOR_NOTE}")
    path.write_text(json.dumps(notebook, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    git("commit", "-q", "-am", "notebook 01: a note for this year", cwd=repo)


def check_server(hub: launch.Hub) -> None:
    """The student's server has the configured limits, class settings and language pack."""
    import psutil

    spawner = launch.load_config(hub.state / "config-check").Spawner
    env = None
    for process in psutil.process_iter():
        try:
            candidate = process.environ()
        except psutil.Error:
            continue
        if (candidate.get("JUPYTERHUB_USER") == STUDENT
                and "jupyterhub-singleuser" in " ".join(process.cmdline())):
            env = candidate
            break
    assert env is not None, "no jupyterhub-singleuser process for the student"
    assert float(env["CPU_LIMIT"]) == spawner.cpu_limit, env["CPU_LIMIT"]
    assert int(env["MEM_LIMIT"]) == launch.to_bytes(spawner.mem_limit), env["MEM_LIMIT"]
    base = f"/user/{STUDENT}/lab/api"
    notification = hub.request(f"{base}/settings/@jupyterlab/apputils-extension:notification")
    assert notification["schema"]["properties"]["fetchNews"]["default"] == "false"
    assert "ja_JP" in hub.request(f"{base}/translations")["data"]


def screenshot_path() -> Path:
    folder = ROOT / "artifacts" / "screenshots"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / "hub_01_convolution_after_update.png"
