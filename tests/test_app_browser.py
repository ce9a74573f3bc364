"""The plugin in the real FiftyOne App, driven in headless Chromium.

Launches the App (remote mode, loopback port, scheduling allowed) on a copy
of the audited test dataset and checks, by element and not by pixel: the
plugin's operators in the operator browser and the audit form, each saved
view, the CSL fields in the sidebar, the CSL timeline panel on a video; and
it executes: an audit run from the operator browser, an audit queued as a
delegated run and listed in the panel, a segment accepted from the panel and
undone, a new threshold applied with *flag errors*. Screenshots go to
``$FCSL_SCREENSHOTS`` (default ``test-artifacts/screenshots``).
"""

import os
import shutil
import socket
import time

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
    "CSL: refresh scores after fixes",
    "CSL: review suspect segments",
    "CSL: undo the last review decision",
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
    import fiftyone_csl as fcsl

    dataset = audited[0].clone()  # the review changes labels: a copy, with its own copy of the run
    fcsl.copy_csl_run(dataset, "csl")
    # what the README asks of an App that schedules delegated runs (the App's server reads it at start)
    os.environ["FIFTYONE_ALLOW_LEGACY_ORCHESTRATORS"] = "true"
    # the run the panel and the forms start with (the panel remembers the last one chosen), so the
    # audits these tests add do not take its place
    from fiftyone.operators.store import ExecutionStore

    ExecutionStore.create("csl_timeline", dataset._doc.id).set("run_key", "csl")
    port = _free_port()
    session = fo.launch_app(dataset, remote=True, address="127.0.0.1", port=port, auto=False)
    yield f"http://127.0.0.1:{port}", dataset
    session.close()
    for key in fcsl.list_csl_runs(dataset):
        fcsl.delete_csl_run(dataset, key)
    dataset.delete()


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
    page.locator('[data-cy="sidebar-entry-draggable-frames.csl"]').first.wait_for()
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
    page.get_by_text("Run 'csl' exists", exact=False).first.wait_for()  # the form knows the run
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


def _open_panel(page, base, dataset):
    _open(page, f"{base}/datasets/{dataset.name}?view=csl-ranked")
    if not page.locator("#modal.modalon").count():  # the App may reopen the modal it had open
        page.locator('[data-cy="looker"]').first.click()
    page.get_by_text("CSL timeline", exact=True).first.click()
    page.get_by_text("suspect segment(s)", exact=False).first.wait_for()


def test_csl_timeline_panel_on_a_video(app, page):
    base, dataset = app
    _open_panel(page, base, dataset)
    page.locator(".js-plotly-plot").first.wait_for()
    page.get_by_text("proposed label", exact=True).first.wait_for(state="attached")
    page.screenshot(path=os.path.join(SHOTS, "csl-timeline-panel.png"))
    # the plot follows the panel's width
    panel = page.locator('[data-cy="panel-content-csl_timeline"]').first.bounding_box()
    svg = float(page.locator(".js-plotly-plot .main-svg").first.get_attribute("width"))
    assert svg > 0.8 * panel["width"], (svg, panel)


def _form(page, label):
    page.keyboard.press("Escape")
    page.keyboard.press("Backquote")
    page.keyboard.type(label)
    page.get_by_text(label, exact=True).click()
    return page.get_by_role("dialog")


def _audit_form(page, key, epochs, folds):
    dialog = _form(page, "CSL: audit video labels")
    dialog.locator('input[type="string"]').first.fill(key)
    hint = dialog.get_by_text("Score every n-th frame of the embeddings field")
    for _ in range(5):  # the form re-renders as it resolves each change; choose again if a render ate it
        time.sleep(1)
        dialog.get_by_role("combobox").nth(1).click()  # the embeddings field: the test features, no backbone
        page.get_by_role("option", name="emb", exact=True).click()
        try:
            hint.wait_for(timeout=5000)
            break
        except Exception:
            page.keyboard.press("Escape") if page.get_by_role("option").count() else None
    hint.wait_for()
    _field(dialog, "Epochs (one checkpoint each)").fill(str(epochs))
    _field(dialog, "Cross-fitting folds").fill(str(folds))
    return dialog


