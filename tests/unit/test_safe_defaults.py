"""Safe by default: the server listens on this machine only, no model code runs and no pickle is
read unless someone turns it on explicitly (never through a shared link), and no page lets HTML
through."""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import time
import tomllib
from pathlib import Path

from lib.app.cli import build_parser
from lib.app.request import Request
from lib.core.models import load_model

ROOT = Path(__file__).resolve().parents[2]


def test_streamlit_config_binds_localhost_and_make_run_defaults_to_it():
    config = tomllib.loads((ROOT / ".streamlit" / "config.toml").read_text())
    assert config["server"]["address"] == "localhost"
    assert re.search(r"^HOST\s*\?=\s*localhost\s*$", (ROOT / "Makefile").read_text(), re.M)


def test_server_listens_on_loopback_only(tmp_path):
    """`streamlit run dashboard.py` with no address option: its listening socket is 127.0.0.1."""
    from scripts.browser import _healthy, free_port

    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "dashboard.py", "--server.port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(240):
            if _healthy(f"http://localhost:{port}") or server.poll() is not None:
                break
            time.sleep(0.5)
        assert server.poll() is None
        listening = _listening_addresses(port)
        assert listening and set(listening) <= {"127.0.0.1", "::1"}, listening
    finally:
        server.terminate()
        server.wait(timeout=30)


def _listening_addresses(port: int) -> list[str]:
    """Local addresses of the sockets listening on `port`, from /proc/net/tcp and tcp6."""
    found = []
    for table, width in (("/proc/net/tcp", 8), ("/proc/net/tcp6", 32)):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, local_port = local.split(":")
            if state == "0A" and int(local_port, 16) == port:  # 0A = LISTEN
                raw = bytes.fromhex(address)
                if width == 8:
                    found.append(".".join(str(b) for b in raw[::-1]))
                else:  # four little-endian 32-bit words
                    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                    found.append("::1" if words == bytes(15) + b"\x01" else words.hex())
    return found


def test_model_code_and_pickle_are_off_unless_asked_for():
    defaults = inspect.signature(load_model).parameters
    assert defaults["trust_remote_code"].default is False
    assert defaults["allow_pickle"].default is False
    args = build_parser().parse_args(["compare", "a", "b"])
    assert args.trust_remote_code is False and args.allow_pickle is False
    assert Request().trust_remote_code is False and Request().allow_pickle is False


def test_a_shared_link_cannot_turn_on_model_code_or_pickle():
    link = {"model": "x", "a": "a", "b": "b", "trust_remote_code": "true", "allow_pickle": "1"}
    request = Request.from_query(link)
    assert request.trust_remote_code is False and request.allow_pickle is False
    assert not {"trust_remote_code", "allow_pickle"} & set(request.to_query())


def test_no_page_lets_html_through():
    sources = [ROOT / "dashboard.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "lib").glob("*.py")]
    assert [p.name for p in sources if "unsafe_allow_html" in p.read_text()] == []
