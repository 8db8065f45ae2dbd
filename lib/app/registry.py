"""The one table of analyses: each row says its name, its page (title, icon, navigation section), its
command line sub-command, and what it needs from a backend. The navigation (dashboard.py), the CLI
(lib.app.cli) and the NDIF gate (ui.cached, and the CLI's --remote) read it; adding an analysis is
one lib module, one page, one row here (and its sub-command in lib.app.commands).

What an analysis needs decides where it runs:

    residuals   each prompt's whole residual stream at this machine (captures that keep it)
    gradients   a backward pass through the model
    attention   attention weights (eager attention)
    generation  greedy or sampled decoding

On NDIF only what comes back small runs: an analysis needing none of residuals, gradients or
attention runs there, reduced where the model is (its `reduced` functions are the ones the app may
call on a remote model). An analysis that needs more but declares `reduced` functions runs there in
part (Findings: the steps those functions serve run, the others say why not); it may declare only
functions a row running wholly on NDIF runs reduced, or ones that read only what every capture on
NDIF brings back (`READS_TOKENS_AND_LOGITS`). Anything else is refused before any network or load,
and `check_on_ndif` refuses any other function on a remote model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ..analyses.common.distances import capture_distances
from ..analyses.common.lens import cell_detail, lens_grid
from ..analyses.compare import compare_prompts
from ..analyses.generation import complete_character, continue_capture, lens_completions, token_characters
from ..analyses.patching import patch_captures
from ..core.errors import SettingsError
from . import commands
from .cache import NEEDS_RESIDUALS
from .findings import contrast_tokens

NEEDS = ("residuals", "gradients", "attention", "generation")
NOT_ON_NDIF = frozenset({"residuals", "gradients", "attention"})
# read only a capture's tokens and the model's own last logits, which every capture on NDIF brings
# back (lib.core.capture, keep_residual=False): a row running in part on NDIF may call them there
READS_TOKENS_AND_LOGITS = frozenset({contrast_tokens})
SECTIONS = ("Answer", "Where", "Why", "What if", "Saved")  # the navigation's groups, in order
DEFAULT = "compare"  # the page a new visitor lands on (Findings, first in the bar, runs every step)


@dataclass(frozen=True)
class Command:
    """A sub-command of `twinlens`: `add(subparsers)` declares it, `run(args)` → the JSON's dict."""

    name: str
    add: Callable
    run: Callable


@dataclass(frozen=True)
class Analysis:
    """One row of the registry.

    `page` is the page file ('' for an analysis without a page, e.g. SAE training); `two_models`:
    the page also shows one prompt in two models; `reduced`: the functions the app may run on an
    NDIF model for this page (each reduced where the model is) — for a row whose needs keep it off
    NDIF, the ones its steps that run there in part call."""

    name: str
    title: str = ""
    page: str = ""
    icon: str = ""
    section: str = ""
    commands: tuple[Command, ...] = ()
    needs: frozenset[str] = frozenset()
    two_models: bool = False
    reduced: tuple[Callable, ...] = ()

    @property
    def runs_on_ndif(self) -> bool:
        """Wholly: nothing it needs would come back whole."""
        return not (self.needs & NOT_ON_NDIF)

    @property
    def partly_on_ndif(self) -> bool:
        """It needs more than NDIF gives, but its `reduced` steps run there (the others say why not)."""
        return not self.runs_on_ndif and bool(self.reduced)


def _needs(*names: str) -> frozenset[str]:
    unknown = set(names) - set(NEEDS)
    if unknown:
        raise ValueError(f"unknown needs {sorted(unknown)}; use {NEEDS}")
    return frozenset(names)


