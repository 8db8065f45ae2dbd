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

Work of several passes is one nnsight *session* (one NDIF job), whose traces hand values to each
other where the model runs:

    run_each     a trace per prompt, then `reduce(runs)` (the Compare view's lens, entropies and
                 distances; the Logit lens grid; the Residual distances) — only its result saved
    generate     the prompt's pass, then one cached pass per new token (the key-value cache stays
                 in the session), with `HooksBackend.generate`'s decode loop: the same tokens
    gradients    one trace: a zero δ added at each site, the backward pass inside the trace
    transplant   the source prompt's trace, then the target's traces with the source's values
                 written in (activation patching): the source's activations never leave the job

For NDIF the session goes through nnsight's blocking `RemoteBackend`, whose status updates
(RECEIVED … RUNNING, COMPLETED) are handed to a `lib.core.backend.Job` as progress; the job's
cancel event is checked while the client waits.

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
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, TypeVar

import torch

from .backend import (
    Generated,
    Gradients,
    Intervention,
    Job,
    Run,
    Transplant,
    transplant_interventions,
)
from .decoding import cache_of, choose_next, finite_logits, kept_rows, pad_id
from .errors import Cancelled, RemoteError, SettingsError, causes
from .hooks import eager_attention_on
from .sites import Site

if TYPE_CHECKING:
    from .loaded import LoadedModel

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
        self.received_bytes = 0  # tensor bytes the last run brought back (what NDIF would send)

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
        self.received_bytes = tensor_bytes(saved)
        if reduce is None:
            logits = saved.logits.to(loaded.device)
            return Run(logits=logits[:, :0] if stop_early else logits, activations=dict(saved.activations))
        return saved

    def run_each(
        self,
        inputs: Sequence[torch.Tensor],
        *,
        sites: Sequence[Site] = (),
        reduce: Callable[[list[Run]], T],
        job: Job | None = None,
    ) -> T:
        """`Backend.run_each` as one nnsight session: a trace per input, then `reduce` on their
        runs in the session's body. Remotely the whole session is one NDIF job: the runs stay on the
        server and only `reduce`'s result comes back (`received_bytes` counts its tensors).

        `job` hears the job's status (NDIF's RECEIVED … RUNNING, COMPLETED; a local session reports
        RUNNING and COMPLETED) and is checked for a cancel before the session starts and, for NDIF,
        while the client waits for it."""
        loaded = self.loaded
        for site in sites:
            site.check(self.n_layers)
        plan = self._plan(sites, ())
        wanted = {s: s.canonical(self.n_layers) for s in sites}
        kwargs: dict = {"use_cache": False}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        ids = [i.to(loaded.device).contiguous() for i in inputs]
        job = job or Job()
        with loaded.lock, torch.inference_mode(), _remote_errors(self.remote):
            watched = self._started(job)
            loaded.forward_passes += len(ids)
            self.traces += len(ids)
            n_heads = loaded.architecture.n_heads
            saved = _session(self.envoy, ids, kwargs, plan, wanted, n_heads, reduce, self.remote, watched)
            job.report("COMPLETED")
        self.received_bytes = tensor_bytes(saved)
        return saved

    def vjp(self, input_ids: torch.Tensor, *, sources: Sequence[Site], target: Site, cotangents, batch: int,
            reduce: Callable) -> list:
        """`Backend.vjp` is not offered here: fitting a lens takes thousands of backward passes per
        prompt, which belong on a model this machine holds (the local backend)."""
        raise SettingsError("Fitting a Jacobian lens needs the local backend (--backend local).")

    def transplant(
        self,
        source_ids: torch.Tensor,
        target_ids: torch.Tensor,
        rows: Sequence[Sequence[Transplant]],
        reduce: Callable[[Run], torch.Tensor],
        *,
        step: int,
        job: Job | None = None,
    ) -> torch.Tensor:
        """`Backend.transplant` as one nnsight session (one NDIF job): the source's trace, then a
        trace of the target per `step` rows whose interventions take their values from the source's
        trace where it ran. Only the reductions are saved (`received_bytes` counts them)."""
        loaded = self.loaded
        n = self.n_layers
        sites = list(dict.fromkeys(cell.site for cells in rows for cell in cells))
        for site in sites:
            site.check(n)
        source_plan = self._plan(sites, ())
        wanted = {s: s.canonical(n) for s in sites}
        chunks = [tuple(tuple(cells) for cells in rows[b : b + step]) for b in range(0, len(rows), step)]
        kwargs: dict = {"use_cache": False}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        job = job or Job()
        with loaded.lock, torch.inference_mode(), _remote_errors(self.remote):
            watched = self._started(job)
            loaded.forward_passes += 1 + len(chunks)
            self.traces += 1 + len(chunks)
            source, target = (i.to(loaded.device).contiguous() for i in (source_ids, target_ids))
            saved = _transplant_session(
                self.envoy, source, target, kwargs, source_plan, wanted, chunks,
                loaded.architecture.n_heads, n, reduce, self.remote, watched,
            )
            job.report("COMPLETED")
        self.received_bytes = tensor_bytes(saved)
        return saved.float().cpu()

    def gradients(
        self, input_ids: torch.Tensor, sites: Sequence[Site], metric: Callable[[torch.Tensor], torch.Tensor],
        interventions: Sequence[Intervention] = (),
    ) -> Gradients:
        """`Backend.gradients` as one trace: a zero δ is added at each site (so ∂metric/∂δ is the
        gradient at the activation, as in the hooks backend), and the backward pass runs inside the
        trace, next to the model. Remotely the activations and gradients come back in full
        (attribution patching needs them on this side)."""
        loaded = self.loaded
        for site in (i.site for i in interventions):
            site.check(self.n_layers)
        for site in sites:
            site.check(self.n_layers)
            if site.kind == "pattern":
                raise SettingsError("Gradients are taken at activations the model adds, not at patterns.")
        kwargs: dict = {"use_cache": False}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        plan = self._plan(sites, interventions)
        n_heads = loaded.architecture.n_heads
        ids = input_ids.to(loaded.device).contiguous()
        with loaded.lock, torch.inference_mode(False), torch.enable_grad(), _remote_errors(self.remote):
            loaded.forward_passes += 1
            self.traces += 1
            saved = _gradient_trace(self.envoy, ids, kwargs, plan, n_heads, metric, self.remote)
        logits, recorded, grads = saved
        self.received_bytes = tensor_bytes(saved)
        canonical = {s: s.canonical(self.n_layers) for s in sites}
        return Gradients(
            run=Run(logits=logits, activations={s: recorded[c] for s, c in canonical.items()}),
            grads={s: grads[c] for s, c in canonical.items()},
        )

    def generate(
        self,
        input_ids: torch.Tensor,
        max_new_tokens: int,
        *,
        temperature: float = 0.0,
        seed: int = 0,
        interventions: Sequence[Intervention] = (),
        step_interventions: Sequence[Intervention] = (),
        eos_ids: Sequence[int] = (),
        on_token: Callable[[Sequence[Sequence[int]]], None] | None = None,
    ) -> Generated:
        """`Backend.generate` as one nnsight session: the prompt's pass, then one cached pass per
        new token, each a trace with its interventions; the decode loop is `HooksBackend.generate`'s
        (same choice of tokens, same seeded sampling, same stop and padding), so the tokens are
        the same. Remotely the whole continuation is one NDIF job and its cache never leaves it."""
        loaded = self.loaded
        for site in (i.site for i in (*interventions, *step_interventions)):
            site.check(self.n_layers)
        if temperature < 0:
            raise SettingsError(f"The temperature must be 0 (greedy) or more, not {temperature}.")
        ids = input_ids.to(loaded.device).contiguous()
        kwargs: dict = {"use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        settings = {
            "max_new_tokens": int(max_new_tokens), "temperature": float(temperature), "seed": int(seed),
            "prompt_plan": self._plan((), interventions), "step_plan": self._plan((), step_interventions),
            "n_heads": loaded.architecture.n_heads, "pad": pad_id(loaded, eos_ids), "kwargs": kwargs,
            "eos": torch.tensor(sorted({int(e) for e in eos_ids}), dtype=torch.long, device=loaded.device),
            "cache_arg": "past_key_values",  # not `cache`: nnsight's trace takes that keyword for itself
        }
        with loaded.lock, torch.inference_mode(), _remote_errors(self.remote):
            self.traces += 1
            saved = _generate_session(self.envoy, ids, settings, self.remote)
        rows = saved["tokens"].tolist()
        loaded.forward_passes += max(1, len(rows[0]) if rows else 1)
        self.received_bytes = tensor_bytes(saved)
        kept = kept_rows(rows, eos_ids)
        if on_token is not None:  # one session: the tokens arrive together
            on_token(kept)
        return Generated(token_ids=kept, first_logits=saved["first_logits"].cpu())

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

    def _started(self, job: Job) -> object | None:
        """Before a session: stop if cancelled; for NDIF the backend that sends the session and hands
        its statuses to `job` (None locally, where the job is reported RUNNING here)."""
        job.check()
        watched = _watched_remote(self.envoy, job, api_key()) if self.remote is True else None
        if watched is None:
            job.report("RUNNING")
        return watched

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


