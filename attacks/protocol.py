"""Attack protocols: what an AUA was measured under, as a record and a short stable hash.

Two AUAs are comparable only when they were measured under one *protocol*: the same attack
recipe, every resolved option of it (query budget, thresholds, ``max_candidates``, attacked
segment, constraints), the same resources (identified by their fingerprints, not by the
folder they were read from) and the same attacked example set (task, split, which indices).
The leaderboard ranks runs of one protocol together and nothing else; ``rbnlp compare``
refuses two runs of different protocols and names the fields that differ
(:func:`protocol_differences`).

A protocol record (:func:`protocol_record`) is plain JSON::

    {"recipe": "textfooler",
     "options": {"query_budget": None, "max_candidates": 50, "min_cos_sim": 0.5, ...},
     "resources": {"mode": "offline", "embedding": {"name": ..., "fingerprint": ...}, ...},
     "examples": {"task": "sst2", "split": "validation", "count": 100,
                  "indices": "0-99", "indices_sha256": "…"}}

and :func:`protocol_hash` is the first 10 hex digits of the SHA-256 of its canonical JSON
(sorted keys, no spaces). RobustBench's threat model (``Linf``, ε = 8/255, AutoAttack, the
10,000 CIFAR-10 test images) plays the same role for image classifiers.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Iterable, Mapping

#: keys of resource records that say where a resource was read from or describe it in words;
#: they do not change what the attack does (its fingerprint does), so they are left out
RESOURCE_NOISE = frozenset({"description", "source", "cache_path", "path", "vocabulary",
                            "files"})
#: length of :func:`protocol_hash`
HASH_LENGTH = 10


def canonical_json(obj) -> str:
    """``obj`` as JSON with sorted keys and no whitespace (floats as Python prints them)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def index_ranges(indices: Iterable[int]) -> str:
    """Sorted indices as compact ranges: ``[0, 1, 2, 5, 7, 8]`` → ``"0-2,5,7-8"``."""
    xs = sorted({int(i) for i in indices})
    parts: list[str] = []
    start = prev = None
    for x in xs:
        if start is None:
            start = prev = x
        elif x == prev + 1:
            prev = x
        else:
            parts.append(f"{start}" if start == prev else f"{start}-{prev}")
            start = prev = x
    if start is not None:
        parts.append(f"{start}" if start == prev else f"{start}-{prev}")
    return ",".join(parts)


def example_set(task: str, split: str, indices: Iterable[int]) -> dict:
    """The attacked example set of a protocol.

    Args:
        task: task name (``sst2``, ...).
        split: the split the examples come from (``validation``, or the attack's own set,
            e.g. ``advglue-dev``).
        indices: the attacked rows' indices in that split (any order; duplicates ignored).

    Returns:
        ``{"task", "split", "count", "indices" (compact ranges, :func:`index_ranges`),
        "indices_sha256"}``; the hash is over the sorted indices joined by commas.
    """
    xs = sorted({int(i) for i in indices})
    return {"task": task, "split": split, "count": len(xs), "indices": index_ranges(xs),
            "indices_sha256": hashlib.sha256(",".join(map(str, xs)).encode()).hexdigest()}


#: what identifies a resource that carries a content hash: the hash says everything else
#: (its build settings, sizes, the data it was built from)
FINGERPRINTED_KEYS = ("name", "fingerprint", "sha256", "neighbours")


def _clean_resource(value):
    if isinstance(value, Mapping):
        if value.get("fingerprint") or value.get("sha256"):
            return {k: value[k] for k in FINGERPRINTED_KEYS if k in value}
        return {k: _clean_resource(v) for k, v in sorted(value.items())
                if k not in RESOURCE_NOISE}
    return value


def protocol_record(recipe: str, options: Mapping, resources: Mapping | None,
                    examples: Mapping) -> dict:
    """A protocol record from its parts.

    Args:
        recipe: the attack plugin's name (``textfooler``, ``advglue``, ...).
        options: the attack's resolved options that shape its result
            (:meth:`robustbench_nlp.attacks.base.Attack.protocol_options`).
        resources: the run's attack resources record (``runs.resources``); location and prose
            keys (:data:`RESOURCE_NOISE`) are dropped, and a resource with a content hash
            (``fingerprint``/``sha256``) keeps only :data:`FINGERPRINTED_KEYS`.
        examples: :func:`example_set`.

    Returns:
        a JSON-ready dict (see the module docstring).
    """
    return {"recipe": recipe, "options": json.loads(canonical_json(dict(options))),
            "resources": json.loads(canonical_json(_clean_resource(dict(resources or {})))),
            "examples": dict(examples)}


