"""Drives the dashboard (/ui) of a running server in headless Chromium with Playwright and checks
what it shows. tests/tests/dashboard.rs starts the server, creates the workflow below through the
API and runs this script; it exits non-zero (an AssertionError with what was seen) on any mismatch.

    check.py URL [--token JWT] [--screenshot PATH]

The workflow (made by the Rust test): wf (root, targeted, tags app=dash) with children wf.1
(targeted) and wf.2 (resolved), grandchild wf.1.1 (app=dash, awaited by wf.1's task, listened to by
poll://any@watchers); decoys wg-decoy and a-other; a promise whose id and tag are HTML; a schedule.
"""

import argparse
import json
import os
import time
import urllib.request

from playwright.sync_api import sync_playwright

CHROMIUM = os.environ.get("RESONATE_CHROMIUM", "/usr/bin/chromium")
HTML_ID = "<img src=x onerror=alert(1)>"
WAIT = 10.0


def wait_for(what, probe, want):
    """Polls probe() until it equals want; fails with the last value after WAIT seconds."""
    deadline = time.monotonic() + WAIT
    seen = None
    while time.monotonic() < deadline:
        seen = probe()
        if seen == want:
            return
        time.sleep(0.1)
    raise AssertionError(f"{what}: expected {want!r}, the page shows {seen!r}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--token", default="")
    ap.add_argument("--screenshot", default="")
    args = ap.parse_args()
    base = args.url.rstrip("/")

    def api(kind, data):
        head = {"corrId": "check", "version": "2026-04-01"}
        if args.token:
            head["auth"] = args.token
        body = json.dumps({"kind": kind, "head": head, "data": data}).encode()
        with urllib.request.urlopen(urllib.request.Request(base + "/", body, method="POST")) as r:
            return json.load(r)

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM)
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        dialogs = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        # Refusals (401, the 404 of a prefix that is no id) are logged as failed loads; those are expected.
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" and not m.text.startswith("Failed to load resource") else None)

        def rows():
            return page.eval_on_selector_all("#view tr[data-id]", "rs => rs.map(r => r.dataset.id)")

        def status():
            return page.eval_on_selector("#status", "s => s.hidden ? '' : s.textContent")

        def search(route, **fields):
            page.click(f"#nav-{route}")
            page.wait_for_function("h => document.getElementById('search')?.dataset.key === h", arg=f"#{route}")
            for name in ("prefix", "state", "tags"):
                box = page.locator(f"#search [name={name}]")
                if box.count() == 0:
                    continue
                if box.evaluate("e => e.tagName") == "SELECT":
                    box.select_option(fields.get(name, ""))
                else:
                    box.fill(fields.get(name, ""))
            page.click("#search button[type=submit]")

        page.goto(base + "/ui")
        if args.token:
            # Without a token every read is refused, and the page says so.
            wait_for("the error without a token", lambda: "401" in status() and "Unauthorized" in status(), True)
            assert rows() == [], rows()
            page.fill("#token", args.token)
            page.click("#token-form button")
        wait_for("the status line", status, "")

        # Search by id prefix: the run of ids after the prefix ends at wg-decoy.
        search("promises", prefix="wf")
        wait_for("promises with prefix wf", rows, ["wf", "wf.1", "wf.1.1", "wf.2"])
        search("promises", prefix="wf", state="resolved")
        wait_for("resolved promises with prefix wf", rows, ["wf.2"])
        search("promises", tags="app=dash")
        wait_for("promises tagged app=dash", rows, ["wf", "wf.1.1"])
        search("promises", state="pending", tags="resonate:parent=wf")
        wait_for("pending children of wf (and wf, its own parent)", rows, ["wf", "wf.1"])
        # Ids and tags are shown as text, never as HTML.
        search("promises", prefix="<img")
        wait_for("the promise with an HTML id", rows, [HTML_ID])
        cell = page.locator("#view tr[data-id] td").first.inner_text()
        assert cell == HTML_ID, cell
        assert "<b>bold</b>" in page.locator("#view tr[data-id]").inner_text()
        assert page.locator("img, b").count() == 0, "data became markup"

        search("tasks", state="pending")
        wait_for("pending tasks", rows, ["wf", "wf.1"])
        search("tasks", prefix="wf.1")
        wait_for("tasks with prefix wf.1", rows, ["wf.1"])
        search("schedules", prefix="night")
        wait_for("schedules with prefix night", rows, ["nightly"])

        # One promise: its task, callbacks and listeners.
        search("promises", prefix="wf.1")
        wait_for("promises with prefix wf.1", rows, ["wf.1", "wf.1.1"])
        page.click('#view tr[data-id="wf.1.1"] a')
        wait_for("promise id", lambda: page.locator("#promise-id").all_inner_texts(), ["wf.1.1"])
        assert page.inner_text("#promise-state") == "pending"
        assert "app=dash" in page.inner_text("#promise-tags")
        assert page.inner_text("#task").startswith("No task"), page.inner_text("#task")
        assert page.locator("#callbacks li").all_inner_texts() == ["wf.1"]
        assert page.locator("#listeners li").all_inner_texts() == ["poll://any@watchers"]
        # Auto-refresh: settled through the API, the open page follows without a reload.
        answer = api("promise.settle", {"id": "wf.1.1", "state": "resolved", "value": {"data": "ImRvbmUi"}})
        assert answer["head"]["status"] == 200, answer
        wait_for("state after settling (auto-refresh)", lambda: page.inner_text("#promise-state"), "resolved")
        wait_for("callbacks after settling", lambda: page.inner_text("#callbacks"), "None.")
        assert '"done"' in page.inner_text("#promise"), "the value decodes from base64"

        page.goto(base + "/ui#promise/wf")
        wait_for("task of wf", lambda: page.locator("#task-state").all_inner_texts(), ["pending"])

        # The call tree under wf, nested by resonate:parent.
        page.click("#tree-link")
        page.wait_for_selector('#tree li[data-id="wf.1.1"]')
        parent = 'e => { const up = e.parentElement.closest("li"); return up ? up.dataset.id : null; }'
        nesting = {i: page.eval_on_selector(f'#tree li[data-id="{i}"]', parent) for i in ["wf", "wf.1", "wf.2", "wf.1.1"]}
        assert nesting == {"wf": None, "wf.1": "wf", "wf.2": "wf", "wf.1.1": "wf.1"}, nesting
        assert page.locator("#tree li").count() == 4
        assert page.eval_on_selector('#tree li[data-id="wf.2"] .state', "e => e.textContent") == "resolved"

        if args.screenshot:
            search("promises", prefix="wf")
            wait_for("promises with prefix wf", rows, ["wf", "wf.1", "wf.1.1", "wf.2"])
            page.wait_for_timeout(300)
            page.screenshot(path=args.screenshot)
        assert not dialogs, f"a dialog opened: {dialogs}"
        assert not errors, f"script errors: {errors}"
        browser.close()
    print("dashboard ok")


if __name__ == "__main__":
    main()
