"""Every notebook, as a student meets it: JupyterLab in headless Chromium, Run All, then look.

For each ``notebooks/NN_*.ipynb`` (run from a copy of the repository, with ``CNNLIB_SMALL=1``):
open it in JupyterLab, choose Run ▸ Run All Cells, wait until the kernel is idle and no cell is
queued (a kernel that dies on the way fails the test, and so does a cell still running after
pyproject.toml's ``--nbval-cell-timeout``, named, as a lost message leaves it), then check that

* no cell has an error output and none was left unrun;
* every widget output rendered as a live widget (``.jupyter-widgets`` in the DOM), not as its
  text fallback (``IntSlider(value=…)``) or "Error displaying widget";
* in each explorer (a cell whose output holds a slider and a picture), moving its main control
  changes the picture under it: the first enabled slider, one keyboard step, or the dropdown
  that comes before it (which activation, which normalization) set to its next option.

A screenshot of each notebook (scrolled to its first explorer, or else to its first picture) is
saved as ``artifacts/screenshots/<notebook>.png``. ``test_checks_catch_broken_notebooks`` feeds
the same checks notebooks that are broken in each of those ways, so that the checks are known to
bite.
Needs Debian's ``chromium`` and Playwright's Python package (its own browser is not used).
"""

from __future__ import annotations

import importlib.util
import re
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
import pytest
from browser_helpers import (
    ARTIFACTS,
    CELL_TIMEOUT_S,
    CHROMIUM_ARGS,
    NOTEBOOKS,
    LabServer,
    copy_repo,
    jupyter_lab,
    require,
)

pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
SCREENSHOTS = ARTIFACTS / "screenshots"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"
RUN_TIMEOUT_S = 600  # one notebook's Run All, on 2 busy cores (one cell: CELL_TIMEOUT_S)
MOVE_TIMEOUT_S = 60  # one slider step: recompute and redraw (may compile on a cold cache)

