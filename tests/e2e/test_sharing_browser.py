"""twinlens shared on a network, in a real browser: the server is started the way `make run
HOST=…` starts it (`python -m lib.app.serve`), bound to 127.0.0.1 but told it is shared
(`TWINLENS_SHARED=1`, as behind a reverse proxy), so no test opens a port to the network. A
browser that opens the address is a guest; one that opens the operator link the launcher printed
is the operator, and the secret leaves its address bar. On the History page, after a rename,
Delete… asks about the renamed comparison (the browser keeps the option's old text). On the
Features page, a guest's SAE path outside the listed folders gets one message, whatever is there."""

from __future__ import annotations

import os
import re
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlencode

import pytest
from test_browser import pytestmark  # noqa: F401  (skipped without Chromium)

from scripts.browser import go_to, serve, settle, streamlit_command, view_url

LINK = re.compile(r"http://127\.0\.0\.1:\d+/\?token=([A-Za-z0-9_-]+)")
SIDEBAR = "[data-testid=stSidebar]"
ERROR = "[data-testid=stMain] [data-testid=stAlertContentError]"


def launcher_command(host: str, port: int) -> list[str]:
    """The launcher `make run HOST=…` uses."""
    return [sys.executable, "-m", "lib.app.serve", "--host", host, "--port", str(port)]


def shared_server(log: Path, listed: Path | str, data: Path, launcher: bool = True,
                  timeout: float = 120) -> AbstractContextManager[str]:
    """A server on 127.0.0.1 with TWINLENS_SHARED=1, started by the launcher (`python -m
    lib.app.serve`) or by plain `streamlit run`; yields its base URL (its output goes to `log`)."""
    env = {"TWINLENS_SHARED": "1", "TWINLENS_MODELS": str(listed), "TWINLENS_DATA": str(data),
           "TWINLENS_OPERATOR_TOKEN": None, "ALLOW_REMOTE_EXPERT": None}
    return serve(log, timeout, env=env, command=launcher_command if launcher else streamlit_command,
                 host="127.0.0.1")


def printed_link(log: Path, timeout: float = 60) -> str:
    """The operator link the server printed in `log`."""
    deadline = time.monotonic() + timeout
    while not (found := LINK.search(log.read_text())):
        assert time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    return found.group(0)


def guest_sae(folder: Path, model) -> Path:
    """A small SAE for `model` (a LoadedModel) at residual 1, saved in `folder`."""
    import torch

    from lib.analyses.common.sae import save_saelens

    g, d = torch.Generator().manual_seed(0), model.d_model
    return save_saelens(folder, W_enc=torch.randn(d, 16, generator=g), b_enc=torch.zeros(16),
                        W_dec=torch.randn(16, d, generator=g), b_dec=torch.zeros(d), architecture="standard",
                        hook_name="blocks.1.hook_resid_pre", model_name=model.name, dtype="float32")


@pytest.fixture(scope="module")
def guest_files(tmp_path_factory, tiny_models) -> Path:
    """A folder the operator lists for guests, holding `sae`, an SAE for the tiny GPT-2."""
    folder = tmp_path_factory.mktemp("guest-files")
    guest_sae(folder / "sae", tiny_models["gpt2"])
    return folder


@pytest.fixture(scope="module")
def server(tmp_path_factory, tiny_folders, guest_files):
    """Listed: the tiny models' folder and `guest_files`."""
    root = tmp_path_factory.mktemp("shared-server")
    listed = f"{tiny_folders['gpt2'].parent}{os.pathsep}{guest_files}"
    with shared_server(root / "server.log", listed, root / "data") as base:
        yield base, printed_link(root / "server.log")


def sidebar_text(page) -> str:
    return page.locator(SIDEBAR).inner_text()


def test_a_browser_without_the_link_is_a_guest(server, browser, tiny_folders):
    base, _ = server
    page = browser.new_page()
    page.goto(base)
    page.locator(SIDEBAR).get_by_text("You are a guest").wait_for(timeout=180_000)
    settle(page)
    assert "Expert" not in sidebar_text(page) and "Trust remote code" not in sidebar_text(page)
    page.goto(view_url(base, "pages/compare.py", {"model": "/etc", "a": "x", "b": "y"}, default=True))
    error = page.locator(ERROR).first
    error.wait_for(timeout=180_000)
    settle(page)
    assert "not available on this shared twinlens" in error.inner_text()
    query = {"model": str(tiny_folders["gpt2"]), "a": "The capital of France is", "b": "Italy is"}
    page.goto(view_url(base, "pages/compare.py", query, default=True))
    page.locator(SIDEBAR).get_by_text("loaded by you").wait_for(timeout=180_000)
    assert page.locator(ERROR).count() == 0
    page.close()


