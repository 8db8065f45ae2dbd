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
from collections.abc import Callable, Iterator, Mapping, Sequence
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


def streamlit_command(host: str, port: int) -> list[str]:
    """`streamlit run dashboard.py`, headless, on `host`:`port`."""
    return [
        sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.headless", "true",
        "--server.port", str(port), "--server.address", host, "--browser.gatherUsageStats", "false",
    ]


@contextmanager
def serve(
    log: Path | None = None,
    timeout: float = 120,
    *,
    env: Mapping[str, str | None] | None = None,
    command: Callable[[str, int], Sequence[str]] = streamlit_command,
    host: str = "localhost",
) -> Iterator[str]:
    """Run the app headless on a free port of `host`; yield its base URL once it answers.

    command(host, port): what starts the server (`streamlit_command` by default; e.g. the
    `python -m lib.app.serve` launcher). env: variables added to this process's environment for the
    server (None removes one); HF_HUB_OFFLINE and TRANSFORMERS_OFFLINE are always set. The server
    (and anything it started) is stopped when the block exits.
    """
    port = free_port()
    url = f"http://{host}:{port}"
    environment = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    for name, value in (env or {}).items():
        if value is None:
            environment.pop(name, None)
        else:
            environment[name] = value
    out = open(log, "w") if log else subprocess.DEVNULL  # noqa: SIM115 (closed below)
    server = subprocess.Popen(list(command(host, port)), cwd=ROOT, env=environment, stdout=out,
                              stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while not _healthy(url):
            if server.poll() is not None:
                raise RuntimeError(f"the server exited with code {server.returncode}{_tail(log)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"the server did not answer on {url} within {timeout:.0f} s{_tail(log)}")
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


def _tail(log: Path | None) -> str:
    """The end of the server's log, for an error message."""
    return f"; its log ({log}) ends:\n{log.read_text()[-2000:]}" if log else ""


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


@contextmanager
def chromium_browser():
    """One headless Chromium for many contexts (`fresh_context`): the browser tests start it once
    per test process (Playwright allows one at a time per thread)."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


@contextmanager
def fresh_context(browser, width: int = 1600, height: int = 1100):
    """A new context of `browser` (Playwright's Browser): a fresh profile as a new visitor has it
    (no cookies, no storage, no cache), closed when the block exits."""
    context = browser.new_context(viewport={"width": width, "height": height}, accept_downloads=True)
    try:
        yield context
    finally:
        context.close()


def view_url(base: str, page_file: str, query: Mapping[str, str], default: bool = False) -> str:
    """The shareable URL of one page (`pages/logit_lens.py` → `/logit_lens`; the default page is `/`)."""
    path = "" if default else Path(page_file).stem
    return f"{base}/{path}?{urlencode(query)}"


def go_to(page, title: str, timeout: float = 60) -> None:
    """Click the navigation bar's link to the page `title` (every page has one, grouped by section:
    lib.app.views.nav_bar) and wait for that page's heading."""
    page.locator(".st-key-twinlens-nav").get_by_role("link", name=title, exact=True).first.click()
    page.get_by_role("heading", name=title).first.wait_for(timeout=timeout * 1000)


def settle(page, timeout: float = 180, quiet: float = 1.5) -> None:
    """Wait until the app's script has finished and stays finished for `quiet` seconds.

    "Not running" is not "drawn": elements whose code the browser loads on first use (the
    navigation's page links) appear 0.3–0.5 s after it on an idle machine, later under load (0.75 s
    was too short on a busy suite), and a run that reruns itself shows "not running" between its
    two runs.
    """
    deadline = time.monotonic() + timeout
    quiet_since = None
    while time.monotonic() < deadline:
        if page.locator(IDLE).count():
            quiet_since = quiet_since or time.monotonic()
            if time.monotonic() - quiet_since >= quiet:
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


@contextmanager
def opened_view(browser, url: str, page_file: str, query: Mapping[str, str], title: str):
    """A tab showing `page_file` for `query` on the server at `url`, in a fresh context of `browser`
    (a browser test's module fixture)."""
    with fresh_context(browser) as context:
        tab = context.new_page()
        open_view(tab, view_url(url, page_file, query), title)
        yield tab


def wait_for_chart(page, timeout: float = 60) -> None:
    """Wait until Vega has drawn a chart (its canvas or svg) on the page."""
    page.locator(CHART).first.wait_for(timeout=timeout * 1000)


def assert_no_exception(page) -> None:
    """The page shows no Streamlit exception box (its text is the assertion's message)."""
    exceptions = page.locator("[data-testid=stException]")
    assert exceptions.count() == 0, exceptions.first.inner_text()
