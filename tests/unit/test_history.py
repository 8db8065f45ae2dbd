"""Saved comparisons (lib/app/history.py): they survive restarts, kills and concurrent saves, and a
damaged database is reported and set aside, never written over."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from lib.analyses.common.comparison import Comparison
from lib.analyses.compare import compare_prompts
from lib.app.history import DB_NAME, History, data_dir
from lib.core.errors import HistoryError

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"model": "tiny", "bos": "auto", "k": 3}
FRANCE, ITALY = "The capital of France is", "The capital of Italy is"

# A child process that saves the comparison in `argv[2]` again and again into the folder
# `argv[1]`, printing each id once its transaction has committed.
SAVER = """
import json, sys
from lib.analyses.compare import Comparison
from lib.app.history import History
history = History(sys.argv[1])
comparison = Comparison.from_dict(json.loads(open(sys.argv[2]).read()))
for i in range(int(sys.argv[3])):
    print(history.save(f"save {i}", {"i": i}, comparison), flush=True)
"""


@pytest.fixture(scope="module")
def comparison(tiny_models) -> Comparison:
    return compare_prompts(tiny_models["gpt2"], FRANCE, ITALY, top_k=3)


@pytest.fixture
def comparison_file(tmp_path, comparison) -> Path:
    path = tmp_path / "comparison.json"
    path.write_text(json.dumps(comparison.to_dict()))
    return path


def _saver(folder: Path, comparison_file: Path, count: int) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", SAVER, str(folder), str(comparison_file), str(count)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def test_comparison_round_trips_through_json(comparison):
    assert Comparison.from_dict(json.loads(json.dumps(comparison.to_dict()))) == comparison


def test_data_dir_follows_twinlens_data(monkeypatch, tmp_path):
    monkeypatch.setenv("TWINLENS_DATA", str(tmp_path / "here"))
    assert data_dir() == tmp_path / "here"
    monkeypatch.delenv("TWINLENS_DATA")
    assert data_dir() == Path.home() / ".local" / "share" / "twinlens"


def test_saved_comparison_reopens_equal_without_a_model(tmp_path, comparison):
    history = History(tmp_path)
    saved_id = history.save("capitals", SETTINGS, comparison)
    saved = history.get(saved_id)
    assert saved.comparison() == comparison
    assert saved.settings == SETTINGS
    assert (saved.entry.name, saved.entry.prompt_a, saved.entry.prompt_b) == (
        "capitals", comparison.a.text, comparison.b.text
    )


def test_database_uses_wal_mode(tmp_path, comparison):
    History(tmp_path).save("x", SETTINGS, comparison)
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_saves_survive_a_new_history_object_and_a_new_process(tmp_path, comparison):
    first = History(tmp_path)
    ids = [first.save(f"n{i}", SETTINGS, comparison) for i in range(3)]
    del first
    assert [e.id for e in History(tmp_path).list()] == ids[::-1]  # newest first
    listing = subprocess.run(
        [sys.executable, "-c", "import sys; from lib.app.history import History; "
         "print([e.name for e in History(sys.argv[1]).list()])", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, check=True,
    )
    assert listing.stdout.strip() == str(["n2", "n1", "n0"])


def test_rename_delete_and_export(tmp_path, comparison):
    history = History(tmp_path)
    keep, drop = history.save("keep", SETTINGS, comparison), history.save("drop", SETTINGS, comparison)
    history.rename(keep, "  renamed   twice ")
    history.delete(drop)
    assert [(e.id, e.name) for e in history.list()] == [(keep, "renamed twice")]
    exported = json.loads(history.export())
    assert [c["name"] for c in exported["comparisons"]] == ["renamed twice"]
    assert Comparison.from_dict(exported["comparisons"][0]["result"]) == comparison


def test_missing_id_and_empty_name_are_plain_errors(tmp_path, comparison):
    history = History(tmp_path)
    with pytest.raises(HistoryError, match="No saved comparison #99"):
        history.get(99)
    with pytest.raises(HistoryError, match="No saved comparison #99"):
        history.delete(99)
    with pytest.raises(HistoryError, match="name"):
        history.save("   ", SETTINGS, comparison)
    assert history.list() == []


def test_saves_from_eight_threads_at_once_all_succeed(tmp_path, comparison):
    history = History(tmp_path)
    ids: list[int] = []
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def session(n: int) -> None:
        try:
            start.wait()
            ids.extend(History(tmp_path).save(f"s{n}-{i}", SETTINGS, comparison) for i in range(5))
        except BaseException as exc:  # noqa: BLE001  (reported below)
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(ids) == sorted(e.id for e in history.list())
    assert len(set(ids)) == 40


def test_two_processes_saving_at_once_both_succeed(tmp_path, comparison_file):
    savers = [_saver(tmp_path, comparison_file, 10) for _ in range(2)]
    outputs = [s.communicate(timeout=300) for s in savers]
    assert [s.returncode for s in savers] == [0, 0], [err for _, err in outputs]
    ids = [int(line) for out, _ in outputs for line in out.split()]
    assert sorted(ids) == sorted(e.id for e in History(tmp_path).list())
    assert len(ids) == 20


def test_process_killed_mid_saves_keeps_every_committed_save(tmp_path, comparison, comparison_file):
    saver = _saver(tmp_path, comparison_file, 100_000)
    committed = []
    while len(committed) < 25:
        line = saver.stdout.readline()
        assert line, saver.stderr.read()
        committed.append(int(line))
    os.kill(saver.pid, signal.SIGKILL)
    saver.wait()
    committed += [int(line) for line in saver.stdout.read().split()]  # printed before the kill
    with sqlite3.connect(tmp_path / DB_NAME) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    history = History(tmp_path)
    stored = {e.id for e in history.list()}
    assert set(committed) <= stored
    assert len(stored) <= len(committed) + 1  # at most the save the kill interrupted, if it committed
    assert all(history.get(i).comparison() == comparison for i in committed)


def test_damaged_database_is_reported_and_set_aside_not_overwritten(tmp_path, comparison):
    damaged = b"this is not an SQLite database " * 100
    (tmp_path / DB_NAME).write_bytes(damaged)
    with pytest.raises(HistoryError, match="set aside") as caught:
        History(tmp_path)
    assert "\n" not in str(caught.value)
    aside = [p for p in tmp_path.glob(f"{DB_NAME}.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert [p.read_bytes() for p in aside] == [damaged]
    history = History(tmp_path)
    assert history.list() == []
    history.save("after", SETTINGS, comparison)
    assert [p.read_bytes() for p in aside] == [damaged]


def test_truncated_database_is_set_aside(tmp_path, comparison):
    history = History(tmp_path)
    for i in range(20):
        history.save(f"n{i}", SETTINGS, comparison)
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(HistoryError, match="set aside"):
        History(tmp_path)
    aside = [p for p in tmp_path.glob(f"{DB_NAME}.corrupt-*") if not p.name.endswith(("-wal", "-shm"))]
    assert [p.read_bytes() for p in aside] == [data[: len(data) // 2]]


def test_database_from_a_newer_twinlens_is_left_untouched(tmp_path):
    path = tmp_path / DB_NAME
    with sqlite3.connect(path) as db:
        db.execute("PRAGMA user_version=99")
    before = path.read_bytes()
    with pytest.raises(HistoryError, match="newer twinlens"):
        History(tmp_path)
    assert path.read_bytes() == before


def test_a_database_from_before_ownership_gains_the_column_and_its_saves_are_the_operators(
    tmp_path, comparison
):
    from lib.app.access import AccessError, Policy

    with sqlite3.connect(tmp_path / DB_NAME) as db:  # the table as twinlens wrote it before sharing
        db.execute(
            "CREATE TABLE comparisons (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, "
            "saved_at TEXT NOT NULL, model TEXT NOT NULL, prompt_a TEXT NOT NULL, prompt_b TEXT NOT NULL, "
            "settings TEXT NOT NULL, result TEXT NOT NULL)"
        )
        db.execute(
            "INSERT INTO comparisons (name, saved_at, model, prompt_a, prompt_b, settings, result) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            ("old", "2026-01-01T00:00:00+00:00", "tiny", FRANCE, ITALY, json.dumps(SETTINGS),
             json.dumps(comparison.to_dict())),
        )
    history = History(tmp_path)
    [old] = history.list()
    assert old.name == "old" and old.owner == "" and "owner" not in old.to_dict()
    policy = Policy.make("0.0.0.0", {"TWINLENS_OPERATOR_TOKEN": "secret"})
    guest, operator = policy.access(None, "tab"), policy.access("secret", "op")
    with pytest.raises(AccessError):
        history.rename(old.id, "taken", by=guest)
    new = history.save("new", SETTINGS, comparison, owner=guest.owner)
    assert history.get(new).entry.owner == "tab"
    history.rename(new, "mine", by=guest)
    history.rename(old.id, "kept", by=operator)
    assert [e.name for e in history.list()] == ["mine", "kept"]
    assert history.get(old.id).comparison() == comparison


def test_every_kind_of_result_saves_and_reopens_equal(tmp_path, tiny_models):
    """Not only the Compare page's: a patching grid, a top-token diff, a watch, saved and reopened."""
    from lib.analyses.diff import top_token_diff
    from lib.analyses.patching import patch_captures
    from lib.analyses.watch import watch_tokens
    from lib.core.capture import capture

    model = tiny_models["gpt2"]
    cap_a, cap_b = capture(model, "The capital of France is"), capture(model, "The capital of Italy is")
    moved = cap_a.final_logits - cap_b.final_logits
    results = [
        patch_captures(model, cap_a, cap_b, answer=int(moved.argmax()), wrong=int(moved.argmin())),
        top_token_diff(model, cap_a, cap_b, top_k=3),
        watch_tokens(model, cap_a, cap_b, (5, 6)),
    ]
    history = History(tmp_path)
    settings = {"model": "tiny", "a": cap_a.text, "b": cap_b.text}
    for result in results:
        saved = history.get(history.save("kind", settings, result))
        assert saved.value() == result
        assert saved.kind == f"{type(result).__module__.rsplit('.', 1)[-1]}.{type(result).__name__}"
        assert (saved.entry.prompt_a, saved.entry.prompt_b) == (cap_a.text, cap_b.text)
        with pytest.raises(HistoryError, match="not a comparison"):
            saved.comparison()


