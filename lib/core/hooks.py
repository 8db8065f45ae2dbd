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
the one the model went on with. Every hook lives only inside one `run`, which holds the model's
lock: one model is shared by every browser session, and no run sees another's hooks.
"""

from __future__ import annotations

import inspect
from collections import defaultdict
from collections.abc import Callable, Sequence
from contextlib import ExitStack
from typing import TYPE_CHECKING, TypeVar

import torch
from torch import nn

from .backend import Generated, Intervention, Run
from .errors import ArchitectureError, SettingsError
from .sites import Site

if TYPE_CHECKING:
    from .models import LoadedModel

T = TypeVar("T")


def _first(value: object) -> torch.Tensor:
    return value[0] if isinstance(value, tuple) else value  # type: ignore[return-value]


def _replace_first(value: object, new: torch.Tensor) -> object:
    return (new, *value[1:]) if isinstance(value, tuple) else new


class HooksBackend:
    """`lib.core.backend.Backend` on a model loaded in this process."""

    def __init__(self, loaded: LoadedModel) -> None:
        self.loaded = loaded
        self.n_layers = loaded.n_layers
        self.d_model = loaded.d_model
        self.vocab_size = loaded.vocab_size
        parameters = inspect.signature(loaded.model.forward).parameters
        self._logits_to_keep = "logits_to_keep" in parameters
        self._cache_arg = "cache" if "cache" in parameters else "past_key_values"  # transformers ≥ 5.x: cache

    def lens_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        with self.loaded.lock, torch.inference_mode():
            return self.loaded.architecture.logits(hidden.to(self.loaded.device))

    def run(
        self,
        input_ids: torch.Tensor,
        *,
        sites: Sequence[Site] = (),
        interventions: Sequence[Intervention] = (),
        all_positions: bool = False,
        reduce: Callable[[Run], T] | None = None,
    ) -> Run | T:
        """Forward `input_ids` [batch, pos] once (see `Backend.run`). Counts the pass in
        `loaded.forward_passes`; holds the model's lock while hooks exist."""
        loaded = self.loaded
        for site in (*sites, *(i.site for i in interventions)):
            site.check(self.n_layers)
        kwargs: dict = {"use_cache": False}
        if self._logits_to_keep and not all_positions:
            kwargs["logits_to_keep"] = 1
        recorded: dict[Site, torch.Tensor] = {}
        with loaded.lock, torch.inference_mode(), ExitStack() as stack:
            self._attach(stack, sites, interventions, recorded)
            loaded.forward_passes += 1
            out = loaded.model(input_ids=input_ids.to(loaded.device), **kwargs)
        logits = out.logits.float() if all_positions else out.logits[:, -1, :].float()
        result = Run(logits=logits, activations={s: recorded[s.canonical(self.n_layers)] for s in sites})
        return result if reduce is None else reduce(result)

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
        pad = _pad_id(loaded, eos_ids)
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
                self._attach(stack, (), interventions, {})
                loaded.forward_passes += 1
                out = loaded.model(input_ids=ids, **kwargs)
            past = _cache_of(out)
            logits = _finite(out.logits[:, -1, :].float())
            first_logits = logits.clone()
            with ExitStack() as stack:
                self._attach(stack, (), step_interventions, {})
                for step in range(max_new_tokens):
                    token = _choose(logits, temperature, generator)
                    token = torch.where(done, torch.full_like(token, pad), token)
                    new.append(token)
                    if eos.numel():
                        done = done | torch.isin(token, eos)
                    if bool(done.all()) or step == max_new_tokens - 1:
                        break
                    loaded.forward_passes += 1
                    out = loaded.model(input_ids=token[:, None], **{self._cache_arg: past}, **kwargs)
                    past = _cache_of(out)
                    logits = _finite(out.logits[:, -1, :].float())
        rows = torch.stack(new, dim=1).tolist() if new else [[] for _ in range(batch)]
        eos_set = {int(e) for e in eos_ids}
        kept = []
        for row in rows:
            end = next((i + 1 for i, t in enumerate(row) if t in eos_set), len(row))
            kept.append(tuple(int(t) for t in row[:end]))
        return Generated(token_ids=tuple(kept), first_logits=first_logits.cpu())

    def _attach(
        self,
        stack: ExitStack,
        sites: Sequence[Site],
        interventions: Sequence[Intervention],
        recorded: dict[Site, torch.Tensor],
    ) -> None:
        """Register one hook per canonical site that is recorded or changed."""
        n = self.n_layers
        changes: dict[Site, list[Intervention]] = defaultdict(list)
        for intervention in interventions:
            changes[intervention.site.canonical(n)].append(intervention)
        wanted = {s.canonical(n) for s in sites}
        n_heads = self.loaded.architecture.n_heads
        for site in sorted(wanted | set(changes)):
            module, pre = self._module_of(site)
            hook = _site_hook(site, changes.get(site, ()), site in wanted, recorded, n_heads, pre)
            if pre:
                handle = module.register_forward_pre_hook(hook, with_kwargs=True)
            else:
                handle = module.register_forward_hook(hook, with_kwargs=True)
            stack.callback(handle.remove)

    def _module_of(self, site: Site) -> tuple[nn.Module, bool]:
        """The module a (canonical) site sits on, and whether it is read from the module's input."""
        arch = self.loaded.architecture
        if site.kind == "resid_pre":
            return arch.blocks[site.layer], True
        if site.kind == "resid_post":
            return arch.blocks[site.layer], False
        parts = arch.block_parts(site.layer)
        if site.kind == "z":
            if arch.n_heads is None:
                raise ArchitectureError(f"'{arch.family}' does not say how many attention heads it has.")
            return parts.out_proj, True
        return {"attn_out": parts.attn_out, "mlp_out": parts.mlp_out, "pattern": parts.attention}[
            site.kind
        ], False


