"""What a non-coder reads (lib.app.readable): chips, the next token in words, shortened prompts."""

from __future__ import annotations

from lib.app import readable


def test_chips_show_every_token_escaped_with_the_differing_ones_highlighted():
    tokens = ["You", "␣have", "␣<b>happy</b>", "␣emotion"] + [f"␣t{i}" for i in range(11)]  # 15 tokens
    differs = [i == 2 for i in range(len(tokens))]
    html = readable.chips_html(tokens, differs, ids=list(range(100, 115)))
    assert html.count('<span class="twinlens-chip') == 15  # every token, none cut off by a table's width
    assert html.count("twinlens-chip differs") == 1
    assert "␣&lt;b&gt;happy&lt;/b&gt;" in html and "<b>" not in html
    assert 'title="position 2 · id 102 · differs"' in html


def test_the_next_token_in_plain_words():
    assert readable.next_token_sentence("␣", 0.0362) == "The model would next write a space, 3.6% sure."
    assert readable.next_token_sentence("␣Paris", 0.41) == (
        'The model would next write "Paris" after a space, 41% sure.')
    assert readable.token_in_words("↵") == "a new line"
    assert readable.token_in_words("<F0 9F>") == "part of a character (bytes F0 9F)"
    assert readable.percent(0.00004) == "under 0.01%" and readable.percent(1.0) == "100%"


def test_a_long_prompt_is_shortened_to_its_start_and_end():
    text = "start " + "word " * 2000 + "the end"
    short = readable.shortened(text)
    assert short.startswith("start word") and short.endswith("the end") and " … " in short
    assert len(short) < 2 * readable.PROMPT_ENDS + 5
    assert readable.shortened("The capital of France is") is None


def test_emoji_get_their_unicode_name_and_text_does_not():
    assert readable.emoji_name("🐦") == "bird"
    assert readable.emoji_name("␣🐠") == "tropical fish"
    assert readable.emoji_name("❤️") == "heavy black heart"  # the variation selector is not the name
    assert readable.emoji_name("👍🏽") == "thumbs up sign"
    assert [readable.emoji_name(t) for t in ("e", "é", "€", "→", "Paris", "🐦🐠", "")] == [None] * 7
    assert readable.emoji_names(" 🐦🐦 and 🐠!") == "🐦 bird, 🐠 tropical fish"
    assert readable.emoji_names("no pictures") == ""


def test_a_completed_emoji_is_named_in_the_next_token_sentence():
    said = readable.token_in_words("␣<F0 9F>", completes="␣🐦")
    assert said.startswith('"🐦" (bird) after a space')



def test_saved_times_read_as_today_yesterday_or_a_date():
    from datetime import datetime, timedelta

    now = datetime(2026, 12, 7, 10, 30).astimezone()

    def iso(moment: datetime) -> str:
        return moment.astimezone().isoformat(timespec="seconds")

    assert readable.when(iso(now.replace(hour=9, minute=14)), now) == "today 09:14"
    assert readable.when(iso(now - timedelta(days=1)), now) == "yesterday 10:30"
    assert readable.when(iso(datetime(2026, 12, 3, 8, 0).astimezone()), now) == "3 Dec"
    assert readable.when(iso(datetime(2025, 12, 3, 8, 0).astimezone()), now) == "3 Dec 2025"
    assert readable.when("not a time", now) == "not a time"
