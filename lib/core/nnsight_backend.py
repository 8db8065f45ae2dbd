"""The nnsight backend: the same named sites, interventions and reductions, run as an nnsight trace.

`lib.core.hooks.HooksBackend` puts PyTorch hooks on a model in this process. This backend runs
the same `Backend.run` as one `nnsight` trace (nnsight 0.8, `TransformersModel`), which is what
lets a run leave this machine: with `remote=True` the trace is serialized and executed on NDIF
next to the model's weights, and only what the trace saves comes back. Everything a run asks for
happens *inside* the trace, in the same order and with the same meaning as the hooks:

    residual ℓ < L   block ℓ's `.input` (its hidden states)
    residual L       the last block's `.output` (the tensor itself on transformers 5; the first
                     element where a family still returns a tuple)
    hook_attn_out    `.output` of BlockParts.attn_out; hook_mlp_out of BlockParts.mlp_out
    hook_z           `.input` of the attention's output projection, split by head
    hook_pattern     `.output[1]` of the attention module (eager attention only)

Interventions are written into the site's value (a clone, edited with `Intervention.apply`, then
assigned back), before the site is recorded; `reduce(Run)` is called inside the trace, so with a
reduce only its result is saved — for NDIF, what crosses the network is that result and never
a full [L+1, pos, d] residual stream (docs/scale.md gives the sizes).

    remote=False     run on the model loaded in this process (the parity tests compare this
                     with the hooks backend on every tiny family)
    remote="local"   nnsight's remote path without a network: the trace is serialized and
                     deserialized as for NDIF, then run here (tests use it)
    remote=True      NDIF; the API key comes from `NDIF_API_KEY` (never logged or returned)

nnsight is not thread-safe: every trace holds the model's lock (`LoadedModel.lock`), the same
lock the hooks backend and the load-time check take.
"""

from __future__ import annotations

import inspect
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

import torch

from .backend import Intervention, Run
from .errors import RemoteError, SettingsError
from .hooks import eager_attention_on
from .sites import Site

if TYPE_CHECKING:
    from .models import LoadedModel

T = TypeVar("T")
Remote = bool | str  # False, True (NDIF) or "local" (nnsight's serialization path, run here)
API_KEY_ENV = "NDIF_API_KEY"
# Where each kind of site sits inside one block, in the order the block computes them: an
# nnsight trace must read the modules of one forward pass in execution order.
_ORDER = {"resid_pre": 0, "z": 1, "pattern": 2, "attn_out": 3, "mlp_out": 4, "resid_post": 5}


@dataclass(frozen=True)
class _Access:
    """One value the trace reads: module `path`'s input (`pre`) or output, the sites it carries,
    and the interventions written into it."""

    path: str
    pre: bool
    sites: tuple[Site, ...]
    changes: tuple[Intervention, ...]


def _first(value: object) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value  # type: ignore[return-value]


def _replace_first(value: object, new: torch.Tensor) -> object:
    return (new, *value[1:]) if isinstance(value, tuple) else new


def wrap(loaded: LoadedModel):
    """nnsight's `TransformersModel` around the module `loaded` already holds (no second copy of
    the weights; `task` given, so nothing is looked up on the hub)."""
    from nnsight.modeling.transformers import TransformersModel

    return TransformersModel(loaded.model, task="text-generation", tokenizer=loaded.tokenizer)