def _field(dialog, label):
    """The input that follows the field label ``label`` in a form."""
    return dialog.locator(f"xpath=//*[normalize-space(text())='{label}']/following::input[1]")


def test_an_audit_runs_from_the_operator_browser(app, page):
    base, dataset = app
    _open(page, f"{base}/datasets/{dataset.name}")
    dialog = _audit_form(page, "app", epochs=3, folds=2)
    page.screenshot(path=os.path.join(SHOTS, "audit-form-filled.png"))
    # the execution menu beside Schedule (the default): Execute runs it in the App's server
    dialog.get_by_role("button", name="Schedule").locator("xpath=following::button[1]").click()
    page.get_by_role("menuitem").filter(has_text="Execute").click()
    dialog.get_by_role("button", name="Execute").click()
    page.get_by_text("Suspect segments", exact=False).first.wait_for(timeout=300_000)
    page.locator('[data-cy="sidebar-entry-draggable-frames.app"]').first.wait_for(state="attached")
    page.screenshot(path=os.path.join(SHOTS, "audit-executed.png"))
    dataset.reload()
    assert "app" in dataset.list_runs()
    assert dataset.count("frames.app") == dataset.count("frames.phase")


def test_an_audit_queued_as_a_delegated_run_is_listed(app, page):
    import fiftyone_csl as fcsl
    from bson import ObjectId
    from fiftyone.operators.delegated import DelegatedOperationService

    base, dataset = app
    _open(page, f"{base}/datasets/{dataset.name}")
    dialog = _audit_form(page, "queued", epochs=2, folds=2)
    dialog.get_by_role("button", name="Schedule").click()
    runs = []
    for _ in range(600):  # the App's server queues it
        runs = fcsl.delegated_runs(dataset)
        if runs:
            break
        time.sleep(0.1)
    page.keyboard.press("Escape")
    try:
        assert [(r["operator"], r["state"]) for r in runs] == [("audit_video_labels", "queued")]
        _open_panel(page, base, dataset)  # the panel lists the plugin's delegated runs
        page.get_by_text("Delegated runs", exact=True).first.wait_for()
        page.get_by_text("audit_video_labels", exact=True).first.wait_for()
        page.screenshot(path=os.path.join(SHOTS, "delegated-run-listed.png"))
        # a worker would take it and finish it: the panel follows it on its own, tells, and reloads
        service = DelegatedOperationService()
        service.set_running(ObjectId(runs[0]["id"]))
        page.get_by_text("running", exact=True).first.wait_for(timeout=30_000)
        service.set_completed(ObjectId(runs[0]["id"]))
        page.get_by_text("Delegated run audit_video_labels completed", exact=False).first.wait_for(timeout=30_000)
        page.screenshot(path=os.path.join(SHOTS, "delegated-run-completed.png"))
    finally:  # no worker runs in the tests: the queued run is removed
        for r in runs:
            DelegatedOperationService().delete_operation(ObjectId(r["id"]))
    assert fcsl.delegated_runs(dataset) == []


def test_a_segment_accepted_in_the_panel_changes_its_labels_and_undo_restores_them(app, page):
    import fiftyone_csl as fcsl

    base, dataset = app
    before = dict(zip(*dataset.values(["id", "frames.phase.label"])))
    _open_panel(page, base, dataset)
    page.get_by_role("button", name="Next").click()
    accept = page.get_by_role("button", name="Accept proposal")
    for _ in range(20):  # a segment without a suggestion: the next one
        if accept.is_enabled():
            break
        page.get_by_role("button", name="Next").click()
    page.screenshot(path=os.path.join(SHOTS, "review-segment.png"))
    accept.click()
    page.get_by_text("accepted: frames", exact=False).first.wait_for()
    page.get_by_text("1 decided", exact=False).first.wait_for()
    page.screenshot(path=os.path.join(SHOTS, "review-accepted.png"))
    [decision] = fcsl.list_decisions(dataset, "csl")
    dataset.reload()
    after = dict(zip(*dataset.values(["id", "frames.phase.label"])))
    numbers = dict(zip(*dataset.values(["id", "frames.frame_number"])))[decision["sample_id"]]
    changed = {n for n, a, b in zip(numbers, before[decision["sample_id"]], after[decision["sample_id"]]) if a != b}
    assert changed == set(decision["changed_frames"]) and changed
    assert all(after[decision["sample_id"]][numbers.index(n)] == decision["new_label"] for n in changed)

    page.get_by_role("button", name="Undo last decision").click()
    page.get_by_text("Undone: accepted", exact=False).first.wait_for()
    page.screenshot(path=os.path.join(SHOTS, "review-undone.png"))
    dataset.reload()
    assert dict(zip(*dataset.values(["id", "frames.phase.label"]))) == before
    assert fcsl.list_decisions(dataset, "csl") == []


