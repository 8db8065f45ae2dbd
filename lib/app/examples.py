"""Example prompt pairs users try first (DESIGN.md), one click each in the sidebar."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Example:
    """A pair of prompts and the BOS setting that shows what the pair is about."""

    name: str
    a: str
    b: str
    bos: str | None = None  # None: keep the sidebar's BOS setting
    why: str = ""  # one line shown as the button's help
    chat: bool = False  # True: a question, asked as a user message through the chat template
    prefill: str = ""  # the start of the answer, in chat mode

    def to_dict(self) -> dict:
        return {"name": self.name, "a": self.a, "b": self.b, "bos": self.bos, "why": self.why,
                "chat": self.chat, "prefill": self.prefill}


EXAMPLES: tuple[Example, ...] = (
    Example(
        "Happy vs angry",
        "You have happy emotion in yourself!",
        "You have angry emotion in yourself!",
        why="Same length, one word apart: position-by-position distances.",
    ),
    Example(
        "France vs Italy",
        "The capital of France is",
        "The capital of Italy is",
        why="A fact recalled late: ' Paris' appears only near the last layers.",
    ),
    Example(
        "Seahorse emoji (chat)",
        "Is there a seahorse emoji?",
        "Is there a dolphin emoji?",
        why="A question, asked as a chat: the answer's emoji bytes are joined into characters.",
        chat=True,
        prefill="Yes, here it is:",
    ),
    Example(
        "Claire/Mary (BOS on)",
        "Claire and Mary went to the shops, then Mary gave a bottle of milk to",
        "Claire and Mary went to the shops, then Claire gave a bottle of milk to",
        bos="on",
        why="Indirect object: ' Claire' vs ' Mary'; compare with BOS off on the Tokens page.",
    ),
    Example(
        "Kobe Bryant (multi-hop)",
        "The rival of the team Kobe Bryant played for is the",
        "The rival of the team Larry Bird played for is the",
        why="Two hops: Lakers → Celtics and Celtics → Lakers.",
    ),
)
