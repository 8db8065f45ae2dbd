"""Drive the app in a real browser: `streamlit run` on a free port and headless Chromium (Playwright).

Used by the browser tests (tests/e2e) and by `make screenshots`.

    >>> with serve() as base, chromium(tmp_dir) as context:
    ...     page = context.new_page()
    ...     open_view(page, view_url(base, "pages/logit_lens.py", request), "Logit lens")
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlencode

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's build; Playwright's own download is not needed
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
IDLE = "[data-testid=stApp][data-test-script-state=notRunning]"
CHART = "[data-testid=stVegaLiteChart] canvas, [data-testid=stVegaLiteChart] svg"
# The shareable URL's parameters for the pair the browser tests and the README screenshot use.
PAIR_QUERY = {"model": "default", "a": "The capital of France is", "b": "The capital of Italy is", "k": "5"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _healthy(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
            return response.status == 200
    except OSError:
        return False


@contextmanager
def serve(log: Path | None = None, timeout: float = 120) -> Iterator[str]:
    """Run `streamlit run dashboard.py` headless on a free localhost port; yield its base URL.

    The server (and anything it started) is stopped when the block exits.
    """
    port = free_port()
    url = f"http://localhost:{port}"
    command = [
        sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
        "--server.port", str(port), "--server.address", "localhost", "--browser.gatherUsageStats", "false",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    server = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if server.poll() is not None:
                raise RuntimeError(f"streamlit exited with code {server.returncode} (log: {log})")
            if time.monotonic() > deadline:
                raise TimeoutError(f"streamlit did not answer on {url} within {timeout:.0f} s (log: {log})")
            time.sleep(0.5)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        if log:
            out.close()


@contextmanager
def chromium(user_data_dir: Path, width: int = 1600, height: int = 1100):
    """A headless Chromium context with its own fresh profile in `user_data_dir`."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_data_dir), executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS,
            viewport={"width": width, "height": height},
        )
        try:
            yield context
        finally:
            context.close()


def view_url(base: str, page_file: str, query: Mapping[str, str], default: bool = False) -> str:
    """The shareable URL of one page (`pages/logit_lens.py` → `/logit_lens`; the default page is `/`)."""
    path = "" if default else Path(page_file).stem
    return f"{base}/{path}?{urlencode(query)}"


def settle(page, timeout: float = 180) -> None:
    """Wait until the app's script has finished and stays finished (a run may rerun itself)."""
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        if page.locator(IDLE).count():
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= 1.5:
                return
        else:
            quiet_since = None
        page.wait_for_timeout(250)
    raise TimeoutError(f"the app was still running after {timeout:.0f} s on {page.url}")


def open_view(page, url: str, title: str, timeout: float = 180) -> None:
    """Open `url` and wait until the page headed `title` has finished drawing."""
    page.goto(url)
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout * 1000)
    settle(page, timeout)


def wait_for_chart(page, timeout: float = 60) -> None:
    """Wait until Vega has drawn a chart (its canvas or svg) on the page."""
    page.locator(CHART).first.wait_for(timeout=timeout * 1000)