class NnsightBackend:
    """`lib.core.backend.Backend` as nnsight traces on `loaded.model` (see the module docstring)."""

    def __init__(self, loaded: LoadedModel, *, remote: Remote = False, envoy: object | None = None) -> None:
        if remote not in (False, True, "local"):
            raise SettingsError(f"remote must be False, True (NDIF) or 'local', not {remote!r}.")
        self.loaded = loaded
        self.remote = remote
        self.n_layers = loaded.n_layers
        self.d_model = loaded.d_model
        self.vocab_size = loaded.vocab_size
        self.skips_blocks = False  # start_at / stop_early: the protocol's numbers, every block still runs
        self.envoy = envoy if envoy is not None else wrap(loaded)
        if remote:
            # NDIF has no twinlens installed: the code a trace calls (Intervention.apply, a view's
            # reduce) is shipped by value, as source, with each request
            from nnsight import register

            register(__name__.split(".")[0])
        self._paths = {id(m): name for name, m in loaded.model.named_modules()}
        forward = inspect.signature(loaded.model.forward).parameters
        self._logits_to_keep = "logits_to_keep" in forward
        self.traces = 0  # how many traces ran (remote jobs, for NDIF)

    # -- the Backend protocol -------------------------------------------------------------

    def run(
        self,
        input_ids: torch.Tensor,
        *,
        sites: Sequence[Site] = (),
        interventions: Sequence[Intervention] = (),
        all_positions: bool = False,
        reduce: Callable[[Run], T] | None = None,
        stop_early: bool = False,
        eager_attention: bool = False,
        start_at: int = 0,
    ) -> Run | T:
        """Forward `input_ids` [batch, pos] once in one trace (see `Backend.run`); with `reduce`,
        only `reduce(Run)` is saved by the trace and returned.

        `stop_early` and `start_at` give the protocol's results without its savings: the trace
        still runs every block (a run starting at ℓ replaces the whole residual ℓ, so what the blocks
        below computed is overwritten and the numbers are the same). `eager_attention` switches a
        local model to eager attention for the pass; a remote model runs with the host's kernel."""
        loaded = self.loaded
        for site in (*sites, *(i.site for i in interventions)):
            site.check(self.n_layers)
        plan = self._plan(sites, interventions)
        n = self.n_layers
        wanted = {s: s.canonical(n) for s in sites}
        n_heads = loaded.architecture.n_heads
        kwargs: dict = {"use_cache": False}
        if self._logits_to_keep and not all_positions:
            kwargs["logits_to_keep"] = 1
        ids = input_ids.to(loaded.device).contiguous()
        with loaded.lock, torch.inference_mode(), _remote_errors(self.remote), ExitStack() as stack:
            if eager_attention and not self.remote:
                stack.enter_context(eager_attention_on(loaded.model))
            loaded.forward_passes += 1
            self.traces += 1
            saved = _trace(
                self.envoy, ids, kwargs, plan, wanted, n_heads, all_positions, reduce, self.remote
            )
        if reduce is None:
            logits = saved.logits.to(loaded.device)
            return Run(logits=logits[:, :0] if stop_early else logits, activations=dict(saved.activations))
        return saved

    def gradients(self, input_ids: torch.Tensor, sites: Sequence[Site], metric: Callable) -> None:
        """Not offered by this backend yet: attribution patching needs the local backend."""
        raise SettingsError(
            "Attribution patching (gradients) runs on the local backend only; choose backend 'local'."
        )

    def generate(self, input_ids: torch.Tensor, max_new_tokens: int, **settings: object) -> None:
        """Not offered by this backend yet: continuations and steering need the local backend."""
        raise SettingsError(
            "Continuations (and steering) run on the local backend only; choose backend 'local'."
        )

    def lens_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Final norm, unembedding and output step on residuals [n, d_model] → [n, vocab] float32.

        Locally the modules are called directly, like the hooks backend; remotely (NDIF, or
        "local") they are called inside a trace on the server's weights."""
        loaded = self.loaded
        if not self.remote:
            with loaded.lock, torch.inference_mode():
                return loaded.architecture.logits(hidden.to(loaded.device))
        arch = loaded.architecture
        paths = [self._path(m) for m in (arch.final_norm, arch.project_out) if m is not None]
        unembed = self._path(arch.unembed)
        probe = torch.zeros((1, 1), dtype=torch.long, device=loaded.device)
        with loaded.lock, torch.inference_mode(), _remote_errors(self.remote):
            self.traces += 1
            hidden = hidden.to(loaded.device)
            return _lens_trace(self.envoy, probe, hidden, paths, unembed, arch, self.remote)

    # -- the plan: which module values a run reads, in execution order -------------------

    def _path(self, module: torch.nn.Module) -> str:
        return self._paths[id(module)]

    def _plan(self, sites: Sequence[Site], interventions: Sequence[Intervention]) -> tuple[_Access, ...]:
        """One access per module value touched, ordered as the forward pass reaches them."""
        n = self.n_layers
        changes: dict[Site, list[Intervention]] = defaultdict(list)
        for intervention in interventions:
            changes[intervention.site.canonical(n)].append(intervention)
        touched = sorted(
            {s.canonical(n) for s in sites} | set(changes), key=lambda s: (s.layer, _ORDER[s.kind])
        )
        grouped: dict[tuple[str, bool], list[Site]] = {}
        for site in touched:
            module, pre = self.loaded.architecture.site_module(site)
            grouped.setdefault((self._path(module), pre), []).append(site)
        return tuple(
            _Access(path, pre, tuple(group), tuple(c for s in group for c in changes.get(s, ())))
            for (path, pre), group in grouped.items()
        )


