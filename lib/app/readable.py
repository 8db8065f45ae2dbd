"""What a non-coder reads: tokens as chips, the one-line token legend, the next token in plain
words, probabilities as plain figures and long prompts shortened (pure functions, no Streamlit;
`lib.app.ui` draws them)."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from ..core.models import LoadedModel
    from ..core.tokens import CharacterGroup

TOKEN_LEGEND = "In tokens: ␣ = a space · ↵ = a new line · <F0 9F> = bytes that are only part of a character."
LENS_WINDOW = 16  # positions the logit lens shows by default (raw text)
MAX_LENS_WINDOW = 64
LONG_PROMPT = 400  # characters; a longer prompt is shown as its start … its end, the rest in an expander
PROMPT_ENDS = 160  # characters kept at each end of a long prompt
_CHIP = ("display:inline-block;margin:2px 3px;padding:1px 6px;border-radius:6px;font-family:monospace;"
         "font-size:0.85em;white-space:pre;border:1px solid rgba(128,128,128,0.45)")
_DIFFERS = "background:rgba(255,170,0,0.35);border-color:rgba(214,110,0,0.9);font-weight:bold"
_POSITION = "opacity:0.55;font-size:0.8em;margin-right:3px"


def chips_html(tokens: Sequence[str], differs: Sequence[bool] | None = None,
               ids: Sequence[int] | None = None) -> str:
    """The tokens as chips that wrap like words, each with its position; `differs[i]` highlights
    token i (orange, bold) and marks it for screen readers. Token text is HTML-escaped."""
    differs = differs or [False] * len(tokens)
    chips = []
    for i, (token, odd) in enumerate(zip(tokens, differs, strict=True)):
        title = f"position {i}" + (f" · id {ids[i]}" if ids is not None else "")
        title += " · differs" if odd else ""
        style = _CHIP + (";" + _DIFFERS if odd else "")
        chips.append(
            f'<span class="twinlens-chip{" differs" if odd else ""}" style="{style}" title="{title}">'
            f'<span style="{_POSITION}">{i}</span>{html.escape(token)}</span>'
        )
    return f'<div class="twinlens-chips" style="line-height:1.9">{"".join(chips)}</div>'


_CELL = "padding:2px 3px;border-bottom:1px solid rgba(128,128,128,0.25);vertical-align:top"


def lens_table_html(table: pd.DataFrame) -> str:
    """A lens table (rows: 'model', 'layer L'…'layer 0'; columns '#1'…'#k'; cells 'token  p') as an
    HTML table that fits its column's width whatever k is: fixed layout, each cell's token on one
    line (broken anywhere when long) and its probability below it. Every text is HTML-escaped; each
    row and cell carries its text (`data-row`, `data-value`), each cell its place as a tooltip."""
    head = "".join(f'<th style="{_CELL};text-align:left">{html.escape(str(c))}</th>' for c in table.columns)
    rows = []
    for name, cells in table.iterrows():
        row = html.escape(str(name), quote=True)
        tds = "".join(_lens_cell(f"{name} · {rank}", str(cell)) for rank, cell in zip(table.columns, cells,
                                                                                      strict=True))
        rows.append(f'<tr data-row="{row}"><th style="{_CELL};text-align:left;white-space:nowrap">{row}</th>'
                    f"{tds}</tr>")
    return (
        '<div class="twinlens-lens-table" style="max-height:900px;overflow-y:auto">'
        '<table style="width:100%;table-layout:fixed;border-collapse:collapse;font-size:0.8em">'
        f'<colgroup><col style="width:4.6em"></colgroup>'
        f'<thead><tr><th style="{_CELL}"></th>{head}</tr></thead>'
        f'<tbody>{"".join(rows)}</tbody></table></div>'
    )


def _lens_cell(place: str, cell: str) -> str:
    token, _, prob = cell.rpartition("  ")
    value, title = html.escape(cell, quote=True), html.escape(f"{place}: {cell}", quote=True)
    return (f'<td style="{_CELL};word-break:break-all" data-value="{value}" title="{title}">'
            f'<span style="font-family:monospace">{html.escape(token)}</span><br>'
            f'<span style="opacity:0.65">{html.escape(prob)}</span></td>')


_BYTES = re.compile(r"^(␣?)<([0-9A-F]{2}(?: [0-9A-F]{2})*)>$")


def token_in_words(token: str, completes: str | None = None) -> str:
    """A readable token told in words: '␣' → 'a space', '␣Paris' → '" Paris" (a space, then Paris)',
    '↵' → 'a new line', '<F0 9F>' → 'part of a character (bytes F0 9F)'. `completes`: the character
    a partial-character token completes to (lib.analyses.generation.complete_character), e.g. '␣🐠'
    → '"🐠" after a space (its first piece, bytes F0 9F; the model's greedy continuation completes it)'."""
    if token == "␣":
        return "a space"
    if set(token) == {"␣"}:
        return f"{len(token)} spaces"
    if token in ("↵", "↵↵"):
        return "a new line" if token == "↵" else "two new lines"
    match = _BYTES.match(token)
    if match:
        space = " after a space" if match.group(1) else ""
        if completes:
            name = emoji_name(completes)
            called = f'"{completes.removeprefix("␣")}"' + (f" ({name})" if name else "")
            return (f"{called}{space} (its first piece, bytes {match.group(2)}; "
                    "the model's greedy continuation completes it)")
        return f"part of a character (bytes {match.group(2)}){space}"
    if token.startswith("␣"):
        return f'"{token[1:]}" after a space'
    return f'"{token}"'


