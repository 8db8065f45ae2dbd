"""The SAEs twinlens ships for the embedded SmolLM2 (trained by `make sae`): they load, fit the
model, reconstruct its residual as well as their cards say, and read concepts off real prompts."""

from __future__ import annotations

import re

import pytest

from lib.analyses.common.sae import SHIPPED, feature_book, load_sae, read_card, shipped_saes
from lib.analyses.features import encode_capture, features_of_prompts
from lib.core.capture import capture

# Fixed prompts in the style of the training text (encyclopaedic English, not from the corpus),
# 60–100 tokens each, like the 127-token held-out windows the cards' FVU is measured on.
PROMPTS = (
    "Paris is the capital and most populous city of France. It is located on the Seine river, in the "
    "north of the country, and has been one of Europe's major centres of finance, diplomacy, commerce, "
    "fashion and art since the 17th century. The city is also known for its museums and its "
    "architectural landmarks, and it hosts the headquarters of several international organisations.",
    "Aristotle was a Greek philosopher and scientist born in the city of Stagira in 384 BC. His "
    "writings cover many subjects, including physics, biology, zoology, logic, ethics, poetry, "
    "theatre, music, rhetoric, psychology, linguistics, economics and politics. He was a student of "
    "Plato and later the teacher of Alexander the Great, and his works shaped medieval scholarship.",
    "The algorithm proceeds by successive subtractions in two loops. If the number in the second "
    "location is greater than or equal to the number in the first, it is replaced by their "
    "difference; otherwise the first number is replaced. The process terminates when the second "
    "number is zero, leaving the greatest common divisor of the two numbers in the first location.",
)
CONCEPT = re.compile(r"franc|french|paris|capital", re.I)


@pytest.fixture(scope="module")
def shipped(real_model):
    found = shipped_saes(real_model)
    assert len(found) >= 3, f"expected SAEs at three residuals in {SHIPPED}, found {sorted(found)}"
    return found


def test_shipped_saes_load_and_fit(real_model, shipped):
    total = 0
    for residual, folder in shipped.items():
        sae = load_sae(folder)
        sae.check_fits(real_model)
        assert (sae.residual, sae.architecture, sae.d_in, sae.k) == (residual, "topk", 576, 32)
        assert sae.d_sae == 4608
        weights = folder / "sae_weights.safetensors"
        assert weights.stat().st_size <= 12 * 2**20
        card = read_card(folder)
        for field in ("corpus", "licence", "tokens_seen", "l0", "fvu_heldout", "dead_share"):
            assert field in card, field
        book = feature_book(str(folder))
        assert book is not None and book.n_features == 4608
        total += sum(f.stat().st_size for f in folder.iterdir())
    assert total < 60 * 2**20


def test_reconstruction_is_as_good_as_the_card_says(real_model, shipped):
    for residual, folder in shipped.items():
        sae, card = load_sae(folder), read_card(folder)
        fvus = [sae.fvu(capture(real_model, text).residual[residual]) for text in PROMPTS]
        mean = sum(fvus) / len(fvus)
        print(f"residual {residual}: FVU on fixed prompts {[round(f, 3) for f in fvus]} "
              f"(card: {card['fvu_heldout']:.3f})")
        assert mean <= card["fvu_heldout"] + 0.05, (residual, fvus, card["fvu_heldout"])


def test_capital_of_france_lights_up_a_france_or_capital_feature(real_model, shipped):
    """At some shipped layer, some position of the prompt activates (among its 8 strongest) a
    feature whose label or top contexts mention France, French, Paris or capitals."""
    cap = capture(real_model, "The capital of France is")
    found = []
    for residual, folder in shipped.items():
        sae, book = load_sae(folder), feature_book(str(folder))
        f = encode_capture(sae, cap)
        for position in range(1, len(cap.tokens)):
            for feature in f[position].topk(8).indices.tolist():
                if f[position, feature] <= 0:
                    continue
                card = book.card(feature)
                text = card.label + " " + " ".join("".join(c.tokens) for c in card.contexts)
                if CONCEPT.search(text):
                    found.append((residual, cap.tokens[position], feature, card.label))
    print("France/capital features:", found)
    assert found


def test_features_of_the_default_pair(real_model, shipped):
    result = features_of_prompts(real_model, "The capital of France is", "The capital of Italy is",
                                 layer=list(shipped)[1], top=5)
    assert result.top_a and result.top_b and all(r.label for r in result.top_a)
    assert result.fvu_a is not None and 0 <= result.fvu_a < 1
