"""Saved comparisons: a small SQLite database in the data folder, so nothing a user saved is lost.

The database is `history.sqlite3` in `$TWINLENS_DATA` (default `~/.local/share/twinlens`). It runs
in WAL mode with `synchronous=FULL`, and every save is one transaction: a process killed in the
middle of a save leaves the database as it was before that save, with every earlier save intact.
Each call opens its own connection, so any number of threads (browser sessions) and processes can
save at once; writers wait for each other (`busy_timeout`) instead of failing.

A file that is not a readable database is never written over: it is renamed to
`history.sqlite3.corrupt-<time>` (its `-wal`/`-shm` companions alike), `HistoryError` says so,
and the next `History` starts a new, empty database.

`History().save("capitals", request.to_dict(), comparison)` returns the new entry's id, and
`History().get(id).comparison()` equals the comparison saved.

Ownership (for a twinlens shared on a network, see lib.app.access): each entry keeps the random id
of the browser session that saved it (`owner`, never shown or exported). `rename`, `delete` and
`export` take the caller's `Access` as `by`: renaming and deleting are for the operator and the
entry's own saver; exporting everything is the operator's (a guest's "all" is its own saves).
Without `by` (Python, the command line) every call is the operator's. Entries saved before
ownership existed belong to the operator.
"""

from __future__ import annotations

import fcntl
import importlib
import json
import os
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field, is_dataclass
from datetime import UTC, datetime
from pathlib import Path

from ..analyses.common.comparison import Comparison
from ..core.errors import HistoryError
from ..core.records import decode, encode
from .access import HISTORY_REFUSED, Access, AccessError
from .export import to_json

