"""Chat mode: a prompt read as a user message through the tokenizer's own chat template.

Raw mode (the default, `chat=None`) reads a prompt as plain text. In chat mode the prompt becomes

    tokenizer.apply_chat_template([{system}, {"role": "user", "content": text}],
                                  add_generation_prompt=True, tokenize=False)  + prefill

tokenized as one string with `add_special_tokens=False` (the template writes its own BOS and
markers), which is what `apply_chat_template(..., tokenize=True)` gives, followed by the start of
the assistant's answer the user typed (`prefill`, e.g. "Yes, here it is:"). Every token is given a
role so pages can dim what the template added:

    template  markers and text the template wrote (<|im_start|>, "user\\n", a default system prompt)
    system    the system message the user typed
    user      the prompt itself
    prefill   the start of the answer the user typed
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import PromptError, SettingsError

ROLES = ("template", "system", "user", "prefill")


@dataclass(frozen=True)
class Chat:
    """Chat-mode settings: an optional system message and an optional start of the answer."""

    system: str | None = None
    prefill: str = ""

    def to_dict(self) -> dict:
        return {"system": self.system, "prefill": self.prefill}


@dataclass(frozen=True)
class Encoded:
    """Token ids of a prompt and the role of each token (`ROLES`; raw prompts are all 'user')."""

    ids: tuple[int, ...]
    roles: tuple[str, ...]


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer, text: str, chat: Chat) -> tuple[str, list[tuple[int, int, str]]]:
    """The templated text (prefill included) and the character spans (start, end, role) of what
    the user typed in it. Raises SettingsError when the tokenizer has no chat template and
    PromptError when the template fails to render."""
    if not has_chat_template(tokenizer):
        raise SettingsError(
            "This model's tokenizer has no chat template, so prompts cannot be read as chat "
            "messages. Switch to raw text."
        )
    messages = []
    if chat.system:
        messages.append({"role": "system", "content": chat.system})
    messages.append({"role": "user", "content": text})
    try:
        rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # jinja errors, a template's raise_exception(...)
        detail = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise PromptError(f"The model's chat template failed to render these messages: {detail}") from exc
    if not isinstance(rendered, str):
        raise PromptError("The model's chat template did not give text.")
    spans: list[tuple[int, int, str]] = []
    user_at = rendered.rfind(text)
    if chat.system:
        system_at = rendered.find(chat.system, 0, user_at if user_at >= 0 else len(rendered))
        if system_at >= 0:
            spans.append((system_at, system_at + len(chat.system), "system"))
    if user_at >= 0:
        spans.append((user_at, user_at + len(text), "user"))
    if chat.prefill:
        spans.append((len(rendered), len(rendered) + len(chat.prefill), "prefill"))
    return rendered + chat.prefill, spans


def encode_chat(tokenizer, text: str, chat: Chat) -> Encoded:
    """The token ids the model reads for `text` as a user message, and each token's role."""
    full, spans = render_chat(tokenizer, text, chat)
    try:
        enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        offsets = list(enc["offset_mapping"])
    except (NotImplementedError, ValueError, TypeError):  # a slow tokenizer: no offsets
        enc = tokenizer(full, add_special_tokens=False)
        offsets = None
    ids = tuple(int(i) for i in enc["input_ids"])
    if offsets is None:
        return Encoded(ids, ("user",) * len(ids))

    def role(start: int, end: int) -> str:
        for s, e, name in spans:
            if start < e and end > s:
                return name
        return "template"

    return Encoded(ids, tuple(role(int(s), int(e)) for s, e in offsets))


def encode_prompt(tokenizer, text: str, bos: str = "auto", chat: Chat | None = None) -> Encoded:
    """The ids the model reads for `text`: raw (`chat=None`, `lib.core.tokens.encode`) or as a chat
    message. The BOS setting applies to both: auto = what the tokenizer or template does, on =
    exactly one BOS first, off = none."""
    from .tokens import BOS_MODES, check_prompts, check_unicode, encode

    if chat is None:
        ids = encode(tokenizer, text, bos)
        return Encoded(tuple(ids), ("user",) * len(ids))
    if bos not in BOS_MODES:
        raise SettingsError(f"BOS must be one of {', '.join(BOS_MODES)}, not '{bos}'.")
    check_prompts(text)
    for what, typed in (("The system message", chat.system or ""), ("The answer's start", chat.prefill)):
        check_unicode(typed, what)
        if "\x00" in typed:
            raise PromptError(f"{what} contains a NUL character (\\x00); remove it.")
    encoded = encode_chat(tokenizer, text, chat)
    bos_id = tokenizer.bos_token_id
    if bos == "auto" or bos_id is None:
        return encoded
    ids, roles = list(encoded.ids), list(encoded.roles)
    while ids and ids[0] == bos_id:
        ids.pop(0)
        roles.pop(0)
    if bos == "on":
        ids.insert(0, bos_id)
        roles.insert(0, "template")
    return Encoded(tuple(ids), tuple(roles))
