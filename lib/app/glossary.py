"""Words a non-coder meets in the app, each in one plain sentence: shown as the (?) help of the
widget, caption or column that uses the word (our text, never user data)."""

from __future__ import annotations

BOS = (
    "BOS ('beginning of sequence') is a marker token some models expect before the text. auto: what "
    "the model's tokenizer does; on: exactly one BOS first; off: none."
)
TOP_K = "How many of the model's most likely next words each list shows (its 'top k')."
NDIF = (
    "NDIF (the National Deep Inference Fabric) is a research service that runs large models on its "
    "own machines and sends back only the results."
)
MODEL_CAPTION = (
    "Layers: the model's blocks, one after another. Width (d_model): how many numbers describe each "
    "token inside the model. Vocab: how many different tokens it knows. Q4_1: the embedded model is "
    "shipped compressed, about 4 bits per weight, and unpacked to full numbers here. BOS: the start "
    "marker, see the sidebar."
)
RELATIVE_L2 = (
    "Relative L2: how long the difference between the two states is, compared to their own length "
    "(‖a − b‖ divided by the mean of ‖a‖ and ‖b‖): 0 for identical states, about 1.4 for unrelated ones."
)
COSINE = "Cosine distance: 0 when the two states point the same way, 1 when they are unrelated."
ATTENTION_SINK = (
    "The first position is an 'attention sink': the model parks attention it does not need there, "
    "so its state has a huge norm whatever the token is (BOS or a word); it says little about how A "
    "and B differ."
)
SAE_CAPTION = (
    "blocks.ℓ.hook_resid_pre (TransformerLens's name) = the model's running state as it enters block ℓ "
    "(residual ℓ). FVU, fraction of variance unexplained: how much of that state the SAE's features fail "
    "to rebuild — 0 is perfect, above about 0.5 the features describe little of it."
)
DENSITY = (
    "Density: the share of the SAE's training tokens a feature fires on; a feature that fires on "
    "almost everything (high density) is generic and says little about this pair."
)