DB_NAME = "history.sqlite3"
SCHEMA_VERSION = 1  # PRAGMA user_version; a newer file is left alone rather than misread
BUSY_TIMEOUT_S = 30.0  # how long a writer waits for another session's save to finish
MAX_NAME = 200
_COMPANIONS = ("", "-wal", "-shm")  # the database file and the files WAL mode keeps beside it
_CORRUPT = ("SQLITE_CORRUPT", "SQLITE_NOTADB")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS comparisons (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    saved_at TEXT NOT NULL,   -- ISO 8601, UTC
    model TEXT NOT NULL,      -- the model's display name
    prompt_a TEXT NOT NULL,
    prompt_b TEXT NOT NULL,
    settings TEXT NOT NULL,   -- JSON: the request (model spec, prompts, BOS, top-k...)
    result TEXT NOT NULL      -- JSON: Comparison.to_dict()
)
"""
_ENTRY_COLUMNS = "id, name, saved_at, model, prompt_a, prompt_b, owner"
_OWNER_COLUMN = "ALTER TABLE comparisons ADD COLUMN owner TEXT NOT NULL DEFAULT ''"  # '' = the operator's


def data_dir() -> Path:
    """Where twinlens keeps what users save (`$TWINLENS_DATA`, default ~/.local/share/twinlens)."""
    default = Path.home() / ".local" / "share" / "twinlens"
    return Path(os.environ.get("TWINLENS_DATA") or default).expanduser()


@dataclass(frozen=True)
class SavedEntry:
    """One line of the history list (no results: listing stays cheap)."""

    id: int
    name: str
    saved_at: str  # ISO 8601, UTC
    model: str
    prompt_a: str
    prompt_b: str
    owner: str = field(default="", repr=False)  # the saving session's id; not shown, not exported

    def to_dict(self) -> dict:
        data = asdict(self)
        del data["owner"]
        return data


@dataclass(frozen=True)
class SavedComparison:
    """A saved comparison as stored: its entry, the request's settings and the result's JSON."""

    entry: SavedEntry
    settings: dict
    result: dict  # Comparison.to_dict()

    @property
    def kind(self) -> str:
        """What was saved: 'compare.Comparison' (the Compare page's), or another analysis's result,
        e.g. 'patching.PatchResult'."""
        return str(self.result.get(KIND_KEY, COMPARISON_KIND))

    def comparison(self) -> Comparison:
        """The comparison itself, rebuilt from what was saved (no model is run); HistoryError when
        this entry holds another kind of result."""
        value = self.value()
        if not isinstance(value, Comparison):
            raise HistoryError(f"#{self.entry.id} holds a {self.kind} result, not a comparison.")
        return value

    def value(self) -> object:
        """The saved result, rebuilt from its fields (lib.core.records) without running the model."""
        if self.kind == COMPARISON_KIND:
            return Comparison.from_dict(self.result)
        return decode(result_type(self.kind), self.result["data"])

    def to_dict(self) -> dict:
        return {**self.entry.to_dict(), "settings": self.settings, "result": self.result}


class History:
    """The saved comparisons in `folder / history.sqlite3` (folder: `data_dir()` by default).

    Creating a History opens (or creates) the database and checks it; a damaged file is set aside
    and reported with `HistoryError` (a second `History()` then starts afresh).
    """

    def __init__(self, folder: Path | str | None = None) -> None:
        self.path = Path(folder).expanduser() / DB_NAME if folder is not None else data_dir() / DB_NAME
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise HistoryError(f"Cannot create the data folder {self.path.parent}: {exc.strerror}.") from exc
        self._open_checked()

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT_S, isolation_level=None)
        connection.execute("PRAGMA synchronous=FULL")
        return connection

    def _open_checked(self) -> None:
        """Check the file (set it aside if it is damaged), then switch on WAL and create the table."""
        try:
            with _setting_up(self.path), closing(self._connect()) as db:
                damage = [row[0] for row in db.execute("PRAGMA quick_check")]
                if damage != ["ok"]:
                    raise sqlite3.DatabaseError("; ".join(damage[:3]))
                version = db.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise HistoryError(
                        f"{self.path} was written by a newer twinlens (schema {version}); "
                        "it is left untouched. Set TWINLENS_DATA to another folder."
                    )
                # switching to WAL needs the file to itself and does not wait for a busy one (no busy
                # handler): done once, under the set-up lock, and skipped when the file is WAL already
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                # one write transaction: two processes opening a new file at once would otherwise
                # both see no owner column and both add it ("duplicate column name")
                db.execute("BEGIN IMMEDIATE")
                db.execute(_SCHEMA)
                if "owner" not in {row[1] for row in db.execute("PRAGMA table_info(comparisons)")}:
                    db.execute(_OWNER_COLUMN)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                db.execute("COMMIT")
        except sqlite3.DatabaseError as exc:
            if isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorname not in _CORRUPT:
                raise HistoryError(f"Cannot open the saved comparisons ({self.path}): {exc}.") from exc
            moved = self._set_aside()
            raise HistoryError(
                f"The saved-comparisons database was damaged ({exc}). It was set aside as {moved.name} "
                f"in {moved.parent}, untouched; new saves go to a fresh database."
            ) from exc

    def _set_aside(self) -> Path:
        """Rename the damaged database (and its WAL companions) out of the way; never delete it."""
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S.%fZ")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        for suffix in _COMPANIONS:
            source = Path(f"{self.path}{suffix}")
            if source.exists():
                os.replace(source, Path(f"{target}{suffix}"))
        return target

    @contextmanager
    def _transaction(self, write: bool) -> Iterator[sqlite3.Connection]:
        """One connection, one transaction (BEGIN IMMEDIATE for writes: take the write lock
        up front, so two writers queue instead of deadlocking); sqlite errors become HistoryError."""
        try:
            with closing(self._connect()) as db:
                db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise HistoryError(
                f"The saved comparisons ({self.path}) could not be read or written: {exc}."
            ) from exc

    def save(
        self, name: str, settings: Mapping, result: object, *, saved_at: datetime | None = None,
        owner: str = "",
    ) -> int:
        """Store `result` — the Compare page's Comparison or any other analysis's result (a frozen
        dataclass of lib.analyses) — with the request `settings` under `name`; returns its id.
        `owner`: the saving browser session's id (`Access.owner`), which may rename and delete it."""
        name = _clean_name(name)
        when = (saved_at or datetime.now(UTC)).astimezone(UTC).isoformat(timespec="seconds")
        if isinstance(result, Comparison):
            model, prompt_a, prompt_b = str(result.model.get("name", "")), result.a.text, result.b.text
            payload = result.to_dict()
        else:
            kind = kind_of(result)
            model = str(settings.get("model", ""))
            prompt_a, prompt_b = str(settings.get("a", "")), str(settings.get("b", ""))
            payload = {KIND_KEY: kind, "data": encode(result)}
        row = (
            name, when, model, prompt_a, prompt_b, json.dumps(dict(settings), ensure_ascii=False),
            to_json(payload, indent=None), owner,
        )
        with self._transaction(write=True) as db:
            cursor = db.execute(
                "INSERT INTO comparisons (name, saved_at, model, prompt_a, prompt_b, settings, result, "
                "owner) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                row,
            )
            return int(cursor.lastrowid)

    def list(self) -> list[SavedEntry]:
        """Every saved comparison, newest first."""
        with self._transaction(write=False) as db:
            rows = db.execute(f"SELECT {_ENTRY_COLUMNS} FROM comparisons ORDER BY id DESC").fetchall()
        return [SavedEntry(*row) for row in rows]

    def get(self, saved_id: int) -> SavedComparison:
        with self._transaction(write=False) as db:
            row = db.execute(
                f"SELECT {_ENTRY_COLUMNS}, settings, result FROM comparisons WHERE id = ?", (saved_id,)
            ).fetchone()
        if row is None:
            raise _missing(saved_id)
        entry, settings, result = SavedEntry(*row[:7]), json.loads(row[7]), json.loads(row[8])
        return SavedComparison(entry=entry, settings=settings, result=result)

    def rename(self, saved_id: int, name: str, *, by: Access | None = None) -> None:
        """Rename; `by` (a session's Access) must be the operator or the entry's saver (AccessError)."""
        name = _clean_name(name)
        with self._transaction(write=True) as db:
            _check_owner(db, saved_id, by, "rename")
            db.execute("UPDATE comparisons SET name = ? WHERE id = ?", (name, saved_id))

    def delete(self, saved_id: int, *, by: Access | None = None) -> None:
        """Delete for good; `by` must be the operator or the entry's saver (AccessError)."""
        with self._transaction(write=True) as db:
            _check_owner(db, saved_id, by, "delete")
            db.execute("DELETE FROM comparisons WHERE id = ?", (saved_id,))

    def export(self, ids: list[int] | None = None, *, by: Access | None = None) -> str:
        """JSON of the saved comparisons `ids` (all when None: for a guest `by`, all of its own),
        each with its settings and results."""
        if ids is None:
            ids = [e.id for e in self.list() if by is None or by.operator or by.may_manage(e.owner)]
        document = {"twinlens_export": SCHEMA_VERSION, "comparisons": [self.get(i).to_dict() for i in ids]}
        return to_json(document, indent=1)


KIND_KEY = "twinlens_kind"  # in a saved result's JSON: which analysis made it (absent: a Comparison)
COMPARISON_KIND = "compare.Comparison"
# The modules whose results can be saved, by the short name a saved row's kind carries
# ('patching.PatchResult'), relative to this package's root (lib or twinlens).
SAVEABLE_MODULES = {
    name: f"analyses.{name}"
    for name in ("compare", "patching", "components", "steering", "generation", "features", "diff", "watch",
                 "bos", "sets", "circuit")
} | {"distances": "analyses.common.distances", "lens": "analyses.common.lens", "findings": "app.findings"}


def kind_of(result: object) -> str:
    """'module.Class' of a result of a saveable module, or HistoryError for anything else."""
    module = type(result).__module__.partition(".")[2]  # without the package root (lib / twinlens)
    name = next((short for short, path in SAVEABLE_MODULES.items() if path == module), None)
    if not (is_dataclass(result) and name is not None):
        raise HistoryError(f"A {type(result).__name__} is not a result twinlens can save.")
    return f"{name}.{type(result).__qualname__}"


def result_type(kind: str) -> type:
    """The result class `kind` names — only dataclasses of the saveable modules, never an arbitrary
    import named by a database row."""
    module, _, name = kind.partition(".")
    if module not in SAVEABLE_MODULES:
        raise HistoryError(f"Saved results of kind '{kind}' cannot be reopened by this twinlens.")
    root = __package__.rpartition(".")[0]  # lib, or twinlens when installed
    found = getattr(importlib.import_module(f"{root}.{SAVEABLE_MODULES[module]}"), name, None)
    if not (isinstance(found, type) and is_dataclass(found)):
        raise HistoryError(f"Saved results of kind '{kind}' cannot be reopened by this twinlens.")
    return found


def _clean_name(name: str) -> str:
    name = " ".join(str(name).split())
    if not name:
        raise HistoryError("Give the comparison a name.")
    if len(name) > MAX_NAME:
        raise HistoryError(f"The name is {len(name)} characters; keep it under {MAX_NAME}.")
    return name


def _check_owner(db: sqlite3.Connection, saved_id: int, by: Access | None, what: str) -> None:
    """Inside a write transaction: the entry exists and `by` may change it."""
    row = db.execute("SELECT owner FROM comparisons WHERE id = ?", (saved_id,)).fetchone()
    if row is None:
        raise _missing(saved_id)
    if by is not None and not by.may_manage(row[0]):
        raise AccessError(HISTORY_REFUSED.format(what=what, id=saved_id))


def _missing(saved_id: int) -> HistoryError:
    return HistoryError(f"No saved comparison #{saved_id} (deleted in another session?).")


@contextmanager
def _setting_up(path: Path) -> Iterator[None]:
    """Hold `<database>.lock` exclusively while a process checks and sets up the database, so two
    processes opening a new file at once take turns (an advisory lock, released by the OS when the
    process dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
