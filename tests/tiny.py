"""Tiny random models of each family, with a tokenizer trained here, saved to a folder.

They load through `load_model(folder)`, the same path a user's own folder takes.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

CORPUS = [
    "The capital of France is Paris. The capital of Italy is Rome.",
    "Claire and Mary went to the shops, then Mary gave a bottle of milk to Claire.",
    "You have happy emotion in yourself! You have angry emotion in yourself!",
    "The rival of the team Kobe Bryant played for is the Boston Celtics.",
    "Is there a seahorse emoji? 🐴🌊 héllo wörld — naïve café 東京 مرحبا",
    "0123456789 the quick brown fox jumps over the lazy dog\n\tend",
]

SPECIAL = ["<bos>", "<eos>", "<pad>"]


def make_tokenizer(vocab_size: int = 1000, corpus: tuple[str, ...] | list[str] = CORPUS):
    """A byte-level BPE tokenizer (GPT-2 style) trained on `corpus`, with BOS/EOS/PAD tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<bos>", eos_token="<eos>", pad_token="<pad>"
    )


def _common(tokenizer) -> dict:
    return {
        "vocab_size": len(tokenizer),
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }


def config_for(family: str, tokenizer):
    """A small config of `family`: 3 layers, width 64, 4 heads, 128 positions.

    Each keeps what makes its family different from the others: OPT's narrower word embedding
    (so `project_out` runs), Gemma's √d embedding scale, Gemma-2's logit and attention soft-caps,
    sliding windows shorter than the test prompts (Mistral, Gemma-2, GPT-Neo's local layers).
    """
    import transformers as tf

    c = _common(tokenizer)
    # Llama, Mistral, Qwen2, Gemma, Gemma-2 and Phi-3 share these field names.
    llama_like = dict(
        num_hidden_layers=3, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, **c,
    )
    if family == "gpt2":
        return tf.GPT2Config(n_layer=3, n_embd=64, n_head=4, n_positions=128, **c)
    if family == "gpt_neo":
        return tf.GPTNeoConfig(
            num_layers=3, hidden_size=64, num_heads=4, intermediate_size=128, max_position_embeddings=128,
            attention_types=[[["global", "local", "global"], 1]], window_size=4, **c,
        )
    if family == "gpt_neox":
        return tf.GPTNeoXConfig(
            num_hidden_layers=3, hidden_size=64, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=128, rotary_pct=0.25, tie_word_embeddings=False, **c,
        )
    if family == "opt":
        return tf.OPTConfig(
            num_hidden_layers=3, hidden_size=64, ffn_dim=128, num_attention_heads=4,
            word_embed_proj_dim=32, max_position_embeddings=128, **c,
        )
    if family == "llama":
        return tf.LlamaConfig(tie_word_embeddings=False, **llama_like)
    if family == "mistral":
        return tf.MistralConfig(sliding_window=4, tie_word_embeddings=False, **llama_like)
    if family == "qwen2":
        return tf.Qwen2Config(tie_word_embeddings=True, **llama_like)
    if family == "gemma":
        return tf.GemmaConfig(head_dim=16, **llama_like)
    if family == "gemma2":
        return tf.Gemma2Config(
            head_dim=16, sliding_window=4, query_pre_attn_scalar=16,
            final_logit_softcapping=2.0, attn_logit_softcapping=5.0, **llama_like,
        )
    if family == "phi3":
        return tf.Phi3Config(tie_word_embeddings=False, **llama_like)
    if family == "bert":  # a causal LM to transformers (BertLMHeadModel), blocks under encoder.layer
        return tf.BertConfig(
            num_hidden_layers=3, hidden_size=64, num_attention_heads=4, intermediate_size=128,
            max_position_embeddings=128, is_decoder=True, **c,
        )
    if family == "cohere":  # Llama-like, but multiplies its logits by logit_scale (read, since issue 15)
        return tf.CohereConfig(**llama_like)
    if family in EXTRA_FAMILIES or family == "lfm2":
        return extra_config(family, tokenizer)
    raise KeyError(family)


