"""The plugin in the real FiftyOne App, driven in headless Chromium.

Launches the App (remote mode, loopback port) on the audited test dataset and
checks, by element and not by pixel: the plugin's operators in the operator
browser and the audit form, each saved view, the CSL fields in the sidebar,
and the CSL timeline panel on a video. Screenshots go to
``$FCSL_SCREENSHOTS`` (default ``test-artifacts/screenshots``).
"""

import os
import shutil
import socket

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHOTS = os.environ.get("FCSL_SCREENSHOTS", os.path.join(ROOT, "test-artifacts", "screenshots"))
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OPERATOR_LABELS = [
    "CSL: audit video labels",
    "CSL: compute frame features",
    "CSL: train checkpoints",
    "CSL: replay checkpoints",
    "CSL: flag errors",
    "CSL: evaluate detection",
    "CSL: inject errors",
    "CSL: select frames for review",
    "CSL: delete run",
]
TIMEOUT = 90_000


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app(audited, tmp_path_factory):
    import fiftyone as fo

    dataset = audited[0]
    port = _free_port()
    session = fo.launch_app(dataset, remote=True, address="127.0.0.1", port=port, auto=False)
    yield f"http://127.0.0.1:{port}", dataset
    session.close()


@pytest.fixture(scope="module")
def page(app, tmp_path_factory):
    from playwright.sync_api import sync_playwright

    assert os.path.exists(CHROMIUM), "Chromium is missing: scripts/setup.sh installs Debian's 'chromium'"
    os.makedirs(SHOTS, exist_ok=True)
    with sync_playwright() as p:
        # Playwright gives each launch a new, empty profile directory
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(TIMEOUT)
        yield page
        browser.close()


def _open(page, url):
    page.goto(url, wait_until="domcontentloaded")
    page.locator('[data-cy="sidebar-entry-draggable-frames.csl"]').wait_for()
    dismiss = page.get_by_role("button", name="Dismiss")
    try:  # an advertising pop-up may cover the grid
        dismiss.click(timeout=3000)
    except Exception:
        pass


def test_operator_browser_lists_every_operator_and_opens_the_audit_form(app, page):
    base, dataset = app
    _open(page, f"{base}/datasets/{dataset.name}")
    page.keyboard.press("Backquote")
    page.keyboard.type("CSL")
    for label in OPERATOR_LABELS:
        page.get_by_text(label, exact=True).wait_for()
    page.screenshot(path=os.path.join(SHOTS, "operator-browser.png"))
    page.get_by_text("CSL: audit video labels", exact=True).click()
    page.get_by_text("Run key / field prefix").wait_for()
    page.get_by_text("Temporal model").wait_for()
    page.get_by_text("Run 'csl' exists", exact=False).wait_for()  # the form knows the run
    page.screenshot(path=os.path.join(SHOTS, "audit-form.png"))
    page.keyboard.press("Escape")


def test_csl_fields_are_in_the_sidebar(app, page):
    base, dataset = app
    _open(page, f"{base}/datasets/{dataset.name}")
    for field in ("frames.csl", "frames.csl_last_loss", "frames.csl_aum", "csl_max", "csl_mean", "csl_errors"):
        page.locator(f'[data-cy="sidebar-entry-draggable-{field}"]').wait_for(state="attached")
    page.screenshot(path=os.path.join(SHOTS, "grid-sidebar.png"))


@pytest.mark.parametrize("view", ["csl-ranked", "csl-suspect-frames", "csl-suspect-clips"])
def test_each_saved_view_opens(app, page, view):
    base, dataset = app
    _open(page, f"{base}/datasets/{dataset.name}?view={view}")
    page.get_by_text(view, exact=True).first.wait_for()
    expected = len(dataset.load_saved_view(view))
    unit = "clips" if view.endswith("clips") else "samples"
    page.get_by_text(f"{expected} {unit}", exact=False).first.wait_for()
    page.locator('[data-cy="looker"]').first.wait_for()
    page.screenshot(path=os.path.join(SHOTS, f"view-{view}.png"))


def test_csl_timeline_panel_on_a_video(app, page):
    base, dataset = app
    _open(page, f"{base}/datasets/{dataset.name}?view=csl-ranked")
    page.locator('[data-cy="looker"]').first.click()
    page.get_by_text("CSL timeline", exact=True).first.click()
    page.get_by_text("suspect segment(s)", exact=False).first.wait_for()
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_text("suggested label", exact=True).first.wait_for(state="attached")
    page.screenshot(path=os.path.join(SHOTS, "csl-timeline-panel.png"))