def _trace(envoy, ids, kwargs, plan, wanted, n_heads, all_positions, reduce, remote, save=True):
    """The trace itself. nnsight runs the body of the `with` next to the forward pass (and, for
    NDIF, on the server), so it only uses what it is given and saves one value (`save=False`:
    inside a session, where the value stays for the session's later code and is not sent back)."""
    import nnsight

    with envoy.trace(ids, remote=remote, **kwargs):
        recorded = {}
        for access in plan:
            value, act = _intervene(envoy, access, ids, n_heads)
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
        saved = nnsight.save(result) if save else result
    return saved


def _intervene(envoy, access: _Access, ids, n_heads):
    """Inside a trace: read the module value `access` names and write its interventions into it;
    returns (the value as the module gave it, the activation [batch, pos, width] after them)."""
    module, value, act = _read(envoy, access, ids)
    if access.changes:
        new = act.clone()
        for change in access.changes:
            change.apply(new, n_heads)
        _write(module, access, value, new)
        act = new
    return value, act


def _read(envoy, access: _Access, ids):
    """(module envoy, its input or output value, the activation as [batch, pos, width])."""
    module = envoy.get(access.path)
    value = module.input if access.pre else module.output
    act = _first(value)
    if act.dim() == 2 and act.shape[0] == ids.shape[0] * ids.shape[1]:  # OPT's fc2 sees positions flattened
        act = act.view(ids.shape[0], ids.shape[1], act.shape[-1])
    return module, value, act


