"""Where notifications go: apprise URLs from ``RESEARCH_MCP_NOTIFY`` and the state dir's config.

A URL carries its secret (a Slack webhook path, a Telegram bot token), so it lives only in
the environment or in ``notify.json`` inside the state dir (mode 0600, beside a
``.gitignore`` that keeps the state dir out of git). Everything else — the store, logs,
answers, the CLI's listing — names a target by a hash of its URL and a masked label.

Stdlib only: servers and sidecars read this on their watch loop.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from mcp_server.core.errors import InvalidInput, NotFound

NOTIFY_ENV = "RESEARCH_MCP_NOTIFY"
EVENTS_ENV = "RESEARCH_MCP_NOTIFY_EVENTS"
CONFIG_NAME = "notify.json"
RUN_KINDS: tuple[str, ...] = ("run_finished", "run_failed", "run_lost", "run_stopped")
KINDS: tuple[str, ...] = (*RUN_KINDS, "sweep_done")
SEVERITY_RANK = {"info": 0, "warning": 1, "critical": 2}
DEFAULT_EVENTS = "run_finished,run_failed,run_lost,sweep_done,alert>=warning"
MAX_URL_CHARS = 2000
MAX_TARGETS = 20
# Hosts of generic webhooks are shown; every other part of any URL is hidden.
_HOST_SHOWN = frozenset({"json", "jsons", "xml", "xmls", "form", "forms"})
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}://\S+$")
_SPLIT = re.compile(r"[\s,]+(?=[A-Za-z][A-Za-z0-9+.-]{0,31}://)")
_SECRETISH = re.compile(r"[A-Za-z0-9_-]{6,}")


@dataclass(frozen=True)
class EventFilter:
    """Which events a target wants: run endings by status, sweeps done, alerts from a severity up."""

    kinds: frozenset[str]
    alert_min: str | None  # None: no alerts

    @classmethod
    def parse(cls, spec: str | None) -> EventFilter:
        text = DEFAULT_EVENTS if spec is None or not spec.strip() else spec
        kinds: set[str] = set()
        alert_min: str | None = None
        for raw in text.split(","):
            item = raw.strip().replace(" ", "")
            if not item:
                continue
            if item in KINDS:
                kinds.add(item)
            elif item == "alert":
                alert_min = "info"
            elif item.startswith("alert>=") and item[7:] in SEVERITY_RANK:
                alert_min = item[7:]
            else:
                raise InvalidInput(
                    f"notification event {raw.strip()!r} is unknown; give a comma-separated list of "
                    f"{', '.join(KINDS)}, alert (every alert) or alert>=info|warning|critical, "
                    f"e.g. {DEFAULT_EVENTS!r}."
                )
        if not kinds and alert_min is None:
            raise InvalidInput(f"the event filter {spec!r} selects nothing; e.g. {DEFAULT_EVENTS!r}.")
        return cls(frozenset(kinds), alert_min)

    def wants_alert(self, severity: str) -> bool:
        if self.alert_min is None:
            return False
        return SEVERITY_RANK.get(severity, 0) >= SEVERITY_RANK[self.alert_min]

    def spec(self) -> str:
        parts = [k for k in KINDS if k in self.kinds]
        if self.alert_min is not None:
            parts.append("alert" if self.alert_min == "info" else f"alert>={self.alert_min}")
        return ",".join(parts)


def target_id(url: str) -> str:
    return hashlib.sha256(url.encode()).hexdigest()[:12]


def mask(url: str) -> str:
    """A label that shows the service, never the secret: ``tgram://…#1a2b3c``; a generic
    webhook keeps its host (``json://127.0.0.1:8080/…#1a2b3c``)."""
    scheme = url.split("://", 1)[0].lower()
    shown = ""
    if scheme in _HOST_SHOWN:
        with contextlib.suppress(ValueError):
            parts = urlsplit(url)
            shown = parts.hostname or ""
            if parts.port:
                shown += f":{parts.port}"
            shown += "/"
    return f"{scheme}://{shown}…#{target_id(url)[:6]}"


def scrub(text: str, url: str) -> str:
    """``text`` with every token of ``url`` that could be a secret replaced by ***."""
    rest = url.split("://", 1)[-1]
    for token in sorted(set(_SECRETISH.findall(rest)), key=len, reverse=True):
        text = text.replace(token, "***")
    return text


def validate_url(url: str) -> str:
    value = url.strip() if isinstance(url, str) else ""
    if not value or len(value) > MAX_URL_CHARS or not _SCHEME.match(value):
        # The URL itself is not echoed: it may hold a token.
        raise InvalidInput(
            "that is not an apprise URL: give one like slack://TokenA/TokenB/TokenC/#channel, "
            "tgram://BOT_TOKEN/CHAT_ID, ntfy://topic or json://host:port/path "
            f"(at most {MAX_URL_CHARS} characters, no spaces)."
        )
    return value


@dataclass(frozen=True)
class Target:
    url: str
    events: EventFilter
    source: str  # env | config

    @property
    def id(self) -> str:
        return target_id(self.url)

    @property
    def label(self) -> str:
        return mask(self.url)


def split_urls(value: str) -> list[str]:
    """``RESEARCH_MCP_NOTIFY``: URLs separated by commas or spaces (a comma inside a URL's
    query, as in ``mailto://…?to=a@x,b@y``, stays with its URL)."""
    return [u.strip().rstrip(",") for u in _SPLIT.split(value.strip()) if u.strip().rstrip(",")]


class NotifyConfig:
    """The targets of one state dir: the environment's, then ``notify.json``'s (deduplicated)."""

    def __init__(self, state_root: Path, environ: dict[str, str] | None = None) -> None:
        self.path = state_root / CONFIG_NAME
        env = os.environ if environ is None else environ
        self._env_urls = split_urls(env.get(NOTIFY_ENV, ""))
        self._env_events = env.get(EVENTS_ENV)
        self._cache: tuple[tuple[int, int] | None, list[Target]] | None = None

    def _stamp(self) -> tuple[int, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return (st.st_mtime_ns, st.st_size)

    def read_file(self) -> list[dict[str, object]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return []
        except ValueError as err:
            raise InvalidInput(f"{self.path} is not valid JSON ({err}); fix or delete it.") from None
        entries = data.get("targets", []) if isinstance(data, dict) else []
        return [e for e in entries if isinstance(e, dict) and isinstance(e.get("url"), str)]

    def targets(self) -> list[Target]:
        """Current targets; re-reads the file only when it changed (cheap enough for every poll)."""
        stamp = self._stamp()
        if self._cache is not None and self._cache[0] == stamp:
            return self._cache[1]
        found: dict[str, Target] = {}
        env_filter = EventFilter.parse(self._env_events)
        for url in self._env_urls:
            found.setdefault(target_id(url), Target(url, env_filter, "env"))
        if stamp is not None:
            for entry in self.read_file():
                url = str(entry["url"])
                events = entry.get("events")
                found.setdefault(
                    target_id(url), Target(url, EventFilter.parse(str(events) if events else None), "config")
                )
        result = list(found.values())
        self._cache = (stamp, result)
        return result

    # ---- edits (the CLI) -----------------------------------------------------------------

    def _write(self, entries: list[dict[str, object]]) -> None:
        import tempfile  # only the CLI writes the file; servers and sidecars only read it

        root = self.path.parent
        ignore = root / ".gitignore"
        if not ignore.exists():
            ignore.write_text("# research-mcp state: private (tokens, notification URLs)\n*\n")
        fd, tmp = tempfile.mkstemp(prefix=".notify-", dir=root)  # created 0600
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({"version": 1, "targets": entries}, fh, indent=2)
                fh.write("\n")
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        os.chmod(self.path, 0o600)
        self._cache = None

    def add(self, url: str, events: str | None = None) -> Target:
        url = validate_url(url)
        spec = EventFilter.parse(events).spec()
        entries = self.read_file()
        if any(target_id(str(e["url"])) == target_id(url) for e in entries):
            raise InvalidInput(
                f"{mask(url)} is already configured; `research-mcp notify remove {target_id(url)}` first "
                "to change its events."
            )
        if len(entries) >= MAX_TARGETS:
            raise InvalidInput(
                f"{len(entries)} notification URLs are configured; the limit is {MAX_TARGETS}."
            )
        entries.append({"url": url, "events": spec, "added_at": round(time.time(), 3)})
        self._write(entries)
        return Target(url, EventFilter.parse(spec), "config")

    def find(self, ident: str) -> Target:
        prefix = ident.strip().lstrip("#") if isinstance(ident, str) else ""
        matches = [t for t in self.targets() if t.id.startswith(prefix)] if len(prefix) >= 4 else []
        if len(matches) != 1:
            known = ", ".join(f"{t.id} ({t.label})" for t in self.targets()) or "none"
            raise NotFound(f"no single notification target matches {ident!r}; configured: {known}.")
        return matches[0]

    def remove(self, ident: str) -> Target:
        target = self.find(ident)
        if target.source == "env":
            raise InvalidInput(
                f"{target.label} comes from ${NOTIFY_ENV}; remove it there (and restart the server)."
            )
        self._write([e for e in self.read_file() if target_id(str(e["url"])) != target.id])
        return target
