"""Characters joined across byte pieces where the lens and the next token are shown: a partial-character
token is completed greedily with the tokenizer's decoder (lib.analyses.generation), the lens hover
and the next-token sentence say so (lib.app.charts, lib.app.readable)."""

from __future__ import annotations

from lib.analyses.common.decode import GenerationSettings, generate_ids
from lib.analyses.common.lens import lens_grid, position_window
from lib.analyses.generation import (
    completable,
    complete_character,
    complete_characters,
    lens_completions,
    token_characters,
)
from lib.app import charts, readable
from lib.core.capture import capture
from lib.core.chat import Chat
from lib.core.tokens import character_groups

SEAHORSE = ("Is there a seahorse emoji?", Chat(prefill="Yes, here it is:"))


def test_only_the_opening_of_a_character_can_be_completed(tiny_tokenizer):
    ids = tiny_tokenizer("a 🐠", add_special_tokens=False)["input_ids"]
    fish = next(g for g in character_groups(tiny_tokenizer, ids) if g.joined)
    first, *rest = ids[fish.start:fish.end]
    assert completable(tiny_tokenizer, first)
    assert not any(completable(tiny_tokenizer, t) for t in rest)  # stray continuation bytes
    assert not completable(tiny_tokenizer, ids[0])  # a whole token


def test_complete_characters_is_greedy_generation_read_by_the_decoder(family_model, tiny_tokenizer):
    """Batched rows give what one row at a time gives; the text is the decoder's for the first
    pieces that make whole characters of the greedy continuation (every family)."""
    loaded = family_model
    tok = loaded.tokenizer
    prompt = tok("The capital of France is", add_special_tokens=False)["input_ids"]
    ids = tok("🐠 🐴 é", add_special_tokens=False)["input_ids"]
    openers = [t for t in ids if completable(tok, t)]
    assert openers
    batched = complete_characters(loaded, prompt, [*openers, prompt[0]])
    assert batched[-1] is None  # a whole token is not completed
    for token, whole in zip(openers, batched, strict=False):
        assert whole == complete_character(loaded, prompt, token)
        (new,), _ = generate_ids(loaded, [[*prompt, token]], GenerationSettings(3))
        pieces = [token, *new]
        ends = [g.end for g in character_groups(tok, pieces)]
        if whole is None:
            assert ends[0] == 1  # no character completes within 3 steps
        else:
            assert whole == character_groups(tok, pieces[: ends[0]])[0].text and ends[0] > 1


def test_piece_characters(tiny_tokenizer):
    ids = tiny_tokenizer("a 🐠 b", add_special_tokens=False)["input_ids"]
    groups = character_groups(tiny_tokenizer, ids)
    fish = next(g for g in groups if g.joined)
    named = readable.piece_characters(groups)
    assert set(named) == set(range(fish.start, fish.end))
    n = fish.end - fish.start
    assert named[fish.start] == f"piece 1 of {n} of {fish.text}"
    assert named[fish.end - 1].startswith(f"piece {n} of {n}")


def test_next_token_in_words_with_the_character_it_completes_to():
    assert readable.token_in_words("␣<F0 9F>") == "part of a character (bytes F0 9F) after a space"
    assert readable.next_token_sentence("␣<F0 9F>", 0.38, "␣🐦") == (
        'The model would next write "🐦" (bird) after a space (its first piece, bytes F0 9F; the model\'s '
        "greedy continuation completes it), 38% sure."
    )


def test_lens_cells_on_the_seahorse_prompt_show_the_emoji(real_model):
    """The embedded model's last-position lens writes ␣<F0 9F> at the top layer: the cell shows the
    emoji the model completes it to, the hover both; input pieces name their character."""
    cap = capture(real_model, SEAHORSE[0], chat=SEAHORSE[1])
    last = cap.n_tokens - 1
    grid = lens_grid(real_model, cap, tuple(position_window(cap.n_tokens, 4, 0)), 5)
    top = grid.cells[-1][-1].top[0]
    assert top.token == "␣<F0 9F>"
    expected = complete_character(real_model, cap.token_ids, top.id)
    assert expected is not None and len(expected.removeprefix("␣")) == 1 and ord(expected[-1]) > 0x1F000
    found = lens_completions(real_model, cap, grid)
    assert (last, top.id, expected) in found
    frame = charts.lens_grid_frame("A", grid, completes={(p, t): w for p, t, w in found})
    cell = frame[(frame["layer"] == real_model.n_layers) & (frame["position"] == last)].iloc[0]
    assert cell["top1"] == f"␣<F0 9F> → {expected}" and cell["label"] == expected
    whole = frame[~frame["top1"].str.contains("→")]
    assert (whole["label"] == whole["top1"].map(charts.short_token)).all()
    fish = capture(real_model, "I like 🐠 a lot")
    pieces = readable.piece_characters(token_characters(real_model, fish))
    grid = lens_grid(real_model, fish, tuple(range(fish.n_tokens)), 3)
    frame = charts.lens_grid_frame("A", grid, characters=pieces)
    inputs = frame[frame["layer"] == 0]["input"].tolist()
    assert [i for i in inputs if "🐠" in i] == [
        "␣<F0 9F> (piece 1 of 3 of ␣🐠)", "<90> (piece 2 of 3 of ␣🐠)", "<A0> (piece 3 of 3 of ␣🐠)"]
