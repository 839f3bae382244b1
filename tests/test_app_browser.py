"""End to end: ``rbnlp app`` on a test database, opened in headless Chromium (Debian's).

Playwright (PyPI) drives the system ``chromium`` through ``executable_path``; no browser is
downloaded. The test checks the leaderboard, a diff render, and that HTML/script injected in
an example text neither runs nor renders as markup.

Screenshots go to the test's tmp folder; with ``RBNLP_UPDATE_SCREENSHOTS=1`` they are also
copied to ``docs/leaderboard.png`` and ``docs/diff.png`` (the README's images).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from robustbench_nlp.db import Store

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--no-first-run"]
DOCS = Path(__file__).resolve().parents[1] / "docs"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                "(apt-get install chromium; .ci/run does this)")

GLOVE = {"embedding": {"name": "glove-6b-50d"}, "sentence_encoder": {"name": "USE-numpy"},
         "pos_tagger": {"name": "spacy"}}
XSS = ('<script>window.__pwned=1</script> the <img src=x onerror="window.__pwned=2"> film is '
       '[great](javascript:window.__pwned=3)')
# the synthetic runs of the screenshots: (run id, defense, ACC, AUA)
RUNS = [("demo-peaft", "peaft", 88.3, 41.0), ("demo-freelb", "freelb", 90.1, 23.0),
        ("demo-finetune", "finetune", 90.6, 12.0)]
PAIRS = [("a gripping , beautifully acted film", "a riveting , beautifully acted movie",
          "successful"),
         ("the plot is thin but the cast is charming", "the plot is thin but the cast is charming",
          "failed"),
         ("it 's a charming and often affecting journey", "it 's a charmed and often affecting "
          "voyage", "successful"),
         (XSS, XSS.replace(" film ", " movie "), "successful")]


def _fill(url: str) -> None:
    store = Store(url)
    for run_id, defense, acc, aua in RUNS:
        store.create_run(id=run_id, task="sst2", defense=defense, attack="textfooler",
                         model="minilm", seed=0, num_examples=len(PAIRS), config={},
                         trainable_params=23_000 if defense == "peaft" else 22_700_000,
                         train_seconds=100.0, resources=GLOVE, status="finished",
                         finished_at=datetime(2026, 11, 1, 12, tzinfo=timezone.utc))
        store.save_metrics(run_id, acc=acc, aua=aua, avg=(acc + aua) / 2, asr=100 - aua,
                           avg_queries=50.0, avg_perturbed_pct=12.0, degenerate=False)
        for i, (orig, adv, result) in enumerate(PAIRS):
            store.add_example(run_id, {
                "index": i, "original": (orig,), "adversarial": (adv,), "attacked_segment": None,
                "gold": 1, "pred_before": 1, "pred_after": 0 if result == "successful" else 1,
                "result": result, "queries": 20 + i, "num_words": len(orig.split()),
                "perturbed_words": 2 if result == "successful" else 0, "extra": {}})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 40.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"rbnlp app exited with status {proc.returncode}: "
                                 f"{proc.stdout.read()}")
        try:
            with urllib.request.urlopen(f"http://localhost:{port}/_stcore/health",
                                        timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(f"rbnlp app did not answer on port {port} within {timeout:.0f} s")


@pytest.fixture
def app_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'browser.db'}"
    _fill(url)
    port = _free_port()
    exe = Path(sys.executable).with_name("rbnlp")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "robustbench_nlp.cli"]
    proc = subprocess.Popen([*cmd, "app", "--db", url, "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _wait_healthy(proc, port)
        yield f"http://localhost:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_app_in_chromium(app_url, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{app_url}/?task=sst2&attack=textfooler")

            # leaderboard: one measured table (ranked by AUA) and its rows
            expect(page.get_by_text("Measured runs", exact=True)).to_be_visible(timeout=30_000)
            grid = page.get_by_test_id("stDataFrame").first
            expect(grid).to_be_visible()
            # the grid draws on a canvas; its accessible table mirrors the visible cells
            # (inside the <canvas>, so not "visible" to role locators)
            cells = grid.locator('td[role="gridcell"]')
            expect(cells.filter(has_text="finetune")).to_have_count(1, timeout=30_000)
            rows = [r.locator('td[role="gridcell"]').all_text_contents()[:3]
                    for r in grid.locator("tbody tr").all()]
            assert rows == [["1", "peaft", ""], ["2", "freelb", ""], ["3", "finetune", ""]]
            # the trade-off chart is drawn when its expander is opened
            expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(0)
            page.get_by_text("Trade-off: ACC vs AUA", exact=False).click()
            expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(1, timeout=30_000)
            expect(page.get_by_test_id("stVegaLiteChart").locator("canvas, svg").first
                   ).to_be_visible(timeout=30_000)
            page.get_by_text("Measured runs", exact=True).scroll_into_view_if_needed()
            shots["leaderboard"] = tmp_path / "leaderboard.png"
            page.screenshot(path=shots["leaderboard"])

            # per-example diffs of one run, chosen through the bound query parameter
            page.goto(f"{app_url}/?task=sst2&attack=textfooler&run=demo-peaft")
            page.get_by_role("tab", name="Per-example diffs").click()
            cards = page.locator(".rb-example")
            expect(cards).to_have_count(len(PAIRS), timeout=30_000)
            expect(cards.nth(0).locator("del")).to_have_text(["gripping", "film"])
            expect(cards.nth(0).locator("ins")).to_have_text(["riveting", "movie"])
            expect(cards.nth(1).locator("del, ins")).to_have_count(0)  # failed: unchanged

            # injected markup is literal text and never ran
            xss = cards.nth(3)
            expect(xss).to_contain_text("<script>window.__pwned=1</script>")
            expect(xss).to_contain_text('<img src=x onerror="window.__pwned=2">')
            expect(xss).to_contain_text("[great](javascript:window.__pwned=3)")
            assert xss.locator("script, img, a").count() == 0
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert dialogs == []

            cards.nth(3).scroll_into_view_if_needed()
            shots["diff"] = tmp_path / "diff.png"
            page.screenshot(path=shots["diff"])
        finally:
            browser.close()
    assert all(p.stat().st_size > 10_000 for p in shots.values())
    if os.environ.get("RBNLP_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        for name, p in shots.items():
            shutil.copyfile(p, DOCS / f"{name}.png")