def _write(module, access: _Access, value, new) -> None:
    """Hand `new` [batch, pos, width] on in place of the value `_read` read (flattened where it was)."""
    flat = _first(value).dim() == 2 and new.dim() == 3
    handed = new.reshape(-1, new.shape[-1]) if flat else new
    if access.pre:
        module.input = handed
    else:
        module.output = _replace_first(value, handed)


def _gradient_trace(envoy, ids, kwargs, plan, n_heads, metric, remote):
    """One trace: each access gets its interventions, then a zero δ (requires grad) added to it;
    the metric of the last-position logits is differentiated with respect to every δ, and
    (logits, activations, gradients) are saved; a z site's activation and gradient by head."""
    import nnsight

    with envoy.trace(ids, remote=remote, **kwargs):
        recorded, grads, deltas = {}, {}, []
        for access in plan:
            module, value, act = _read(envoy, access, ids)
            if access.changes:
                act = act.clone()
                for change in access.changes:
                    change.apply(act, n_heads)
            delta = torch.zeros_like(act, requires_grad=True)
            _write(module, access, value, act + delta)
            deltas.append((access.sites, delta))
            for site in access.sites:
                kept = act.detach().clone()
                recorded[site] = kept.unflatten(-1, (n_heads, -1)) if site.kind == "z" else kept
        logits = envoy.output.logits[:, -1, :].float()
        found = torch.autograd.grad(metric(logits), [d for _, d in deltas], allow_unused=True)
        for (group, delta), grad in zip(deltas, found, strict=True):
            grad = (torch.zeros_like(delta) if grad is None else grad).detach().float()
            for site in group:
                grads[site] = grad.unflatten(-1, (n_heads, -1)) if site.kind == "z" else grad
        saved = nnsight.save((logits.detach(), recorded, grads))
    return saved


