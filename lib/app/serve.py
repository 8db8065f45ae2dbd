"""Start the app: `python -m lib.app.serve [--host H] [--port P] [--models dir1:dir2] [--guest-hub]`
(what `make run` does).

On loopback (the default, `localhost`) it simply runs `streamlit run dashboard.py`. When the
address reaches beyond loopback (`--host 0.0.0.0`, or `TWINLENS_SHARED=1`), it first makes up the
operator secret of this start, passes it to the app in `$TWINLENS_OPERATOR_TOKEN`, and prints the
operator link (`http://…/?token=…`): the browser that opens it is the operator, every other is a
guest (see lib.app.access and the README's "Sharing on a network").
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from . import access

ROOT = Path(__file__).resolve().parents[2]


def parse(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lib.app.serve", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="localhost", help="address to listen on (default: localhost)")
    parser.add_argument("--port", type=int, default=8501)
    parser.add_argument("--models", default=None,
                        help=f"folders guests may load models from, separated by '{os.pathsep}' "
                        f"(default: ${access.MODELS_ENV})")
    parser.add_argument("--guest-hub", action="store_true",
                        help="let guests make this server fetch models and SAEs from the Hugging Face "
                        f"hub (default: ${access.HUB_ENV}, else off)")
    return parser.parse_args(argv)


def network_names() -> list[str]:
    """How other machines may reach this one: its host name and the address of its default route
    (found without sending anything)."""
    names = [socket.gethostname()]
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect(("192.0.2.1", 9))  # TEST-NET-1: UDP connect only picks the route
            names.append(probe.getsockname()[0])
    except OSError:
        pass
    return [n for n in names if n and not access.is_loopback(n)]


def prepare(host: str, port: int, models: str | None, environ: Mapping[str, str], names: Sequence[str] = (),
            guest_hub: bool = False) -> tuple[dict[str, str], list[str], list[str]]:
    """The app's environment, the streamlit command and the lines to print, for a start on `host`."""
    env = dict(environ)
    if models is not None:
        env[access.MODELS_ENV] = models
    if guest_hub:
        env[access.HUB_ENV] = "1"
    command = [sys.executable, "-m", "streamlit", "run", str(ROOT / "dashboard.py"),
               "--server.address", host, "--server.port", str(port)]
    if not access.listens_beyond_loopback(host, env):
        env.pop(access.TOKEN_ENV, None)
        return env, command, [f"twinlens: http://{host}:{port} (this machine only)"]
    token = env[access.TOKEN_ENV] = access.new_token()
    command += ["--server.headless", "true"]  # a browser opened here without the link would be a guest
    policy = access.Policy.make(host, env)
    folders = ", ".join(str(f) for f in policy.folders) or "none (guests: 'default' only)"
    hub = ("guests may make this server fetch from the hub (--guest-hub)" if policy.guest_hub
           else "no hub fetches for guests (--guest-hub allows them)")
    lines = [
        f"twinlens is shared on the network (listening on {host}:{port}).",
        "Operator link: every option, for you only (a new secret at each start; do not share it):",
        *(f"    {link}" for link in access.operator_links(host, port, token, names)),
        "Everyone else opens the address without ?token=… and is a guest: no remote code, no pickle",
        f"weights, model and SAE folders only inside: {folders}; {hub}.",
    ]
    if policy.remote_expert:
        lines.append("ALLOW_REMOTE_EXPERT=1: guests get every model option too; the app warns everyone.")
    return env, command, lines


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    env, command, lines = prepare(args.host, args.port, args.models, os.environ, network_names(),
                                  guest_hub=args.guest_hub)
    print("\n".join(lines), flush=True)
    os.chdir(ROOT)
    os.execvpe(command[0], command, env)


if __name__ == "__main__":
    main()
