"""One send through apprise, bounded in time, its failure told without the URL's secrets.

apprise (one URL scheme for Slack, Discord, Telegram, ntfy, e-mail, JSON webhooks...) is
imported here, on the first send, and only in the processes that send: the sender and the
CLI's ``notify test``. Its own log lines may quote a host or a path, so they never reach a
log handler: each send captures the lines of its own thread and keeps them, scrubbed of
every token of the URL, as the failure's reason.
"""

from __future__ import annotations

import logging
import threading

from mcp_server.core.workflow.notifications.targets import scrub

CONNECT_TIMEOUT_S = 5.0
_setup = threading.Lock()
_ready = False


class _ThreadLines(logging.Handler):
    """apprise's warnings from one thread (several sends may run at once)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.lines.append(record.getMessage())


def _apprise_logger() -> logging.Logger:
    global _ready
    with _setup:
        logger = logging.getLogger("apprise")
        if not _ready:
            logger.propagate = False  # only our scrubbed reasons are ever written anywhere
            logger.setLevel(logging.WARNING)
            logging.getLogger("urllib3").setLevel(logging.WARNING)
            _ready = True
    return logger


def send(url: str, title: str, body: str, level: str = "info", timeout_s: float = 10.0) -> str | None:
    """Send one message; None when the service accepted it, else why not (no secret in it)."""
    import apprise

    logger = _apprise_logger()
    plugin = apprise.Apprise.instantiate(url)
    if plugin is None:
        return "apprise does not understand this URL (see https://appriseit.com for the forms)"
    plugin.socket_connect_timeout = min(CONNECT_TIMEOUT_S, timeout_s)
    plugin.socket_read_timeout = timeout_s
    capture = _ThreadLines()
    logger.addHandler(capture)
    try:
        notify_type = apprise.NotifyType(level) if level in {t.value for t in apprise.NotifyType} else None
        ok = plugin.notify(body=body, title=title, notify_type=notify_type or apprise.NotifyType.INFO)
    except Exception as err:  # a plugin bug must not kill the sender; its text is scrubbed below
        ok = False
        capture.lines.append(f"{type(err).__name__}: {err}")
    finally:
        logger.removeHandler(capture)
    if ok:
        return None
    reason = capture.lines[-1] if capture.lines else "the service did not accept the message"
    return scrub(reason, url)[:300]
