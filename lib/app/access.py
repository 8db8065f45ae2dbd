"""Who may do what when twinlens is shared on a network: the operator and the guests.

Plain Python (no Streamlit): `lib.app.ui` asks these functions, once per browser session run.

- The server is **shared** when it listens beyond loopback: its configured address
  (Streamlit's `server.address`) is not 127.0.0.0/8, ::1 or `localhost` — an unset address
  counts as shared, since Streamlit then listens on every interface — or when `TWINLENS_SHARED=1`
  (e.g. behind a reverse proxy on the same machine). The client's IP address is never consulted:
  Streamlit documents it as spoofable.
- On a server that is not shared, every browser is the **operator** (as before sharing existed).
- On a shared server, the operator is a browser that opened the operator link, which carries the
  random secret of this server start (`?token=…`, Jupyter's convention; `$TWINLENS_OPERATOR_TOKEN`,
  set by `python -m lib.app.serve`, else made up at the first request and printed on the
  server's console). Every other browser is a **guest**: no trust-remote-code, no pickle weights,
  and models only `default`, hub ids, and folders inside those the operator listed at start
  (`$TWINLENS_MODELS`, separated by `:`). Any other path is refused with one message, the same
  whether it exists or not. `ALLOW_REMOTE_EXPERT=1` at start gives guests the operator's model
  options too (the app then shows a warning banner to everyone).
- Saved comparisons: anyone may save, reopen and read the list; renaming, deleting and exporting
  everything belong to the operator, and renaming/deleting one's own saves to the browser session
  that saved it (`Access.owner`, a random id per session stored with the entry).
- Loaded models are shared: a guest's load never evicts a model the operator loaded (`eviction`).

    >>> policy = Policy.make(address="0.0.0.0", environ={"TWINLENS_OPERATOR_TOKEN": "s3cret"})
    >>> policy.access(proof="s3cret", owner="tab-1").operator, policy.access(None, "tab-2").operator
    (True, False)
"""

from __future__ import annotations

import hmac
import ipaddress
import os
import re
import secrets
import threading
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import ModelLoadError, TwinlensError, causes

TOKEN_ENV = "TWINLENS_OPERATOR_TOKEN"
MODELS_ENV = "TWINLENS_MODELS"
EXPERT_ENV = "ALLOW_REMOTE_EXPERT"
SHARED_ENV = "TWINLENS_SHARED"
TOKEN_PARAM = "token"  # the operator link's query parameter
DEFAULT_SPEC = "default"
_TRUE = {"1", "true", "yes", "on"}
_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?")


class AccessError(TwinlensError):
    """Something this browser may not do on a shared twinlens (a guest asking for an operator's option)."""


EXPERT_REFUSED = (
    "Trust remote code and pickle weights are for the operator of this shared twinlens (the person "
    "who started it) only: the model's files would run code on their machine."
)
HISTORY_REFUSED = (
    "Only the operator, or the browser session that saved it, can {what} saved comparison #{id}."
)
EVICTION_REFUSED = (
    "The models in memory were loaded by the operator and no more fit ({capacity} at most); a guest "
    "cannot unload them. Use one of them ({held}), or ask the operator."
)


def model_refused(spec: str, folders: Sequence[Path]) -> str:
    """The one message a guest gets for a model it may not load: the same whether `spec` exists."""
    where = ": " + ", ".join(str(f) for f in folders) if folders else " (the operator listed none)"
    return (
        f"'{spec}' is not available on this shared twinlens. Guests can use 'default', a hub id "
        f"this server can fetch, or a model in a folder the operator listed{where}."
    )