# JavaScript run in the page. ``window.jupyterapp`` exists because the server is started with
# ``--LabApp.expose_app_in_browser=True``; queries stay inside the notebook's own panel.
JS_PANEL_ID = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    return panel && panel.content && panel.content.model ? panel.node.id : null;
}"""
JS_KERNEL_STATUS = """() =>
    window.jupyterapp.shell.currentWidget.sessionContext.session.kernel.status"""
# Remember every status that means the kernel died (a restart can be over between two polls).
JS_WATCH_KERNEL = """() => {
    window.kernelTrouble = [];
    window.jupyterapp.shell.currentWidget.sessionContext.statusChanged.connect((_, status) => {
        if (['dead', 'restarting', 'autorestarting'].includes(status))
            window.kernelTrouble.push(status);
    });
}"""
JS_DIALOGS = "() => [...document.querySelectorAll('.jp-Dialog')].map(e => e.innerText.trim())"
JS_KERNEL_IDLE = """() => {
    const panel = window.jupyterapp && window.jupyterapp.shell.currentWidget;
    const session = panel && panel.sessionContext && panel.sessionContext.session;
    return !!(session && session.kernel && session.kernel.status === 'idle');
}"""
JS_PROMPTS = """() => [...window.jupyterapp.shell.currentWidget.node
    .querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(e => e.textContent.trim())"""
# The cell being run: the first whose prompt shows [*] (the ones after it are queued). ``index``
# counts every cell, ``code`` only the code cells (nbval's "Cell N").
JS_RUNNING_CELL = """() => {
    const cells = window.jupyterapp.shell.currentWidget.content.widgets;
    let code = -1;
    for (let i = 0; i < cells.length; i++) {
        if (cells[i].model.type !== 'code') continue;
        code += 1;
        const prompt = cells[i].node.querySelector('.jp-InputPrompt');
        if (prompt && prompt.textContent.trim() === '[*]:')
            return {index: i, code: code, source: cells[i].model.sharedModel.getSource()};
    }
    return null;
}"""
JS_MODEL = "() => window.jupyterapp.shell.currentWidget.content.model.toJSON()"
# Per cell, its top-level outputs as rendered (outputs nested in an Output widget belong to it).
JS_RENDERED = """() => [...window.jupyterapp.shell.currentWidget.node
    .querySelectorAll('.jp-Cell')].map(cell => {
    const area = cell.querySelector('.jp-Cell-outputArea');
    if (!area) return [];
    return [...area.querySelectorAll(':scope > .jp-OutputArea-child')].map(child => {
        const out = child.querySelector('.jp-OutputArea-output');
        return {widget: !!(out && out.querySelector('.jupyter-widgets')),
                text: out ? out.innerText.slice(0, 400) : ''};
    });
})"""
# What an explorer shows: its pictures (matplotlib sends a new PNG at each redraw).
JS_PICTURE = """cell => [...cell.querySelectorAll('.jp-Cell-outputArea img')].map(e => e.src)"""
# The control to move in an explorer: its first enabled, visible slider or dropdown, in page
# order. Explorers put their main control first: a slider, or a choice (the activation, the
# normalization) that decides what the sliders after it mean. It is marked with
# ``data-main-control`` for the locator; returns its kind and label.
JS_MAIN_CONTROL = """cell => {
    const area = cell.querySelector('.jp-Cell-outputArea');
    const controls = area.querySelectorAll('.widget-slider [role=slider], .widget-dropdown select');
    for (const control of controls) {
        const widget = control.closest('.widget-slider, .widget-dropdown');
        const kind = widget.classList.contains('widget-slider') ? 'slider' : 'dropdown';
        if (control.offsetParent === null || control.closest('[disabled]')
            || control.disabled || widget.classList.contains('mod-disabled')
            || (kind === 'dropdown' && control.options.length < 2)) continue;
        control.setAttribute('data-main-control', '');
        const label = widget.querySelector('.widget-label');
        return {kind: kind, label: label ? label.innerText : ''};
    }
    return null;
}"""


@dataclass
class Report:
    """What one notebook showed in the browser; ``problems`` is empty when all is well."""

    name: str
    seconds: float = 0.0
    code_cells: int = 0
    widgets: int = 0
    closed_widgets: int = 0
    explorers: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser():
    require(Path(CHROMIUM).exists(), "Chromium is not installed: `apt-get install chromium`")
    require(importlib.util.find_spec("playwright") is not None,
            "Playwright's Python package is missing: `pip install playwright` (Debian's "
            "chromium is used; `playwright install` is not needed)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def lab(browser, tmp_path_factory):
    require(importlib.util.find_spec("jupyterlab") is not None,
            "JupyterLab is missing: `pip install -r requirements.txt`")
    base = tmp_path_factory.mktemp("browser")
    root = copy_repo(base / "repo")
    with jupyter_lab(root, base / "home") as server:
        yield server


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=[nb.stem for nb in NOTEBOOKS])
def test_notebook_in_browser(notebook: Path, browser, lab: LabServer) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    report = run_in_lab(browser, lab, f"notebooks/{notebook.name}",
                        screenshot=SCREENSHOTS / f"{notebook.stem}.png")
    print(f"{report.name}: {report.seconds:.0f} s, {report.code_cells} code cells, "
          f"{report.widgets} widgets ({report.closed_widgets} closed by the kernel), "
          f"explorers moved: {report.explorers}")
    assert not report.problems, _explain(report)


def test_checks_catch_broken_notebooks(browser, lab: LabServer) -> None:
    """The checks above must fail on notebooks broken in each way they look for."""
    broken = nbformat.v4.new_notebook()
    broken.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                     "language": "python"}
    broken.cells = [
        nbformat.v4.new_code_cell(  # a slider whose picture never changes
            "import ipywidgets as widgets, matplotlib.pyplot as plt\n"
            "out = widgets.Output()\n"
            "with out:\n"
            "    plt.figure(figsize=(2, 2)); plt.plot([0, 1]); plt.show()\n"
            "widgets.VBox([widgets.IntSlider(1, 0, 5, description='k'), out])"),
        nbformat.v4.new_code_cell(  # a widget view whose model the page never gets
            "from IPython.display import display\n"
            "display({'" + WIDGET_MIME + "': {'model_id': 'f' * 32, 'version_major': 2,\n"
            "        'version_minor': 0}, 'text/plain': 'IntSlider(value=3)'}, raw=True)"),
        nbformat.v4.new_code_cell("1 / 0"),
    ]
    path = lab.root / "broken.ipynb"
    nbformat.write(broken, path)
    report = run_in_lab(browser, lab, path.name, run_timeout=120, move_timeout=5)
    text = "\n".join(report.problems)
    assert "ZeroDivisionError" in text, text
    assert "not rendered as a widget" in text, text
    assert "did not change the picture" in text, text

    crash = nbformat.v4.new_notebook(metadata=broken.metadata, cells=[
        nbformat.v4.new_code_cell("import os\nos._exit(1)"), nbformat.v4.new_code_cell("1")])
    nbformat.write(crash, lab.root / "crash.ipynb")
    with pytest.raises(AssertionError, match="appears to have died"):
        run_in_lab(browser, lab, "crash.ipynb", run_timeout=120)


def test_a_cell_that_never_ends_fails_naming_it(browser, lab: LabServer) -> None:
    """A spinner that never ends (issue 15) fails after the cell timeout, naming the cell."""
    slow = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("# slow"), nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("import time\ntime.sleep(600)"), nbformat.v4.new_code_cell("x")])
    slow.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                   "language": "python"}
    nbformat.write(slow, lab.root / "slow.ipynb")
    start = time.monotonic()
    with pytest.raises(AssertionError) as failure:
        run_in_lab(browser, lab, "slow.ipynb", run_timeout=300, cell_timeout=5)
    message = str(failure.value)
    assert "slow.ipynb: cell 2 (code cell 1) still running after 5 s" in message, message
    assert "time.sleep(600)" in message, message
    assert time.monotonic() - start < 120


def run_in_lab(browser, lab: LabServer, path: str, screenshot: Path | None = None,
               run_timeout: float = RUN_TIMEOUT_S, move_timeout: float = MOVE_TIMEOUT_S,
               cell_timeout: float = CELL_TIMEOUT_S) -> Report:
    """Open ``path`` in JupyterLab, Run All, check it, move each explorer, take a screenshot."""
    report = Report(name=Path(path).stem)
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    page.on("console", lambda m: m.type == "error" and report.console_errors.append(m.text))
    start = time.monotonic()
    try:
        page.goto(lab.page_url(path))
        page.wait_for_function(JS_PANEL_ID, timeout=90_000)
        panel = page.locator(f'[id="{page.evaluate(JS_PANEL_ID)}"]')
        panel.locator(".jp-Cell").first.wait_for(timeout=90_000)
        page.wait_for_function(JS_KERNEL_IDLE, timeout=120_000)
        page.evaluate(JS_WATCH_KERNEL)
        page.evaluate("() => window.jupyterapp.shell.collapseLeft()")
        page.get_by_role("menuitem", name="Run", exact=True).click()
        page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
        _wait_until_done(page, lab, path, run_timeout, cell_timeout)
        report.seconds = time.monotonic() - start
        model = page.evaluate(JS_MODEL)
        _check_outputs(page, model, report)
        first_explorer = _move_explorers(page, panel, report, move_timeout)
        if screenshot is not None:
            # At the top: the first explorer, or else the first picture (or the title).
            target = first_explorer or panel.locator(".jp-Cell:has(.jp-Cell-outputArea img)").first
            if target.count():
                target.evaluate("e => e.scrollIntoView({block: 'start'})")
            else:
                panel.locator(".jp-Cell").first.evaluate("e => e.scrollIntoView()")
            page.screenshot(path=str(screenshot))
    finally:
        page.close()
        lab.shutdown_kernels()
    return report


def _wait_until_done(page, lab: LabServer, path: str, timeout: float,
                     cell_timeout: float) -> None:
    """Until the kernel is idle and no prompt shows ``[*]`` (queued or running), twice in a row.

    Fails at once if the kernel dies (and restarts) or a dialog pops up, and when one cell has
    been running for ``cell_timeout`` seconds (a spinner that never ends), naming that cell.
    """
    deadline = time.monotonic() + timeout
    settled = 0
    running, since = None, time.monotonic()
    while settled < 2:
        prompts = page.evaluate(JS_PROMPTS)
        status = page.evaluate(JS_KERNEL_STATUS)
        cell = page.evaluate(JS_RUNNING_CELL)
        if (cell and cell["index"]) != running:
            running, since = cell and cell["index"], time.monotonic()
        elif cell and time.monotonic() - since > cell_timeout:
            raise AssertionError(
                f"{path}: cell {cell['index']} (code cell {cell['code']}) still running after "
                f"{cell_timeout:.0f} s, kernel {status}; its source:\n{cell['source'][:300]}")
        trouble = page.evaluate("() => window.kernelTrouble")
        dialogs = page.evaluate(JS_DIALOGS)
        if trouble or dialogs:
            log = [line for line in lab.log.read_text(errors="replace").splitlines()
                   if re.search(r"restart|died|dead|Traceback|Error", line)]
            raise AssertionError(f"Run All did not finish: kernel {trouble or status}"
                                 f", dialogs {dialogs}; server log:\n" + "\n".join(log[-20:]))
        if time.monotonic() > deadline:
            at = f"cell {cell['index']} (code cell {cell['code']})" if cell else "no cell"
            raise AssertionError(f"{path}: Run All did not finish within {timeout:.0f} s, "
                                 f"{at} running; prompts: {prompts}")
        done = (status == "idle" and "[*]:" not in prompts
                and any(re.fullmatch(r"\[\d+\]:", p) for p in prompts))
        settled = settled + 1 if done else 0
        time.sleep(0.5)


def _check_outputs(page, model: dict, report: Report) -> None:
    """Errors and widget rendering, cell by cell, from the notebook model and the DOM.

    A widget output that the page shows empty was closed by the kernel after it was displayed
    (tqdm's progress bars with ``leave=False``): counted, not a problem. Text in place of the
    widget is its fallback (no widget manager, or a model the page never got).
    """
    widget_outputs = [
        (i, j) for i, cell in enumerate(model["cells"]) if cell["cell_type"] == "code"
        for j, output in enumerate(cell["outputs"]) if WIDGET_MIME in output.get("data", {})
    ]

    def states(rendered: list) -> dict:
        found = {}
        for i, j in widget_outputs:
            out = rendered[i][j] if j < len(rendered[i]) else None
            found[i, j] = ("missing" if out is None else "widget" if out["widget"]
                           else "closed" if not out["text"].strip() else "text")
        return found

    # The page renders outputs a moment after the kernel sends them: wait until every widget
    # output is settled (no "Loading widget...") and the same twice in a row.
    deadline = time.monotonic() + 30
    rendered = page.evaluate(JS_RENDERED)
    previous = None
    while time.monotonic() < deadline:
        now = states(rendered)
        loading = any(s == "missing" or (s == "text" and "Loading widget" in rendered[i][j]["text"])
                      for (i, j), s in now.items())
        if now == previous and not loading:
            break
        previous = now
        time.sleep(0.5)
        rendered = page.evaluate(JS_RENDERED)

    not_run = []
    for i, cell in enumerate(model["cells"]):
        if cell["cell_type"] != "code":
            continue
        report.code_cells += 1
        if cell.get("execution_count") is None and cell["source"].strip():
            not_run.append(i)
        for output in cell["outputs"]:
            if output["output_type"] == "error":
                report.problems.append(
                    f"cell {i} raised {output['ename']}: {output['evalue']}\n"
                    f"    source: {cell['source'][:200]!r}")
    if not_run and not report.problems:  # after an error, Run All stops: that says it all
        report.problems.append(f"cells {not_run} were not run")
    for (i, j), state in states(rendered).items():
        report.widgets += 1
        if state == "closed":
            report.closed_widgets += 1
        elif state != "widget":
            text = rendered[i][j]["text"] if state == "text" else "nothing"
            report.problems.append(f"cell {i}, output {j} was not rendered as a widget; "
                                   f"the page shows {text[:200]!r}")


def _move_explorers(page, panel, report: Report, timeout: float):
    """Move the main control of each explorer and wait for a new picture; return the first.

    An explorer is a cell whose output holds a slider and a picture (``img``).
    """
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    first = None
    cells = panel.locator(".jp-Cell")
    for i in range(cells.count()):
        cell = cells.nth(i)
        if (cell.locator(".jp-Cell-outputArea .widget-slider").count() == 0
                or cell.locator(".jp-Cell-outputArea img").count() == 0):
            continue
        first = first or cell
        main = cell.evaluate(JS_MAIN_CONTROL)
        if main is None:
            report.problems.append(f"cell {i}: an explorer with no slider or dropdown to move")
            continue
        control = cell.locator("[data-main-control]")
        before = cell.evaluate(JS_PICTURE)
        control.scroll_into_view_if_needed()
        value, moved_to = _move(page, control, main["kind"])
        label = main["label"].strip() or main["kind"]
        if moved_to == value:
            report.problems.append(f"cell {i}: the {main['kind']} {label!r} did not move "
                                   f"from {value}")
            continue
        try:
            page.wait_for_function(
                "([cell, before]) => { const now = [...cell.querySelectorAll("
                "'.jp-Cell-outputArea img')].map(e => e.src);"
                " return now.length > 0 && now.join() !== before.join(); }",
                arg=[cell.element_handle(), before], timeout=timeout * 1000)
        except PlaywrightTimeout:
            report.problems.append(
                f"cell {i}: moving {label!r} from {value} to {moved_to} did not change the "
                f"picture within {timeout:.0f} s")
        else:
            report.explorers.append(f"{label} {value}→{moved_to}")
    return first


def _move(page, control, kind: str) -> tuple[str, str]:
    """One keyboard step of a slider (back if it starts at its maximum), or the next option."""
    if kind == "dropdown":
        value = control.input_value()
        options = control.evaluate("s => [...s.options].map(o => o.value)")
        moved_to = options[(options.index(value) + 1) % len(options)]
        control.select_option(moved_to)
        return value, control.input_value()
    value = control.get_attribute("aria-valuetext")  # aria-valuenow is rounded
    control.focus()
    for key in ("ArrowRight", "ArrowLeft", "ArrowLeft"):
        page.keyboard.press(key)
        moved_to = control.get_attribute("aria-valuetext")
        if moved_to != value:
            break
    return value, moved_to


def _explain(report: Report) -> str:
    lines = [f"{report.name}: {len(report.problems)} problem(s) in the browser:"]
    lines += [f"  - {p}" for p in report.problems]
    if report.console_errors:
        lines.append("browser console errors:")
        lines += [f"  {e[:300]}" for e in report.console_errors[:10]]
    return "\n".join(lines)