def _generate_session(envoy, ids, settings: dict, remote):
    """One nnsight session for a whole continuation (one NDIF job): the key-value cache stays where
    the model runs, and only the new tokens and the first logits come back."""
    import nnsight

    with envoy.session(remote=remote):
        saved = nnsight.save(_continue(envoy, ids, **settings))
    return saved


def _continue(envoy, ids, *, max_new_tokens, temperature, seed, prompt_plan, step_plan, n_heads, eos, pad,
              cache_arg, kwargs):
    """The decode loop of `HooksBackend.generate`, one trace per pass, inside a session."""
    generator = torch.Generator(device=ids.device).manual_seed(seed) if temperature > 0 else None
    logits, past = _step(envoy, ids, kwargs, prompt_plan, n_heads)
    logits = finite_logits(logits)
    first = logits.clone()
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    new = []
    for step in range(max_new_tokens):
        token = choose_next(logits, temperature, generator)
        token = torch.where(done, torch.full_like(token, pad), token)
        new.append(token)
        if eos.numel():
            done = done | torch.isin(token, eos)
        if bool(done.all()) or step == max_new_tokens - 1:
            break
        logits, past = _step(envoy, token[:, None], {**kwargs, cache_arg: past}, step_plan, n_heads)
        logits = finite_logits(logits)
    return {"tokens": torch.stack(new, dim=1) if new else ids[:, :0], "first_logits": first}


def _step(envoy, ids, kwargs, plan, n_heads):
    """One cached forward pass with `plan`'s interventions: (last-position logits float32, cache)."""
    with envoy.trace(ids, **kwargs):
        for access in plan:
            _intervene(envoy, access, ids, n_heads)
        out = envoy.output
        logits = out.logits[:, -1, :].float()
        past = cache_of(out)
    return logits, past


def _session(envoy, inputs, kwargs, plan, wanted, n_heads, reduce, remote, watched):
    """One nnsight session: a trace per input (nothing saved), then `reduce` on the runs; only its
    result is saved. With `watched` (NDIF) the session is sent through that backend."""
    import nnsight

    with envoy.session(backend=watched, remote=remote):
        runs = []
        for ids in inputs:
            runs.append(_trace(envoy, ids, kwargs, plan, wanted, n_heads, False, None, False, False))
        saved = nnsight.save(_quietly(reduce, runs))
    return saved


def _transplant_session(envoy, source_ids, target_ids, kwargs, source_plan, wanted, chunks, n_heads, n_layers,
                        reduce, remote, watched):
    """One nnsight session: the source's trace (nothing saved), then per chunk of rows a trace of the
    target with the chunk's transplants, values read from the source's trace; only the
    concatenated reductions are saved."""
    import nnsight

    with envoy.session(backend=watched, remote=remote):
        source = _trace(envoy, source_ids, kwargs, source_plan, wanted, n_heads, False, None, False, False)
        found = []
        for chunk in chunks:
            with torch.inference_mode():
                acts = {site: value[0] for site, value in source.activations.items()}
                changes = transplant_interventions(acts, chunk)
            plan = _written(source_plan, changes, n_layers)
            ids = target_ids.expand(len(chunk), -1)
            found.append(_trace(envoy, ids, kwargs, plan, {}, n_heads, False, reduce, False, False))
        saved = nnsight.save(torch.cat(found))
    return saved


