"""Write docs/support_matrix.md from test results: which model families twinlens reads correctly.

Runs every test marked `family` — each test on the `family_model` fixture (so on a tiny random
model of every family in tests/tiny.py) and the refusals of unsupported families — with a JUnit
XML report, and turns that report into tables. The matrix in the README is what the tests found,
never typed by hand.

    make matrix        # or: .venv/bin/python tests/support_matrix.py [--out docs/support_matrix.md]

Exits 1 when a family test failed (the matrix is still written, showing which).
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from tiny import EXTRA_FAMILIES, FAMILIES, LANE_FAMILIES, UNSUPPORTED  # noqa: E402

# model_type → (name people know, typical hub checkpoints of that type; these are not downloaded)
KNOWN_AS = {
    "gpt2": ("GPT-2", "gpt2, distilgpt2"),
    "gpt_neo": ("GPT-Neo", "EleutherAI/gpt-neo-125m"),
    "gpt_neox": ("GPT-NeoX / Pythia", "EleutherAI/pythia-70m"),
    "opt": ("OPT", "facebook/opt-125m, facebook/opt-350m"),
    "llama": ("Llama (and SmolLM2)", "meta-llama/Llama-3.2-1B, HuggingFaceTB/SmolLM2-135M"),
    "mistral": ("Mistral", "mistralai/Mistral-7B-v0.1"),
    "qwen2": ("Qwen2 / Qwen2.5", "Qwen/Qwen2.5-0.5B"),
    "gemma": ("Gemma", "google/gemma-2b"),
    "gemma2": ("Gemma-2", "google/gemma-2-2b"),
    "phi3": ("Phi-3", "microsoft/Phi-3-mini-4k-instruct"),
    "bert": ("BERT as a decoder", "bert-base-uncased (BertLMHeadModel)"),
    "cohere": ("Cohere / Command-R", "CohereForAI/c4ai-command-r-v01"),
    "lfm2": ("LFM2", "LiquidAI/LFM2-350M"),
    "qwen3": ("Qwen3", "Qwen/Qwen3-0.6B"),
    "gemma3_text": ("Gemma-3 (text)", "google/gemma-3-1b-pt"),
    "olmo": ("OLMo", "allenai/OLMo-1B-hf"),
    "olmo2": ("OLMo-2", "allenai/OLMo-2-0425-1B"),
    "mixtral": ("Mixtral (MoE)", "mistralai/Mixtral-8x7B-v0.1"),
    "qwen2_moe": ("Qwen2-MoE", "Qwen/Qwen1.5-MoE-A2.7B"),
    "qwen3_moe": ("Qwen3-MoE", "Qwen/Qwen3-30B-A3B"),
    "olmoe": ("OLMoE", "allenai/OLMoE-1B-7B-0924"),
    "granite": ("Granite", "ibm-granite/granite-3.1-2b-base"),
    "granitemoe": ("Granite-MoE", "ibm-granite/granite-3.1-1b-a400m-base"),
    "cohere2": ("Cohere-2 / Command-R7B", "CohereForAI/c4ai-command-r7b-12-2024"),
    "falcon": ("Falcon", "tiiuae/falcon-7b"),
    "bloom": ("BLOOM", "bigscience/bloom-560m"),
    "gptj": ("GPT-J", "EleutherAI/gpt-j-6b"),
    "starcoder2": ("StarCoder2", "bigcode/starcoder2-3b"),
    "gpt_bigcode": ("GPT-BigCode / StarCoder", "bigcode/starcoderbase-1b"),
    "phi": ("Phi-1/2", "microsoft/phi-2"),
    "stablelm": ("StableLM", "stabilityai/stablelm-2-1_6b"),
    "persimmon": ("Persimmon", "adept/persimmon-8b-base"),
    "smollm3": ("SmolLM3", "HuggingFaceTB/SmolLM3-3B"),
    "glm": ("GLM-4", "THUDM/glm-4-9b-hf"),
    "exaone4": ("EXAONE-4", "LGAI-EXAONE/EXAONE-4.0-1.2B"),
    "nemotron": ("Nemotron", "nvidia/Minitron-4B-Base"),
    "biogpt": ("BioGPT", "microsoft/biogpt"),
    "xglm": ("XGLM", "facebook/xglm-564M"),
    "mpt": ("MPT", "mosaicml/mpt-7b"),
    "mamba": ("Mamba", "state-spaces/mamba-130m-hf"),
    "recurrent_gemma": ("RecurrentGemma", "google/recurrentgemma-2b"),
    "rwkv": ("RWKV-4", "RWKV/rwkv-4-169m-pile"),
    "minimax": ("MiniMax-Text", "MiniMaxAI/MiniMax-Text-01-hf"),
    "jamba": ("Jamba", "ai21labs/AI21-Jamba-Mini-1.6"),
}
_PARAMS = re.compile(r"^(?P<test>[^\[]+)\[(?P<params>.+)\]$")


@dataclass
class FamilyResult:
    """What the report says about one family."""

    passed: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    properties: dict[str, str] = field(default_factory=dict)


def run_tests(report: Path) -> int:
    """Run the family tests offline, writing a JUnit XML report (xunit1 keeps recorded properties)."""
    command = [
        sys.executable, "-m", "pytest", "tests/unit", "-m", "family", "-q", "-p", "no:cacheprovider",
        "-o", "junit_family=xunit1", f"--junitxml={report}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", LANE_FAMILIES: ""}  # all
    return subprocess.run(command, cwd=ROOT, env=env).returncode


def read_report(report: Path) -> tuple[dict[str, FamilyResult], dict[str, str]]:
    """family → its results, and the name → file of every test run on the supported families."""
    families: dict[str, FamilyResult] = defaultdict(FamilyResult)
    files: dict[str, str] = {}
    known = set(FAMILIES) | set(UNSUPPORTED) | set(EXTRA_FAMILIES)
    for case in ET.parse(report).getroot().iter("testcase"):
        match = _PARAMS.match(case.get("name", ""))
        family = next((p for p in match["params"].split("-") if p in known), None) if match else None
        if family is None:
            continue
        test = match["test"]
        if family in FAMILIES:
            files[test] = case.get("file") or case.get("classname", "").replace(".", "/") + ".py"
        result = families[family]
        if case.find("failure") is not None or case.find("error") is not None:
            result.failed.append(test)
        elif case.find("skipped") is not None:
            result.skipped.append(test)
        else:
            result.passed.append(test)
        for prop in case.iter("property"):
            result.properties[prop.get("name")] = prop.get("value")
    return families, files


def _dp(value: str | None) -> str:
    if value is None:
        return "—"
    number = float(value)
    return "0 (exact)" if number == 0 else f"{number:.1e}"


def _rows(families: dict[str, FamilyResult], names, sites: bool) -> list[str]:
    """One table row per family: its names, tests passed, the lens check, (its sites), verdict."""
    rows = []
    for family in names:
        result = families.get(family, FamilyResult())
        name, examples = KNOWN_AS.get(family, (family, ""))
        total = len(result.passed) + len(result.failed)
        verdict = "not run" if not total else (
            "fails: " + ", ".join(f"`{t}`" for t in sorted(set(result.failed))) if result.failed
            else "supported"
        )
        cells = [
            name, f"`{family}`", result.properties.get("hf_class", "—"), examples,
            f"{len(result.passed)}/{total}", _dp(result.properties.get("max_abs_dp")),
        ]
        if sites:
            cells.append(result.properties.get("sites", "—").replace("|", "\\|"))
        rows.append("| " + " | ".join(cells + [verdict]) + " |")
    return rows


def render(families: dict[str, FamilyResult], files: dict[str, str], versions: str) -> str:
    """The Markdown page."""
    lines = [
        "# Model families twinlens supports",
        "",
        "<!-- Generated by `make matrix` (tests/support_matrix.py) from the test results. Do not edit. -->",
        "",
        f"Generated from the family tests with {versions}. Each family is a tiny random model "
        "(3 layers, width 64) built from that family's `transformers` config, saved to a folder and "
        "loaded with `load_model(folder)`; the checkpoints named below were not downloaded. "
        "Real models take the same path, and `load_model` refuses any model whose lens does not "
        "reproduce its own output (a short forward pass at load time).",
        "",
        "| Family | model_type | transformers class | Typical checkpoints | Tests passed | "
        "max abs Δp, lens at last layer vs model | Result |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += _rows(families, FAMILIES, sites=False)
    lines += [
        "",
        "## More decoder families",
        "",
        "Each is checked by the lens = model invariant, the named sites (where twinlens reads a "
        "block's attention and MLP, resid_post − resid_pre = attn_out + mlp_out; where it does not, "
        "the reason) and nnsight parity (tests/unit/test_more_families.py); the rest of the suite "
        "runs on the families above.",
        "",
        "| Family | model_type | transformers class | Typical checkpoints | Tests passed | "
        "max abs Δp, lens at last layer vs model | Attention / MLP sites | Result |",
        "|---|---|---|---|---|---|---|---|",
    ]
    lines += _rows(families, EXTRA_FAMILIES, sites=True)
    lines += [
        "",
        "## Refused with a clear message",
        "",
        "`load_model` accepts these as causal language models, but the lens cannot read them; "
        "the tests check that loading fails with this message.",
        "",
        "| Family | model_type | Message | Test |",
        "|---|---|---|---|",
    ]
    for family in UNSUPPORTED:
        result = families.get(family, FamilyResult())
        name, _ = KNOWN_AS.get(family, (family, ""))
        status = "failed" if result.failed else ("passed" if result.passed else "not run")
        message = result.properties.get("refusal", "—").replace("|", "\\|")
        lines.append(f"| {name} | `{family}` | {message} | {status} |")
    lines += ["", "## The checks run on every family", ""]
    lines += [f"- `{test}` ({path})" for test, path in sorted(files.items())]
    return "\n".join(lines) + "\n"


def versions() -> str:
    import torch
    import transformers

    return f"transformers {transformers.__version__}, torch {torch.__version__}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "support_matrix.md")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "family-tests.xml"
        code = run_tests(report)
        if not report.is_file() or code not in (0, 1):
            print(f"error: the family tests did not run (pytest exit {code})", file=sys.stderr)
            return 1
        families, files = read_report(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(families, files, versions()))
    print(f"wrote {args.out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
