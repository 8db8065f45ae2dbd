"""The local backend: named sites and interventions as PyTorch hooks on Hugging Face modules.

The only module (with the load-time check in lib.core.architecture) that registers hooks. Each
site sits on one module of `Architecture`:

    residual ℓ < L   forward pre-hook of block ℓ (its input hidden states)
    residual L       forward hook of the last block (its output)
    hook_attn_out    forward hook of the module whose output the block adds (BlockParts.attn_out)
    hook_mlp_out     forward hook of BlockParts.mlp_out
    hook_z           forward pre-hook of the attention's output projection (its input, by head)
    hook_pattern     forward hook of the attention module (the weights it returns; eager only)

Interventions are applied in the same hook before the site is recorded, so a recorded value is
the one the model went on with. For gradients, the same hook adds a zero tensor that requires
grad to the site's activation (act + δ, δ = 0): ∂metric/∂δ is the total derivative with respect
to the activation, through every later layer, and no weight needs a gradient.
Attention patterns need attention that returns its weights: `run(eager_attention=True)` switches
the model to eager attention for that one pass, under the lock, and back.

Every hook lives only inside one `run`, which holds the model's lock: one model is shared by
every browser session, and no run sees another's hooks.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

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
from .errors import SettingsError
from .sites import Site

if TYPE_CHECKING:
    from .loaded import LoadedModel

T = TypeVar("T")


def _first(value: object) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value  # type: ignore[return-value]


def _replace_first(value: object, new: torch.Tensor) -> object:
    return (new, *value[1:]) if isinstance(value, tuple) else new


class _Stop(Exception):
    """Raised by the last recording hook of a `stop_early` run to end the forward pass there."""


class HooksBackend:
    """`lib.core.backend.Backend` on a model loaded in this process."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.n_layers = loaded.n_layers
        self.d_model = loaded.d_model
        self.vocab_size = loaded.vocab_size
        self.skips_blocks = True  # start_at and stop_early run only the blocks between them
        parameters = inspect.signature(loaded.model.forward).parameters
        self._logits_to_keep = "logits_to_keep" in parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"  # transformers ≥ 5.x: cache
        self._returns_tuple: bool | None = None  # do the blocks return tuples? (`_block_returns_tuple`)

    def lens_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        with self.loaded.lock, torch.inference_mode():
            return self.loaded.architecture.logits(hidden.to(self.loaded.device))

    def run_each(
        self,
        inputs: Sequence[torch.Tensor],
        *,
        sites: Sequence[Site] = (),
        reduce: Callable[[list[Run]], T],
        job: Job | None = None,
    ) -> T:
        """`Backend.run_each`: one `run` per input here, then `reduce` on the runs."""
        runs = []
        for ids in inputs:
            if job is not None:
                job.check()
            runs.append(self.run(ids, sites=sites))
        with self.loaded.lock, torch.inference_mode():
            return reduce(runs)

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
        """`Backend.transplant` here: the source's pass records every transplanted site, then one
        pass of the target per `step` rows."""
        sites = list(dict.fromkeys(cell.site for cells in rows for cell in cells))
        source = self.run(source_ids, sites=sites,
                          reduce=lambda run: {site: run.activations[site][0] for site in sites})
        found = []
        for begin in range(0, len(rows), step):
            if job is not None:
                job.check()
            chunk = rows[begin : begin + step]
            ids = target_ids.expand(len(chunk), -1)
            found.append(self.run(ids, interventions=transplant_interventions(source, chunk), reduce=reduce))
        return torch.cat([f.float().cpu() for f in found])

    def run(
        self,
        input_ids: torch.Tensor,
        *,
        sites: Sequence[Site] = (),
        interventions: Sequence[Intervention] = (),
        all_positions: bool = False,
        reduce: Callable[[Run], T] | None = None,
        eager_attention: bool = False,
        start_at: int = 0,
        stop_early: bool = False,
    ) -> Run | T:
        """Forward `input_ids` [batch, pos] once (see `Backend.run`). Counts the pass in
        `loaded.forward_passes`; holds the model's lock while hooks exist (and while the model
        runs with eager attention, when asked).

        With `stop_early` the pass ends as soon as every site in `sites` is recorded (the blocks
        after it never run) and the Run's logits are empty ([batch, 0]).

        start_at = ℓ > 0 skips blocks 0…ℓ−1 (each hands its input on unchanged, so their work is not
        done): the caller writes the residual entering block ℓ with a "replace" intervention at
        `Site.residual_at(ℓ)` over every row and position (e.g. a run's own residual ℓ, kept from
        its capture), and reads or changes no site below it."""
        loaded = self.loaded
        for site in (*sites, *(i.site for i in interventions)):
            site.check(self.n_layers)
        if start_at:
            _check_start(start_at, self.n_layers, sites, interventions)
        if stop_early and not sites:
            raise SettingsError("A run that stops early needs at least one site to record.")
        kwargs: dict = {"use_cache": False}
        if self._logits_to_keep and not all_positions:
            kwargs["logits_to_keep"] = 1
        recorded: dict[Site, torch.Tensor] = {}
        out = None
        with loaded.lock, torch.inference_mode(), ExitStack() as stack:
            if eager_attention:
                stack.enter_context(eager_attention_on(loaded.model))
            if start_at:
                self._skip_blocks(stack, start_at)
            self._attach(
                stack, sites, interventions, recorded, shape=tuple(input_ids.shape), stop_early=stop_early
            )
            loaded.forward_passes += 1
            try:
                out = loaded.model(input_ids=input_ids.to(loaded.device), **kwargs)
            except _Stop:
                pass
        if out is None:
            logits = torch.empty(input_ids.shape[0], 0)
        else:
            logits = out.logits.float() if all_positions else out.logits[:, -1, :].float()
        result = Run(logits=logits, activations={s: recorded[s.canonical(self.n_layers)] for s in sites})
        return result if reduce is None else reduce(result)

    def gradients(
        self, input_ids: torch.Tensor, sites: Sequence[Site], metric: Callable[[torch.Tensor], torch.Tensor],
        interventions: Sequence[Intervention] = (),
    ) -> Gradients:
        """One forward and one backward pass (see `Backend.gradients`); counts one forward pass.
        An intervention at a recorded site is applied before its δ is added, so the gradient is
        taken at the changed activation."""
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
        recorded: dict[Site, torch.Tensor] = {}
        deltas: dict[Site, torch.Tensor] = {}
        with loaded.lock, torch.inference_mode(False), torch.enable_grad(), ExitStack() as stack:
            self._attach(stack, sites, interventions, recorded, deltas, shape=tuple(input_ids.shape))
            loaded.forward_passes += 1
            out = loaded.model(input_ids=input_ids.to(loaded.device), **kwargs)
            logits = out.logits[:, -1, :].float()
            order = sorted(deltas)
            found = torch.autograd.grad(metric(logits), [deltas[s] for s in order], allow_unused=True)
        n_heads = loaded.architecture.n_heads
        grads: dict[Site, torch.Tensor] = {}
        for site, grad in zip(order, found, strict=True):
            grad = torch.zeros_like(deltas[site]) if grad is None else grad
            grad = grad.detach().float()
            grads[site] = grad.unflatten(-1, (n_heads, -1)) if site.kind == "z" else grad
        canonical = {s: s.canonical(self.n_layers) for s in sites}
        return Gradients(
            run=Run(logits=logits.detach(), activations={s: recorded[c] for s, c in canonical.items()}),
            grads={s: grads[c] for s, c in canonical.items()},
        )

    def vjp(
        self,
        input_ids: torch.Tensor,
        *,
        sources: Sequence[Site],
        target: Site,
        cotangents: Iterable[torch.Tensor],
        batch: int,
        reduce: Callable[[dict[Site, torch.Tensor]], T],
    ) -> list[T]:
        """`Backend.vjp`: one forward pass of the prompt repeated `batch` times with a zero δ at each
        source (as in `gradients`), then one backward pass per cotangent chunk with the graph kept
        (`retain_graph`): row i of a chunk's gradients is that chunk's row i pulled back. Counts
        one forward pass."""
        loaded = self.loaded
        for site in (*sources, target):
            site.check(self.n_layers)
            if site.kind in ("pattern", "z"):
                raise SettingsError("Vector-Jacobian products are taken between d_model-wide sites.")
        if batch < 1:
            raise SettingsError(f"A vector-Jacobian product needs a batch of at least 1, not {batch}.")
        ids = input_ids.to(loaded.device).expand(batch, -1)
        kwargs: dict = {"use_cache": False}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        live: dict[Site, torch.Tensor] = {}
        deltas: dict[Site, torch.Tensor] = {}
        order = [s.canonical(self.n_layers) for s in sources]
        found: list[T] = []
        with loaded.lock, torch.inference_mode(False), torch.enable_grad(), ExitStack() as stack:
            self._attach(stack, [*sources, target], (), live, deltas, shape=tuple(ids.shape), live=True)
            loaded.forward_passes += 1
            loaded.model(input_ids=ids, **kwargs)
            out = live[target.canonical(self.n_layers)]
            for chunk in cotangents:
                rows = chunk.shape[0]
                if not 0 < rows <= batch or tuple(chunk.shape[1:]) != tuple(out.shape[1:]):
                    raise SettingsError(
                        f"Each cotangent chunk must be [1…{batch}, {', '.join(map(str, out.shape[1:]))}]."
                    )
                full = torch.zeros_like(out)
                full[:rows] = chunk.to(out.device, out.dtype)
                grads = torch.autograd.grad(out, [deltas[c] for c in order], full, retain_graph=True,
                                            allow_unused=True)
                found.append(reduce({
                    s: (torch.zeros_like(deltas[c]) if g is None else g)[:rows].detach().float()
                    for s, c, g in zip(sources, order, grads, strict=True)
                }))
        return found

    def _skip_blocks(self, stack: ExitStack, count: int) -> None:
        """Make blocks 0…count−1 hand their input on unchanged for this run (their forward is
        replaced on the instance and restored on exit), in the form the model's loop expects."""
        returns_tuple = self._block_returns_tuple()
        for block in self.loaded.architecture.blocks[:count]:

            def passthrough(*args, **kwargs):
                hidden = args[0] if args else kwargs["hidden_states"]
                return (hidden,) if returns_tuple else hidden

            _replace_forward(stack, block, passthrough)

    def _block_returns_tuple(self) -> bool:
        """Whether this family's blocks return a tuple (GPT-Neo) or the hidden states themselves;
        found once by running one token. That probe is not counted in `forward_passes`, which
        counts passes over the user's prompts."""
        if self._returns_tuple is None:
            seen: list[bool] = []
            block = self.loaded.architecture.blocks[0]
            handle = block.register_forward_hook(
                lambda module, args, output: seen.append(isinstance(output, tuple))
            )
            one_token = torch.zeros(1, 1, dtype=torch.long, device=self.loaded.device)
            try:
                with torch.inference_mode():
                    self.loaded.model(input_ids=one_token, use_cache=False)
            finally:
                handle.remove()
            self._returns_tuple = seen[0]
        return self._returns_tuple
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
        """See `Backend.generate`. Holds the model's lock for the whole continuation; counts each
        pass in `loaded.forward_passes`."""
        loaded = self.loaded
        for site in (i.site for i in (*interventions, *step_interventions)):
            site.check(self.n_layers)
        if temperature < 0:
            raise SettingsError(f"The temperature must be 0 (greedy) or more, not {temperature}.")
        ids = input_ids.to(loaded.device)
        batch = ids.shape[0]
        eos = torch.tensor(sorted({int(e) for e in eos_ids}), dtype=torch.long, device=loaded.device)
        pad = pad_id(loaded, eos_ids)
        generator = None
        if temperature > 0:
            generator = torch.Generator(device=loaded.device).manual_seed(int(seed))
        kwargs: dict = {"use_cache": True}
        if self._logits_to_keep:
            kwargs["logits_to_keep"] = 1
        new: list[torch.Tensor] = []
        done = torch.zeros(batch, dtype=torch.bool, device=loaded.device)
        first_logits = torch.empty(0)
        with loaded.lock, torch.inference_mode():
            with ExitStack() as stack:
                self._attach(stack, (), interventions, {}, shape=tuple(ids.shape))
                loaded.forward_passes += 1
                out = loaded.model(input_ids=ids, **kwargs)
            past = cache_of(out)
            logits = finite_logits(out.logits[:, -1, :].float())
            first_logits = logits.clone()
            with ExitStack() as stack:
                self._attach(stack, (), step_interventions, {}, shape=(batch, 1))
                for step in range(max_new_tokens):
                    token = choose_next(logits, temperature, generator)
                    token = torch.where(done, torch.full_like(token, pad), token)
                    new.append(token)
                    if eos.numel():
                        done = done | torch.isin(token, eos)
                    if on_token is not None:
                        on_token(kept_rows(torch.stack(new, dim=1).tolist(), eos_ids))
                    if bool(done.all()) or step == max_new_tokens - 1:
                        break
                    loaded.forward_passes += 1
                    out = loaded.model(input_ids=token[:, None], **{self._cache_arg: past}, **kwargs)
                    past = cache_of(out)
                    logits = finite_logits(out.logits[:, -1, :].float())
        rows = torch.stack(new, dim=1).tolist() if new else [[] for _ in range(batch)]
        return Generated(token_ids=kept_rows(rows, eos_ids), first_logits=first_logits.cpu())

    def _attach(
        self,
        stack: ExitStack,
        sites: Sequence[Site],
        interventions: Sequence[Intervention],
        recorded: dict[Site, torch.Tensor],
        deltas: dict[Site, torch.Tensor] | None = None,
        shape: tuple[int, int] | None = None,
        stop_early: bool = False,
        live: bool = False,
    ) -> None:
        """Register one hook per canonical site that is recorded or changed (and, when `deltas` is
        given, made differentiable: each recorded site gets its zero δ there). `shape` is the
        input's (batch, pos), for modules that see the positions flattened (OPT's MLP). With
        `stop_early` the hook that records the last wanted site raises `_Stop`. With `live` a
        recorded value is the tensor the model goes on with, graph and all (no copy)."""
        n = self.n_layers
        changes: dict[Site, list[Intervention]] = defaultdict(list)
        for intervention in interventions:
            changes[intervention.site.canonical(n)].append(intervention)
        wanted = {s.canonical(n) for s in sites}
        n_heads = self.loaded.architecture.n_heads

        def on_record() -> None:
            if stop_early and len(recorded) == len(wanted):
                raise _Stop

        for site in sorted(wanted | set(changes)):
            module, pre = self.loaded.architecture.site_module(site)
            hook = _site_hook(
                site, changes.get(site, ()), site in wanted, recorded, n_heads, pre, deltas, shape, on_record,
                live,
            )
            if pre:
                handle = module.register_forward_pre_hook(hook, with_kwargs=True)
            else:
                handle = module.register_forward_hook(hook, with_kwargs=True)
            stack.callback(handle.remove)


