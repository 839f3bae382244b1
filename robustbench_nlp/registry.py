"""Plugin registries for defenses, attacks, tasks and backbone aliases.

Plugins inside the repository register with a decorator::

    @DEFENSES.register("peaft")
    class PEAFT(Defense): ...

External packages register through a Python entry-point group (``robustbench_nlp.defenses``,
``robustbench_nlp.attacks``), e.g. in their ``pyproject.toml``::

    [project.entry-points."robustbench_nlp.defenses"]
    my-defense = "my_pkg.defense:MyDefense"

Entry points are loaded lazily, the first time a registry is listed or looked up; no
dotted-path strings are ever ``eval``-ed and nothing is trained or downloaded at import time.
"""

from __future__ import annotations

import difflib
from importlib import metadata
from typing import Callable, Generic, Iterator, TypeVar

from .errors import UnknownNameError

T = TypeVar("T")


class Registry(Generic[T]):
    """A name → plugin mapping.

    Args:
        kind: human name of the plugin kind, used in error messages ("defense").
        entry_point_group: entry-point group scanned for external plugins, or ``None``.
        builtin_modules: callable importing the in-repository plugin modules (so their
            decorators run) the first time the registry is used.
    """

    def __init__(self, kind: str, entry_point_group: str | None = None,
                 builtin_modules: Callable[[], None] | None = None) -> None:
        self.kind = kind
        self.entry_point_group = entry_point_group
        self._builtin_modules = builtin_modules
        self._items: dict[str, T] = {}
        self._loaded = False

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator registering ``obj`` under ``name``.

        Raises:
            ValueError: if another object is already registered under ``name``.
        """

        def deco(obj: T) -> T:
            if name in self._items and self._items[name] is not obj:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self._items[name] = obj
            return obj

        return deco

    def add(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` (non-decorator form)."""
        return self.register(name)(obj)

    def _load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        if self._builtin_modules is not None:
            self._builtin_modules()
        if self.entry_point_group:
            for ep in metadata.entry_points(group=self.entry_point_group):
                if ep.name not in self._items:
                    self._items[ep.name] = ep.load()

    def get(self, name: str) -> T:
        """Return the plugin registered as ``name``.

        Raises:
            UnknownNameError: with "did you mean" suggestions when ``name`` is unknown.
        """
        self._load()
        try:
            return self._items[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._items), n=3, cutoff=0.5)
            hint = f"; did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
            known = ", ".join(sorted(self._items))
            raise UnknownNameError(f"unknown {self.kind} {name!r}{hint} (known: {known})") from None

    def names(self) -> list[str]:
        """Sorted registered names."""
        self._load()
        return sorted(self._items)

    def items(self) -> Iterator[tuple[str, T]]:
        self._load()
        return iter(sorted(self._items.items()))

    def __contains__(self, name: str) -> bool:
        self._load()
        return name in self._items


def _import_builtin_defenses() -> None:
    from . import defenses  # noqa: F401  (modules register themselves)


def _import_builtin_attacks() -> None:
    from . import attacks  # noqa: F401


DEFENSES: Registry = Registry("defense", "robustbench_nlp.defenses", _import_builtin_defenses)
ATTACKS: Registry = Registry("attack", "robustbench_nlp.attacks", _import_builtin_attacks)