def _trace(envoy, ids, kwargs, plan, wanted, n_heads, all_positions, reduce, remote):
    """The trace itself. nnsight runs the body of the `with` next to the forward pass (and, for
    NDIF, on the server), so it only uses what it is given and saves one value."""
    import nnsight

    with envoy.trace(ids, remote=remote, **kwargs):
        recorded = {}
        for access in plan:
            module = envoy.get(access.path)
            value = module.input if access.pre else module.output
            act = _first(value)
            flat = act.dim() == 2 and act.shape[0] == ids.shape[0] * ids.shape[1]  # OPT's fc2
            if flat:
                act = act.view(ids.shape[0], ids.shape[1], act.shape[-1])
            if access.changes:
                new = act.clone()
                for change in access.changes:
                    change.apply(new, n_heads)
                handed = new.reshape(-1, new.shape[-1]) if flat else new
                if access.pre:
                    module.input = handed
                else:
                    module.output = _replace_first(value, handed)
                act = new
            for site in access.sites:
                if site.kind == "pattern":
                    weights = value[1] if isinstance(value, tuple) and len(value) > 1 else None
                    if weights is None:
                        raise SettingsError(
                            "This model's attention kernel returns no weights; run it with eager "
                            "attention to read attention patterns."
                        )
                    recorded[site] = weights.detach().clone()
                elif site.kind == "z":
                    recorded[site] = act.detach().clone().unflatten(-1, (n_heads, -1))
                else:
                    recorded[site] = act.detach().clone()
        logits = envoy.output.logits
        logits = logits.float() if all_positions else logits[:, -1, :].float()
        result = Run(logits=logits, activations={s: recorded[c] for s, c in wanted.items()})
        if reduce is not None:
            result = reduce(result)
        saved = nnsight.save(result)
    return saved


def _lens_trace(envoy, probe, hidden, paths, unembed, arch, remote):
    """Call the final norm, projection and unembedding modules on `hidden` inside one trace."""
    import nnsight

    with envoy.trace(probe, remote=remote, use_cache=False):
        h = hidden
        for path in paths:
            h = envoy.get(path)(h)
        logits = nnsight.save(arch.transform_logits(envoy.get(unembed)(h)))
    return logits


# -- remote failures: one plain message each -------------------------------------------------


def api_key() -> str | None:
    """The NDIF API key from the environment (never printed, logged or saved)."""
    key = os.environ.get(API_KEY_ENV, "").strip()
    return key or None


def check_remote_ready(remote: Remote) -> None:
    """Refuse a remote run before it starts when no API key is set."""
    if remote is True and api_key() is None:
        raise RemoteError(
            f"No NDIF API key: set the environment variable {API_KEY_ENV} (get a key at "
            "https://login.ndif.us) or run with the local backend."
        )


