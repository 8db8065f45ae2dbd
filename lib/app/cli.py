"""Command line: `twinlens <command> …` (or `python -m lib <command> …`), one sub-command per row of
lib.app.registry that has one: compare, patch, compare-models, features, sae, components, generate,
steer (`twinlens <command> --help` lists each one's arguments).

Prints the result's `to_dict()` as JSON on stdout. Errors a user can cause print one line on
stderr and exit 1; wrong arguments exit 2 (argparse). `--remote` is refused, before any network or
load, for a command whose analysis needs what NDIF would have to send back whole.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..core.errors import SettingsError, TwinlensError, unexpected
from .export import to_json
from .registry import COMMANDS, check_on_ndif, refuse_remote


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinlens", description="twinlens: compare two prompts inside a language model"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for _, command in COMMANDS.values():
        command.add(subparsers)
    return parser


def run(args: argparse.Namespace) -> dict:
    """The command's result, after the registry's NDIF gate: a command refused on NDIF stops here;
    one that runs there in part (report) gets the gate to ask before each call (`args.ndif_gate`)."""
    if getattr(args, "remote", False):
        if why := refuse_remote(args.command):
            raise SettingsError(why)
        args.ndif_gate = check_on_ndif
    _, command = COMMANDS[args.command]
    return command.run(args)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        result = run(args)
    except TwinlensError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug or a resource limit, not bad input: one line, no traceback
        if os.environ.get("TWINLENS_DEBUG"):
            raise
        print(f"error: {unexpected(exc)}", file=sys.stderr)
        return 1
    for note in first_piece_notes(result):
        print(note, file=sys.stderr)
    sys.stdout.write(to_json(result, indent=1) + "\n")
    return 0


def first_piece_notes(result: object, score: str = "logit") -> list[str]:
    """One 'note:' line for each answer or wrong word of several tokens that `result` (a command's
    JSON) scored by its first piece, as its `word` field records: the number means something else
    than the word, so the terminal says so too, not only the JSON. Whole-word scores are left out."""
    notes: list[str] = []
    if isinstance(result, dict):
        metric = result.get("metric")
        score = str(result.get("score", metric.get("score", score) if isinstance(metric, dict) else score))
        for name in ("answer", "wrong"):
            ref = result.get(name)
            if isinstance(ref, dict) and ref.get("word") and score != "word":
                notes.append(f"note: --{name} '{ref['word']}' is several tokens; the score uses its first "
                             f"piece '{ref['token']}' (patch --score word scores the whole word).")
        for value in result.values():
            notes += [n for n in first_piece_notes(value, score) if n not in notes]
    elif isinstance(result, list):
        for value in result:
            notes += [n for n in first_piece_notes(value, score) if n not in notes]
    return notes