def protocol_hash(record: Mapping) -> str:
    """The first :data:`HASH_LENGTH` hex digits of the SHA-256 of ``record``'s canonical JSON."""
    return hashlib.sha256(canonical_json(record).encode()).hexdigest()[:HASH_LENGTH]


def _flatten(obj, prefix: str = "") -> dict:
    out = {}
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
    else:
        out[prefix] = obj
    return out


def protocol_differences(a: Mapping, b: Mapping) -> list[str]:
    """Dotted names of the fields in which two protocol records differ, sorted
    (e.g. ``["examples.count", "options.query_budget"]``); ``[]`` when they are equal."""
    fa, fb = _flatten(a), _flatten(b)
    return sorted(k for k in set(fa) | set(fb) if fa.get(k, "<absent>") != fb.get(k, "<absent>"))


def _resource_short(res: Mapping) -> str:
    parts = []
    for key in sorted(res):
        v = res[key]
        if key == "mode":
            continue
        if isinstance(v, Mapping):
            name = str(v.get("name") or v.get("model") or key)
            fp = v.get("fingerprint") or v.get("sha256")
            parts.append(f"{name}@{str(fp)[:8]}" if fp else name)
        elif v is not None:
            parts.append(f"{key}={v}")
    return " + ".join(parts)


def describe_protocol(record: Mapping) -> str:
    """One readable line: recipe, options, resources (names with fingerprint prefixes) and
    the example set, e.g. ``textfooler · query_budget=None, max_candidates=50, ... ·
    counterfitted-glove-50d@f17f1cf4 + ... · sst2/validation, 100 examples (0-99)``."""
    opts = ", ".join(f"{k}={v}" for k, v in sorted((record.get("options") or {}).items()))
    res = _resource_short(record.get("resources") or {})
    ex = record.get("examples") or {}
    where = f"{ex.get('task')}/{ex.get('split')}, {ex.get('count')} examples"
    idx = ex.get("indices") or ""
    where += f" ({idx})" if idx and len(idx) <= 40 else " (indices " + \
        str(ex.get("indices_sha256", ""))[:8] + ")"
    return " · ".join(p for p in (str(record.get("recipe")), opts, res, where) if p)


def attack_for_record(name: str, stored_options: Mapping | None):
    """The attack plugin ``name`` built from a run's stored options (``config["attack"]``),
    or ``None`` when no such plugin is installed here.

    Options the stored record lacks (runs stored before the option existed) take the
    plugin's :attr:`~robustbench_nlp.attacks.base.Attack.absent_options` value, i.e. the
    behaviour the attack had before the option was added, else its default; stored keys
    the plugin no longer knows are dropped.
    """
    from robustbench_nlp.config import build_config
    from robustbench_nlp.errors import RBNLPError
    from robustbench_nlp.registry import ATTACKS

    try:
        cls = ATTACKS.get(name)
    except RBNLPError:
        return None
    names = {f.name for f in dataclasses.fields(cls.Config)}
    given = {k: v for k, v in dict(stored_options or {}).items() if k in names}
    for k, v in getattr(cls, "absent_options", {}).items():
        if k in names:
            given.setdefault(k, v)
    try:
        return cls(build_config(cls.Config, given, owner=f"attack {name!r}"))
    except RBNLPError:
        return None


def run_protocol(recipe: str, task_name: str, stored_options: Mapping | None,
                 resources: Mapping | None, indices: Iterable[int]) -> dict:
    """The protocol record of a stored run.

    Args:
        recipe: ``runs.attack``.
        task_name: ``runs.task``.
        stored_options: ``runs.config["attack"]``.
        resources: ``runs.resources``.
        indices: the attacked examples' indices (``examples.idx`` of the run, or the planned
            set before the attack).

    Returns:
        :func:`protocol_record`. When the plugin is not installed here, its options are the
        stored ones as they are.
    """
    from robustbench_nlp.tasks import TASKS

    attack = attack_for_record(recipe, stored_options)
    task = TASKS.get(task_name)
    if attack is not None and task is not None:
        options = attack.protocol_options(task)
        split = attack.example_split
    else:
        options, split = dict(stored_options or {}), "validation"
    return protocol_record(recipe, options, resources, example_set(task_name, split, indices))