def emoji_name(character: str) -> str | None:
    """The Unicode name of an emoji or other pictograph, in lower case, so a reader whose screen
    lacks the glyph still knows it: '🐦' → 'bird', '␣🐠' → 'tropical fish', '❤️' → 'heavy black
    heart'; None for letters, digits, punctuation and text of several characters."""
    marks = ("Mn", "Sk", "Cf")  # variation selectors, skin tones, joiners
    core = [c for c in character.removeprefix("␣").strip() if unicodedata.category(c) not in marks]
    if len(core) != 1 or unicodedata.category(core[0]) != "So":
        return None
    name = unicodedata.name(core[0], "")
    return name.lower() or None


def emoji_names(text: str) -> str:
    """Each distinct pictograph in `text` with its name: '🐦 bird, 🐠 tropical fish' ('' if none)."""
    seen: dict[str, str] = {}
    for c in text:
        name = emoji_name(c)
        if name and c not in seen:
            seen[c] = f"{c} {name}"
    return ", ".join(seen.values())


READING_FORMAT = "%.4f"  # how a table shows a float: 0.0000 for noise like 8e-12 (exports keep every digit)


def when(iso: str, now: datetime | None = None) -> str:
    """A saved time as a reader says it, in this machine's time zone: 'today 09:14', 'yesterday
    17:02', '3 Dec' this year, '3 Dec 2025' before; a text that is not an ISO time as it is."""
    try:
        moment = datetime.fromisoformat(iso).astimezone()
    except (TypeError, ValueError):
        return iso
    today = (now or datetime.now().astimezone()).astimezone().date()
    day = moment.date()
    if day == today:
        return f"today {moment:%H:%M}"
    if day == today - timedelta(days=1):
        return f"yesterday {moment:%H:%M}"
    return f"{day.day} {moment:%b}" + ("" if day.year == today.year else f" {day.year}")


def percent(prob: float) -> str:
    """A probability as a plain percentage with two significant figures: 0.0362 → '3.6%'."""
    value = 100 * prob
    if value >= 99.5:
        return f"{value:.1f}%" if value < 100 else "100%"
    if value >= 10:
        return f"{value:.0f}%"
    if value >= 0.01:
        return f"{value:.2g}%"
    return "under 0.01%"


def next_token_sentence(token: str, prob: float, completes: str | None = None) -> str:
    """'The model would next write a space, 3.6% sure.' (`completes`: see `token_in_words`)"""
    return f"The model would next write {token_in_words(token, completes)}, {percent(prob)} sure."


def shortened(text: str, limit: int = LONG_PROMPT, ends: int = PROMPT_ENDS) -> str | None:
    """The start … end of a prompt longer than `limit` characters, or None when it is short enough."""
    if len(text) <= limit:
        return None
    return f"{text[:ends].rstrip()} … {text[-ends:].lstrip()}"


_MARKDOWN_SIGNS = re.compile(r"([\\`*_\[\]<>$~|])")  # emphasis, code, links, HTML, LaTeX, tables


def plain(text: str) -> str:
    """`text` escaped for Streamlit's Markdown (st.error, st.info...): the signs of Markdown
    emphasis, code, links and images, HTML, LaTeX and tables get a backslash, so a prompt, token
    or model name quoted in a message shows literally."""
    return _MARKDOWN_SIGNS.sub(r"\\\1", text)


def runs_on(model: LoadedModel) -> str:
    """The device and dtype `load_model` chose ('auto': CUDA, then MPS, then the CPU; float32 on the CPU)."""
    return f"{model.device.type}, {str(model.dtype).removeprefix('torch.')}"


def size_text(n_bytes: int) -> str:
    return f"{n_bytes / 1e9:.1f} GB" if n_bytes >= 1e9 else f"{n_bytes / 1e6:.1f} MB"


def piece_characters(groups: Sequence[CharacterGroup]) -> dict[int, str]:
    """Position → 'piece 2 of 3 of ␣🐠' for every token that is only a piece of a character (the
    groups of lib.core.tokens.character_groups); whole tokens are left out."""
    return {
        p: f"piece {p - g.start + 1} of {g.end - g.start} of {g.text}"
        for g in groups if g.joined
        for p in range(g.start, g.end)
    }


def lens_window(roles: Sequence[str], shown: int = LENS_WINDOW, most: int = MAX_LENS_WINDOW) -> int:
    """How many positions, ending at the last token, a position window shows by default: `shown`
    for raw text; in chat mode (the template writes tokens around what the user typed, see
    lib.core.chat) from the user's first token to the last position, at least `shown`, at most `most`."""
    if "user" not in roles or set(roles) == {"user"}:
        return shown
    return max(shown, min(most, len(roles) - list(roles).index("user")))