def test_only_analysis_results_are_saved_and_a_forged_kind_is_not_imported(tmp_path, comparison):
    history = History(tmp_path)
    with pytest.raises(HistoryError, match="not a result twinlens can save"):
        history.save("x", {}, {"any": "dict"})
    saved_id = history.save("ok", {}, comparison)
    with sqlite3.connect(history.path) as db:
        db.execute("UPDATE comparisons SET result = ? WHERE id = ?",
                   (json.dumps({"twinlens_kind": "os.system", "data": {}}), saved_id))
    with pytest.raises(HistoryError, match="cannot be reopened"):
        history.get(saved_id).value()


def _open_at_once(folder: str, barrier, results) -> None:
    barrier.wait()
    try:
        History(folder)
        results.put("ok")
    except Exception as exc:  # the failure this test looks for, reported to the parent
        results.put(repr(exc))


def test_many_processes_creating_a_new_database_at_once_all_open_it(tmp_path):
    """The set-up (check, WAL switch, schema) takes turns under `<db>.lock`: eight processes opening
    the same new file at the same moment, ten times over, all succeed."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    for trial in range(10):
        folder = tmp_path / f"new-{trial}"
        barrier, results = context.Barrier(8), context.Queue()
        openers = [
            context.Process(target=_open_at_once, args=(str(folder), barrier, results)) for _ in range(8)
        ]
        for p in openers:
            p.start()
        for p in openers:
            p.join(timeout=60)
        assert [results.get(timeout=5) for _ in openers] == ["ok"] * 8
        assert History(folder).list() == []
