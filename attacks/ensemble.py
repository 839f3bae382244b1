"""The worst case over an attack suite: an example is robust only if every recipe fails.

RobustBench reports image classifiers' robustness under AutoAttack, an ensemble of attacks,
because a defense tuned against one attack can be weak against another. ``--attack ensemble``
does the same for text: each example is attacked by the suite's recipes in turn, cheapest
first, and the first success ends it. Its AUA is the share of examples that no recipe
broke, which can be at most the smallest AUA of its recipes on the same examples (each
recipe is seeded per example, :func:`robustbench_nlp.attacks.recipe.seed_example`, so its
outcome on an example is the same alone and in the suite).

Each stored row is the breaking recipe's result (its adversarial text, its word counts); for
an example that every recipe failed, the last recipe's. ``queries`` is the sum over the
recipes tried. ``extra`` adds ``broken_by`` (the breaking recipe, ``None`` when robust or
skipped) and ``per_recipe``: ``[{"recipe", "result", "queries", "attack_seconds"}, ...]`` in
the order tried. The robustness curves are not derived for the ensemble
(``derived_curves = False``): under a word cap a later recipe might have broken an example
the first successful one broke with too many words, which the rows cannot tell.

The default suite is the recipes that run offline here (BAE and BERT-Attack need a masked
language model; add them with ``suite=deepwordbug,...,bae`` where one is available), in the
order of their measured cost per example (``benchmarks/attack_speed.py``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Iterator

import pandas as pd

from robustbench_nlp.config import param, validate
from robustbench_nlp.errors import ConfigError
from robustbench_nlp.registry import ATTACKS

from .base import Attack, ExampleResult
from .recipe import ALL_SEGMENTS, RESOURCE_MODES, TextAttackRecipe

if TYPE_CHECKING:  # pragma: no cover
    from robustbench_nlp.tasks import Task

#: the offline recipes, cheapest first (seconds per example, benchmarks/attack_speed.py)
DEFAULT_SUITE = "deepwordbug,textbugger,a2t,textfooler,pwws"
#: options passed on to every recipe of the suite
SHARED_OPTIONS = ("resources", "query_budget", "attacked_column", "preserve_polarity")


@ATTACKS.register("ensemble")
class Ensemble(Attack):
    """Worst case over a suite of textattack recipes (first success wins)."""

    name = "ensemble"
    word_swaps = True
    derived_curves = False
    protocol_neutral = ("resources",)
    description = ("worst case over an attack suite: each example attacked by each recipe in "
                   "turn, cheapest first; robust only if every recipe fails")

    @dataclass
    class Config:
        """Options of :class:`Ensemble`; the shared ones are passed to every recipe, which
        otherwise keeps its defaults."""

        suite: str = param(DEFAULT_SUITE, "recipes in the order tried, comma-separated "
                           "(default: the offline ones, cheapest first)")
        resources: str = param("auto", "attack resources of every recipe: textattack's, "
                               "the offline substitutes, or auto", choices=RESOURCE_MODES)
        query_budget: int | None = param(None, "most victim queries per example and recipe "
                                         "(None = unlimited)", min=1)
        attacked_column: str | None = param(ALL_SEGMENTS, "pair tasks: 'all' or the column "
                                            "every recipe may modify")
        preserve_polarity: bool = param(False, "every recipe rejects polarity-reversing "
                                        "swaps (Hu & Liu lexicon)")

    def __init__(self, config=None) -> None:
        super().__init__(validate(config) if config is not None else None)
        self.members = self._members()

    def _members(self) -> list[TextAttackRecipe]:
        names = [n.strip() for n in str(self.config.suite).split(",") if n.strip()]
        if not names:
            raise ConfigError("ensemble: suite is empty (give recipe names, comma-separated)")
        if len(set(names)) != len(names):
            raise ConfigError(f"ensemble: suite {self.config.suite!r} names a recipe twice")
        shared = {k: getattr(self.config, k) for k in SHARED_OPTIONS}
        members = []
        for n in names:
            if n == self.name:
                raise ConfigError("ensemble: the suite cannot contain the ensemble")
            cls = ATTACKS.get(n)
            if not (isinstance(cls, type) and issubclass(cls, TextAttackRecipe)):
                raise ConfigError(f"ensemble: {n!r} is not a textattack recipe attack")
            members.append(cls(cls.Config(**shared)))
        return members

    def suite(self) -> list[str]:
        """The recipes' names in the order tried."""
        return [m.name for m in self.members]

    def check_task(self, task: "Task") -> None:
        for m in self.members:
            m.check_task(task)

    def resources(self) -> dict:
        """``{"suite": [...], "recipes": {name: that recipe's resource record}}``."""
        return {"suite": self.suite(), "recipes": {m.name: m.resources()
                                                    for m in self.members}}

    def protocol_options(self, task: "Task") -> dict:
        """The shared options, the suite in order, and every recipe's own resolved options
        (``recipes``): a recipe whose defaults change gives the ensemble a new protocol."""
        opts = {k: v for k, v in asdict(self.config).items() if k not in self.protocol_neutral}
        opts["suite"] = self.suite()
        opts["attacked_column"] = self.members[0].attacked_column(task)
        opts["recipes"] = {m.name: m.protocol_options(task) for m in self.members}
        return opts

    @classmethod
    def rows_summary(cls, rows: list[dict], options: dict | None = None) -> dict | None:
        """The breakdown by recipe of an ensemble run's rows (:func:`breakdown`) over the
        run's configured suite (``options["suite"]``), so a recipe no example reached is
        listed with 0 reached."""
        raw = (options or {}).get("suite")
        suite = [n.strip() for n in str(raw).split(",") if n.strip()] if raw else None
        return breakdown(rows, suite)

    def run(self, victim, task: "Task", examples: pd.DataFrame,
            progress: bool = False) -> Iterator[ExampleResult]:
        """Attack each row with the suite's recipes in turn; one
        :class:`~robustbench_nlp.attacks.base.ExampleResult` per row (module docstring).
        A recipe is built the first time an example reaches it."""
        built: dict[str, object] = {}
        rows = examples.to_dict("records")
        if progress:
            from tqdm.auto import tqdm

            rows = tqdm(rows, desc=self.name, unit="ex")
        for row in rows:
            tried: list[dict] = []
            result = None
            queries = 0
            for m in self.members:
                if m.name not in built:
                    built[m.name] = m.build(victim, task)
                r = m.attack_one(built[m.name], task, row)
                tried.append({"recipe": m.name, "result": r.result, "queries": r.queries,
                              "attack_seconds": r.extra.get("attack_seconds")})
                queries += r.queries
                result = r
                if r.result in ("successful", "skipped"):
                    break
            extra = {k: v for k, v in result.extra.items()
                     if k not in ("min_budget", "success_budgets")}
            extra["broken_by"] = result.result == "successful" and tried[-1]["recipe"] or None
            extra["per_recipe"] = tried
            extra["attack_seconds"] = round(sum(t["attack_seconds"] or 0 for t in tried), 3)
            result.extra = extra
            result.queries = queries
            yield result