def test_a_row_of_the_suspect_table_opens_its_segment(app, page):
    import fiftyone_csl as fcsl

    base, dataset = app
    rows = fcsl.suspect_segments(dataset, "csl")  # nothing decided: the table lists them in this order
    target = rows[2]
    _open_panel(page, base, dataset)
    table = page.locator('[data-cy="panel-content-csl_timeline"] table').first
    table.wait_for()
    table.get_by_text("Evidence (nats)", exact=True).wait_for()
    cells = table.locator("tbody tr").nth(2).locator("td")
    cells.nth(1).get_by_text(f"{target['first_frame']}-{target['last_frame']}", exact=True).wait_for()
    cells.nth(1).click()
    page.get_by_text(f"Frames {target['first_frame']}-{target['last_frame']}", exact=False).first.wait_for()
    page.screenshot(path=os.path.join(SHOTS, "review-suspect-table.png"))
    assert fcsl.list_decisions(dataset, "csl") == []  # a click on a row decides nothing


def test_watch_shows_the_segment_as_a_clip_the_player_steps_frame_by_frame(app, page):
    """The player cannot be sent to a frame of a plain video: the panel shows
    a clip that starts at the chosen frame, and opened, the modal plays it."""
    import fiftyone_csl as fcsl
    from fiftyone.operators.store import ExecutionStore
    from fiftyone_csl.operators.common import RUN_STORE

    base, dataset = app
    _open_panel(page, base, dataset)
    page.get_by_role("button", name="Next").click()
    row = fcsl.suspect_segments(dataset, "csl")[0]  # Next: the first one, nothing decided
    page.get_by_text(f"Frames {row['first_frame']}-{row['last_frame']}", exact=False).first.wait_for()
    page.get_by_role("button", name=f"Watch from frame {row['first_frame']}").click()
    page.get_by_text("1 clip", exact=False).first.wait_for()
    assert ExecutionStore.create(RUN_STORE, dataset._doc.id).get("watch") == [
        row["sample_id"], row["first_frame"], row["last_frame"]]  # fmt: skip
    page.locator('[data-cy="looker"]').first.click()  # the clip
    page.get_by_role("button", name="Back to all videos").wait_for()
    page.get_by_text(f"Frames {row['first_frame']}-{row['last_frame']}", exact=False).first.wait_for()
    frames = row["last_frame"] - row["first_frame"] + 1
    page.get_by_text(str(frames), exact=True).first.wait_for()  # the sidebar counts the clip's frames
    page.screenshot(path=os.path.join(SHOTS, "review-watch-clip.png"))
    page.get_by_role("button", name="Back to all videos").click()
    page.get_by_text(f"{len(dataset)} samples", exact=False).first.wait_for()
    assert fcsl.list_decisions(dataset, "csl") == []


def _split_modal(page):
    """The player beside the panel (a panel tab over the sample unmounts the player)."""
    try:  # a late advertising pop-up takes the focus and hides the modal
        page.locator('.MuiPopover-paper button:has-text("Dismiss")').first.click(timeout=3000)
    except Exception:
        pass
    page.locator('#modal button[title="Split vertically"]').first.click()
    page.wait_for_function("() => window.__csl_bridge__ && window.__csl_bridge__.looker"
                           " && window.__csl_bridge__.looker.state.loaded", timeout=60000)  # fmt: skip


def _player_on(page, frame, timeout=30000):
    page.wait_for_function(f"() => window.__csl_bridge__.looker.state.frameNumber === {frame}", timeout=timeout)


