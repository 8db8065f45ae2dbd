"""The command line's sub-commands: for each, `add_<name>(subparsers)` declares its arguments and
`run_<name>(args)` returns the result's `to_dict()`. Which commands exist, and which may run on
NDIF, is lib.app.registry's table; lib.app.cli reads it."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..analyses.common.lenses import KINDS, SHIPPED
from ..core.errors import SettingsError, TwinlensError
from ..core.tokens import BOS_MODES, check_prompts
from .export import to_json


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


def add_compare(commands) -> None:
    compare = commands.add_parser("compare", help="logit lens and distances of two prompts")
    compare.add_argument("prompt_a")
    compare.add_argument("prompt_b")
    compare.add_argument("--top-k", type=int, default=10)
    add_lens_choice(compare)
    _model_args(compare)


def add_patch(commands) -> None:
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
    patch.add_argument("--lens", default=None, choices=KINDS,
                       help="also print B's lens (last position, every layer) after one patch, read with "
                       "this lens (logit, tuned or jacobian)")
    patch.add_argument("--lens-file", default=None,
                       help="a Jacobian-lens .pt or a tuned-lens folder to read with (with --lens)")
    patch.add_argument("--cell", default=None, metavar="LAYER,POSITION",
                       help="the patch whose lens is printed (default: layer 0, where its effect is largest)")
    _model_args(patch)


def add_compare_models(commands) -> None:
    pair = commands.add_parser("compare-models", help="logit lens and distances of one prompt in two models")
    pair.add_argument("prompt")
    pair.add_argument("--model2", required=True, help="second model, same tokenizer: a hub id or a folder")
    pair.add_argument("--top-k", type=int, default=10)
    pair.add_argument("--lens", default="logit", choices=KINDS,
                      help="read each model with its own lens of this kind: logit, tuned or jacobian")
    _model_args(pair)


def add_features(commands) -> None:
    features = commands.add_parser("features", help="SAE features of two prompts: shared, only A, only B")
    features.add_argument("prompt_a")
    features.add_argument("prompt_b")
    features.add_argument("--layer", type=int, help="twinlens residual index (default: the SAE's own)")
    features.add_argument("--sae", help="SAE folder (SAELens) or params.npz (Gemma Scope); default: shipped")
    features.add_argument("--top", type=int, default=10, help="features per list")
    features.add_argument("--any-model", action="store_true", help="use an SAE made for another model")
    features.add_argument("--answer", help="token of the attribution's metric A favours (default: A's top-1)")
    features.add_argument("--wrong", help="token B favours instead (default: B's top-1)")
    _model_args(features)


def add_sae(commands) -> None:
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
    train.add_argument("--mix", help="train on a mix of kinds of text: 'default' or e.g. "
                                     "wikipedia=0.3,python=0.3,literature=0.15,chat=0.25 "
                                     "(default: Wikipedia only)")
    train.add_argument("--heldout-windows", type=int,
                       help="held-out windows (per kind with --mix; default 64, with --mix 32 per kind)")
    train.add_argument("--init-from", help="start from the SAEs in this folder (one sub-folder per hook)")
    _model_args(train)
    measure = actions.add_parser("measure", help="FVU per kind of text and pooled, dead share, of a folder "
                                                 "of SAEs on a mix's held-out text (collects it if missing)")
    measure.add_argument("--saes", help="folder of SAEs (default: the shipped ones)")
    measure.add_argument("--work", help="a mix job's work folder (default: $TWINLENS_CACHE/sae-mix-work)")
    measure.add_argument("--mix", default="default", help="the mix, as for train (default: the default mix)")
    measure.add_argument("--heldout-windows", type=int, default=32, help="held-out windows per kind")
    _model_args(measure)


def add_components(commands) -> None:
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


def _load(args: argparse.Namespace, spec: str | None = None):
    from ..core.models import load_model

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


def _cell(text: str | None) -> tuple[int, int] | None:
    if text is None:
        return None
    try:
        layer, position = (int(part) for part in text.split(","))
    except ValueError:
        raise SettingsError(f"--cell takes LAYER,POSITION such as 3,5, not '{text}'.") from None
    return layer, position


def run_patch(args: argparse.Namespace) -> dict:
    from ..analyses.common.lenses import lens_for
    from ..analyses.patching import patch_residual, patched_lens, strongest_cell

    check_prompts(args.prompt_a, args.prompt_b)
    cell = _cell(args.cell)
    wants_lens = args.lens is not None or cell is not None
    if wants_lens and args.remote:
        raise SettingsError("--lens and --cell read B's patched residual stream, which stays on NDIF; "
                            "run them locally.")
    if args.lens_file is not None and args.lens is None:
        raise SettingsError("--lens-file needs --lens (tuned or jacobian).")
    model = _load(args)
    reader = lens_for(model, args.lens or "logit", args.lens_file) if wants_lens else None  # before the grid
    result = patch_residual(
        model, args.prompt_a, args.prompt_b, answer=args.answer, wrong=args.wrong, bos=args.bos,
        score=args.score, keep_residual=not args.remote,
    )
    data = result.to_dict()
    if reader is not None:
        layer, position = cell or strongest_cell(result)
        data["lens_after_patch"] = patched_lens(
            model, args.prompt_a, args.prompt_b, layer, position, bos=args.bos, lens=reader
        ).to_dict()
    return data


def run_compare_models(args: argparse.Namespace) -> dict:
    from ..analyses.model_compare import compare_models

    _check_top_k_arg(args.top_k)
    check_prompts(args.prompt)
    model1 = _load(args)
    model2 = model1 if args.model2.strip() == args.model.strip() else _load(args, args.model2)
    return compare_models(model1, model2, args.prompt, top_k=args.top_k, bos=args.bos,
                          lens=args.lens).to_dict()


def run_features(args: argparse.Namespace) -> dict:
    from ..analyses.features import features_of_prompts

    check_prompts(args.prompt_a, args.prompt_b)
    if args.top < 1:
        raise TwinlensError(f"--top must be at least 1 (got {args.top}).")
    from ..analyses.features import attribution_of_captures
    from ..core.capture import capture

    model = _load(args)
    result = features_of_prompts(
        model, args.prompt_a, args.prompt_b, layer=args.layer, sae_path=args.sae, top=args.top,
        bos=args.bos, any_model=args.any_model,
    ).to_dict()
    cap_a, cap_b = capture(model, args.prompt_a, args.bos), capture(model, args.prompt_b, args.bos)
    try:  # the ranking by attribution needs a logit difference; without one the lists still print
        result["attribution"] = attribution_of_captures(
            model, cap_a, cap_b, layer=result["layer"], sae_path=args.sae, answer=args.answer,
            wrong=args.wrong, top=args.top, any_model=args.any_model,
        ).to_dict()
    except TwinlensError as exc:
        result["attribution"] = {"error": str(exc)}
    return result


def run_sae(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from ..analyses.common.mix import parse_mix
    from ..analyses.common.sae import SHIPPED
    from ..analyses.sae_training import TrainConfig, run_job
    from ..core.models import cache_dir

    if args.sae_command == "measure":
        return _measure_saes(args)
    try:
        layers = tuple(int(x) for x in args.layers.split(",") if x.strip())
    except ValueError:
        raise SettingsError(f"--layers takes residual indices like 6,15,24, not '{args.layers}'.") from None
    stages = tuple(s.strip() for s in args.stages.split(",") if s.strip())
    if not layers or not set(stages) <= {"collect", "train", "export"}:
        raise SettingsError("Give --layers such as 6,15,24 and --stages among collect,train,export.")
    mix = parse_mix(args.mix) if args.mix else ()
    heldout = args.heldout_windows or (32 if mix else 64)
    cfg = TrainConfig(
        residuals=layers, d_sae=args.d_sae, k=args.k, train_tokens=args.tokens, batch_size=args.batch_size,
        lr=args.lr, collect_minutes=args.collect_minutes, train_minutes=args.train_minutes,
        heldout_windows=heldout, mix=mix,
        init_from=str(Path(args.init_from).expanduser().resolve()) if args.init_from else "",
    )
    model = _load(args)
    work = Path(args.work).expanduser() if args.work else cache_dir() / "sae-work"
    out = Path(args.out).expanduser() if args.out else SHIPPED / "smollm2-135m-instruct"
    corpus = Path(args.corpus).expanduser() if args.corpus else None
    return {"saes": run_job(model, work, out, cfg, corpus=corpus, stages=stages,
                            log=lambda m: print(m, file=sys.stderr, flush=True))}


def _measure_saes(args: argparse.Namespace) -> dict:
    """`sae measure`: the mix's held-out windows collected at the SAEs' residuals (shards already in
    the work folder are kept), then FVU per kind and pooled for each SAE."""
    import json
    from pathlib import Path

    from ..analyses.common.mix import load_mix, parse_mix
    from ..analyses.common.sae import SHIPPED
    from ..analyses.sae_training import TrainConfig, collect, measure_saes
    from ..core.models import cache_dir

    folder = Path(args.saes).expanduser() if args.saes else SHIPPED / "smollm2-135m-instruct"
    if not folder.is_dir():
        raise SettingsError(f"There is no folder of SAEs at '{folder}'.")
    residuals = sorted(json.loads((p / "card.json").read_text())["residual"]
                       for p in folder.iterdir() if (p / "card.json").is_file())
    if not residuals:
        raise SettingsError(f"'{folder}' holds no SAE with a card.json.")
    work = Path(args.work).expanduser() if args.work else cache_dir() / "sae-mix-work"
    cfg = TrainConfig(residuals=tuple(residuals), mix=parse_mix(args.mix),
                      heldout_windows=args.heldout_windows)
    model = _load(args)
    log = lambda m: print(m, file=sys.stderr, flush=True)  # noqa: E731
    mixed = load_mix(model.tokenizer, work, cfg.mix, cfg.context, cfg.heldout_windows, cfg.seed, log=log)
    for kind, held in mixed.heldout.items():
        collect(model, held, cfg.residuals, work / "acts", cfg, log, f"heldout-{kind}")
    return {"saes": measure_saes(folder, work)}


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
    from ..analyses.common.decode import GenerationSettings

    return GenerationSettings(args.max_new_tokens, args.temperature, args.seed)


def add_generate(commands) -> None:
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


def add_steer(commands) -> None:
    steer = commands.add_parser("steer", help="add α·(h_A − h_B) at a layer to B (or --target) and continue")
    steer.add_argument("prompt_a")
    steer.add_argument("prompt_b")
    steer.add_argument("--layer", type=int,
                       help="residual index (0 = embeddings); needed unless --sweep or --flip")
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
    steer.add_argument("--flip", action="store_true",
                       help="instead: the smallest α per layer that makes B's next token A's (steer-to-flip)")
    _generation_args(steer)
    _chat_args(steer)
    _model_args(steer)


def run_steer(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from ..analyses.steering import steer_captures, steering_sweep, steering_vector
    from ..core.capture import capture
    from ..core.errors import PromptError

    check_prompts(args.prompt_a, args.prompt_b)
    if args.layer is None and (args.save_vector or not (args.sweep or args.flip)):
        raise SettingsError("Give --layer (a residual index; 0 = embeddings), or use --sweep or --flip.")
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
    if args.flip:
        from ..analyses.steering import steer_to_flip

        return steer_to_flip(model, cap_a, cap_b, mode=args.vector, answer=args.answer).to_dict()
    if args.sweep:
        return steering_sweep(model, cap_a, cap_b, target, alphas=alphas, mode=args.vector,
                              answer=args.answer, wrong=args.wrong).to_dict()
    return steer_captures(
        model, cap_a, cap_b, target, layer=args.layer, alpha=args.alpha, mode=args.vector, apply=args.apply,
        answer=args.answer, wrong=args.wrong, settings=settings, vector_file=vector_file,
    ).to_dict()


def add_circuit(commands) -> None:
    parser = commands.add_parser(
        "circuit", help="edge attribution patching: the circuit that carries A − B, and its faithfulness"
    )
    parser.add_argument("prompt_a")
    parser.add_argument("prompt_b")
    parser.add_argument("--answer", help="token A should favour (default: A's top-1), e.g. ' Paris'")
    parser.add_argument("--wrong", help="token B favours instead (default: B's top-1), e.g. ' Rome'")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--edges", type=int, help="keep the N top edges (default 50)")
    size.add_argument("--share", type=float, help="keep the fewest top edges holding this share of Σ|score|")
    parser.add_argument("--ig-steps", type=int, default=1, help="EAP-IG with K steps (1: plain EAP)")
    parser.add_argument("--coarse", action="store_true", help="one node per layer's attention, not per head")
    _model_args(parser)


def run_circuit(args: argparse.Namespace) -> dict:
    from ..analyses.circuit import find_circuit
    from ..core.capture import capture

    check_prompts(args.prompt_a, args.prompt_b)
    model = _load(args)
    cap_a, cap_b = capture(model, args.prompt_a, args.bos), capture(model, args.prompt_b, args.bos)
    return find_circuit(
        model, cap_a, cap_b, answer=args.answer, wrong=args.wrong, edges=args.edges, share=args.share,
        ig_steps=args.ig_steps, granularity="layers" if args.coarse else "heads",
    ).to_dict()


def add_sets(commands) -> None:
    sets = commands.add_parser("sets", help="two sets of prompts: distances, probes, CAA vector per layer")
    sets.add_argument("files", nargs="*", metavar="FILE",
                      help="A.txt B.txt (one prompt a line), or one .csv/.jsonl with columns a, b (paired)")
    sets.add_argument("--example", help="a shipped set instead of files, e.g. 'Happy vs angry sentences'")
    sets.add_argument("--paired", action="store_true", help="line i of A goes with line i of B")
    sets.add_argument("--layer", type=int, help="residual of the vector and the rows (default: best probe)")
    sets.add_argument("--position", type=int, default=-1, help="token position (default −1: the last)")
    sets.add_argument("--top-k", type=int, default=5, help="lens tokens per layer")
    sets.add_argument("--folds", type=int, default=5)
    sets.add_argument("--permutations", type=int, default=5, help="label shuffles for chance")
    sets.add_argument("--bootstrap", type=int, default=1000, help="resamples of the 95%% intervals")
    sets.add_argument("--save-vector", help="write the CAA vector (safetensors, for steer --vector-file)")
    sets.add_argument("--no-lens", action="store_true",
                      help="leave out the lens over the sets (about half the model's work on a small model)")
    _chat_args(sets)
    _model_args(sets)


def run_sets(args: argparse.Namespace) -> dict:
    from pathlib import Path

    from ..analyses.sets import compare_sets, prompt_sets, read_lines, read_table, shipped_sets

    def text(path: str) -> str:
        try:
            return Path(path).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise SettingsError(f"Cannot read '{path}': {getattr(exc, 'strerror', None) or exc}.") from exc

    if args.example:
        if args.files:
            raise SettingsError("Give files or --example, not both.")
        sets = shipped_sets(args.example)
    elif len(args.files) == 1 and Path(args.files[0]).suffix.lower() in (".csv", ".jsonl"):
        a, b = read_table(text(args.files[0]), Path(args.files[0]).suffix.lower()[1:])
        sets = prompt_sets(a, b, paired=True)
    elif len(args.files) == 2:
        sets = prompt_sets(read_lines(text(args.files[0]), "A"), read_lines(text(args.files[1]), "B"),
                           paired=args.paired)
    else:
        raise SettingsError("Give two files (A.txt B.txt), one .csv/.jsonl with columns a, b, or --example.")
    _check_top_k_arg(args.top_k)
    result = compare_sets(_load(args), sets, bos=args.bos, chat=_chat_of(args), layer=args.layer,
                          position=args.position, top_k=args.top_k, folds=args.folds,
                          permutations=args.permutations, bootstrap=args.bootstrap, lens=not args.no_lens)
    if args.save_vector:
        try:
            Path(args.save_vector).write_bytes(result.vector_file())
        except OSError as exc:
            raise SettingsError(f"Cannot write '{args.save_vector}': {exc.strerror}.") from exc
    return result.to_dict()


def add_report(commands) -> None:
    report = commands.add_parser("report", help="the Findings for A and B: an offline HTML file and its JSON")
    report.add_argument("prompt_a")
    report.add_argument("prompt_b")
    report.add_argument("-o", "--output", default="twinlens-report.html",
                        help="the HTML file to write; the JSON goes beside it (.json)")
    report.add_argument("--top-k", type=int, default=10)
    _chat_args(report)
    _model_args(report)


def run_report(args: argparse.Namespace) -> dict:
    """The Findings (lib.app.findings) run in order, written as HTML and JSON; the JSON printed.
    With --remote the captures keep no residual stream and the steps reduced on NDIF run; the
    others say why not."""
    from pathlib import Path

    from ..core.capture import capture
    from .findings import in_order, run_findings
    from .report import report_data, report_html
    from .request import Request

    check_prompts(args.prompt_a, args.prompt_b)
    _check_top_k_arg(args.top_k)
    chat = _chat_of(args)
    html_path = Path(args.output)
    json_path = html_path.with_suffix(".json")
    model = _load(args)
    cap_a, cap_b = (capture(model, text, args.bos, chat, keep_residual=not args.remote)
                    for text in (args.prompt_a, args.prompt_b))
    chat_info = None if chat is None else {"system": chat.system or "", "prefill": chat.prefill}

    def get(fn, *a, **k):
        if args.remote:  # the registry's NDIF gate (lib.app.cli hands it over), as in the app
            args.ndif_gate(fn)
        return fn(*a, **k)

    findings = in_order(run_findings(model, model, cap_a, cap_b, get, chat=chat_info, top_k=args.top_k,
                                     remote=args.remote))
    request = Request(model=args.model, a=args.prompt_a, b=args.prompt_b, bos=args.bos, k=args.top_k,
                      chat=chat is not None, system=args.system or "", prefill=args.prefill)
    data = report_data(findings, prompts={"A": args.prompt_a, "B": args.prompt_b}, model=model.info(),
                       settings={"bos": args.bos, "top_k": args.top_k, "chat": chat is not None,
                                 "system": args.system or "", "prefill": args.prefill},
                       query=request.to_query())
    try:
        html_path.write_text(report_html(data, findings), encoding="utf-8")
        json_path.write_text(to_json(data, indent=1) + "\n", encoding="utf-8")
    except OSError as exc:
        raise SettingsError(f"Cannot write the report '{html_path}': {exc.strerror}.") from exc
    print(f"wrote {html_path} and {json_path}", file=sys.stderr)
    return data


def add_lens_choice(parser: argparse.ArgumentParser) -> None:
    """--lens and --lens-file for a command that reads the lens."""
    parser.add_argument("--lens", default="logit", choices=KINDS,
                        help="how each layer is read: logit (default), tuned or jacobian (the model's own)")
    parser.add_argument("--lens-file", default=None,
                        help="a Jacobian-lens .pt or a tuned-lens folder to read with (with --lens)")


def add_lens(commands) -> None:
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
    _model_args(fit)


def run_lens(args: argparse.Namespace) -> dict:
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
    model = _load(args)
    slug = model.name.split("(")[0].strip().rstrip("/").split("/")[-1].lower() or "model"
    work = Path(args.work).expanduser() if args.work else cache_dir() / "lens-work" / slug
    out = Path(args.out).expanduser() if args.out else SHIPPED / slug
    corpus = Path(args.corpus).expanduser() if args.corpus else None
    return {"card": run_fit(model, args.kind, work, out, cfg, corpus=corpus,
                            log=lambda m: print(m, file=sys.stderr, flush=True))}