def _replace_forward(stack: ExitStack, module: nn.Module, forward: Callable) -> None:
    """Give `module` another forward for this run, and put back on exit whatever was there
    (another library, nnsight say, may have wrapped the instance's forward itself)."""
    own = module.__dict__.get("forward")
    module.forward = forward
    if own is None:
        stack.callback(delattr, module, "forward")
    else:
        stack.callback(setattr, module, "forward", own)


def _check_start(
    start_at: int, n_layers: int, sites: Sequence[Site], interventions: Sequence[Intervention]
) -> None:
    """A run that skips blocks below `start_at` must write the whole residual entering it, and
    touch nothing below it."""
    if not 0 < start_at < n_layers:
        raise SettingsError(f"A run can start at blocks 1 to {n_layers - 1}, not {start_at}.")
    entry = Site.residual_at(start_at, n_layers)
    if not any(i.site.canonical(n_layers) == entry and i.op == "replace" and i.rows is None
               and i.positions is None for i in interventions):
        raise SettingsError(f"A run starting at block {start_at} needs the whole of {entry.name} replaced.")
    for site in (*sites, *(i.site for i in interventions)):
        below = site.residual < start_at if site.is_residual else site.layer < start_at
        if below:
            raise SettingsError(f"{site.name} is below block {start_at}, where this run starts.")