def _written(plan, changes, n_layers):
    """The accesses of `plan` that `changes` write into, each with its changes and nothing recorded
    (the target's traces keep only their reduction)."""
    written = []
    for access in plan:
        mine = tuple(c for c in changes if c.site.canonical(n_layers) in access.sites)
        if mine:
            written.append(replace(access, sites=(), changes=mine))
    return tuple(written)


def _quietly(reduce, runs):
    """`reduce(runs)` without autograd: a session's body runs in nnsight's own thread, where the
    caller's `torch.inference_mode()` does not reach."""
    with torch.inference_mode():
        return reduce(runs)


def tensor_bytes(value: object) -> int:
    """The bytes of tensor data in a (nested) result: what a remote run sends back, roughly."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    if isinstance(value, Run):
        return tensor_bytes(value.logits) + tensor_bytes(dict(value.activations))
    if hasattr(value, "__dataclass_fields__"):
        return sum(tensor_bytes(getattr(value, name)) for name in value.__dataclass_fields__)
    return 0


# -- NDIF job status: progress and cancel ----------------------------------------------------


class _JobDisplay:
    """Stands in for nnsight's status line (`RemoteBackend.display`): each status NDIF sends goes
    to the `Job`, and while the client waits (woken every 0.1 s) the job is checked for a cancel."""

    enabled = True  # makes the websocket wait wake up every 0.1 s, so a cancel is seen at once
    verbose = False

    def __init__(self, job: Job) -> None:
        self.job = job

    def update(self, response) -> None:
        status = getattr(response.status, "value", str(response.status))
        if status != "LOG":
            self.job.report(status)

    def refresh(self) -> None:
        self.job.tick()


def _watched_remote(envoy, job: Job, key: str | None):
    """nnsight's blocking NDIF backend for `envoy`, reporting to `job` instead of printing."""
    from nnsight.intervention.backends.remote import RemoteBackend

    backend = RemoteBackend(envoy.to_model_key(), api_key=key, env=envoy._remoteable_get_env(), blocking=True)
    backend.display = _JobDisplay(job)
    return backend


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


# A key typed for this call only (the app's sidebar field, kept in that browser session's state):
# a context variable, so concurrent sessions never see each other's key.
_SESSION_KEY: ContextVar[str | None] = ContextVar("ndif_api_key", default=None)


def api_key() -> str | None:
    """The NDIF API key: the one `using_api_key` set for this call, else the environment's
    `NDIF_API_KEY` (never printed, logged or saved)."""
    key = (_SESSION_KEY.get() or os.environ.get(API_KEY_ENV, "")).strip()
    return key or None


@contextmanager
def using_api_key(key: str | None) -> Iterator[None]:
    """Runs inside use `key` (None or empty: the environment's) as the NDIF API key."""
    token = _SESSION_KEY.set((key or "").strip() or None)
    try:
        yield
    finally:
        _SESSION_KEY.reset(token)


def check_remote_ready(remote: Remote) -> None:
    """Refuse a remote run before it starts when no API key is set."""
    if remote is True and api_key() is None:
        raise RemoteError(
            f"No NDIF API key: set the environment variable {API_KEY_ENV} or, in the app, type it in "
            "the sidebar's NDIF API key field (get a key at https://login.ndif.us); or run with the "
            "local backend."
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
        if self.remote is True:
            from nnsight import CONFIG

            CONFIG.API.APIKEY = None  # held only while this run needed it
        if (exc is None or self.remote is not True or not isinstance(exc, Exception)
                or isinstance(exc, (RemoteError, SettingsError, Cancelled))):
            return False  # not NDIF's, or already plain (a Streamlit rerun passes through untouched)
        raise RemoteError(explain_remote_failure(exc)) from exc


def explain_remote_failure(exc: BaseException) -> str:
    """A plain sentence for a failed NDIF job, chosen by the exception types in its chain and the
    server's wording: refused key, no network, unhosted model, timeout, an error in the job."""
    chain = causes(exc)
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
