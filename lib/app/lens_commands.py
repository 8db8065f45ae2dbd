"""`twinlens lens fit --kind jacobian|tuned` (make lenses): fit a lens for a model, resumably, and
write it fp16 with its card; `--lens` / `--lens-file` for `twinlens compare`."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analyses.lenses import KINDS, SHIPPED


def add_lens_choice(parser: argparse.ArgumentParser) -> None:
    """--lens and --lens-file for a command that reads the lens."""
    parser.add_argument("--lens", default="logit", choices=KINDS,
                        help="how each layer is read: logit (default), tuned or jacobian (the model's own)")
    parser.add_argument("--lens-file", default=None,
                        help="a Jacobian-lens .pt or a tuned-lens folder to read with (with --lens)")


def add_lens_parser(commands, model_args) -> None:
    lens = commands.add_parser("lens", help="fit a Jacobian lens or train a tuned lens (make lenses)")
    actions = lens.add_subparsers(dest="lens_command", required=True)
    fit = actions.add_parser("fit", help="fit on the SAE corpus (checkpointed, resumable), then write a card")
    fit.add_argument("--kind", required=True, choices=("jacobian", "tuned"))
    fit.add_argument("--prompts", type=int, default=200, help="jacobian: windows fitted on")
    fit.add_argument("--context", type=int, default=128, help="tokens per window")
    fit.add_argument("--skip", type=int, default=16, help="jacobian: leading positions left out")
    fit.add_argument("--batch", type=int, default=16, help="jacobian: cotangents per backward pass")
    fit.add_argument("--tokens", type=int, default=32_768, help="tuned: training tokens captured")
    fit.add_argument("--steps", type=int, default=300, help="tuned: Adam steps")
    fit.add_argument("--tuned-batch", type=int, default=128, help="tuned: tokens per step")
    fit.add_argument("--lr", type=float, default=1e-3, help="tuned: Adam learning rate")
    fit.add_argument("--heldout", type=int, default=16, help="held-out windows for the card's figures")
    fit.add_argument("--minutes", type=float, default=600.0, help="time box of this run (then resume)")
    fit.add_argument("--corpus", help="MediaWiki .xml(.bz2) dump or text file (default: the SAEs' corpus)")
    fit.add_argument("--work", help="work folder (default: $TWINLENS_CACHE/lens-work)")
    fit.add_argument("--out", help="where the lens goes (default: the package's lib/data/lenses/<model>)")
    model_args(fit)


def run_lens(args: argparse.Namespace, load) -> dict:
    from ..analyses.lens_training import LensConfig, run_fit
    from ..core.errors import SettingsError
    from ..core.models import cache_dir

    counts = (args.prompts, args.context, args.batch, args.tokens, args.steps, args.tuned_batch, args.heldout)
    if min(counts) < 1:
        raise SettingsError(
            "--prompts, --context, --batch, --tokens, --steps, --tuned-batch and --heldout must be 1 or more."
        )
    if args.kind == "jacobian" and args.context <= args.skip + 1:
        raise SettingsError(f"--context must be longer than --skip + 1 ({args.skip + 1}) tokens.")
    cfg = LensConfig(
        context=args.context, heldout_windows=args.heldout, prompts=args.prompts, skip=args.skip,
        batch=args.batch, tuned_tokens=args.tokens, tuned_steps=args.steps, tuned_batch=args.tuned_batch,
        lr=args.lr, minutes=args.minutes,
    )
    model = load(args)
    slug = model.name.split("(")[0].strip().rstrip("/").split("/")[-1].lower() or "model"
    work = Path(args.work).expanduser() if args.work else cache_dir() / "lens-work" / slug
    out = Path(args.out).expanduser() if args.out else SHIPPED / slug
    corpus = Path(args.corpus).expanduser() if args.corpus else None
    return {"card": run_fit(model, args.kind, work, out, cfg, corpus=corpus,
                            log=lambda m: print(m, file=sys.stderr, flush=True))}