def test_next_a_row_and_the_plot_move_the_player_and_the_keys_decide(app, page):
    """With the modal split, the panel's steps put the video player on the
    suspect's first frame (and it stays there), a click on the plot on the
    clicked frame, the player's own frame steps come back to the panel (its
    Watch button and line follow), and a key decides as its button does."""
    import fiftyone_csl as fcsl

    base, dataset = app
    rows = fcsl.suspect_segments(dataset, "csl")
    _open_panel(page, base, dataset)
    _split_modal(page)
    page.get_by_role("button", name="Next").click()
    _player_on(page, rows[0]["first_frame"])
    time.sleep(3)  # still there after the player's own start-up seeks
    _player_on(page, rows[0]["first_frame"], timeout=1000)
    page.get_by_role("button", name="Next").click()
    _player_on(page, rows[1]["first_frame"])
    page.screenshot(path=os.path.join(SHOTS, "review-player-seek.png"))

    page.wait_for_function("() => !window.__csl_bridge__.release", timeout=20000)
    x = rows[1]["first_frame"] + 2
    click = "@fiftyone-csl/csl/csl_timeline#on_plot_click"  # what Plotly's click on frame x calls
    page.evaluate("([u, x]) => window.__csl_bridge__.trigger(u, {x})", [click, x])
    _player_on(page, x)
    page.wait_for_function("() => !window.__csl_bridge__.release", timeout=20000)
    page.evaluate(f"() => window.__csl_bridge__.looker.seekToFrame({x + 3})")  # the player moved by the reviewer
    page.get_by_role("button", name=f"Watch from frame {x + 3}").wait_for()

    assert fcsl.list_decisions(dataset, "csl") == []
    page.mouse.move(5, 5)
    page.keyboard.press("k")  # keep
    page.get_by_text(f"kept: frames {rows[1]['first_frame']}-{rows[1]['last_frame']}", exact=False).first.wait_for()
    decisions = fcsl.list_decisions(dataset, "csl")
    assert [(d["decision"], d["sample_id"], d["first"]) for d in decisions] == [
        ("kept", rows[1]["sample_id"], rows[1]["first_frame"])]  # fmt: skip
    page.wait_for_function("() => !window.__csl_bridge__.release", timeout=20000)
    page.keyboard.press("u")  # undo
    page.get_by_text("Undone: kept", exact=False).first.wait_for()
    assert fcsl.list_decisions(dataset, "csl") == []