def is_loopback(address: str | None) -> bool:
    """Whether a server configured to listen on `address` is reachable from this machine only.
    Unset or empty means every interface (Streamlit's default); a name other than localhost is
    not trusted to be local."""
    address = (address or "").strip().strip("[]").lower()
    if address in ("localhost", "localhost.", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def listens_beyond_loopback(address: str | None, environ: Mapping[str, str] = os.environ) -> bool:
    """The server's own setting decides (never the client): `TWINLENS_SHARED=1` or a non-loopback address."""
    return _flag(environ.get(SHARED_ENV)) or not is_loopback(address)


def listed_folders(value: str | None, cwd: Path | None = None) -> tuple[Path, ...]:
    """The model folders the operator listed (`dir1:dir2`, as PATH is written), resolved
    (symlinks followed) against `cwd`; empty entries and ones that cannot be resolved are skipped."""
    base = cwd or Path.cwd()
    folders = []
    for part in (p.strip() for p in (value or "").split(os.pathsep)):
        try:
            if part:
                folders.append((base / Path(part).expanduser()).resolve())
        except (OSError, RuntimeError, ValueError):  # ~unknown-user, a symlink loop: lists nothing
            continue
    return tuple(dict.fromkeys(folders))


def is_hub_id(spec: str) -> bool:
    """Shaped like a model id on the hub: `name` or `org/name` (no `..`, no leading `.`, `/` or `~`)."""
    return bool(_HUB_ID.fullmatch(spec)) and ".." not in spec


def inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


@dataclass(frozen=True)
class Access:
    """What one browser session may do.

    `operator`: opened the operator link, or the server is not shared. `expert`: may use trust
    remote code, pickle weights and any folder (the operator, or everyone with ALLOW_REMOTE_EXPERT).
    `owner`: this session's random id, stored with what it saves. `shared`: the server is shared.
    """

    operator: bool
    expert: bool
    owner: str
    shared: bool = False
    folders: tuple[Path, ...] = ()

    @property
    def role(self) -> str:
        return "operator" if self.operator else "guest"

    def may_manage(self, saved_by: str) -> bool:
        """Rename or delete a saved comparison stored with owner `saved_by` ('' = before sharing)."""
        return self.operator or (
            bool(self.owner) and hmac.compare_digest(self.owner.encode(), (saved_by or "").encode())
        )

    def check_options(self, trust_remote_code: bool, allow_pickle: bool) -> None:
        if (trust_remote_code or allow_pickle) and not self.expert:
            raise AccessError(EXPERT_REFUSED)

    def check_model(self, spec: str, cwd: Path | None = None) -> None:
        """Refuse (AccessError) a model this session may not load; the message never depends on
        what is on the disk. Allowed for a guest: 'default', a hub id that is not also a path
        here, a path whose real location is inside a listed folder."""
        if self.expert:
            return
        spec = (spec or "").strip()
        if spec == DEFAULT_SPEC:
            return
        try:
            path = (cwd or Path.cwd()) / Path(spec).expanduser()
            if inside(path.resolve(), self.folders):
                return
            on_disk = os.path.lexists(path)
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte...
            on_disk = True
        if is_hub_id(spec) and not on_disk:
            return
        raise AccessError(model_refused(spec, self.folders))

    def explain_failure(self, spec: str, exc: TwinlensError) -> TwinlensError:
        """For a guest, a hub id that could not be found (or fetched) gets the same message as a
        refused path, so a refusal cannot be told apart from "no such model" (what is on the
        disk stays unsaid); everything else is returned as it is."""
        if self.expert or not isinstance(exc, ModelLoadError) or not is_hub_id(spec.strip()):
            return exc
        if _not_found(exc):
            return AccessError(model_refused(spec.strip(), self.folders))
        return exc


@dataclass(frozen=True)
class Policy:
    """The server's sharing settings, read from its configuration when it starts."""

    shared: bool
    token: str = ""
    folders: tuple[Path, ...] = ()
    remote_expert: bool = False

    @classmethod
    def make(cls, address: str | None, environ: Mapping[str, str] = os.environ,
             cwd: Path | None = None, token: str | None = None) -> Policy:
        """From Streamlit's `server.address` and the environment (`TWINLENS_*`, `ALLOW_REMOTE_EXPERT`);
        the secret is `token`, else `$TWINLENS_OPERATOR_TOKEN` (none when not shared: no guests)."""
        shared = listens_beyond_loopback(address, environ)
        secret = token if token is not None else (environ.get(TOKEN_ENV) or "").strip()
        return cls(
            shared=shared,
            token=secret if shared else "",
            folders=listed_folders(environ.get(MODELS_ENV), cwd),
            remote_expert=shared and _flag(environ.get(EXPERT_ENV)),
        )

    def is_operator_proof(self, proof: object) -> bool:
        """Whether `proof` (what a session kept from the operator link) is this start's secret."""
        if not (self.token and isinstance(proof, str) and proof):
            return False
        return hmac.compare_digest(proof.encode(), self.token.encode())

    def access(self, proof: object, owner: str) -> Access:
        """The rights of a session that holds `proof` (or None) and saves as `owner`."""
        operator = not self.shared or self.is_operator_proof(proof)
        return Access(
            operator=operator, expert=operator or self.remote_expert, owner=owner,
            shared=self.shared, folders=self.folders,
        )


def new_token() -> str:
    """A fresh operator secret (32 random bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


_made_up: dict[str, str] = {}
_made_up_lock = threading.Lock()


def process_token(environ: Mapping[str, str] = os.environ) -> tuple[str, bool]:
    """This server's operator secret: `$TWINLENS_OPERATOR_TOKEN`, else one made up once per process.
    Returns (token, made_now): made_now is True the one time it was made, so it can be printed."""
    given = (environ.get(TOKEN_ENV) or "").strip()
    if given:
        return given, False
    with _made_up_lock:
        if "token" in _made_up:
            return _made_up["token"], False
        _made_up["token"] = new_token()
        return _made_up["token"], True


def operator_links(host: str | None, port: int, token: str, names: Sequence[str] = ()) -> list[str]:
    """The operator link(s) to print: this machine first, then `names` (the host's name or
    address on the network) when the server listens on every interface."""
    wildcard = (host or "") in ("", "0.0.0.0", "::", "[::]")
    hosts = ["127.0.0.1", *names] if wildcard else [host]
    return [f"http://{_url_host(h)}:{port}/?{TOKEN_PARAM}={token}" for h in dict.fromkeys(hosts)]


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def eviction(held: Sequence[tuple[Hashable, bool]], capacity: int, by_operator: bool) -> Hashable | None:
    """Which loaded model to unload before one more is loaded, or None when there is room.

    `held`: (key, loaded by the operator) for each model in memory, least recently used first.
    The operator unloads the least recently used model; a guest only a model a guest loaded, and
    is refused (AccessError) when every model in memory is the operator's.
    """
    if len(held) < capacity:
        return None
    candidates = [key for key, operators in held if by_operator or not operators]
    if not candidates:
        names = ", ".join(str(getattr(key, "spec", key)) for key, _ in held)
        raise AccessError(EVICTION_REFUSED.format(capacity=capacity, held=names))
    return candidates[0]


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in _TRUE


def _not_found(exc: BaseException) -> bool:
    """Whether `exc` was caused by a model id the hub does not have or cannot be asked about."""
    from huggingface_hub import errors as hub

    kinds = (hub.RepositoryNotFoundError, hub.LocalEntryNotFoundError, hub.OfflineModeIsEnabled,
             hub.HFValidationError, hub.EntryNotFoundError, ConnectionError)
    chain = causes(exc)
    if any(isinstance(e, kinds) or type(e).__name__ in ("ConnectError", "TransportError") for e in chain):
        return True
    text = str(exc)
    return "no such folder here" in text or "cannot be reached" in text
