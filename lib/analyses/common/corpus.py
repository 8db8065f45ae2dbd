"""The text the shipped SAEs and lenses are trained on: the Wikipedia sample inside the gensim wheel
(CC BY-SA 3.0 / GFDL), fetched from PyPI, cleaned of wiki markup, cut into token windows with
held-out windows kept apart."""

from __future__ import annotations

import bz2
import html
import re
import subprocess
import sys
import xml.etree.ElementTree as ET
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from ...core.errors import SettingsError

CORPUS_PACKAGE = "gensim==4.4.0"



CORPUS_MEMBER = "gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2"



CORPUS_SOURCE = (
    "English Wikipedia articles (a shortened 2017 dump, pages 10-30302: Anarchism ... Albania ...), "
    "shipped as test data in the gensim 4.4.0 wheel on PyPI "
    "(gensim/test/test_data/enwiki-latest-pages-articles1.xml-p000000010p000030302-shortened.bz2)"
)



CORPUS_LICENCE = (
    "Wikipedia text: CC BY-SA 3.0 (and GFDL), https://en.wikipedia.org/wiki/Wikipedia:Copyrights; "
    "the gensim package itself is LGPL-2.1"
)



Log = Callable[[str], None]



def print_log(message: str) -> None:
    print(message, flush=True)



def pip_download(work: Path, package: str, pattern: str, why: str, log: Log, *, binary: bool,
                 failed: str) -> Path:
    """The file `pattern` of `package` in work/download, fetched with `pip download` (no
    dependencies; a wheel when `binary`, else the sdist) unless it is there already; SettingsError
    ending in `failed` when pip brings nothing."""
    download = work / "download"
    download.mkdir(parents=True, exist_ok=True)
    found = sorted(download.glob(pattern))
    if not found:
        log(f"Downloading {package} ({why}) with pip ...")
        only = "--only-binary=:all:" if binary else "--no-binary=:all:"
        command = [sys.executable, "-m", "pip", "download", "--no-deps", only, "-d", str(download), package]
        subprocess.run(command, capture_output=True, text=True)
        found = sorted(download.glob(pattern))
        if not found:
            raise SettingsError(f"Could not download {package} from PyPI; {failed}.")
    return found[0]


def fetch_corpus(work: Path, log: Log = print_log) -> Path:
    """The bz2 Wikipedia sample inside gensim's wheel, downloaded with pip into `work` once."""
    target = work / "enwiki-sample.xml.bz2"
    if target.exists():
        return target
    wheel = pip_download(work, CORPUS_PACKAGE, "gensim-*.whl", "for its Wikipedia test data", log,
                         binary=True, failed="give a text file with --corpus instead")
    with zipfile.ZipFile(wheel) as archive:
        target.write_bytes(archive.read(CORPUS_MEMBER))
    return target



_COMMENT = re.compile(r"<!--.*?-->", re.S)



_REF = re.compile(r"<ref[^>/]*/>|<ref[^>]*>.*?</ref>", re.S | re.I)



_TEMPLATE = re.compile(r"\{\{[^{}]*\}\}")



_TABLE = re.compile(r"\{\|.*?\|\}", re.S)



_FILE_LINK = re.compile(r"\[\[(?:File|Image|Category|[a-z]{2,3}(?:-[a-z]+)?):[^\[\]]*\]\]", re.I)



_LINK = re.compile(r"\[\[(?:[^\[\]|]*\|)?([^\[\]|]*)\]\]")



_EXTERNAL = re.compile(r"\[https?://\S+\s*([^\]]*)\]")



_TAG = re.compile(r"<[^>]+>")



_HEADING = re.compile(r"^=+\s*(.*?)\s*=+\s*$", re.M)



def clean_wikitext(text: str) -> str:
    """Plain prose from MediaWiki markup: templates, tables, references, files and categories
    dropped; links replaced by their text; bold/italic quotes and HTML tags removed."""
    text = _COMMENT.sub("", text)
    text = _REF.sub("", text)
    for _ in range(6):  # nested templates, innermost first
        text, n = _TEMPLATE.subn("", text)
        if not n:
            break
    text = _TABLE.sub("", text)
    for _ in range(4):  # links nested in file captions: inner links first, then the file link
        text = _FILE_LINK.sub("", text)
        text = _LINK.sub(r"\1", text)
    text = _EXTERNAL.sub(r"\1", text)
    text = _TAG.sub("", text)
    text = html.unescape(text).replace("'''", "").replace("''", "")
    text = _HEADING.sub(r"\1", text)
    lines = []
    for line in text.splitlines():
        line = line.strip().lstrip("*#:;").strip()
        if line.startswith(("{", "|", "!", "}")):
            continue
        if len(line) < 40 and not lines:
            continue
        lines.append(line)
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()



def read_corpus(path: Path) -> list[str]:
    """Articles of a MediaWiki XML dump (.xml or .xml.bz2, redirects skipped), or the paragraphs
    (blank-line separated) of a plain text file."""
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if b"<mediawiki" not in raw[:2000]:
        text = raw.decode("utf-8", errors="replace")
        return [p.strip() for p in re.split(r"\n\s*\n", text) if len(p.strip()) > 40]
    articles = []
    for _, element in ET.iterparse(__import__("io").BytesIO(raw)):
        if element.tag.endswith("}text") or element.tag == "text":
            body = element.text or ""
            if body and not body.lstrip().upper().startswith("#REDIRECT"):
                article = clean_wikitext(body)
                if len(article) > 200:
                    articles.append(article)
            element.clear()
    return articles



def token_windows(tokenizer, articles: Sequence[str], context: int, heldout: int, seed: int):
    """(train [n, context], heldout [heldout, context]) int64 windows of the articles' tokens,
    joined by the EOS token; held-out windows come from the last articles, train windows
    from the rest, shuffled."""
    sep = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 0
    stream: list[int] = []
    for article in articles:
        stream.extend(tokenizer(article, add_special_tokens=False)["input_ids"])
        stream.append(sep)
    n = len(stream) // context
    windows = torch.tensor(stream[: n * context], dtype=torch.long).view(n, context)
    if n <= heldout:
        raise SettingsError(f"The corpus gives only {n} windows of {context} tokens; give more text.")
    train, held = windows[: n - heldout], windows[n - heldout:]
    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed))
    return train[order], held

