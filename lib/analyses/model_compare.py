"""One prompt through two models that share a tokenizer — a base model and its fine-tune, say.

The counterpart of `lib.analyses.compare` (two prompts, one model): the result is the same `Comparison`,
with side A = model 1 and side B = model 2 (`mode="models"`, `model2` = model 2's info), so the
same pages and JSON serve both. Distances compare the two residual streams at the same layer and
the last token,

    d_cos(ℓ) = 1 − cos(h¹_ℓ, h²_ℓ),    d_rel(ℓ) = ‖h¹_ℓ − h²_ℓ‖ / ((‖h¹_ℓ‖ + ‖h²_ℓ‖) / 2),

and exist only when both models have the same number of layers and the same width. They mean
something only when the two share a basis (a fine-tune starts from its base's weights); two models
trained apart are far apart at every layer even when their shapes match.

For example `compare_models(load_model("HuggingFaceTB/SmolLM2-135M"), load_model("default"),
"The capital of France is")` (the base model and its instruct tune) gives a Comparison with
`mode == "models"`, model 1 as side a and model 2 as side b, and 31 distances (layers 0…30).
"""

from __future__ import annotations

from ..core.capture import Capture, capture
from ..core.checks import check_same_tokenizer, check_top_k
from ..core.errors import ModelPairError
from ..core.models import LoadedModel
from ..core.tokens import encode, readable_tokens
from .common.comparison import Comparison, prompt_result
from .common.distances import layer_distances
from .common.lens import lens_column
from .common.lenses import lens_for


def check_same_tokens(model1: LoadedModel, model2: LoadedModel, prompt: str, bos: str) -> None:
    """The prompt must become the same token ids in both (tokenizer settings such as adding a BOS
    may differ even when the vocabularies agree)."""
    check_same_tokenizer(model1, model2)
    ids1, ids2 = encode(model1.tokenizer, prompt, bos), encode(model2.tokenizer, prompt, bos)
    if ids1 != ids2:
        raise ModelPairError(
            f"The two models split the prompt differently: model 1 reads "
            f"{readable_tokens(model1.tokenizer, ids1)}, model 2 reads "
            f"{readable_tokens(model2.tokenizer, ids2)}. Set BOS to 'on' or 'off' so both read the "
            "same tokens."
        )


def _shape(model: LoadedModel) -> str:
    return f"{model.n_layers} layers of width {model.d_model}"


def compare_model_captures(
    model1: LoadedModel, model2: LoadedModel, cap1: Capture, cap2: Capture, *, top_k: int = 10,
    lens: str = "logit", lens2: str | None = None,
) -> Comparison:
    """A model-vs-model comparison from the prompt already run through each model (no forward pass).
    `cap1` and `cap2` must hold the same token ids (see `check_same_tokens`). Each model is read with
    its own lens: model 1's of kind `lens`, model 2's of kind `lens2` (default: `lens`); a model
    without a lens of that kind is refused in one sentence (`LensError`)."""
    check_top_k(model1, top_k)
    check_top_k(model2, top_k)
    readers = lens_for(model1, lens), lens_for(model2, lens if lens2 is None else lens2)
    if cap1.token_ids != cap2.token_ids:
        raise ModelPairError("The two captures hold different tokens; run one prompt through both models.")
    if cap1.residual.shape == cap2.residual.shape:
        distance = layer_distances(cap1.residual.cpu(), cap2.residual.cpu(), "last")
        note = (
            "Distances compare model 1's and model 2's residual streams at the same layer; they mean "
            "something when one model was trained from the other (a fine-tune of a base model)."
        )
    else:
        distance = None
        note = (
            f"No distances per layer: model 1 has {_shape(model1)}, model 2 has {_shape(model2)}, and "
            "residual streams of different shapes cannot be compared layer by layer. Each lens is "
            "shown on its own."
        )
    settings = {"top_k": top_k, "bos": cap1.bos}
    if not all(reader.is_identity for reader in readers):  # else as before lenses could be chosen
        settings.update(lens=readers[0].kind, lens_caption=readers[0].provenance,
                        lens2=readers[1].kind, lens2_caption=readers[1].provenance)
    columns = [lens_column(model, cap.residual, -1, top_k, reader)
               for model, cap, reader in zip((model1, model2), (cap1, cap2), readers, strict=True)]
    return Comparison(
        model=model1.info(),
        settings=settings,
        a=prompt_result(model1, cap1, top_k, column=columns[0]),
        b=prompt_result(model2, cap2, top_k, column=columns[1]),
        distance=distance,
        mode="models",
        model2=model2.info(),
        note=note,
    )


def compare_models(
    model1: LoadedModel, model2: LoadedModel, prompt: str, *, top_k: int = 10, bos: str = "auto",
    lens: str = "logit",
) -> Comparison:
    """Run `prompt` once through each model and compare them layer by layer at the last position.

    Refuses (`ModelPairError`) models whose tokenizers differ, and (`LensError`) a model without
    a lens of kind `lens`, before any forward pass.
    """
    check_top_k(model1, top_k)
    check_top_k(model2, top_k)
    check_same_tokens(model1, model2, prompt, bos)
    lens_for(model1, lens), lens_for(model2, lens)
    return compare_model_captures(
        model1, model2, capture(model1, prompt, bos), capture(model2, prompt, bos), top_k=top_k, lens=lens
    )
