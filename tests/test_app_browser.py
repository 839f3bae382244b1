"""End to end: ``rbnlp app`` on a copy of the study database, opened in headless Chromium.

Playwright (PyPI) drives the system ``chromium`` through ``executable_path``; no browser is
downloaded. The database is a copy of ``docs/study.db`` (the real study runs; runs stored
before protocols existed are rescored first, ``rbnlp rescore``) plus one synthetic run of a
made-up attack ``injection-probe`` whose example holds HTML/script/markdown. The test checks
the leaderboard (one table per protocol, its configuration rows in rank order), that a deep
link to the diffs of a run that is *not* the top-ranked one opens that run and keeps
``run=`` in the URL, the polarity-reversing swap marks, the comparison view, and that the
injected markup neither runs nor renders as markup.

Screenshots go to the test's tmp folder; with ``RBNLP_UPDATE_SCREENSHOTS=1`` they are also
copied to ``docs/leaderboard.png`` and ``docs/diff.png`` (the README's images).
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import sqlite3
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
STUDY_DB = DOCS / "study.db"
#: the run of the per-example diff screenshot: the PEAFT default run of seed 0 (its
#: configuration ranks 4th or lower in sst2 × textfooler); another non-first run is used
#: when the study no longer holds it
DEEP_LINK_RUN = "66edba584ea8"
PROBE = "injection-probe"  # the synthetic attack holding the injected markup

pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                       "(apt-get install chromium; .ci/run does this)"),
    pytest.mark.skipif(not STUDY_DB.is_file(), reason="docs/study.db is missing")]

XSS = ('<script>window.__pwned=1</script> the <img src=x onerror="window.__pwned=2"> film is '
       '[great](javascript:window.__pwned=3)')


def _copy_study(path: Path) -> str:
    """A copy of docs/study.db at ``path`` (SQLite's backup API: consistent even while the
    study writes to it, and the original is opened read-only), upgraded and with every
    sst2 run that lacks a protocol rescored; plus the injection probe. Returns its URL."""
    src = sqlite3.connect(f"file:{STUDY_DB}?mode=ro", uri=True)
    dst = sqlite3.connect(path)
    with dst:
        src.backup(dst)
    src.close()
    dst.close()
    url = f"sqlite:///{path}"
    store = Store(url)
    runs = store.runs_frame()
    todo = runs.loc[(runs["status"] == "finished") & (runs["task"] == "sst2")
                    & runs["protocol_hash"].isna(), "id"].tolist()
    if todo:
        from robustbench_nlp.rescore import rescore

        rescore(store, todo, echo=lambda s: None)
    store.create_run(id="probe-xss", task="sst2", defense="finetune", attack=PROBE,
                     model="minilm", seed=0, num_examples=1, config={}, trainable_params=1,
                     train_seconds=1.0, resources={}, status="finished",
                     finished_at=datetime(2026, 11, 1, 12, tzinfo=timezone.utc))
    store.save_metrics("probe-xss", acc=90.0, aua=0.0, avg=45.0, asr=100.0, avg_queries=20.0,
                       avg_perturbed_pct=10.0, degenerate=False, eval_examples=1, attacked=1,
                       failed=0)
    store.add_example("probe-xss", {
        "index": 0, "original": (XSS,), "adversarial": (XSS.replace(" film ", " movie "),),
        "attacked_segment": None, "gold": 1, "pred_before": 1, "pred_after": 0,
        "result": "successful", "queries": 20, "num_words": len(XSS.split()),
        "perturbed_words": 1, "extra": {}})
    store.engine.dispose()
    return url


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


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """(database URL, the sst2 × textfooler protocol tables) of the study copy."""
    from robustbench_nlp.leaderboard import leaderboard, protocol_tables

    url = _copy_study(tmp_path_factory.mktemp("study") / "study.db")
    runs = Store(url).runs_frame()
    tables = protocol_tables(leaderboard(task="sst2", attack="textfooler", runs=runs), runs)
    return url, tables


@pytest.fixture
def app_url(study):
    url, _ = study
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


def _grid_rows(grid, n: int = 3) -> list[list[str]]:
    """The first ``n`` cells of each row the grid drew (its accessible table mirrors the
    visible cells inside the <canvas>, so they are not "visible" to role locators)."""
    return [r.locator('td[role="gridcell"]').all_text_contents()[:n]
            for r in grid.locator("tbody tr").all()]


def test_app_in_chromium(app_url, study, tmp_path):
    from playwright.sync_api import expect, sync_playwright

    from robustbench_nlp.app.queries import run_order

    url, tables = study
    top = tables[0]
    ranked = top.ranked
    order = run_order(tables)
    target = DEEP_LINK_RUN if DEEP_LINK_RUN in order[1:] else order[len(order) // 2]
    first = order[0]
    assert target != first
    n_examples = int(top.runs.set_index("run id").at[target, "attacked"]) \
        if target in set(top.runs["run id"]) else None
    shots = {}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1600, "height": 1000})
            dialogs: list[str] = []
            page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
            page.goto(f"{app_url}/?task=sst2&attack=textfooler")

            # leaderboard: one section per protocol, the largest first, configurations in
            # rank order
            heading = page.get_by_text(f"Protocol {top.protocol_hash}", exact=True)
            expect(heading).to_be_visible(timeout=30_000)
            for t in tables[1:]:
                label = f"Protocol {t.protocol_hash}" if t.protocol_hash else \
                    "Protocol not recorded"
                expect(page.get_by_text(label, exact=True)).to_be_visible()
            grid = page.get_by_test_id("stDataFrame").first
            expect(grid).to_be_visible()
            cells = grid.locator('td[role="gridcell"]')
            expect(cells.filter(has_text=ranked["defense"].iloc[0]).first).to_be_attached(
                timeout=30_000)
            rows = _grid_rows(grid, 2)
            want = [[str(int(r)), d] for r, d in zip(ranked["rank"], ranked["defense"])]
            assert rows == want[:len(rows)] and len(rows) >= min(len(want), 5)
            # the robustness curves are drawn when their expander is opened
            expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(0)
            page.get_by_text("Robustness curves: AUA vs share of words changed").first.click()
            expect(page.get_by_test_id("stVegaLiteChart")).to_have_count(1, timeout=30_000)
            expect(page.get_by_test_id("stVegaLiteChart").locator("canvas, svg").first
                   ).to_be_visible(timeout=30_000)
            page.set_viewport_size({"width": 1600, "height": 1450})  # table and chart
            heading.scroll_into_view_if_needed()
            page.mouse.wheel(0, -120)
            page.wait_for_timeout(800)
            shots["leaderboard"] = tmp_path / "leaderboard.png"
            page.screenshot(path=shots["leaderboard"])
            page.set_viewport_size({"width": 1600, "height": 1000})

            # the README's deep link to a run that is not the top-ranked one
            page.goto(f"{app_url}/?task=sst2&attack=textfooler&view=Per-example+diffs"
                      f"&run={target}")
            cards = page.locator(".rb-example")
            # the first diffs view loads the opinion lexicon (and textattack's word split)
            expect(cards.first).to_be_visible(timeout=120_000)
            caption = (f"{n_examples} of {n_examples} attacked examples of run {target}"
                       if n_examples else f"attacked examples of run {target}")
            expect(page.get_by_text(caption)).to_be_visible()
            expect(page.get_by_role("combobox", name="Run")).to_have_value(
                re.compile(rf"^{target} · "))
            ex = Store(url).examples(target)[0]  # the diffs shown are the target run's own
            expect(cards.first.locator(".rb-meta")).to_contain_text(
                f"{ex['queries']} queries · {ex['perturbed_words']}/{ex['num_words']} words "
                "perturbed")
            page.wait_for_timeout(1000)  # the URL is written back after the script run
            assert f"run={target}" in page.url and "view=Per-example+diffs" in page.url
            assert f"run={first}" not in page.url
            flips = page.locator(".rb-example .rb-flip")
            marked = page.get_by_text("Outlined in amber: polarity-reversing swaps")
            if marked.count():  # the lexicon loaded: the page's reversing swaps are marked
                expect(flips.first).to_be_visible()
                card = cards.filter(has=page.locator(".rb-flip")).first
            else:
                expect(page.get_by_text("Polarity-reversing swaps are not marked")
                       ).to_be_visible()
                card = cards.first
            expect(card.locator("del").first).to_be_visible()
            # the screenshot: the caption explaining the marks, then the first cards
            page.set_viewport_size({"width": 1600, "height": 1450})
            page.get_by_text("Word diff: removed words struck through").scroll_into_view_if_needed()
            page.mouse.wheel(0, 300)
            page.wait_for_timeout(800)
            shots["diff"] = tmp_path / "diff.png"
            page.screenshot(path=shots["diff"])
            page.set_viewport_size({"width": 1600, "height": 1000})

            # the comparison of that run with the top-ranked one, deep-linked
            page.goto(f"{app_url}/?task=sst2&attack=textfooler&view=Compare&a={first}"
                      f"&b={target}")
            expect(page.get_by_text("Examples where the runs differ", exact=False)
                   ).to_be_visible(timeout=60_000)
            expect(page.get_by_text("exact McNemar", exact=False)).to_be_visible()
            assert f"a={first}" in page.url and f"b={target}" in page.url

            # injected markup is literal text and never ran
            page.goto(f"{app_url}/?task=sst2&attack={PROBE}&view=Per-example+diffs")
            xss = page.locator(".rb-example").first
            expect(xss).to_be_visible(timeout=60_000)
            expect(xss).to_contain_text("<script>window.__pwned=1</script>")
            expect(xss).to_contain_text('<img src=x onerror="window.__pwned=2">')
            expect(xss).to_contain_text("[great](javascript:window.__pwned=3)")
            expect(xss.locator("del")).to_have_text(["film"])
            expect(xss.locator("ins")).to_have_text(["movie"])
            assert xss.locator("script, img, a").count() == 0
            assert page.evaluate("typeof window.__pwned") == "undefined"
            assert dialogs == []
        finally:
            browser.close()
    assert all(p.stat().st_size > 10_000 for p in shots.values())
    if os.environ.get("RBNLP_UPDATE_SCREENSHOTS") == "1":
        DOCS.mkdir(exist_ok=True)
        for name, p in shots.items():
            shutil.copyfile(p, DOCS / f"{name}.png")
