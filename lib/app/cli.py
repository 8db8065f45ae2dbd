"""Command line: `python -m lib compare "PROMPT A" "PROMPT B" [--model SPEC] [--top-k K] [--bos MODE]`
and `python -m lib patch "PROMPT A" "PROMPT B" [--answer TOK] [--wrong TOK] [--model SPEC] [--bos MODE]`
and `python -m lib compare-models "PROMPT" --model SPEC1 --model2 SPEC2 [--top-k K] [--bos MODE]`
and `python -m lib generate "A" "B" [--max-new-tokens N] [--chat|--raw] [--system S] [--prefill P]
[--temperature T --seed K]` and `python -m lib steer "A" "B" --layer L --alpha X [--target C]
[--vector last|mean|aligned] [--apply all|prompt] [--max-new-tokens N] [--chat|--raw] [--sweep]`.

Prints the result's `to_dict()` as JSON on stdout. Errors a user can cause print one line on
stderr and exit 1; wrong arguments exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from ..core.errors import SettingsError, TwinlensError, unexpected
from ..core.tokens import BOS_MODES, check_prompts
from .export import to_json
from .lens_commands import add_lens_choice, add_lens_parser, run_lens


def _model_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", default="default", help="'default', a hub id or a local folder")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    parser.add_argument("--dtype", default="auto", help="auto, float32, float16 or bfloat16")
    parser.add_argument("--bos", default="auto", choices=BOS_MODES, help="BOS token: auto, on or off")
    parser.add_argument("--trust-remote-code", action="store_true",
                        help="run Python code shipped with the model (only for code you have read)")
    parser.add_argument("--allow-pickle", action="store_true",
                        help="read pickle .bin weights, which can run code (only for files you trust)")
    _backend_args(parser)


def _backend_args(parser: argparse.ArgumentParser) -> None:
    """Where the model runs (issue 15): backend, NDIF, and a model split across devices."""
    parser.add_argument("--backend", default="local", choices=("local", "nnsight"),
                        help="local: PyTorch hooks; nnsight: nnsight traces (same results)")
    parser.add_argument("--remote", action="store_true",
                        help="run on NDIF through nnsight (implies --backend nnsight); API key from "
                        "the NDIF_API_KEY environment variable")
    parser.add_argument("--device-map", default=None,
                        help="split a big model across devices: auto, balanced or sequential")
    parser.add_argument("--max-memory", default=None,
                        help="with --device-map: memory per device, e.g. 0=20GB,1=20GB,cpu=64GB")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinlens", description="twinlens: compare two prompts inside a language model"
    )
    commands = parser.add_subparsers(dest="command", required=True)
    compare = commands.add_parser("compare", help="logit lens and distances of two prompts")
    compare.add_argument("prompt_a")
    compare.add_argument("prompt_b")
    compare.add_argument("--top-k", type=int, default=10)
    add_lens_choice(compare)
    _model_args(compare)
    patch = commands.add_parser("patch", help="patch A's residual into B at every layer and position")
    patch.add_argument("prompt_a")
    patch.add_argument("prompt_b")
    patch.add_argument("--answer", help="token A should favour (default: A's top-1), e.g. ' Paris'")
    patch.add_argument("--wrong", help="token B favours instead (default: B's top-1), e.g. ' Rome'")
    patch.add_argument(
        "--score", choices=("logit", "word"), default="logit",
        help="logit: logit[answer] − logit[wrong], a word of several tokens by its first piece; "
        "word: log p(answer) − log p(wrong) of whole words by teacher forcing",
    )
    _model_args(patch)
    pair = commands.add_parser("compare-models", help="logit lens and distances of one prompt in two models")
    pair.add_argument("prompt")
    pair.add_argument("--model2", required=True, help="second model, same tokenizer: a hub id or a folder")
    pair.add_argument("--top-k", type=int, default=10)
    _model_args(pair)
    _add_features(commands)
    _add_sae(commands)
    _add_components(commands)
    _add_generate(commands)
    _add_steer(commands)
    add_lens_parser(commands, _model_args)
    return parser


def _add_features(commands) -> None:
    features = commands.add_parser("features", help="SAE features of two prompts: shared, only A, only B")
    features.add_argument("prompt_a")
    features.add_argument("prompt_b")
    features.add_argument("--layer", type=int, help="twinlens residual index (default: the SAE's own)")
    features.add_argument("--sae", help="SAE folder (SAELens) or params.npz (Gemma Scope); default: shipped")
    features.add_argument("--top", type=int, default=10, help="features per list")
    features.add_argument("--any-model", action="store_true", help="use an SAE made for another model")
    _model_args(features)


def _add_sae(commands) -> None:
    sae = commands.add_parser("sae", help="train TopK SAEs on the residual stream (make sae)")
    actions = sae.add_subparsers(dest="sae_command", required=True)
    train = actions.add_parser("train", help="collect activations, train, export (resumable)")
    train.add_argument("--layers", default="6,15,24", help="residual indices, comma-separated")
    train.add_argument("--tokens", type=int, default=650_000,
                       help="training tokens to collect (650,000: all of the default corpus)")
    train.add_argument("--collect-minutes", type=float, default=40.0, help="time box for collection")
    train.add_argument("--train-minutes", type=float, default=60.0, help="time box for training")
    train.add_argument("--d-sae", type=int, default=4608)
    train.add_argument("--k", type=int, default=32)
    train.add_argument("--batch-size", type=int, default=512)
    train.add_argument("--lr", type=float, default=1e-3)
    train.add_argument("--corpus", help="MediaWiki .xml(.bz2) dump or text file (default: gensim's sample)")
    train.add_argument("--work", help="work folder (default: $TWINLENS_CACHE/sae-work)")
    train.add_argument("--out", help="where the SAEs go (default: the package's lib/data/sae/<model>)")
    train.add_argument("--stages", default="collect,train,export", help="any of collect,train,export")
    _model_args(train)


def _add_components(commands) -> None:
    parser = commands.add_parser(
        "components", help="direct logit attribution per layer and head; with --patch heads, head patching"
    )
    parser.add_argument("prompt_a")
    parser.add_argument("prompt_b")
    parser.add_argument("--answer", help="token A should favour (default: A's top-1), e.g. ' Paris'")
    parser.add_argument("--wrong", help="token B favours instead (default: B's top-1), e.g. ' Rome'")
    parser.add_argument("--patch", choices=("heads",),
                        help="also patch A's attention, MLP and head outputs into B (exact and AtP)")
    parser.add_argument("--per-position", action="store_true",
                        help="with --patch: one position at a time (the prompts must have equal lengths)")
    _model_args(parser)


REDUCED_ON_NDIF = ("compare", "generate", "patch")  # commands whose results NDIF sends back reduced


def _load(args: argparse.Namespace, spec: str | None = None):
    from ..core.models import load_model

    if args.remote and args.command not in REDUCED_ON_NDIF:  # refused before any network or load
        raise SettingsError(
            f"`twinlens {args.command}` needs each prompt's whole residual stream, which NDIF would have "
            "to send back (for a 70B model about 1.3 MB per token); with --remote only "
            f"{', '.join(REDUCED_ON_NDIF)} run, reduced on the server. Run {args.command} with "
            "--backend nnsight on a model this machine holds (docs/scale.md)."
        )

    for flag, on in (("--trust-remote-code", args.trust_remote_code), ("--allow-pickle", args.allow_pickle)):
        if on:
            print(f"warning: {flag} is on: the model's files can run code on this machine.", file=sys.stderr)
    from ..core.models import parse_max_memory

    return load_model(
        args.model if spec is None else spec, device=args.device, dtype=args.dtype,
        trust_remote_code=args.trust_remote_code, allow_pickle=args.allow_pickle,
        backend="nnsight" if args.remote else args.backend, remote=args.remote,
        device_map=args.device_map, max_memory=parse_max_memory(args.max_memory),
    )


def _check_top_k_arg(top_k: int) -> None:
    if top_k < 1:  # checked before the slow model load
        raise TwinlensError(f"top-k must be at least 1 (got {top_k}).")


def run_compare(args: argparse.Namespace) -> dict:
    from ..analyses.compare import compare_prompts
    from ..core.checks import check_top_k

    _check_top_k_arg(args.top_k)
    check_prompts(args.prompt_a, args.prompt_b)
    model = _load(args)
    check_top_k(model, args.top_k)
    return compare_prompts(model, args.prompt_a, args.prompt_b, top_k=args.top_k, bos=args.bos,
                           lens=args.lens, lens_file=args.lens_file).to_dict()


def run_patch(args: argparse.Namespace) -> dict:
    from ..analyses.patching import patch_residual

    check_prompts(args.prompt_a, args.prompt_b)
    return patch_residual(
        _load(args), args.prompt_a, args.prompt_b, answer=args.answer, wrong=args.wrong, bos=args.bos,
        score=args.score, keep_residual=not args.remote,
    ).to_dict()


def run_compare_models(args: argparse.Namespace) -> dict:
    from ..analyses.model_compare import compare_models

    _check_top_k_arg(args.top_k)
    check_prompts(args.prompt)
    model1 = _load(args)
    model2 = model1 if args.model2.strip() == args.model.strip() else _load(args, args.model2)
    return compare_models(model1, model2, args.prompt, top_k=args.top_k, bos=args.bos).to_dict()


def run_features(args: argparse.Namespace) -> dict:
    from ..analyses.features import features_of_prompts

    check_prompts(args.prompt_a, args.prompt_b)
    if args.top < 1:
        raise TwinlensError(f"--top must be at least 1 (got {args.top}).")
    return features_of_prompts(
        _load(args), args.prompt_a, args.prompt_b, layer=args.layer, sae_path=args.sae, top=args.top,
        bos=args.bos, any_model=args.any_model,
    ).to_dict()


def run_sae(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from ..analyses.sae import SHIPPED
    from ..analyses.sae_training import TrainConfig, run_job
    from ..core.errors import SettingsError
    from ..core.models import cache_dir

    try:
        layers = tuple(int(x) for x in args.layers.split(",") if x.strip())
    except ValueError:
        raise SettingsError(f"--layers takes residual indices like 6,15,24, not '{args.layers}'.") from None
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    if not layers or not set(stages) <= {"collect", "train", "export"}:
        raise SettingsError("Give --layers such as 6,15,24 and --stages among collect,train,export.")
    cfg = TrainConfig(
        residuals=layers, d_sae=args.d_sae, k=args.k, train_tokens=args.tokens, batch_size=args.batch_size,
        lr=args.lr, collect_minutes=args.collect_minutes, train_minutes=args.train_minutes,
    )
    model = _load(args)
    work = Path(args.work).expanduser() if args.work else cache_dir() / "sae-work"
    out = Path(args.out).expanduser() if args.out else SHIPPED / "smollm2-135m-instruct"
    corpus = Path(args.corpus).expanduser() if args.corpus else None
    return {"saes": run_job(model, work, out, cfg, corpus=corpus, stages=stages,
                            log=lambda m: print(m, file=sys.stderr, flush=True))}


def run_components(args: argparse.Namespace) -> dict:
    from ..analyses.components import attribute_captures, patch_components
    from ..core.capture import capture

    check_prompts(args.prompt_a, args.prompt_b)
    model = _load(args)
    cap_a, cap_b = capture(model, args.prompt_a, args.bos), capture(model, args.prompt_b, args.bos)
    result = attribute_captures(model, cap_a, cap_b, answer=args.answer, wrong=args.wrong).to_dict()
    if args.patch == "heads":
        result["patch"] = patch_components(
            model, cap_a, cap_b, answer=args.answer, wrong=args.wrong, per_position=args.per_position
        ).to_dict()
    return result


def _chat_args(parser: argparse.ArgumentParser) -> None:
    """--chat/--raw (raw by default), --system and --prefill (chat mode only)."""
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--chat", dest="chat", action="store_true",
                      help="read each prompt as a user message through the model's chat template")
    mode.add_argument("--raw", dest="chat", action="store_false", help="read prompts as raw text (default)")
    parser.set_defaults(chat=False)
    parser.add_argument("--system", default=None, help="system message (with --chat)")
    parser.add_argument("--prefill", default="", help="start of the assistant's answer (with --chat)")


def _generation_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--max-new-tokens", type=int, default=24, help="new tokens at most (default 24)")
    parser.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default); > 0 samples")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sampling (with --temperature)")


def _chat_of(args: argparse.Namespace):
    from ..core.chat import Chat

    if not args.chat:
        if args.system or args.prefill:
            raise TwinlensError("--system and --prefill need --chat (prompts are read as raw text).")
        return None
    return Chat(system=args.system or None, prefill=args.prefill)


def _settings_of(args: argparse.Namespace):
    from ..analyses.generation import GenerationSettings

    return GenerationSettings(args.max_new_tokens, args.temperature, args.seed)


def _add_generate(commands) -> None:
    gen = commands.add_parser("generate", help="both prompts' continuations (as transformers' generate)")
    gen.add_argument("prompt_a")
    gen.add_argument("prompt_b")
    _generation_args(gen)
    _chat_args(gen)
    _model_args(gen)


def run_generate(args: argparse.Namespace) -> dict:
    from ..analyses.generation import continue_pair

    check_prompts(args.prompt_a, args.prompt_b)
    chat, settings = _chat_of(args), _settings_of(args)
    return continue_pair(_load(args), args.prompt_a, args.prompt_b, bos=args.bos, chat=chat,
                         settings=settings).to_dict()


def _add_steer(commands) -> None:
    steer = commands.add_parser("steer", help="add α·(h_A − h_B) at a layer to B (or --target) and continue")
    steer.add_argument("prompt_a")
    steer.add_argument("prompt_b")
    steer.add_argument("--layer", type=int, required=True, help="residual index (0 = embeddings)")
    steer.add_argument("--alpha", type=float, default=1.0, help="coefficient α (negative allowed)")
    steer.add_argument("--target", default=None, help="a third prompt to steer (default: B)")
    steer.add_argument("--vector", default="last", choices=("last", "mean", "aligned"),
                       help="h_A − h_B at the last position, the mean over positions, or by position")
    steer.add_argument("--apply", default="all", choices=("all", "prompt"),
                       help="add at every position, generated tokens included (default), or the prompt's")
    steer.add_argument("--answer", help="token of the logit difference A should favour (default: A's top-1)")
    steer.add_argument("--wrong", help="token B favours instead (default: B's top-1)")
    steer.add_argument("--vector-file", help="steer with a vector saved earlier (safetensors), not A − B")
    steer.add_argument("--save-vector", help="write the vector h_A − h_B to this safetensors file")
    steer.add_argument("--sweep", action="store_true",
                       help="instead: the next-token effect at every layer × --alphas (batched)")
    steer.add_argument("--alphas", default="-1,1,2,4", help="coefficients of --sweep, comma-separated")
    _generation_args(steer)
    _chat_args(steer)
    _model_args(steer)


def run_steer(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from ..analyses.steering import steer_captures, steering_sweep, steering_vector
    from ..core.capture import capture
    from ..core.errors import PromptError, SettingsError

    check_prompts(args.prompt_a, args.prompt_b)
    if args.target is not None and not args.target.strip():
        raise PromptError("The target prompt is empty. Type a third prompt, or leave --target out for B.")
    try:
        alphas = tuple(float(a) for a in args.alphas.split(",") if a.strip())
    except ValueError as exc:
        raise SettingsError(f"--alphas must be numbers separated by commas, not '{args.alphas}'.") from exc
    vector_file = None
    if args.vector_file:
        try:
            vector_file = Path(args.vector_file).read_bytes()
        except OSError as exc:
            raise SettingsError(f"Cannot read the vector file '{args.vector_file}': {exc.strerror}.") from exc
    chat, settings = _chat_of(args), _settings_of(args)
    model = _load(args)
    cap_a, cap_b = (capture(model, text, args.bos, chat) for text in (args.prompt_a, args.prompt_b))
    target = None if args.target is None else capture(model, args.target, args.bos, chat)
    if args.save_vector:
        vector = steering_vector(model, cap_a, cap_b, args.layer, args.vector)
        try:
            Path(args.save_vector).write_bytes(vector.to_bytes())
        except OSError as exc:
            raise SettingsError(f"Cannot write '{args.save_vector}': {exc.strerror}.") from exc
    if args.sweep:
        return steering_sweep(model, cap_a, cap_b, target, alphas=alphas, mode=args.vector,
                              answer=args.answer, wrong=args.wrong).to_dict()
    return steer_captures(
        model, cap_a, cap_b, target, layer=args.layer, alpha=args.alpha, mode=args.vector, apply=args.apply,
        answer=args.answer, wrong=args.wrong, settings=settings, vector_file=vector_file,
    ).to_dict()


COMMANDS: dict[str, Callable[[argparse.Namespace], dict]] = {
    "compare": run_compare, "patch": run_patch, "compare-models": run_compare_models,
    "components": run_components, "generate": run_generate, "steer": run_steer,
}
COMMANDS.update({"features": run_features, "sae": run_sae})
COMMANDS.update({"lens": lambda args: run_lens(args, _load)})


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    hf_logging.set_verbosity_error()
    try:
        result = COMMANDS[args.command](args)
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