def breakdown(rows: list[dict], suite: list[str] | None = None) -> dict:
    """Per recipe of the suite, from an ensemble run's stored rows (their
    ``extra["per_recipe"]``): how many examples reached it, how many it broke, and its mean
    queries on the examples it attacked.

    Args:
        rows: stored example rows (dicts with ``result`` and ``extra``).
        suite: the configured suite in order; its recipes that no example reached are
            listed with 0 reached (``avg_queries`` None). ``None``: the recipes the rows
            name, in the order first met.

    Returns:
        ``{"suite": [...], "robust": n, "skipped": n, "recipes": {name: {"attacked",
        "broken", "avg_queries"}}}`` (``suite`` in the order tried).
    """
    suite = list(suite or [])
    stats: dict[str, dict] = {n: {"attacked": 0, "broken": 0, "queries": 0} for n in suite}
    robust = skipped = 0
    for r in rows:
        if r["result"] == "skipped":
            skipped += 1
            continue
        robust += r["result"] == "failed"
        for t in (r.get("extra") or {}).get("per_recipe") or []:
            name = t["recipe"]
            if name not in stats:
                suite.append(name)
                stats[name] = {"attacked": 0, "broken": 0, "queries": 0}
            s = stats[name]
            s["attacked"] += 1
            s["broken"] += t["result"] == "successful"
            s["queries"] += int(t["queries"] or 0)
    recipes = {n: {"attacked": s["attacked"], "broken": s["broken"],
                   "avg_queries": s["queries"] / s["attacked"] if s["attacked"] else None}
               for n, s in stats.items()}
    return {"suite": suite, "robust": robust, "skipped": skipped, "recipes": recipes}


def breakdown_text(summary: dict) -> str:
    """One line of :func:`breakdown`: ``"deepwordbug broke 41/80 (12.3 q), ...; robust 5"``."""
    parts = [f"{n} broke {s['broken']}/{s['attacked']}"
             + (f" ({s['avg_queries']:.1f} q)" if s["avg_queries"] is not None else "")
             for n, s in summary["recipes"].items()]
    return ", ".join(parts) + f"; robust to all {summary['robust']}"