def _cache_of(out: object) -> object:
    """The key-value cache a forward pass returned (`cache`, or `past_key_values` before transformers 5.x)."""
    cache = out.get("cache") if hasattr(out, "get") else None
    return cache if cache is not None else out.past_key_values


def _finite(logits: torch.Tensor) -> torch.Tensor:
    if not torch.isfinite(logits).all():
        raise SettingsError(
            "The model's logits became inf or NaN during the continuation (an intervention too large?)."
        )
    return logits


def _choose(logits: torch.Tensor, temperature: float, generator: torch.Generator | None) -> torch.Tensor:
    """The next token of each row [batch]: argmax, or a draw from softmax(logits / temperature)."""
    if temperature <= 0:
        return torch.argmax(logits, dim=-1)
    probs = torch.softmax(logits / temperature, dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(1)


def _pad_id(loaded: LoadedModel, eos_ids: Sequence[int]) -> int:
    """The token fed to rows that already stopped (transformers: pad, else the first EOS)."""
    pad = getattr(loaded.model.generation_config, "pad_token_id", None)
    if pad is None:
        pad = getattr(loaded.tokenizer, "pad_token_id", None)
    if isinstance(pad, list | tuple):
        pad = pad[0] if pad else None
    if pad is None:
        pad = next(iter(eos_ids), 0)
    return int(pad)


def _site_hook(
    site: Site,
    changes: Sequence[Intervention],
    record: bool,
    recorded: dict[Site, torch.Tensor],
    n_heads: int | None,
    pre: bool,
):
    """A hook that applies `changes` to the site's tensor, then records it if asked."""

    def edit(act: torch.Tensor) -> torch.Tensor | None:
        new = None
        if changes:
            new = act.clone()  # never write into a tensor the model may still read elsewhere
            for change in changes:
                change.apply(new, n_heads)
        if record:
            kept = (new if new is not None else act).detach().clone()
            if site.kind == "z":
                kept = kept.unflatten(-1, (n_heads, -1))
            recorded[site] = kept
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
