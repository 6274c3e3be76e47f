"""Where backends are registered: the ``research_mcp.backends`` entry-point group.

This package registers its own backends the way a plugin would (``pyproject.toml``:
``[project.entry-points."research_mcp.backends"]``), so a package that adds an engine needs
nothing from this one but that table. A backend's class is loaded the first time its name is
used (``auto`` and ``detect_cluster`` load them all; each backend module is light at import,
its engine's client loads inside the calls that need it). ``Backends`` holds one instance of
each backend a process has used.
"""

from __future__ import annotations

import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from importlib.metadata import entry_points
from typing import TYPE_CHECKING

from mcp_server.core.backends.base import AVAILABLE, Backend, BackendContext, Facts
from mcp_server.core.errors import InvalidInput

if TYPE_CHECKING:
    from mcp_server.core.paths import StateDir
    from mcp_server.core.settings import Settings
    from mcp_server.core.storage.store import Store

log = logging.getLogger(__name__)

GROUP = "research_mcp.backends"
AUTO = "auto"

_lock = threading.Lock()
_found: dict[str, str] | None = None  # name → "module:Class", from the entry points
_classes: dict[str, type[Backend]] = {}  # loaded, or registered by ``register``


def _discover() -> dict[str, str]:
    global _found
    with _lock:
        if _found is None:
            _found = {ep.name: ep.value for ep in entry_points(group=GROUP)}
            if not _found:
                log.warning(
                    "no %s entry points: research-mcp's metadata is missing (reinstall it: pip install -e .)",
                    GROUP,
                )
        return _found


def register(name: str, cls: type[Backend]) -> None:
    """Add a backend in this process (tests, embedding); entry points are the way for packages."""
    if cls.name != name:
        raise ValueError(f"backend class {cls.__name__} is named {cls.name!r}, not {name!r}")
    with _lock:
        _classes[name] = cls


def unregister(name: str) -> None:
    with _lock:
        _classes.pop(name, None)


def names() -> tuple[str, ...]:
    """Every backend a run may name, in a stable order (the built-ins first, as registered)."""
    found = _discover()
    return tuple(dict.fromkeys([*found, *_classes]))


def backend_class(name: str) -> type[Backend]:
    """The class registered under ``name``, loaded on first use."""
    with _lock:
        if name in _classes:
            return _classes[name]
    target = _discover().get(name)
    if target is None:
        raise InvalidInput(f"backend {name!r} is not known; valid: {AUTO}, {', '.join(names())}.")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Backend)) or cls.name != name:
        raise InvalidInput(f"entry point {name} = {target} is not a research-mcp backend named {name!r}.")
    with _lock:
        _classes.setdefault(name, cls)
    return cls


def classes() -> dict[str, type[Backend]]:
    """Every registered backend's class; one that fails to load is left out (and logged)."""
    out: dict[str, type[Backend]] = {}
    for name in names():
        try:
            out[name] = backend_class(name)
        except Exception as err:  # a broken plugin must not take the others down
            log.warning("backend %s could not be loaded: %s", name, err)
    return out


def choose(facts: Facts) -> str:
    """The backend ``auto`` means here: the highest affinity (ties: registration order)."""
    best, score = "", -10
    for name, cls in classes().items():
        try:
            value = cls.affinity(facts)
        except Exception as err:  # a plugin's affinity must not break create_run
            log.warning("backend %s: affinity failed: %s", name, err)
            continue
        if value > score:
            best, score = name, value
    if score < AVAILABLE:
        known = ", ".join(names())
        raise InvalidInput(f"no backend is available here (known: {known}); name one with backend=.")
    return best


class Backends:
    """One instance of each backend this process used, made on first use."""

    def __init__(self, state: StateDir, store: Store | None, settings: Settings) -> None:
        self.ctx = BackendContext(state, settings, store)
        self._made: dict[str, Backend] = {}
        self._lock = threading.Lock()
        self.overrides: Mapping[str, Callable[[BackendContext], Backend]] = {}

    def get(self, name: str) -> Backend:
        with self._lock:
            if name not in self._made:
                self._made[name] = backend_class(name)(self.ctx)
            return self._made[name]


def describe(facts: Mapping[str, Mapping[str, object]]) -> list[str]:
    """Markdown lines for what the last detection found of each engine (contexts, reports)."""
    lines: list[str] = []
    for name, section in facts.items():
        try:
            lines += backend_class(name).describe(section)
        except Exception as err:  # an engine that is gone or broken: say nothing of it
            log.debug("cannot describe backend %s: %s", name, err)
    return lines


def foreign_keys(backend: str, options: Mapping[str, object]) -> dict[str, str]:
    """Option keys that belong to another backend than ``backend``: key → that backend."""
    out: dict[str, str] = {}
    for name, cls in classes().items():
        model = cls.options_model() if name != backend else None
        if model is not None:
            out.update({k: name for k in options if k in model.model_fields and k not in out})
    mine = classes().get(backend)
    own = mine.options_model() if mine is not None else None
    return {k: v for k, v in out.items() if own is None or k not in own.model_fields}


def monitored(name: str) -> bool:
    """Whether runs of backend ``name`` get a sidecar (an unknown backend's runs do)."""
    try:
        return backend_class(name).monitored
    except Exception:
        return True


def names_where(flag: str) -> list[str]:
    """Backends whose class sets ``flag`` (e.g. ``local_processes``, ``idempotent_submit``)."""
    return [name for name, cls in classes().items() if getattr(cls, flag, False)]
