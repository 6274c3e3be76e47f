"""What an alert says, decided without a database: the choices, the ending alerts.

Stdlib only, so the sidecar (which must stay small) and the server's reconcile build the
same alert for the same ending; whoever sees the end first raises it and the signature
makes the other a duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from mcp_server.core.monitoring.failures import classify

Severity = Literal["info", "warning", "critical"]
SEVERITIES: tuple[str, ...] = ("info", "warning", "critical")
IGNORE = "Ignore"
STOP_RUN = "Stop run"
RERUN = "Rerun"
DEFAULT_CHOICES: tuple[str, ...] = (IGNORE, STOP_RUN)
ENDED_CHOICES: tuple[str, ...] = (IGNORE, RERUN)
# An ending happens once per run: its alert never repeats.
FOREVER_S = 10 * 365 * 24 * 3600.0


@dataclass(frozen=True)
class AlertSpec:
    kind: str
    severity: Severity
    message: str
    signature: str
    choices: tuple[str, ...] = DEFAULT_CHOICES
    data: dict[str, Any] = field(default_factory=dict)
    ttl_s: float = 3600.0

    def fields(self) -> dict[str, Any]:
        """The keyword arguments of raise_alert / raise_alert_sql (all but run_id)."""
        return {
            "kind": self.kind,
            "severity": self.severity,
            "message": self.message,
            "signature": self.signature,
            "choices": self.choices,
            "data": self.data,
            "ttl_s": self.ttl_s,
        }


def ending_alert(*, status: str, exit_code: int | None, reason: str, output_tail: str) -> AlertSpec | None:
    """The alert for a run that ended badly: failed (with its classified cause) or lost."""
    if status == "failed":
        failure = classify(exit_code, output_tail)
        return AlertSpec(
            kind="failure",
            severity="critical",
            message=f"run failed: {failure.summary}",
            signature="ended:failed",
            choices=ENDED_CHOICES,
            data={
                "cause": failure.kind,
                "exit_code": exit_code,
                "lines": failure.lines,
                "retryable": failure.retryable,
            },
            ttl_s=FOREVER_S,
        )
    if status == "lost":
        return AlertSpec(
            kind="lost",
            severity="warning",
            message=f"run lost: {reason} (no exit code was recorded)",
            signature="ended:lost",
            choices=ENDED_CHOICES,
            data={"reason": reason, "lines": output_tail.splitlines()[-5:]},
            ttl_s=FOREVER_S,
        )
    return None