class _remote_errors:
    """Turn what nnsight, httpx and the server raise during a remote run into `RemoteError`."""

    def __init__(self, remote: Remote) -> None:
        self.remote = remote

    def __enter__(self) -> None:
        if self.remote is True:
            check_remote_ready(self.remote)
            from nnsight import CONFIG

            CONFIG.API.APIKEY = api_key()  # read now: the variable may have been set after import
            CONFIG.APP.REMOTE_LOGGING = False  # nnsight's status lines would mix into printed JSON

    def __exit__(self, kind, exc, tb) -> bool:
        if exc is None or self.remote is not True or isinstance(exc, (RemoteError, SettingsError)):
            return False
        raise RemoteError(explain_remote_failure(exc)) from exc


def explain_remote_failure(exc: BaseException) -> str:
    """A plain sentence for a failed NDIF job, chosen by the exception types in its chain and the
    server's wording: refused key, no network, unhosted model, timeout, an error in the job."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    text = " ".join(str(e) for e in chain).lower()
    names = " ".join(type(e).__name__ for e in chain).lower()
    key = api_key()
    if key:
        text = text.replace(key.lower(), "…")  # a server echoing the key must not show it
    detail = (str(chain[-1]).strip().splitlines() or [type(chain[-1]).__name__])[0][:200]
    if key:
        detail = detail.replace(key, "…")
    if any(w in text for w in ("401", "403", "unauthorized", "forbidden", "api key", "api_key", "apikey")):
        return (
            f"NDIF refused the API key in {API_KEY_ENV}. Check it at https://login.ndif.us, or run "
            "with the local backend."
        )
    if "timeout" in names or "timed out" in text or "timeout" in text:
        return (
            "The NDIF job timed out before its result came back. Try a shorter prompt or fewer "
            "cells; the session and saved comparisons are unaffected."
        )
    if any(w in text for w in ("not hosted", "not deployed", "model key", "no such model", "not running",
                               "model not found", "unknown model")):
        return (
            "NDIF does not host this model right now (see https://nnsight.net/status for the "
            "models it runs), or run it locally with the local backend."
        )
    if any(w in names for w in ("connecterror", "connectionerror", "networkerror", "gaierror")) or any(
        w in text for w in ("name or service not known", "connection refused", "network is unreachable",
                            "temporary failure in name resolution", "failed to establish", "failed to send")
    ):
        return (
            "Cannot reach NDIF (no network, or the service is down). Check the connection, or run "
            "with the local backend; the session and saved comparisons are unaffected."
        )
    return f"The NDIF job failed on the server: {detail}"


def ndif_deployments() -> dict:
    """NDIF's /status: the deployments it runs (one HTTP request; raises when unreachable)."""
    from nnsight.ndif import _get

    return _get("/status", timeout=(5.0, 15.0))


def hosted_models(status: dict) -> list[str]:
    """The hub ids NDIF runs now, from its /status answer."""
    return sorted(
        {
            str(d.get("repo_id"))
            for d in (status.get("deployments") or {}).values()
            if d.get("repo_id") and d.get("application_state", "RUNNING") == "RUNNING"
        }
    )


def check_hosted(spec: str) -> None:
    """Refuse, with the list NDIF gives, a model it does not run; a plain message without network."""
    try:
        status = ndif_deployments()
    except Exception as exc:
        raise RemoteError(explain_remote_failure(exc)) from exc
    hosted = hosted_models(status)
    if spec not in hosted:
        shown = ", ".join(hosted[:8]) + (" …" if len(hosted) > 8 else "")
        raise RemoteError(
            f"NDIF does not host '{spec}' right now. It runs: {shown or 'no models at the moment'}. "
            "Pick one of those, or run the model locally."
        )


def _unmount_save() -> None:
    """Importing nnsight mounts a `.save` method on every Python object in the process, which
    other code probing `hasattr(x, "save")` would then misread; twinlens calls `nnsight.save(x)`,
    so the mount is taken off again."""
    import nnsight
    from nnsight._c import unmount

    if unmount is not None and nnsight.CONFIG.APP.PYMOUNT:
        unmount("save")
        nnsight.CONFIG.APP.PYMOUNT = False


_unmount_save()
