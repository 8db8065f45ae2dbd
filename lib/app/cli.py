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
from .registry import COMMANDS, refuse_remote


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinlens", description="twinlens: compare two prompts inside a language model"
    )
    subparsers = parser.add_subparsers(dest="command", required=True)
    for _, command in COMMANDS.values():
        command.add(subparsers)
    return parser


def run(args: argparse.Namespace) -> dict:
    """The command's result, after the registry's NDIF gate."""
    if getattr(args, "remote", False) and (why := refuse_remote(args.command)):
        raise SettingsError(why)
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
    sys.stdout.write(to_json(result, indent=1) + "\n")
    return 0
