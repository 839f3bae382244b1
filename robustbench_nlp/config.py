"""Typed hyperparameter configs (one dataclass per plugin, like PEFT's configs).

Fields are declared with :func:`param`, which records a help text, units and the valid range
or choices. :func:`build_config` turns ``--set key=value`` strings into a validated instance
and fails, before any training, with a one-line :class:`ConfigError` naming the key.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from typing import Any

from .errors import ConfigError


def param(default: Any, help: str, *, min: float | None = None, max: float | None = None,
          choices: tuple | None = None, min_exclusive: bool = False) -> Any:
    """A dataclass field with documentation and validation metadata.

    Args:
        default: default value.
        help: one-line description including units.
        min, max: inclusive numeric bounds (``min_exclusive`` makes ``min`` strict).
        choices: allowed values.
    """
    meta = {"help": help, "min": min, "max": max, "choices": choices,
            "min_exclusive": min_exclusive}
    if isinstance(default, (list, dict, set)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def _base_types(tp: Any) -> tuple[list[type], bool]:
    """Concrete types of an annotation and whether ``None`` is allowed."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        return [a for a in args if a is not type(None)], type(None) in args
    return [tp], False


def _parse(key: str, raw: Any, tp: Any) -> Any:
    kinds, optional = _base_types(tp)
    if raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null") and optional):
        if optional:
            return None
        raise ConfigError(f"{key}: None is not allowed")
    if not isinstance(raw, str):
        for k in kinds:
            if k is float and isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return float(raw)
            if isinstance(raw, k) and not (k is int and isinstance(raw, bool)):
                return raw
        raise ConfigError(f"{key}: expected {' or '.join(k.__name__ for k in kinds)}, "
                          f"got {type(raw).__name__} {raw!r}")
    for k in kinds:
        try:
            if k is bool:
                low = raw.lower()
                if low in ("1", "true", "yes", "on"):
                    return True
                if low in ("0", "false", "no", "off"):
                    return False
                continue
            if k is int:
                return int(raw)
            if k is float:
                return float(raw)
            if k is str:
                return raw
        except ValueError:
            continue
    raise ConfigError(f"{key}: expected {' or '.join(k.__name__ for k in kinds)}, got {raw!r}")


def validate(cfg: Any) -> Any:
    """Check every field of dataclass instance ``cfg`` against its :func:`param` metadata.

    Returns:
        ``cfg`` (for chaining).

    Raises:
        ConfigError: naming the first field out of range / not among its choices.
    """
    hints = typing.get_type_hints(type(cfg))
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        value = _parse(f.name, value, hints[f.name])
        setattr(cfg, f.name, value)
        if value is None:
            continue
        m = f.metadata
        if m.get("choices") and value not in m["choices"]:
            raise ConfigError(f"{f.name}: {value!r} is not one of {', '.join(map(str, m['choices']))}")
        if m.get("min") is not None:
            bad = value <= m["min"] if m.get("min_exclusive") else value < m["min"]
            if bad:
                op = ">" if m.get("min_exclusive") else "≥"
                raise ConfigError(f"{f.name}: {value!r} is out of range (must be {op} {m['min']})")
        if m.get("max") is not None and value > m["max"]:
            raise ConfigError(f"{f.name}: {value!r} is out of range (must be ≤ {m['max']})")
    if hasattr(cfg, "check"):
        cfg.check()
    return cfg


def build_config(cls: type, overrides: dict[str, Any] | None = None, owner: str = "") -> Any:
    """Instantiate config dataclass ``cls`` with ``overrides`` (strings are parsed).

    Raises:
        ConfigError: unknown key (with "did you mean"), unparsable value, or value out of range.
    """
    overrides = dict(overrides or {})
    names = [f.name for f in dataclasses.fields(cls)]
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, raw in overrides.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            where = f" for {owner}" if owner else ""
            raise ConfigError(f"unknown parameter {key!r}{where}{hint}")
        kwargs[key] = _parse(key, raw, hints[key])
    return validate(cls(**kwargs))


def describe(cls: type) -> list[dict]:
    """One dict per field: name, type, default, help, range — for ``rbnlp list``."""
    hints = typing.get_type_hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        m = f.metadata
        rng = ""
        if m.get("choices"):
            rng = "{" + ", ".join(map(str, m["choices"])) + "}"
        elif m.get("min") is not None or m.get("max") is not None:
            lo = m.get("min")
            rng = f"{'(' if m.get('min_exclusive') else '['}{'' if lo is None else lo}, " \
                  f"{'' if m.get('max') is None else m['max']}]"
        tp = hints[f.name]
        rows.append({"name": f.name, "type": getattr(tp, "__name__", str(tp)).replace("typing.", ""),
                     "default": default, "help": m.get("help", ""), "range": rng})
    return rows


def parse_set_options(items: list[str] | None) -> dict[str, str]:
    """Parse repeated ``--set key=value`` options.

    Raises:
        ConfigError: an item without ``=``.
    """
    out: dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out