WATCH_TEXT = """text => {
    // the App's own round trip: from the pointer going down on a button until the panel's
    // text shows the decision (the DOM change, before the test's polling sees it)
    window.__csl = {};
    document.addEventListener("pointerdown", () => { window.__csl.t0 = performance.now(); },
                              {capture: true, once: true});
    const seen = new MutationObserver(records => {
        for (const r of records) {
            if ((r.target.textContent || "").includes(text)) {
                window.__csl.t1 = performance.now();
                seen.disconnect();
                return;
            }
        }
    });
    seen.observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


def test_every_suspect_is_decided_as_a_reviewer_would_with_one_action_each(app, page):
    """The README's actions per suspect and click round trip: a reviewer who
    knows the true labels (the demo's ``phase_clean``) accepts a right
    proposal, keeps a right label and otherwise relabels; after a decision
    the panel moves to the next undecided suspect in the global order. At
    the end no frame of a decided suspect is wrong."""
    import json

    import fiftyone_csl as fcsl

    base, dataset = app
    rows = fcsl.suspect_segments(dataset, "csl")  # the panel's order, nothing decided yet
    truth = {sid: dict(zip(numbers, clean)) for sid, numbers, clean in
             zip(*dataset.values(["id", "frames.frame_number", "frames.phase_clean.label"]))}  # fmt: skip
    _open_panel(page, base, dataset)
    actions = 1
    page.get_by_role("button", name="Next").click()  # the first undecided suspect
    round_trips, waited, kinds = [], [], []
    for decided, row in enumerate(rows, start=1):
        page.get_by_text(f"Frames {row['first_frame']}-{row['last_frame']}:", exact=False).first.wait_for()
        frames = range(row["first_frame"], row["last_frame"] + 1)
        want = [truth[row["sample_id"]][f] for f in frames]
        page.evaluate(WATCH_TEXT, f"Review: {decided} decided")
        started = time.perf_counter()
        if list(row["proposed_labels"] or []) == want:
            page.get_by_role("button", name="Accept proposal").click()
            kinds.append("accept")
        elif [row["given_label"]] * len(want) == want:
            page.get_by_role("button", name="Keep given label").click()
            kinds.append("keep")
        else:  # the reviewer's own label (a mixed truth would need a selection on the plot)
            page.locator('[data-cy="panel-content-csl_timeline"]').get_by_role("combobox").last.click()
            page.get_by_role("option", name=max(set(want), key=want.count), exact=True).click()
            kinds.append("relabel")
        actions += 1
        page.get_by_text(f"Review: {decided} decided", exact=False).first.wait_for()
        waited.append(time.perf_counter() - started)  # the test's click until it sees the decision
        round_trips.append(page.evaluate("window.__csl.t1 - window.__csl.t0") / 1000)  # the App's
    page.get_by_text(f"{len(rows)} decided", exact=False).first.wait_for()
    page.get_by_text("0 to go", exact=False).first.wait_for()
    page.screenshot(path=os.path.join(SHOTS, "review-all-decided.png"))
    decisions = fcsl.list_decisions(dataset, "csl")
    assert len(decisions) == len(rows)  # one decision per action
    dataset.reload()
    now = {sid: dict(zip(numbers, labels)) for sid, numbers, labels in
           zip(*dataset.values(["id", "frames.frame_number", "frames.phase.label"]))}  # fmt: skip
    wrong = [(r["sample_id"], f) for r in rows for f in range(r["first_frame"], r["last_frame"] + 1)
             if now[r["sample_id"]][f] != truth[r["sample_id"]][f]]  # fmt: skip
    wrong_left = sum(now[sid][f] != truth[sid][f] for sid in now for f in now[sid])
    ordered = sorted(round_trips)
    with open(os.path.join(os.path.dirname(SHOTS), "review-clicks.json"), "w") as f:
        json.dump(dict(suspects=len(rows), actions=actions, actions_per_suspect=round(actions / len(rows), 2),
                       decisions=dict((k, kinds.count(k)) for k in sorted(set(kinds))),
                       wrong_frames_in_decided_suspects=len(wrong), wrong_frames_left=wrong_left,
                       median_round_trip_s=round(ordered[len(ordered) // 2], 3),
                       max_round_trip_s=round(ordered[-1], 3),
                       median_as_the_test_waited_s=round(sorted(waited)[len(waited) // 2], 3)), f)  # fmt: skip
    assert wrong == []
    assert actions <= len(rows) + 1  # one per suspect, plus the first Next
    while fcsl.list_decisions(dataset, "csl"):
        fcsl.undo_review(dataset, "csl")


def test_flag_errors_with_a_new_threshold_changes_the_counts(app, page):
    base, dataset = app
    _open(page, f"{base}/datasets/{dataset.name}")
    from fiftyone_csl.plugin.runs.access import load_videos

    before = dataset.count("csl_errors.detections")
    # a threshold at which the run's scores give another number of segments
    tried = (0.5, 4.0, 12.0, 50.0)
    expected = {t: sum(len(v.segments) for v in load_videos(dataset, "csl", t).values()) for t in tried}
    threshold = next(t for t, n in expected.items() if n != before)
    dialog = _form(page, "CSL: flag errors")
    dialog.get_by_text("Now 1.79", exact=False).first.wait_for()  # the run's current threshold
    dialog.locator('input[type="number"]').first.fill(str(threshold))
    dialog.get_by_role("button", name="Execute").click()
    page.get_by_text("Suspect segments", exact=False).first.wait_for()
    dataset.reload()
    after = dataset.count("csl_errors.detections")
    assert after == expected[threshold] != before
    page.get_by_text(str(after), exact=True).first.wait_for()
    page.screenshot(path=os.path.join(SHOTS, "flag-errors-result.png"))
