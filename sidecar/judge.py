"""The LLM judge: an optional second opinion on a run, through litellm.

Off unless ``RESEARCH_MCP_JUDGE_MODEL`` names a litellm model; provider settings come from
litellm's usual variables (``OPENAI_API_KEY``, ``OPENAI_API_BASE``, ...). litellm is
imported only when the first verdict is asked for (it takes seconds and a lot of memory),
with the local cost map so the import never reaches for the network. The call runs on a
worker thread and the monitor only collects finished verdicts, so a slow or broken
provider never delays metrics or rule alerts; every failure ends as one line in
sidecar.log.
"""

from __future__ import annotations

import json
import os
import re
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from mcp_server.core.monitoring.alert_specs import DEFAULT_CHOICES, SEVERITIES, AlertSpec

MAX_MESSAGE = 500
MAX_CHOICES = 5
MAX_CHOICE_CHARS = 40
JUDGE_ALERT_TTL_S = 900.0
_SECRET_NAME = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.IGNORECASE)

SYSTEM_PROMPT = """You watch a machine-learning training run for its owner.
You get a digest: the command, status, a summary of every metric with its latest values,
the tail of the output log, and alerts already raised. Decide whether a human should be
told about something the digest shows (divergence, a plateau that wastes compute, an
error in the log, a suspicious metric). Do not repeat alerts already raised.
Answer with ONE JSON object and nothing else:
{"action": "alert" or "ignore", "severity": "info" | "warning" | "critical",
 "message": "one or two sentences naming the evidence", "choices": ["Ignore", "Stop run"]}"""


@dataclass
class Verdict:
    action: str
    severity: str = "warning"
    message: str = ""
    choices: tuple[str, ...] = DEFAULT_CHOICES


@dataclass
class JudgeResult:
    verdict: Verdict | None = None
    error: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0


@dataclass
class Judge:
    model: str
    timeout_s: float
    _pool: ThreadPoolExecutor | None = None
    _future: Future[JudgeResult] | None = None

    @property
    def busy(self) -> bool:
        return self._future is not None

    def submit(self, digest: str) -> None:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="judge")
        self._future = self._pool.submit(self.ask, digest)

    def collect(self) -> JudgeResult | None:
        """The finished verdict, if the call in flight has returned; never waits."""
        if self._future is None or not self._future.done():
            return None
        future, self._future = self._future, None
        try:
            return future.result()
        except Exception as err:  # ask() catches everything; this is the last guard
            return JudgeResult(error=redact(f"judge crashed: {type(err).__name__}: {err}"))

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def ask(self, digest: str) -> JudgeResult:
        try:
            litellm = _litellm()
            response = litellm.completion(
                model=self.model,
                messages=[{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": digest}],
                timeout=self.timeout_s,
                num_retries=0,
                max_retries=0,
                temperature=0,
            )
        except Exception as err:
            return JudgeResult(error=redact(f"judge call failed: {type(err).__name__}: {err}"))
        result = JudgeResult()
        usage = getattr(response, "usage", None)
        result.prompt_tokens = int(getattr(usage, "prompt_tokens", 0) or 0)
        result.completion_tokens = int(getattr(usage, "completion_tokens", 0) or 0)
        try:
            result.cost_usd = float(litellm.completion_cost(completion_response=response) or 0.0)
        except Exception:  # models without a price in the cost map cost "unknown", counted as 0
            result.cost_usd = 0.0
        try:
            text = response.choices[0].message.content or ""
            result.verdict = parse_verdict(text)
        except (ValueError, AttributeError, IndexError, TypeError) as err:
            result.error = redact(f"judge answer was not a usable verdict: {err}")
        return result


def _litellm() -> Any:
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    import litellm

    litellm.suppress_debug_info = True
    return litellm


def redact(text: str) -> str:
    """Remove any secret-looking environment value from a message before it is logged."""
    for name, value in os.environ.items():
        if len(value) >= 8 and _SECRET_NAME.search(name) and value in text:
            text = text.replace(value, "***")
    return text[:2000]


_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.MULTILINE)


def parse_verdict(text: str) -> Verdict:
    """Read the model's JSON verdict; raise ValueError naming what is wrong with it."""
    body = _FENCE.sub("", text.strip()).strip()
    start, end = body.find("{"), body.rfind("}")
    if start < 0 or end <= start:
        raise ValueError(f"no JSON object in the answer: {text[:120]!r}")
    try:
        obj = json.loads(body[start : end + 1])
    except json.JSONDecodeError as err:
        raise ValueError(f"invalid JSON ({err.msg}): {text[:120]!r}") from None
    if not isinstance(obj, dict):
        raise ValueError("the answer is not a JSON object")
    action = obj.get("action")
    if action not in ("alert", "ignore"):
        raise ValueError(f"action must be 'alert' or 'ignore', got {action!r}")
    if action == "ignore":
        return Verdict("ignore")
    severity = obj.get("severity", "warning")
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
    message = obj.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ValueError("an alert verdict needs a non-empty message")
    raw_choices = obj.get("choices") or list(DEFAULT_CHOICES)
    if not isinstance(raw_choices, list) or not all(isinstance(c, str) and c.strip() for c in raw_choices):
        raise ValueError("choices must be a list of non-empty strings")
    choices = tuple(dict.fromkeys(c.strip()[:MAX_CHOICE_CHARS] for c in raw_choices))[:MAX_CHOICES]
    return Verdict("alert", severity, message.strip()[:MAX_MESSAGE], choices)


def verdict_alert(verdict: Verdict, model: str) -> AlertSpec:
    return AlertSpec(
        kind="judge",
        severity=verdict.severity,  # type: ignore[arg-type]
        message=verdict.message,
        # The judge rewords the same concern every time; one alert per severity per window.
        signature=f"judge:{verdict.severity}",
        choices=verdict.choices,
        data={"model": model},
        ttl_s=JUDGE_ALERT_TTL_S,
    )


def build_digest(
    *,
    run: dict[str, Any],
    metrics: list[dict[str, Any]],
    log_tail: str,
    open_alerts: list[str],
    max_chars: int = 6000,
) -> str:
    """A compact, bounded description of the run for the judge (no environment values)."""
    lines = [
        f"run {run['id']} name={run['name']} status={run['status']} elapsed_s={run.get('elapsed_s')}",
        f"command: {run['command'][:400]}",
        "metrics (key: count, first, min, max, last@step, recent values):",
    ]
    for m in metrics[:30]:
        recent = ", ".join(_short(v) for v in m["recent"])
        lines.append(
            f"  {m['key']}: n={m['count']} first={_short(m['first'])} min={_short(m['min'])} "
            f"max={_short(m['max'])} last={_short(m['last'])}@{m['last_step']} recent=[{recent}]"
            + (f" nonfinite={m['nonfinite']}" if m["nonfinite"] else "")
        )
    if not metrics:
        lines.append("  (none yet)")
    lines.append("open alerts: " + ("; ".join(open_alerts) if open_alerts else "none"))
    head = "\n".join(lines)
    room = max(500, max_chars - len(head) - 40)
    tail = log_tail[-room:]
    return f"{head}\noutput tail:\n{tail}"


def _short(value: float | None) -> str:
    return "null" if value is None else f"{value:.4g}"
