"""How fast the leaderboard app opens a large database (budget: leaderboard shown in < 2 s).

Fills a SQLite database with ``--runs`` finished runs (4 tasks, 2 attacks, 2 attack
protocols per task × attack, 5 defenses with 2 hyperparameter settings and up to 3 seeds each,
some degenerate runs, per-epoch curves, the robustness metrics and word-share curves) and
``--examples`` attacked-example rows through bulk inserts, and a small one (1 run, 10
examples), then prints, side by side for both:

1. the leaderboard query alone (open the store, read runs + metrics, rank one task × attack
   and split it into protocol tables with pooled configurations);
2. the Streamlit script's own time (run through ``streamlit.testing.v1.AppTest``, timed inside
   the script): to the first leaderboard table and to its end, with cold and warm caches;
3. with ``--browser``: ``rbnlp app`` in headless Chromium (Debian's, via playwright), from
   navigation to the first leaderboard row drawn: the first visit (empty browser profile,
   cold server caches), and the median of four later visits in the same browser profile
   (a returning user: Streamlit's JavaScript comes from the browser's HTTP and code caches);
   the server's start is not counted. A bare Streamlit page holding one 2-row table is timed
   the same way as the floor that Streamlit's front end sets.

and, for reference, the time to read every example row (the app reads one run's rows only
when the per-example tab asks for it).

Usage::

    python benchmarks/app_load.py [--runs 200] [--examples 50000] [--browser]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

BUDGET_S = 2.0
TASKS = ("sst2", "rte", "mrpc", "qnli")
DEFENSES = ("peaft", "prompt-tuning", "finetune", "freelb", "rose")
LRS = (0.01, 0.03)
RESOURCES = ({"embedding": {"name": "glove-6b-50d"}, "sentence_encoder": {"name": "USE-numpy"},
              "pos_tagger": {"name": "spacy"}},
             {"embedding": {"name": "paragramcf"}, "sentence_encoder": {"name": "USE-tfhub"},
              "pos_tagger": {"name": "nltk"}})
WORDS = ("the film is a gripping beautifully acted story with charming cast but thin plot and "
         "dull lifeless jokes that land often").split()


def fill(url: str, n_runs: int, n_examples: int, seed: int = 0) -> None:
    """Bulk-insert ``n_runs`` finished runs and ``n_examples`` example rows (spread evenly).

    Run ``i`` has task ``TASKS[i % 4]``, attack ``advglue`` when ``i % 3 == 2``, resources
    (and so protocol) ``RESOURCES[(i // 4) % 2]``, defense ``DEFENSES[(i // 8) % 5]`` with
    learning rate ``LRS[(i // 40) % 2]`` and seed ``i // 80``: about 12 protocol tables of
    10-20 runs, their configurations pooling 1-3 seeds; every 17th run is degenerate."""
    from sqlalchemy import insert

    from robustbench_nlp.attacks.protocol import example_set, protocol_hash, protocol_record
    from robustbench_nlp.db import Store
    from robustbench_nlp.db.models import Example, Metrics, Run

    rng = random.Random(seed)
    store = Store(url)
    t0 = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runs, metrics, examples = [], [], []
    per_run = n_examples // n_runs
    for i in range(n_runs):
        rid = f"bench{i:05d}"
        task = TASKS[i % len(TASKS)]
        attack = "advglue" if i % 3 == 2 else "textfooler"
        res = RESOURCES[(i // 4) % 2]
        n_att = per_run + (1 if i < n_examples % n_runs else 0)
        proto = protocol_record(attack, {"max_candidates": 50, "query_budget": None}, res,
                                example_set(task, "validation", range(max(per_run, 1))))
        defense = DEFENSES[(i // 8) % len(DEFENSES)]
        runs.append(dict(id=rid, status="finished", task=task, defense=defense,
                         attack=attack, model="minilm", seed=i // 80,
                         num_examples=n_att, backbone={}, versions={}, resources=res, data={},
                         config={"run": {"seed": i // 80, "model": "minilm"},
                                 "defense": {"lr": LRS[(i // 40) % 2], "epochs": 3}},
                         protocol=proto, protocol_hash=protocol_hash(proto),
                         trainable_params=23_000 + i,
                         train_seconds=rng.uniform(50, 500), train_stats={
                             "epochs": [{"epoch": e, "acc": rng.uniform(80, 92),
                                         "aua": rng.uniform(10, 50)} for e in (1, 2, 3)]},
                         created_at=t0, updated_at=t0, finished_at=t0 + timedelta(hours=i)))
        acc, aua = rng.uniform(80, 95), rng.uniform(5, 60)
        failed = round(aua * n_att / 100)
        curve = [[round(0.05 * k, 2), acc - (acc - aua) * k / 10] for k in range(11)]
        metrics.append(dict(run_id=rid, acc=acc, aua=100.0 * failed / max(n_att, 1),
                            avg=(acc + aua) / 2, eval_examples=872, attacked=n_att,
                            failed=failed, successful=n_att - failed, skipped=0,
                            attacked_clean_acc=acc, asr=rng.uniform(30, 90),
                            avg_queries=rng.uniform(20, 200),
                            avg_perturbed_pct=rng.uniform(5, 25), degenerate=i % 17 == 16,
                            pred_distribution={}, gold_distribution={},
                            aua_at_10=curve[2][1], aua_at_30=curve[6][1],
                            curve_area=sum(p[1] for p in curve) / len(curve),
                            invalid_swap_rate=rng.uniform(0, 20),
                            robustness={"word_share_curve": curve,
                                        "invalid_swaps": {"successful": n_att - failed,
                                                          "invalid": 1, "top_swaps": [
                                                              ["good", "bad", 1]]}}))
        for j in range(n_att):
            words = [rng.choice(WORDS) for _ in range(20)]
            adv = list(words)
            adv[3] = rng.choice(WORDS)
            examples.append(dict(run_id=rid, idx=j, original=[" ".join(words)],
                                 adversarial=[" ".join(adv)], attacked_segment=None, gold=1,
                                 pred_before=1, pred_after=rng.choice((0, 1)),
                                 result=rng.choice(("successful", "failed", "skipped")),
                                 queries=rng.randrange(200), num_words=20, perturbed_words=1,
                                 extra={}))
    with store.session() as s:
        s.execute(insert(Run), runs)
        s.execute(insert(Metrics), metrics)
        for k in range(0, len(examples), 5000):
            s.execute(insert(Example), examples[k:k + 5000])
    store.engine.dispose()


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


#: the app script wrapped with timers: seconds to the first st.dataframe call (the first
#: leaderboard table) and to the end of the script, stored in session_state["_bench"]
TIMED_SCRIPT = """
import time
t0 = time.perf_counter()
import streamlit as st
marks = {}
orig = st.dataframe
def timed_dataframe(*a, **k):
    marks.setdefault("first_table", time.perf_counter() - t0)
    return orig(*a, **k)
st.dataframe = timed_dataframe
try:
    from robustbench_nlp.app.ui import main
    main()
finally:
    st.dataframe = orig
marks["script"] = time.perf_counter() - t0
st.session_state["_bench"] = marks
"""


def script_times(url: str) -> dict:
    """Server-side seconds of one run of the app script on ``url`` (AppTest; its own
    start-up, e.g. scanning installed packages for components, is not counted)."""
    from streamlit.testing.v1 import AppTest

    os.environ["RBNLP_DB"] = url
    at = AppTest.from_string(TIMED_SCRIPT, default_timeout=120).run()
    assert not at.exception, at.exception
    assert any("AUA 95% CI" in d.value.columns for d in at.dataframe), "no leaderboard drawn"
    return dict(at.session_state["_bench"])


BARE_PAGE = "import streamlit as st\nst.dataframe({'a': [1, 2]})\n"


def browser_times(url: str | None) -> tuple[float, float] | None:
    """Seconds from navigation to the first leaderboard row in headless Chromium: the first
    visit of a fresh ``rbnlp app`` server in an empty browser profile (cold caches), and the
    median of four later visits in the same profile (warm browser and server caches); None
    when chromium or playwright is missing. Server start is not counted. ``url=None`` times a
    bare Streamlit page holding one 2-row table instead (the baseline)."""
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        return None
    if chromium is None:
        return None
    import socket
    import urllib.request

    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    if url is None:
        bare = Path(tempfile.mkdtemp(prefix="rbnlp-bare-")) / "bare.py"
        bare.write_text(BARE_PAGE)
        cmd = ["-m", "streamlit", "run", str(bare), "--server.headless", "true",
               "--browser.gatherUsageStats", "false", "--client.toolbarMode", "viewer",
               "--server.port", str(port)]
    else:
        cmd = ["-m", "robustbench_nlp.cli", "app", "--db", url, "--port", str(port)]
    proc = subprocess.Popen([sys.executable, *cmd], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        for _ in range(300):
            try:
                urllib.request.urlopen(f"http://localhost:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.2)
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]
        out = []
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=chromium, headless=True, args=flags)
            profile = b.new_context()  # one profile: later visits reuse its caches
            for _ in range(5):
                page = profile.new_page()
                t = time.perf_counter()
                page.goto(f"http://localhost:{port}/?task=sst2&attack=textfooler")
                # the grid's accessible table (inside its <canvas>) fills once rows are drawn
                expect(page.get_by_test_id("stDataFrame").first.locator('td[role="gridcell"]')
                       .first).to_be_attached(timeout=60_000)
                out.append(time.perf_counter() - t)
                page.close()
            b.close()
        later = sorted(out[1:])
        return out[0], (later[1] + later[2]) / 2
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--examples", type=int, default=50_000)
    ap.add_argument("--browser", action="store_true", help="also time headless Chromium")
    args = ap.parse_args()
    if args.runs < 1 or args.examples < 0:
        ap.error("--runs must be >= 1 and --examples >= 0")

    tmp = Path(tempfile.mkdtemp(prefix="rbnlp-bench-"))
    try:
        small, large = f"sqlite:///{tmp / 'small.db'}", f"sqlite:///{tmp / 'large.db'}"
        fill(small, 1, 10)
        t_fill, _ = _timed(lambda: fill(large, args.runs, args.examples))

        import streamlit as st

        from robustbench_nlp.app.queries import examples_frame
        from robustbench_nlp.db import Store
        from robustbench_nlp.leaderboard import leaderboard, protocol_tables

        res: dict[str, list[float]] = {}

        def add(name, a, b):
            res.setdefault(name, []).extend([a, b])

        def query(u):
            runs = Store(u).runs_frame()
            return protocol_tables(leaderboard(task="sst2", attack="textfooler", runs=runs), runs)

        query(small)  # imports once (scipy.stats for the Wilson intervals: ~1 s), untimed
        q = [_timed(lambda u=u: query(u)) for u in (small, large)]
        add("leaderboard query (open store, read runs, protocol tables)", q[0][0], q[1][0])
        script_times(small)  # imports the app modules once, so neither side pays for them
        cold, warm = [], []
        for u in (small, large):
            st.cache_data.clear()
            st.cache_resource.clear()
            cold.append(script_times(u))
            warm.append(script_times(u))
        add("app script, cold caches: to first leaderboard table", cold[0]["first_table"],
            cold[1]["first_table"])
        add("app script, cold caches: whole script", cold[0]["script"],
            cold[1]["script"])
        add("app script, warm caches: whole script", warm[0]["script"], warm[1]["script"])
        if args.browser:
            bt = [browser_times(u) or (float("nan"),) * 2 for u in (small, large, None)]
            add("Chromium, first visit: navigation -> first leaderboard row", bt[0][0], bt[1][0])
            add("Chromium, later visits (median of 4): same", bt[0][1], bt[1][1])
        t_all, n = _timed(lambda: sum(len(examples_frame(Store(large), f"bench{i:05d}"))
                                      for i in range(args.runs)))
        size = (tmp / "large.db").stat().st_size / 2**20
        print(f"large database: {args.runs} runs, {n} example rows ({size:.1f} MiB SQLite, "
              f"filled in {t_fill:.1f} s); small database: 1 run, 10 example rows; "
              f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
        w = max(len(k) for k in res)
        print(f"{'seconds':<{w}}  {'small DB':>8}  {'large DB':>8}  {'large/small':>11}  "
              f"{'large/2 s budget':>16}")
        for name, (a, b) in res.items():
            print(f"{name:<{w}}  {a:8.3f}  {b:8.3f}  {b / a:11.2f}  {b / BUDGET_S:16.2f}")
        if args.browser:
            print(f"baseline, a bare Streamlit page with one 2-row table in the same browser: "
                  f"first visit {bt[2][0]:.3f} s, later visits (median of 4) {bt[2][1]:.3f} s")
        print(f"(not done by the app on open) reading all {n} example rows: {t_all:.3f} s")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