def _site_hook(
    site: Site,
    changes: Sequence[Intervention],
    record: bool,
    recorded: dict[Site, torch.Tensor],
    n_heads: int | None,
    pre: bool,
    deltas: dict[Site, torch.Tensor] | None = None,
    shape: tuple[int, int] | None = None,
    on_record: Callable[[], None] = lambda: None,
    live: bool = False,
):
    """A hook that applies `changes` to the site's tensor, then records it if asked (and adds a
    zero δ that requires grad, when `deltas` collects them), then calls `on_record`, which may end
    the pass. A tensor whose batch and positions
    arrive flattened ([batch·pos, width]: OPT's fc2) is edited and recorded as [batch, pos, width]
    and handed back flat."""

    def edit(act: torch.Tensor) -> torch.Tensor | None:
        if act.dim() == 2 and shape is not None and act.shape[0] == shape[0] * shape[1]:
            new = edit(act.view(*shape, act.shape[-1]))
            return None if new is None else new.reshape(act.shape)
        new = None
        if changes:
            new = act.clone()  # never write into a tensor the model may still read elsewhere
            for change in changes:
                change.apply(new, n_heads)
        if record and deltas is not None:
            delta = torch.zeros_like(act, requires_grad=True)
            deltas[site] = delta
            new = (new if new is not None else act) + delta
        if record and live:
            recorded[site] = new if new is not None else act
            on_record()
        elif record:
            kept = (new if new is not None else act).detach().clone()
            if site.kind == "z":
                kept = kept.unflatten(-1, (n_heads, -1))
            recorded[site] = kept
            on_record()
        return new

    if site.kind == "pattern":

        def pattern_hook(module, args, kwargs, output):
            weights = output[1] if isinstance(output, tuple) and len(output) > 1 else None
            if weights is None:
                raise SettingsError(
                    "This model's attention kernel returns no weights; run it with eager attention "
                    "to read attention patterns."
                )
            recorded[site] = weights.detach().clone()
            on_record()

        return pattern_hook
    if pre:

        def pre_hook(module, args, kwargs):
            act = args[0] if args else kwargs["hidden_states"]
            new = edit(act)
            if new is None:
                return None
            if args:
                return (new, *args[1:]), kwargs
            return args, {**kwargs, "hidden_states": new}

        return pre_hook

    def post_hook(module, args, kwargs, output):
        new = edit(_first(output))
        return None if new is None else _replace_first(output, new)

    return post_hook


@contextmanager
def eager_attention_on(model: nn.Module) -> Iterator[None]:
    """Run `model` with eager attention (which returns its weights) inside the block, then restore
    the implementation it had. The caller holds the model's lock."""
    current = model.config._attn_implementation
    if current == "eager":
        yield
        return
    if not model._can_set_attn_implementation():
        raise SettingsError(
            f"This model's attention ('{current}') returns no weights and cannot be switched to eager "
            "attention, so its attention patterns cannot be read."
        )
    model.set_attn_implementation("eager")
    try:
        yield
    finally:
        model.set_attn_implementation(current)