ANALYSES: tuple[Analysis, ...] = (
    Analysis("findings", "Findings", "pages/findings.py", ":material/summarize:", "Answer",
             (Command("report", commands.add_report, commands.run_report),),
             needs=_needs("residuals", "gradients", "attention", "generation"), two_models=True,
             reduced=(continue_capture, compare_prompts, contrast_tokens, patch_captures)),
    Analysis("compare", "Compare", "pages/compare.py", ":material/compare_arrows:", "Answer",
             (Command("compare", commands.add_compare, commands.run_compare),), two_models=True,
             reduced=(compare_prompts, complete_character)),
    Analysis("lens", "Logit lens", "pages/logit_lens.py", ":material/layers:", "Where", two_models=True,
             reduced=(compare_prompts, lens_grid, cell_detail, lens_completions, token_characters,
                      complete_character)),
    Analysis("distances", "Residual distances", "pages/distances.py", ":material/straighten:", "Where",
             two_models=True, reduced=(capture_distances,)),
    Analysis("diff", "Top-token diff", "pages/diff.py", ":material/difference:", "Where",
             needs=_needs("residuals"), two_models=True),
    Analysis("tokens", "Tokens", "pages/tokens.py", ":material/abc:", "Where", needs=_needs("residuals")),
    Analysis("watch", "Watch tokens", "pages/watch.py", ":material/visibility:", "Where",
             needs=_needs("residuals")),
    Analysis("sets", "Sets", "pages/sets.py", ":material/dataset:", "Where",
             (Command("sets", commands.add_sets, commands.run_sets),), needs=_needs("residuals")),
    Analysis("patching", "Patching", "pages/patching.py", ":material/healing:", "Why",
             (Command("patch", commands.add_patch, commands.run_patch),), two_models=True,
             reduced=(patch_captures,)),
    Analysis("features", "Features", "pages/features.py", ":material/lightbulb:", "Why",
             (Command("features", commands.add_features, commands.run_features),),
             needs=_needs("residuals"), two_models=True),
    Analysis("components", "Components", "pages/components.py", ":material/hub:", "Why",
             (Command("components", commands.add_components, commands.run_components),),
             needs=_needs("residuals", "gradients", "attention")),
    Analysis("circuit", "Circuit", "pages/circuit.py", ":material/account_tree:", "Why",
             (Command("circuit", commands.add_circuit, commands.run_circuit),),
             needs=_needs("residuals", "gradients")),
    Analysis("continuations", "Continuations", "pages/continuations.py", ":material/edit_note:", "What if",
             (Command("generate", commands.add_generate, commands.run_generate),),
             needs=_needs("generation"), two_models=True,
             reduced=(continue_capture, complete_character, token_characters)),
    Analysis("steering", "Steering", "pages/steering.py", ":material/explore:", "What if",
             (Command("steer", commands.add_steer, commands.run_steer),),
             needs=_needs("residuals", "generation"), two_models=True),
    Analysis("history", "History", "pages/history.py", ":material/history:", "Saved", two_models=True),
    Analysis("model pair", commands=(Command("compare-models", commands.add_compare_models,
                                             commands.run_compare_models),),
             needs=_needs("residuals")),
    Analysis("lens fitting", commands=(Command("lens", commands.add_lens, commands.run_lens),),
             needs=_needs("residuals", "gradients")),
    Analysis("sae training", commands=(Command("sae", commands.add_sae, commands.run_sae),),
             needs=_needs("residuals", "gradients")),
)


def check_rows(rows: tuple[Analysis, ...]) -> tuple[Analysis, ...]:
    """`rows`, or ValueError when a row running in part on NDIF declares a function that no row
    running wholly there runs reduced and that reads more than tokens and last logits: what runs on
    NDIF is decided by the analyses that are built to reduce there, not by the pages that call them."""
    whole = {fn for a in rows if a.runs_on_ndif for fn in a.reduced} | READS_TOKENS_AND_LOGITS
    for row in rows:
        extra = sorted(fn.__name__ for fn in row.reduced if fn not in whole) if row.partly_on_ndif else []
        if extra:
            raise ValueError(f"'{row.name}' needs {sorted(row.needs & NOT_ON_NDIF)}, so on NDIF it may call "
                             f"only functions reduced there; {extra} are not")
    return rows


check_rows(ANALYSES)
PAGES = tuple(a for a in ANALYSES if a.page)
COMMANDS = {c.name: (a, c) for a in ANALYSES for c in a.commands}
REDUCED_ON_NDIF = frozenset(fn for a in ANALYSES if a.runs_on_ndif or a.partly_on_ndif for fn in a.reduced)


def by_page(page: str) -> Analysis:
    """The row of a page file, e.g. 'pages/patching.py'."""
    return next(a for a in PAGES if a.page == page)


def refuse_remote(command: str) -> str | None:
    """Why `twinlens <command> --remote` cannot run (None when it can): the sentence the CLI prints
    before any network or load."""
    analysis, _ = COMMANDS[command]
    if analysis.runs_on_ndif or analysis.partly_on_ndif:
        return None
    runnable = ", ".join(sorted(name for name, (a, _) in COMMANDS.items() if a.runs_on_ndif))
    partly = ", ".join(sorted(name for name, (a, _) in COMMANDS.items() if a.partly_on_ndif))
    partly = f", and {partly} in part (its steps that reduce there)" if partly else ""
    return (
        f"`twinlens {command}` needs each prompt's whole residual stream, which NDIF would have "
        f"to send back (for a 70B model about 1.3 MB per token); with --remote only {runnable} run, "
        f"reduced on the server{partly}. Run {command} with --backend nnsight on a model this machine holds "
        "(docs/scale.md)."
    )


def check_on_ndif(fn) -> None:
    """The NDIF gate: SettingsError unless `fn` is one a row lets run on a remote model (reduced
    where the model is, or reading only tokens and last logits) — rather than fetch residual
    streams from NDIF. ui.cached and `twinlens report --remote` ask it before each call."""
    if fn not in REDUCED_ON_NDIF:
        raise SettingsError(NEEDS_RESIDUALS)