# More decoder families for the support matrix (tests/unit/test_more_families.py): each is checked
# by the lens = model invariant, the named sites and nnsight parity only, so the main suite does
# not run every test once more per family. Built from transformers' own config class with the
# small sizes below and the overrides that make each family's peculiarity show.
EXTRA_FAMILIES = (
    "qwen3", "gemma3_text", "olmo", "olmo2", "mixtral", "qwen2_moe", "qwen3_moe", "olmoe", "granite",
    "granitemoe", "cohere", "cohere2", "falcon", "bloom", "gptj", "starcoder2", "gpt_bigcode", "phi",
    "stablelm", "persimmon", "smollm3", "glm", "exaone4", "nemotron", "biogpt", "xglm", "mpt", "mamba",
    "recurrent_gemma", "rwkv", "minimax", "jamba",
)
_EXTRA_OVERRIDES: dict[str, dict] = {
    # Granite's multipliers: embeddings ×6, each branch ×0.5 before it is added, logits ÷ 4
    "granite": dict(logits_scaling=4.0, embedding_multiplier=6.0, attention_multiplier=0.1,
                    residual_multiplier=0.5),
    "cohere2": dict(logit_scale=0.5),
    "gptj": dict(rotary_dim=8),
    "falcon": dict(head_dim=None),
    "rwkv": dict(attention_hidden_size=64),
    "recurrent_gemma": dict(
        logits_soft_cap=3.0, lru_width=64, block_types=["recurrent", "attention", "recurrent"]
    ),
}


def extra_config(family: str, tokenizer):
    """A small config of one of EXTRA_FAMILIES: 3 layers, width 64, 4 heads, 4 experts (2 active)."""
    from transformers import AutoConfig

    sizes = dict(
        num_hidden_layers=3, hidden_size=64, intermediate_size=128, num_attention_heads=4,
        num_key_value_heads=2, max_position_embeddings=128, head_dim=16, num_local_experts=4,
        num_experts=4, num_experts_per_tok=2, moe_intermediate_size=32, shared_expert_intermediate_size=32,
        **_common(tokenizer),
    )
    sizes.update(_EXTRA_OVERRIDES.get(family, {}))
    return AutoConfig.for_model(family, **{k: v for k, v in sizes.items() if v is not None})


FAMILIES = (
    "gpt2", "gpt_neo", "gpt_neox", "opt", "llama", "mistral", "qwen2", "gemma", "gemma2", "phi3",
)
UNSUPPORTED = ("bert", "lfm2")  # load_model must refuse these, naming the family
LANE_FAMILIES = "TWINLENS_TEST_FAMILIES"  # a comma-separated subset the per-family tests run on


def lane_families(families: tuple[str, ...], chosen: str | None = None) -> tuple[str, ...]:
    """The families of `families` that the per-family tests run on: all of them, or those named in
    `chosen` (default: $TWINLENS_TEST_FAMILIES, e.g. `make test-fast`'s representative few). A name
    that is no family at all is refused, so a typo cannot quietly drop every family."""
    chosen = os.environ.get(LANE_FAMILIES, "") if chosen is None else chosen
    names = [n.strip() for n in chosen.split(",") if n.strip()]
    unknown = sorted(set(names) - set(FAMILIES) - set(EXTRA_FAMILIES))
    if unknown:
        raise ValueError(f"{LANE_FAMILIES} names no tiny family: {', '.join(unknown)}.")
    return tuple(f for f in families if f in names) if names else families


def build_tiny_model(family: str, folder: Path, *, seed: int = 0, tokenizer=None, **overrides) -> Path:
    """Build a random `family` model, scale its weights up so distributions are peaked (near-ties
    would make top-k comparisons fragile), save it and its tokenizer to `folder`."""
    from transformers import AutoModelForCausalLM

    tokenizer = tokenizer or make_tokenizer()
    torch.manual_seed(seed)
    config = config_for(family, tokenizer)
    config.update(overrides)  # e.g. n_layer=2 for a model of another shape
    model = AutoModelForCausalLM.from_config(config)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.15)
    model.eval()
    folder.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
