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
  and models only `default` and folders inside those the operator listed at start
  (`$TWINLENS_MODELS`, separated by `:`).
- **Every path or remote spec a user types** (a model, an SAE folder or `params.npz`, an `hf:` SAE,
  and whatever later pages read or write by name) goes through one function before anything
  touches the disk or the network: `Access.check_input(text, kind)`. The app's inputs that take
  one are declared in `PATH_INPUTS` (a test walks them all as a guest). For a guest: only paths
  whose real location (symlinks followed) is inside a listed folder — the same `$TWINLENS_MODELS`
  list holds the models and the analysis files guests may read — and one message for everything
  else, the same whether it exists, is a file or is nothing. Hub fetches (`org/name` model ids,
  `hf:` SAEs) only when the operator allowed them at start (`--guest-hub`, `TWINLENS_GUEST_HUB=1`;
  off by default). Uploads stay the way a guest brings its own files. The operator's inputs pass
  unchanged (and get the library's detailed messages); the command line is the operator's own
  tool and is not restricted. `ALLOW_REMOTE_EXPERT=1` at start gives guests the operator's model
  options and paths too (the app then shows a warning banner to everyone).
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
HUB_ENV = "TWINLENS_GUEST_HUB"  # guests may make the server fetch from the Hugging Face hub
HUB_PREFIX = "hf:"  # a remote spec: hf:owner/repo/folder/inside/it
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


@dataclass(frozen=True)
class Kind:
    """What a typed path or spec names: `what` for the refusal ("an SAE"); `hub`, how it is fetched
    from the hub — "id" (a model id such as gpt2), "hf:" (`hf:owner/repo/folder`) or "" (never);
    `writes`: a place to write, refused to guests (a guest downloads what it wants to keep)."""

    what: str
    hub: str = ""
    writes: bool = False

    @property
    def hub_form(self) -> str:
        return {"id": "a hub id such as gpt2", HUB_PREFIX: "hf:owner/repo/folder"}.get(self.hub, "")


KINDS = {  # other pages add their kinds here (and their inputs to PATH_INPUTS)
    "model": Kind("a model", hub="id"),
    "sae": Kind("an SAE (SAELens folder or Gemma Scope params.npz)", hub=HUB_PREFIX),
    "lens": Kind("a lens file"),
    "set": Kind("a file of prompts"),
    "destination": Kind("a place to write", writes=True),
}


@dataclass(frozen=True)
class PathInput:
    """A text input of the app where a user types a path or a remote spec (`key`: its widget key;
    `page`: the file that draws it, `dashboard.py` for the sidebar). Its value goes through
    `Access.check_input(value, kind)` before anything reads it."""

    page: str
    key: str
    kind: str


PATH_INPUTS = (  # every such input of every page: tests/app/test_guest_paths.py walks them as a guest
    PathInput("dashboard.py", "model", "model"),
    PathInput("dashboard.py", "model2", "model"),
    PathInput("pages/features.py", "features-sae", "sae"),
)


def refused(spec: str, kind: str, folders: Sequence[Path], hub: bool = False) -> str:
    """The one message a guest gets for a path or spec of `kind` it may not use: it never depends
    on what is on the disk (only on the server's settings: the listed folders, the hub)."""
    what = KINDS[kind]
    if what.writes:
        return (f"'{spec}' is not available on this shared twinlens: guests cannot write on the "
                "server; download the file instead.")
    where = ": " + ", ".join(str(f) for f in folders) if folders else " (the operator listed none)"
    options = ["'default'"] if kind == "model" else []
    if hub and what.hub_form:
        options.append(what.hub_form)
    options.append(f"{what.what} in a folder the operator listed{where}")
    listing = options[0] if len(options) == 1 else ", ".join(options[:-1]) + " or " + options[-1]
    return f"'{spec}' is not available on this shared twinlens. Guests can use {listing}."


def model_refused(spec: str, folders: Sequence[Path], hub: bool = False) -> str:
    """The one message a guest gets for a model it may not load: the same whether `spec` exists."""
    return refused(spec, "model", folders, hub)


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


def is_hub_spec(text: str) -> bool:
    """Shaped like `hf:owner/repo[/folder/inside/it]`: a hub id, then plain names (no `..`, `.`
    or empty part, which could lead out of the downloaded snapshot to this machine's folders)."""
    parts = text.removeprefix(HUB_PREFIX).split("/")
    return (len(parts) >= 2 and is_hub_id("/".join(parts[:2]))
            and all(_HUB_ID.fullmatch(part) and ".." not in part for part in parts[2:]))


def inside(path: Path, folders: Sequence[Path]) -> bool:
    return any(path == folder or folder in path.parents for folder in folders)


@dataclass(frozen=True)
class Access:
    """What one browser session may do.

    `operator`: opened the operator link, or the server is not shared. `expert`: may use trust
    remote code, pickle weights and any folder (the operator, or everyone with ALLOW_REMOTE_EXPERT).
    `owner`: this session's random id, stored with what it saves. `shared`: the server is shared.
    `folders`: where a guest's paths may lead. `hub`: may make the server fetch from the hub.
    """

    operator: bool
    expert: bool
    owner: str
    shared: bool = False
    folders: tuple[Path, ...] = ()
    hub: bool = False  # may make the server fetch from the hub (a guest only with --guest-hub)

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

    def check_input(self, text: str, kind: str, cwd: Path | None = None) -> str:
        """The one gate for a path or remote spec a user typed, of `kind` (a key of KINDS): returns
        what to read (the operator's text as typed; a guest's path resolved, symlinks followed) or
        raises AccessError with `refused(...)`, whose words never depend on what is on the disk.
        Nothing is read here but the path's own resolution (and, for a hub-shaped model id,
        whether a file of that name exists here). A guest gets: paths inside a listed folder;
        `hf:` specs and hub model ids only when `hub`; 'default' for models; no place to write."""
        text = (text or "").strip()
        if kind not in KINDS:
            raise ValueError(f"unknown kind of path {kind!r}: add it to KINDS")
        if self.expert or not text:
            return text
        if kind == "model" and text == DEFAULT_SPEC:
            return text
        if KINDS[kind].writes:
            raise AccessError(refused(text, kind, self.folders, self.hub))
        hub = KINDS[kind].hub if self.hub else ""
        if text.startswith(HUB_PREFIX):
            if hub == HUB_PREFIX and is_hub_spec(text):
                return text
            raise AccessError(refused(text, kind, self.folders, self.hub))
        real = self._listed(text, cwd)
        if real is not None:
            return text if kind == "model" else str(real)
        if hub == "id" and is_hub_id(text) and not _on_disk(text, cwd):
            return text
        raise AccessError(refused(text, kind, self.folders, self.hub))

    def check_model(self, spec: str, cwd: Path | None = None) -> None:
        """Refuse (AccessError) a model this session may not load; the message never depends on
        what is on the disk. Allowed for a guest: 'default', a path whose real location is inside
        a listed folder, and (with `hub`) a hub id that is not also a path here."""
        self.check_input(spec, "model", cwd)

    def _listed(self, text: str, cwd: Path | None) -> Path | None:
        """`text`'s real location (symlinks followed) when it is inside a listed folder, else None."""
        try:
            real = ((cwd or Path.cwd()) / Path(text).expanduser()).resolve()
        except (OSError, RuntimeError, ValueError):  # a symlink loop, a NUL byte, ~unknown-user...
            return None
        return real if inside(real, self.folders) else None

    def explain_failure(self, spec: str, exc: TwinlensError) -> TwinlensError:
        """For a guest, a hub id that could not be found (or fetched) gets the same message as a
        refused path, so a refusal cannot be told apart from "no such model" (what is on the
        disk stays unsaid); everything else is returned as it is."""
        if self.expert or not isinstance(exc, ModelLoadError) or not is_hub_id(spec.strip()):
            return exc
        if _not_found(exc):
            return AccessError(model_refused(spec.strip(), self.folders, self.hub))
        return exc


@dataclass(frozen=True)
class Policy:
    """The server's sharing settings, read from its configuration when it starts."""

    shared: bool
    token: str = ""
    folders: tuple[Path, ...] = ()
    remote_expert: bool = False
    guest_hub: bool = False

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
            guest_hub=shared and _flag(environ.get(HUB_ENV)),
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
            shared=self.shared, folders=self.folders, hub=operator or self.remote_expert or self.guest_hub,
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


def _on_disk(text: str, cwd: Path | None) -> bool:
    """Whether `text` names something here (a broken symlink counts; so does what cannot be
    checked): a hub-shaped name that is also a path is a path, never sent to the hub."""
    try:
        return os.path.lexists((cwd or Path.cwd()) / Path(text).expanduser())
    except (OSError, RuntimeError, ValueError):
        return True


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
