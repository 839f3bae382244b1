"""Paired comparison of two finished runs, example by example (``rbnlp compare``).

Two runs attacked under one protocol (:mod:`robustbench_nlp.attacks.protocol`) attacked the
same examples, so their AUAs are paired proportions: on each example (joined on its index in
the evaluation split, ``examples.idx``) each run is *robust* or not. As in
:mod:`robustbench_nlp.metrics`, an example is robust when the attack on it ``failed``;
``successful`` and ``skipped`` (already misclassified) examples are not robust, so
AUA = robust / attacked. The comparison tabulates the four combinations, and gives

* each run's AUA with its Wilson 95% interval (:func:`~robustbench_nlp.stats.wilson_interval`),
* the difference AUA_A − AUA_B (percentage points) with Newcombe's paired 95% interval
  (:func:`~robustbench_nlp.stats.paired_difference_interval`),
* the exact McNemar p-value (:func:`~robustbench_nlp.stats.mcnemar_exact`), which only the
  examples where the runs disagree decide, and the lists of those examples.

Runs of different tasks or protocols are refused with a one-line :class:`ConfigError` that
names the protocol fields that differ. ``shared_indices=True`` accepts runs whose protocols
differ only in the attacked example set (e.g. 100 vs 200 examples) and compares them on the
indices both attacked.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field

from robustbench_nlp.attacks.protocol import (describe_protocol, example_set, index_ranges,
                                              protocol_differences, protocol_hash,
                                              run_protocol)
from robustbench_nlp.errors import ConfigError

from .stats import mcnemar_exact, paired_difference_interval, wilson_interval

#: significance level of the one-line answer
ALPHA = 0.05
#: output formats of :func:`format_comparison`
FORMATS = ("text", "markdown", "json")
#: at most this many differing protocol fields are named in an error message
MAX_NAMED_FIELDS = 8
#: protocol fields that ``shared_indices`` lets differ (the attacked example set; the task and
#: the split must still agree, or the indices would name different sentences)
SHARED_OK = ("examples.count", "examples.indices", "examples.indices_sha256")


@dataclass
class RunSide:
    """One of the two compared runs.

    Attributes:
        id, defense, model, seed: the run's columns.
        protocol_hash: the hash of the run's own protocol (stored, else computed).
        attacked: example rows the run has (all of them, compared or not).
        compared: of those, the examples in the comparison.
        robust: compared examples on which the attack failed.
        aua_pct: ``100 · robust / compared`` (percent).
        aua_low_pct, aua_high_pct: its Wilson 95% interval (percent).
    """

    id: str
    defense: str
    model: str
    seed: int
    protocol_hash: str
    attacked: int
    compared: int
    robust: int
    aua_pct: float
    aua_low_pct: float
    aua_high_pct: float


@dataclass
class Comparison:
    """The paired comparison of runs A and B (:func:`compare_runs`).

    Attributes:
        a, b: the two runs (:class:`RunSide`).
        task: their task.
        protocol: the protocol record the comparison is under; with ``shared_indices`` its
            example set is the shared indices.
        protocol_hash: that record's hash (the runs' stored hash when they share one).
        shared_indices: whether the comparison was restricted to the shared indices.
        n: compared examples.
        both, only_a, only_b, neither: examples robust under both runs, A only, B only, none.
        diff_points: ``AUA_A − AUA_B`` in percentage points.
        diff_low_points, diff_high_points: its Newcombe (1998) 95% interval, in points.
        p_value: two-sided exact McNemar p-value (``only_a`` vs ``only_b``).
        only_a_indices, only_b_indices: sorted ``examples.idx`` of the examples robust under
            A only / B only.
        confidence: coverage of the intervals.
    """

    a: RunSide
    b: RunSide
    task: str
    protocol: dict
    protocol_hash: str
    shared_indices: bool
    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    diff_points: float
    diff_low_points: float
    diff_high_points: float
    p_value: float
    only_a_indices: list[int] = field(default_factory=list)
    only_b_indices: list[int] = field(default_factory=list)
    confidence: float = 0.95

    @property
    def significant(self) -> bool:
        """Whether the McNemar p-value is below :data:`ALPHA` (5%)."""
        return self.p_value < ALPHA

    def answer(self) -> str:
        """The one-line answer, e.g. ``A is more robust than B (p = 0.003)``."""
        p = format_p(self.p_value)
        if not self.significant:
            return f"no significant difference at the {ALPHA:.0%} level ({p})"
        better, worse = ("A", "B") if self.diff_points > 0 else ("B", "A")
        return f"{better} is more robust than {worse} ({p})"

    def note(self) -> str:
        """``compared on the N indices both runs attacked ...`` (shared-index comparisons),
        else ``""``."""
        if not self.shared_indices:
            return ""
        return (f"compared on the {self.n} indices both runs attacked (A attacked "
                f"{self.a.attacked}, B attacked {self.b.attacked})")

    def to_dict(self) -> dict:
        """All fields (percentages as ``*_pct``, differences as ``*_points``) plus
        ``significant``, ``answer``, ``note`` and ``protocol_description``."""
        d = asdict(self)
        d.update(significant=self.significant, answer=self.answer(), note=self.note(),
                 protocol_description=describe_protocol(self.protocol))
        return d


def format_p(p: float) -> str:
    """``p = 0.42`` (2 decimals), ``p = 0.003`` (3 decimals below 0.1), ``p < 0.001``."""
    if p < 0.001:
        return "p < 0.001"
    return f"p = {p:.3f}" if p < 0.1 else f"p = {p:.2f}"


def _protocol_of(run, examples: list[dict]) -> dict:
    if run.protocol:
        return dict(run.protocol)
    return run_protocol(run.attack, run.task, (run.config or {}).get("attack"), run.resources,
                        [e["index"] for e in examples])


def _fields(names: list[str]) -> str:
    shown = ", ".join(names[:MAX_NAMED_FIELDS])
    more = len(names) - MAX_NAMED_FIELDS
    return shown + (f" and {more} more" if more > 0 else "")


def compare_runs(store, run_a: str, run_b: str, shared_indices: bool = False,
                 confidence: float = 0.95) -> Comparison:
    """Compare two finished runs example by example.

    Args:
        store: a :class:`~robustbench_nlp.db.store.Store`.
        run_a, run_b: run ids (A and B; the difference is A − B).
        shared_indices: allow protocols that differ only in the attacked example set
            (:data:`SHARED_OK`) and compare on the indices both runs attacked.
        confidence: coverage of the intervals (the one-line answer tests at 5% regardless).

    Returns:
        :class:`Comparison`.

    Raises:
        ConfigError: an unknown run id, a run that is not ``finished``, runs of different
            tasks, runs of different protocols (naming the differing fields), runs of one
            protocol whose example rows differ (without ``shared_indices``), or no index in
            common.
    """
    runs = [store.get_run(run_a), store.get_run(run_b)]
    for run in runs:
        if run.status != "finished":
            raise ConfigError(f"run {run.id} is not finished (status {run.status!r}); only "
                              "finished runs can be compared")
    ra, rb = runs
    if ra.task != rb.task:
        raise ConfigError(f"runs {ra.id} and {rb.id} are of different tasks "
                          f"({ra.task}, {rb.task})")
    ex_a, ex_b = store.examples(ra.id), store.examples(rb.id)
    pa, pb = _protocol_of(ra, ex_a), _protocol_of(rb, ex_b)
    diffs = protocol_differences(pa, pb)
    blocking = [d for d in diffs if not (shared_indices and d in SHARED_OK)]
    if blocking:
        hint = ""
        if not shared_indices and all(d in SHARED_OK for d in diffs):
            hint = ", or pass --shared-indices to compare on the indices both runs attacked"
        raise ConfigError(f"runs {ra.id} and {rb.id} were attacked under different protocols "
                          f"(differ in: {_fields(blocking)}); compare runs of one protocol"
                          + hint)
    robust_a = {int(e["index"]): e["result"] == "failed" for e in ex_a}
    robust_b = {int(e["index"]): e["result"] == "failed" for e in ex_b}
    if shared_indices:
        indices = sorted(set(robust_a) & set(robust_b))
        if not indices:
            raise ConfigError(f"runs {ra.id} and {rb.id} attacked no example index in common")
    else:
        if set(robust_a) != set(robust_b):
            only = len(set(robust_a) ^ set(robust_b))
            raise ConfigError(f"runs {ra.id} and {rb.id} have one protocol but their stored "
                              f"examples differ ({only} indices attacked by one run only); "
                              "pass --shared-indices to compare on the indices both attacked")
        indices = sorted(robust_a)
        if not indices:
            raise ConfigError(f"runs {ra.id} and {rb.id} have no attacked examples")

    both = only_a = only_b = neither = 0
    only_a_idx: list[int] = []
    only_b_idx: list[int] = []
    for i in indices:
        x, y = robust_a[i], robust_b[i]
        if x and y:
            both += 1
        elif x:
            only_a += 1
            only_a_idx.append(i)
        elif y:
            only_b += 1
            only_b_idx.append(i)
        else:
            neither += 1
    n = len(indices)

    hash_a = ra.protocol_hash or protocol_hash(pa)
    hash_b = rb.protocol_hash or protocol_hash(pb)
    if shared_indices and diffs:
        ex = pa.get("examples") or {}
        protocol = dict(pa, examples=example_set(ex.get("task", ra.task),
                                                 ex.get("split", "validation"), indices))
        phash = protocol_hash(protocol)
    else:
        protocol, phash = pa, hash_a

    def side(run, h: str, attacked: int, robust: int) -> RunSide:
        lo, hi = wilson_interval(robust, n, confidence)
        return RunSide(id=run.id, defense=run.defense, model=run.model, seed=run.seed,
                       protocol_hash=h, attacked=attacked, compared=n, robust=robust,
                       aua_pct=100.0 * robust / n, aua_low_pct=100.0 * lo,
                       aua_high_pct=100.0 * hi)

    lo, hi = paired_difference_interval(both, only_a, only_b, neither, confidence)
    return Comparison(
        a=side(ra, hash_a, len(ex_a), both + only_a), b=side(rb, hash_b, len(ex_b), both + only_b),
        task=ra.task, protocol=protocol, protocol_hash=phash, shared_indices=shared_indices,
        n=n, both=both, only_a=only_a, only_b=only_b, neither=neither,
        diff_points=100.0 * (only_a - only_b) / n, diff_low_points=100.0 * lo,
        diff_high_points=100.0 * hi, p_value=mcnemar_exact(only_a, only_b),
        only_a_indices=only_a_idx, only_b_indices=only_b_idx, confidence=confidence)


def _pct(x: float) -> str:
    """A percentage or point difference with 2 decimals (every printed percentage)."""
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.2f}"


def _indices(xs: list[int]) -> str:
    return index_ranges(xs) if xs else "none"


def _table_rows(c: Comparison) -> list[list[str]]:
    return [["", "B robust", "B not robust", "total"],
            ["A robust", str(c.both), str(c.only_a), str(c.both + c.only_a)],
            ["A not robust", str(c.only_b), str(c.neither), str(c.only_b + c.neither)],
            ["total", str(c.both + c.only_b), str(c.only_a + c.neither), str(c.n)]]


def _format_text(c: Comparison) -> str:
    conf = f"{c.confidence:.0%}"
    lines = ["runs compared (robust = the attack failed on the example; AUA = robust / "
             "attacked):"]
    for label, s in (("A", c.a), ("B", c.b)):
        lines.append(f"  {label}  {s.id}  defense {s.defense}, model {s.model}, seed {s.seed}")
    lines.append(f"protocol {c.protocol_hash}: {describe_protocol(c.protocol)}")
    if c.note():
        lines.append(c.note())
    lines.append("")
    rows = _table_rows(c)
    w0 = max(len(r[0]) for r in rows)
    widths = [max(len(r[j]) for r in rows) for j in range(1, 4)]
    for r in rows:
        lines.append("  " + r[0].ljust(w0) + "".join(f"  {v:>{w}}" for v, w in
                                                      zip(r[1:], widths)))
    lines.append("")
    for label, s in (("A", c.a), ("B", c.b)):
        lines.append(f"AUA {label}    {_pct(s.aua_pct)}%  ({s.robust}/{s.compared}; {conf} "
                     f"Wilson CI {_pct(s.aua_low_pct)}% to {_pct(s.aua_high_pct)}%)")
    lines.append(f"A − B    {_pct(c.diff_points)} points  ({conf} Newcombe paired CI "
                 f"{_pct(c.diff_low_points)} to {_pct(c.diff_high_points)} points)")
    lines.append(f"exact McNemar test ({c.only_a} vs {c.only_b} discordant examples): "
                 f"{format_p(c.p_value)}")
    lines.append(f"robust only under A ({c.only_a}): {_indices(c.only_a_indices)}")
    lines.append(f"robust only under B ({c.only_b}): {_indices(c.only_b_indices)}")
    lines.append(c.answer())
    return "\n".join(lines)


def _md_table(rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
    out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
    return out


def _format_markdown(c: Comparison) -> str:
    conf = f"{c.confidence:.0%}"
    lines = [f"### Paired comparison: A = `{c.a.id}`, B = `{c.b.id}`", ""]
    lines += _md_table([["", "run", "defense", "model", "seed"]]
                       + [[label, f"`{s.id}`", s.defense, s.model, str(s.seed)]
                          for label, s in (("A", c.a), ("B", c.b))])
    lines += ["", f"Protocol `{c.protocol_hash}`: {describe_protocol(c.protocol)}"]
    if c.note():
        note = c.note()
        lines += ["", note[0].upper() + note[1:] + "."]
    lines += ["", "Robust = the attack failed on the example (AUA = robust / attacked).", ""]
    lines += _md_table(_table_rows(c))
    lines += [""]
    lines += _md_table(
        [["", "AUA (%)", f"{conf} CI (%)", "method"]]
        + [[label, _pct(s.aua_pct), f"{_pct(s.aua_low_pct)} to {_pct(s.aua_high_pct)}",
            f"Wilson ({s.robust}/{s.compared})"] for label, s in (("A", c.a), ("B", c.b))]
        + [["A − B (points)", _pct(c.diff_points),
            f"{_pct(c.diff_low_points)} to {_pct(c.diff_high_points)}", "Newcombe paired"]])
    lines += ["", f"Exact McNemar test ({c.only_a} vs {c.only_b} discordant examples): "
                  f"{format_p(c.p_value)}.", "",
              f"- robust only under A ({c.only_a}): {_indices(c.only_a_indices)}",
              f"- robust only under B ({c.only_b}): {_indices(c.only_b_indices)}", "",
              f"**{c.answer()}**"]
    return "\n".join(lines)


def format_comparison(cmp: Comparison, fmt: str = "text") -> str:
    """``cmp`` as ``text``, ``markdown`` or ``json`` (all fields, :meth:`Comparison.to_dict`).

    Raises:
        ConfigError: an unknown format.
    """
    if fmt == "json":
        return json.dumps(cmp.to_dict(), indent=2, default=str)
    if fmt == "markdown":
        return _format_markdown(cmp)
    if fmt == "text":
        return _format_text(cmp)
    raise ConfigError(f"unknown format {fmt!r} (expected one of {', '.join(FORMATS)})")


@dataclass
class PooledComparison:
    """Paired comparisons of several run pairs (e.g. defense A vs B with the same seed, one
    pair per seed) pooled into one table.

    Stratified by pair, the Mantel–Haenszel test of matched pairs reduces to McNemar's test
    on the summed discordant counts (Agresti, *Categorical Data Analysis*, 3rd ed., §11.2),
    so ``p_value`` is the exact McNemar p-value of the summed ``only_a`` / ``only_b``, and the
    interval is Newcombe's paired interval of the summed table. Percentages and points are
    0-100.
    """

    pairs: list[tuple[str, str]]
    n: int
    both: int
    only_a: int
    only_b: int
    neither: int
    aua_a_pct: float
    aua_b_pct: float
    diff_points: float
    diff_low_points: float
    diff_high_points: float
    p_value: float

    @property
    def significant(self) -> bool:
        return self.p_value < ALPHA

    def text(self) -> str:
        """``"+4.00 points [95% CI -0.43, 9.84], McNemar p = 0.12 (4 vs 0 discordant of 100)"``."""
        return (f"{self.diff_points:+.2f} points [95% CI {self.diff_low_points:.2f}, "
                f"{self.diff_high_points:.2f}], McNemar {format_p(self.p_value)} "
                f"({self.only_a} vs {self.only_b} discordant of {self.n})")


def pooled_comparison(store, pairs: list[tuple[str, str]]) -> PooledComparison:
    """:func:`compare_runs` of each ``(run_a, run_b)`` pair, pooled (see
    :class:`PooledComparison`).

    Raises:
        ConfigError: no pairs, or any pair :func:`compare_runs` refuses.
    """
    if not pairs:
        raise ConfigError("pooled_comparison needs at least one pair of runs")
    tables = [compare_runs(store, a, b) for a, b in pairs]
    both, only_a, only_b, neither = (sum(getattr(t, k) for t in tables)
                                     for k in ("both", "only_a", "only_b", "neither"))
    n = both + only_a + only_b + neither
    lo, hi = paired_difference_interval(both, only_a, only_b, neither)
    return PooledComparison(
        pairs=list(pairs), n=n, both=both, only_a=only_a, only_b=only_b, neither=neither,
        aua_a_pct=100.0 * (both + only_a) / n, aua_b_pct=100.0 * (both + only_b) / n,
        diff_points=100.0 * (only_a - only_b) / n, diff_low_points=100.0 * lo,
        diff_high_points=100.0 * hi, p_value=mcnemar_exact(only_a, only_b))
