"""Print how AdvGLUE dev examples match GLUE dev examples: the data behind the threshold.

For each task with an AdvGLUE split (sst2, rte, qnli) it prints

* a histogram of the best-match similarity (rapidfuzz ``fuzz.ratio`` on normalised text,
  exactly as :func:`robustbench_nlp.attacks.advglue.match_sources` computes it);
* how many examples reach the threshold (get a GLUE source) and the similarity gap around it;
* label agreement between each AdvGLUE example and its best match, above and below the
  threshold (AdvGLUE keeps the source's label, so a real source agrees; a chance match agrees
  about half the time);
* the chance ceiling: the highest similarity to a dev example *other than* the best match
  that shares no segment with it (what an unrelated GLUE example reaches by chance).

Usage::

    python scripts/advglue_matching.py [--threshold 60] [--data-dir DIR] [--tasks sst2 rte qnli]
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

BINS = [0, 40, 45, 50, 55, 60, 65, 70, 75, 80, 85, 90, 95, 100.001]


def chance_ceiling(scores: np.ndarray, best: np.ndarray, dev_segments: list[tuple[str, ...]]
                   ) -> np.ndarray:
    """Per AdvGLUE example: the best similarity among dev rows that share no normalised
    segment with its best match (so repeated QNLI questions / RTE premises do not count)."""
    out = np.zeros(len(best), dtype=np.float32)
    for i, j in enumerate(best):
        same = np.array([any(a == b for a, b in zip(seg, dev_segments[j]))
                         for seg in dev_segments])
        row = np.where(same, -1.0, scores[i])
        out[i] = row.max()
    return out


def report(task_name: str, threshold: float, data_dir: str | None) -> dict:
    from rapidfuzz import fuzz, process

    from robustbench_nlp.attacks.advglue import SEGMENT_JOIN, load_advglue, normalize
    from robustbench_nlp.tasks import get_task, load_split

    task = get_task(task_name)
    dev, dev_src = load_split(task, "validation", data_dir)
    adv, adv_src = load_advglue(task, data_dir)
    cols = list(task.text_columns)
    dev_segments = [tuple(normalize(str(t)) for t in row)
                    for row in dev[cols].itertuples(index=False)]
    adv_joined = [SEGMENT_JOIN.join(normalize(str(t)) for t in row)
                  for row in adv[cols].itertuples(index=False)]
    scores = process.cdist(adv_joined, [SEGMENT_JOIN.join(s) for s in dev_segments],
                           scorer=fuzz.ratio, dtype=np.float32, workers=1)
    best = scores.argmax(axis=1)
    sim = scores.max(axis=1)
    agree = dev["label"].to_numpy()[best] == adv["label"].to_numpy()
    ceiling = chance_ceiling(scores, best, dev_segments)
    above = sim >= threshold

    print(f"\n== {task.name}: {len(adv)} AdvGLUE examples ({adv_src}) vs {len(dev)} GLUE dev "
          f"({dev_src})")
    hist, _ = np.histogram(sim, bins=BINS)
    width = max(hist.max(), 1)
    for lo, hi, n in zip(BINS[:-1], BINS[1:], hist):
        label = f"[{lo:>3.0f}, {min(hi, 100):>3.0f}{']' if hi > 100 else ')'}"
        print(f"  {label} {n:>4d} {'#' * int(round(40 * n / width))}")
    below_max = sim[~above].max() if (~above).any() else float("nan")
    above_min = sim[above].min() if above.any() else float("nan")
    print(f"  with a source (similarity >= {threshold:g}): {int(above.sum())} of {len(adv)}; "
          f"highest below {below_max:.1f}, lowest at/above {above_min:.1f}")
    print(f"  label agrees with best match: >= threshold {int(agree[above].sum())}/"
          f"{int(above.sum())}, below {int(agree[~above].sum())}/{int((~above).sum())}")
    print(f"  chance ceiling (best non-matching dev example): max {ceiling.max():.1f}, "
          f"95th percentile {np.percentile(ceiling, 95):.1f}")
    return {"task": task.name, "n": len(adv), "matched": int(above.sum()),
            "agree_above": int(agree[above].sum()), "agree_below": int(agree[~above].sum()),
            "below": int((~above).sum()), "ceiling_max": float(ceiling.max())}


def main(argv: list[str] | None = None) -> int:
    from robustbench_nlp.attacks.advglue import DEFAULT_THRESHOLD
    from robustbench_nlp.tasks import TASKS

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--tasks", nargs="+", default=[t for t, v in TASKS.items() if v.advglue])
    args = p.parse_args(argv)
    rows = [report(t, args.threshold, args.data_dir) for t in args.tasks]
    print("\ntask   examples  with source  label agreement (>= thr / < thr)  chance ceiling")
    for r in rows:
        print(f"{r['task']:<6} {r['n']:>8}  {r['matched']:>11}  "
              f"{r['agree_above']:>4}/{r['matched']:<4} {r['agree_below']:>4}/{r['below']:<4}"
              f"{'':>14}{r['ceiling_max']:>6.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
