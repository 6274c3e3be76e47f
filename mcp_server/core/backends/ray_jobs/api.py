"""Talking to a Ray cluster's job server (the dashboard's Jobs API).

Submitting goes through Ray's own job-submission client (``ray.job_submission``, the
``research-mcp[ray]`` extra), imported on first use: it packages and uploads the run's working
dir, and costs about 1 s and 90 MB the first time, so a server that never submits to Ray never
pays it. Watching (a job's status, its log) and stopping are calls of the same documented REST
API the client wraps, made with the standard library: a run's sidecar makes them, and a
sidecar must stay small (its idle budget is 60 MB).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from mcp_server.core.errors import BackendError

DEFAULT_ADDRESS = "http://127.0.0.1:8265"
ENV = "RAY_ADDRESS"
HTTP_TIMEOUT_S = 10.0


def address_from_env() -> str | None:
    """RAY_ADDRESS as a job-server URL: ``http(s)://host:port`` as given, ``host:port`` as http."""
    raw = os.environ.get(ENV, "").strip()
    if not raw or raw == "auto":
        return None
    if raw.startswith(("http://", "https://")):
        return raw.rstrip("/")
    if "://" in raw:
        raise BackendError(
            f"{ENV}={raw!r}: research-mcp talks to Ray's job server; give its dashboard address, "
            "e.g. RAY_ADDRESS=http://<head-node>:8265."
        )
    return f"http://{raw.rstrip('/')}"


def resolve_address() -> str:
    return address_from_env() or DEFAULT_ADDRESS


@dataclass(frozen=True)
class JobInfo:
    status: str  # PENDING, RUNNING, SUCCEEDED, FAILED, STOPPED
    message: str
    driver_exit_code: int | None
    start_time: float | None  # seconds
    end_time: float | None


def _get(url: str, timeout: float = HTTP_TIMEOUT_S, method: str = "GET") -> bytes | None:
    """The body, or None for 404; BackendError when the job server cannot be reached."""
    request = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return bytes(resp.read())
    except urllib.error.HTTPError as err:
        if err.code == 404:
            return None
        raise BackendError(f"Ray's job server at {url} answered HTTP {err.code}") from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise BackendError(f"Ray's job server did not answer ({url}): {reason}") from None


def _seconds(ms: Any) -> float | None:
    return float(ms) / 1000.0 if isinstance(ms, int | float) and ms else None


def job_info(address: str, submission_id: str) -> JobInfo | None:
    """A job's status (None: the cluster does not know it)."""
    body = _get(f"{address}/api/jobs/{urllib.parse.quote(submission_id)}")
    if body is None:
        return None
    data = json.loads(body)
    code = data.get("driver_exit_code")
    return JobInfo(
        status=str(data.get("status", "")),
        message=str(data.get("message") or ""),
        driver_exit_code=code if isinstance(code, int) and 0 <= code <= 255 else None,
        start_time=_seconds(data.get("start_time")),
        end_time=_seconds(data.get("end_time")),
    )


def job_log(address: str, submission_id: str) -> str:
    body = _get(f"{address}/api/jobs/{urllib.parse.quote(submission_id)}/logs")
    return str(json.loads(body).get("logs", "")) if body else ""


def version(address: str, timeout: float) -> dict[str, Any] | None:
    body = _get(f"{address}/api/version", timeout)
    return json.loads(body) if body else None


def nodes(address: str, timeout: float) -> list[dict[str, Any]]:
    """The cluster's nodes (Ray's state API)."""
    body = _get(f"{address}/api/v0/nodes?limit=1000", timeout)
    if not body:
        return []
    result = json.loads(body).get("data", {}).get("result", {})
    rows = result.get("result", []) if isinstance(result, dict) else result
    return [r for r in rows if isinstance(r, dict)]


# ---- the job-submission client (Ray's SDK) --------------------------------------------------

_clients: dict[str, Any] = {}
_lock = threading.Lock()


def client(address: str) -> Any:
    """Ray's JobSubmissionClient for ``address`` (one per process and address)."""
    with _lock:
        if address not in _clients:
            try:
                from ray.job_submission import JobSubmissionClient
            except ImportError:
                raise BackendError(
                    "backend 'ray' needs Ray's job-submission client: pip install 'research-mcp[ray]'."
                ) from None
            # Its INFO lines ("Uploading package ...") would land in the server's log per run.
            for name in ("ray.dashboard", "ray._private.runtime_env"):
                logging.getLogger(name).setLevel(logging.WARNING)
            try:
                _clients[address] = JobSubmissionClient(address)
            except Exception as err:  # its connection check raises plain exceptions
                raise BackendError(f"cannot reach Ray's job server at {address}: {err}") from None
        return _clients[address]


def submit(address: str, **kwargs: Any) -> str:
    """Submit a job; a submission id the cluster already has is not submitted again."""
    try:
        return str(client(address).submit_job(**kwargs))
    except BackendError:
        raise
    except Exception as err:
        if "already exists" in str(err):
            return str(kwargs["submission_id"])
        raise BackendError(f"Ray refused the job: {str(err).strip().splitlines()[-1][:500]}") from None


def stop(address: str, submission_id: str) -> bool:
    """Ask Ray to stop a job (the REST call ``stop_job`` makes: a sidecar acting on a "Stop run"
    alert need not load Ray's client). False: the job had already ended or is unknown."""
    body = _get(f"{address}/api/jobs/{urllib.parse.quote(submission_id)}/stop", method="POST")
    return bool(body and json.loads(body).get("stopped"))
