"""Real headless Chromium (Debian's ``chromium`` + ``chromium-driver``) driven by selenium,
and a real ``research-mcp ui`` process to point it at. Skips, saying why, where either is absent.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
PHONE = (390, 844)
LAPTOP = (1280, 900)


def need_browser() -> None:
    pytest.importorskip("selenium", reason="selenium is not installed (pip install -e '.[test]')")
    if not (os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER)):
        pytest.skip("Chromium or chromedriver missing: apt-get install chromium chromium-driver")


@contextmanager
def chromium(viewport: tuple[int, int] = LAPTOP) -> Iterator[Any]:
    """A headless Chromium showing pages at ``viewport`` (CSS pixels, as a phone reports them)."""
    need_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        width, height = viewport
        # Headless windows have a minimum width above a phone's; emulate the phone's screen.
        driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 500},
        )
        yield driver
    finally:
        driver.quit()


def text_of(driver: Any, css: str) -> str:
    """An element's text, or "" while the page is swapping that block in (stale or not there yet)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(driver.find_element("css selector", css).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def js_errors(driver: Any) -> list[str]:
    return [e["message"] for e in driver.get_log("browser") if e["level"] == "SEVERE"]


def artifacts(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$RESEARCH_MCP_ARTIFACTS`` if set, else a pytest temp dir (printed)."""
    chosen = os.environ.get("RESEARCH_MCP_ARTIFACTS")
    path = Path(chosen) if chosen else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    print(f"\nscreenshots: {path}")
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Dashboard:
    """``research-mcp ui`` as a user starts it; ``url`` is the login link it printed."""

    def __init__(self, state_dir: Path, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mcp_server", "ui", "--state-dir", str(state_dir), "--port", str(port)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
        )  # fmt: skip
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 30
        self.url = ""
        while time.monotonic() < deadline and not self.url:
            line = self.proc.stdout.readline()
            if not line:
                raise AssertionError(
                    f"research-mcp ui exited: {self.proc.stderr.read() if self.proc.stderr else ''}"
                )
            found = re.search(r"open: (\S+)", line)
            if found:
                self.url = found.group(1)
        assert self.url.startswith(f"http://127.0.0.1:{port}/ui?token="), self.url
        self.base = self.url.split("?")[0]
        self._wait_listening()

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError("research-mcp ui did not start listening")

    @property
    def token(self) -> str:
        return self.url.split("token=", 1)[1]

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