def test_a_guest_cannot_tell_what_is_on_the_disk_from_the_features_sae_field(
    server, browser, tiny_folders, tiny_models, guest_files, tmp_path
):
    """The issue's probes (a system folder, a system file, nothing) and a good SAE outside the
    listed folders: the same words for each; the SAE in a listed folder is read."""
    base, _ = server
    secret = guest_sae(tmp_path / "secret-sae", tiny_models["gpt2"])
    page = browser.new_page()
    query = {"model": str(tiny_folders["gpt2"]), "a": "The capital of France is", "b": "Italy is"}
    page.goto(view_url(base, "pages/features.py", query))
    page.locator(SIDEBAR).get_by_text("You are a guest").wait_for(timeout=180_000)
    box = page.get_by_label("SAE folder", exact=True)
    errors = page.locator(ERROR)

    def use(path: str) -> str:
        if not box.is_visible():  # the expander closes when the page redraws around it
            page.get_by_text("Use another SAE").click()
        box.fill(path)
        box.press("Enter")
        page.wait_for_timeout(500)
        settle(page)
        exceptions = page.locator("[data-testid=stException]")
        assert exceptions.count() == 0, exceptions.first.inner_text()
        return "\n".join(errors.all_inner_texts()).replace("\\", "")

    settle(page)
    said = {path: use(path) for path in ("/etc", "/etc/passwd", "/nonexistent-xyz", str(secret))}
    for path, text in said.items():
        assert "is not available on this shared twinlens" in text, (path, text)
    assert len({text.replace(f"'{path}'", "'<typed>'", 1) for path, text in said.items()}) == 1, said
    assert use(str(guest_files / "sae")) == ""
    page.get_by_role("heading", name="Features × positions").wait_for(timeout=60_000)
    page.close()


def test_the_operator_link_gives_every_option_and_leaves_the_address_bar(server, browser):
    base, link = server
    page = browser.new_page()
    page.goto(link)
    page.locator(SIDEBAR).get_by_text("You are the operator").wait_for(timeout=180_000)
    settle(page)
    assert "token" not in page.url
    page.locator(SIDEBAR).get_by_text("Expert: options that run a model's code").click()
    page.locator(SIDEBAR).get_by_text("Trust remote code").wait_for(timeout=30_000)
    page.goto(base)  # a reload without the link starts a new session: a guest again
    page.locator(SIDEBAR).get_by_text("You are a guest").wait_for(timeout=180_000)
    page.close()


def test_a_wrong_secret_is_a_guest(server, browser):
    base, _ = server
    page = browser.new_page()
    page.goto(f"{base}/?token=not-the-secret")
    page.locator(SIDEBAR).get_by_text("does not match").wait_for(timeout=180_000)
    settle(page)
    assert "You are a guest" in sidebar_text(page) and "Expert" not in sidebar_text(page)
    page.close()


def test_history_delete_after_a_rename_asks_about_the_renamed_comparison(server, browser, tiny_folders):
    """One operator session (a page load would start a guest's): save a comparison twice, under two
    names; rename #1, press Delete…: the confirmation names #1 with its new name and its prompts."""
    _, link = server
    page = browser.new_page()
    query = {"model": str(tiny_folders["gpt2"]), "a": "The capital of France is",
             "b": "The capital of Italy is", "k": "3"}
    page.goto(f"{link}&{urlencode(query)}")
    page.locator(SIDEBAR).get_by_text("You are the operator").wait_for(timeout=180_000)
    page.get_by_label("Name").wait_for(timeout=180_000)
    settle(page)
    for name in ("first pair", "second pair"):  # two saves of this comparison under two names
        page.get_by_label("Name").fill(name)
        page.get_by_role("button", name="Save").click()
        page.get_by_text("Saved as #").wait_for(timeout=60_000)
        settle(page)
    go_to(page, "History")
    settle(page)
    page.locator("[data-testid=stMain] [data-testid=stSelectbox]").click()
    page.get_by_role("option", name=re.compile(r"^#1 · ")).click()
    settle(page)
    page.locator("[data-testid=stMain]").get_by_label("Name").fill("first, renamed")
    page.get_by_role("button", name="Rename").click()
    settle(page)
    page.get_by_role("button", name="Delete…").click()
    settle(page)
    warning = page.locator("[data-testid=stAlertContentWarning]").first.inner_text()
    assert "#1" in warning and "first, renamed" in warning and "Italy" in warning, warning
    assert "second pair" not in warning
    page.close()


def test_plain_streamlit_run_beyond_loopback_prints_an_operator_link_itself(browser, tmp_path, tiny_folders):
    """Started without the launcher: the first browser is a guest, and the server's console then
    shows an operator link made up for this process."""
    log = tmp_path / "server.log"
    with shared_server(log, tiny_folders["gpt2"].parent, tmp_path / "data", launcher=False) as base:
        page = browser.new_page()
        page.goto(base)
        page.locator(SIDEBAR).get_by_text("You are a guest").wait_for(timeout=180_000)
        page.goto(printed_link(log))
        page.locator(SIDEBAR).get_by_text("You are the operator").wait_for(timeout=180_000)
        page.close()
