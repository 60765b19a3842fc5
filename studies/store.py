"""The results store: one SQLite row per run, each committed as soon as the run finishes.

The file (default ``results/dlbasics.sqlite``) uses write-ahead logging and a busy timeout, so
several processes may read and write it at once. Rows are keyed by ``UNIQUE(study, config_hash,
seed)`` and written with an upsert: a run written twice (two processes, or ``--fresh``) leaves
one row. A killed process leaves only complete rows (each run is its own transaction).

Columns: ``study, config_hash, seed, label, profile, status`` (``ok``/``diverged``/``failed``),
``error``, ``config, factors, history, summary, versions, machine`` (JSON text), ``backend,
path`` (``population``, ``fused``, ``general``, ``device``), ``started_at, finished_at`` (UTC
ISO 8601), ``wall_s`` (seconds of the run, its share when trained in a population),
``train_s`` (training time recorded in the history).

Faults of the machine (a full disk, a directory the user cannot write, a store locked by
another process for longer than the timeout, a store path that is a directory) raise
:class:`StoreUnavailable`, an :class:`OSError` whose message names the path, says what went
wrong and what to do. A failed write rolls its own transaction back: every run committed before
it stays stored.
"""

from __future__ import annotations

import contextlib
import csv
import errno
import json
import math
import os
import sqlite3
from pathlib import Path

DEFAULT_PATH = os.path.join("results", "dlbasics.sqlite")
#: Seconds to wait for a lock held by another process (``DLBASICS_STORE_TIMEOUT`` overrides).
DEFAULT_TIMEOUT = 60.0
STATUSES = ("ok", "diverged", "failed")
#: Statuses that count as done: a study run again skips them (failed runs are retried).
DONE = ("ok", "diverged")

SCHEMA_VERSION = 1
_COLUMNS = (
    "study", "config_hash", "seed", "label", "profile", "status", "error", "config", "factors",
    "history", "summary", "backend", "path", "started_at", "finished_at", "wall_s", "train_s",
    "versions", "machine",
)
_JSON = ("config", "factors", "history", "summary", "versions", "machine")
_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY,
    study TEXT NOT NULL,
    config_hash TEXT NOT NULL,
    seed INTEGER NOT NULL,
    label TEXT,
    profile TEXT,
    status TEXT NOT NULL CHECK (status IN {STATUSES!r}),
    error TEXT,
    config TEXT NOT NULL,
    factors TEXT,
    history TEXT,
    summary TEXT,
    backend TEXT,
    path TEXT,
    started_at TEXT,
    finished_at TEXT,
    wall_s REAL,
    train_s REAL,
    versions TEXT,
    machine TEXT,
    UNIQUE (study, config_hash, seed)
);
CREATE INDEX IF NOT EXISTS runs_study ON runs (study, status);
"""


class StoreError(ValueError):
    """The file at the store path is not a usable dlbasics results store (corrupt, truncated or
    foreign). The file is left exactly as it was."""


class StoreUnavailable(OSError):
    """The store cannot be opened or written because of the machine, not of its contents: a
    full disk, an unwritable directory, a lock held too long, a directory at the store path.

    ``str(exc)`` is one line naming the path, what went wrong and what to do; ``filename`` is
    the path. Runs committed before the fault stay stored.
    """

    def __init__(self, path, message):
        super().__init__(message)
        self.filename = str(path)

    def __str__(self):
        return self.args[0]

    def __reduce__(self):  # pickled whole (a worker process's error reaches its parent)
        return type(self), (self.filename, self.args[0])


def _blocking_dir(path):
    """The nearest existing directory above ``path`` if this user cannot write it, else None."""
    d = Path(path).resolve().parent
    while not d.exists() and d != d.parent:
        d = d.parent
    return None if os.access(d, os.W_OK | os.X_OK) else d


def _unavailable(path, exc, timeout=None):
    """A :class:`StoreUnavailable` explaining ``exc`` (an ``sqlite3.Error`` or ``OSError``)."""
    name = getattr(exc, "sqlite_errorname", "") or ""
    text = str(exc)
    if Path(path).is_dir():
        what = (f"{path} is a directory, not a results store file; give --store a file path "
                f"such as {os.path.join(path, 'dlbasics.sqlite')}")
    elif name.startswith("SQLITE_BUSY") or "locked" in text:
        waited = f" for {timeout:g} s" if timeout is not None else ""
        what = (f"{path} is locked by another process (waited{waited}); let that process "
                "finish, or raise DLBASICS_STORE_TIMEOUT (seconds), or use another --store")
    elif (name.startswith(("SQLITE_FULL", "SQLITE_IOERR"))
          or isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EFBIG,
                                                        errno.EDQUOT)):
        what = (f"could not write {path} ({text}: the disk or quota is full, or a file-size "
                "limit was reached); free space and run again (finished runs are stored and "
                "are not run again)")
    elif (name.startswith(("SQLITE_READONLY", "SQLITE_CANTOPEN", "SQLITE_PERM"))
          or isinstance(exc, PermissionError)):
        blocking = _blocking_dir(path)
        if blocking is not None:
            what = (f"cannot write the store {path}: the directory {blocking} is not writable "
                    "by this user (SQLite also writes -wal and -shm files beside the store); "
                    "make it writable or choose another --store")
        else:
            what = (f"cannot write the store {path} ({text}); make the file and its directory "
                    "writable or choose another --store")
    else:
        what = f"the results store {path} could not be used ({text}); see --debug"
    return StoreUnavailable(path, what)


_SQLITE_MAGIC = b"SQLite format 3\x00"


def check_store_file(path):
    """Refuse, without writing a byte, a file that is not a healthy dlbasics store.

    A missing or empty file is fine (a new store). Otherwise the file must be SQLite, pass
    ``PRAGMA quick_check`` when opened read-only, and either hold no tables or hold this
    package's ``runs`` table with its schema version.
    """
    p = Path(path)
    if p.is_dir():
        raise _unavailable(path, IsADirectoryError(errno.EISDIR, "is a directory"))
    if not p.exists() or p.stat().st_size == 0:
        return
    try:
        with open(p, "rb") as f:
            head = f.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        raise _unavailable(path, exc) from None
    if head != _SQLITE_MAGIC:
        raise StoreError(f"{path} is not an SQLite file, so not a dlbasics results store; "
                         "refusing to touch it (choose another --store)")
    try:
        # immutable: read the file as it is, creating no -wal/-shm files beside it
        conn = sqlite3.connect(f"{p.resolve().as_uri()}?mode=ro&immutable=1", uri=True)
        try:
            ok = conn.execute("PRAGMA quick_check").fetchone()[0]
            tables = {r[0] for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            cols = {r[1] for r in conn.execute("PRAGMA table_info(runs)")}
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"{path} is a corrupt or truncated SQLite file ({exc}); refusing to "
                         "touch it") from None
    if ok != "ok":
        raise StoreError(f"{path} failed SQLite's integrity check ({ok}); refusing to touch it")
    if tables and ("runs" not in tables or not set(_COLUMNS) <= cols
                   or version != SCHEMA_VERSION):
        raise StoreError(f"{path} is an SQLite database of something else (tables: "
                         f"{', '.join(sorted(tables))}; schema version {version}); refusing "
                         "to touch it")


def _dumps(value):
    # NaN/inf stay floats (Python's json writes NaN/Infinity and reads them back).
    return json.dumps(value, sort_keys=True)


class Store:
    """An open results store.

    Parameters
    ----------
    path : str or Path
        SQLite file; its directory is created. ``":memory:"`` for a private in-memory store.
    timeout : float, optional
        Seconds to wait for a lock held by another process (default: the environment variable
        ``DLBASICS_STORE_TIMEOUT``, else :data:`DEFAULT_TIMEOUT`).

    Raises
    ------
    StoreError
        The file is not a dlbasics store (left untouched).
    StoreUnavailable
        The store cannot be created, opened or written (see the module docstring).
    """

    def __init__(self, path=DEFAULT_PATH, timeout=None):
        self.path = str(path)
        if timeout is None:
            timeout = float(os.environ.get("DLBASICS_STORE_TIMEOUT", DEFAULT_TIMEOUT))
        self.timeout = timeout
        self.conn = None
        if self.path != ":memory:":
            check_store_file(self.path)
            try:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise self._fault(exc) from None
        with self._faults():
            self.conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None)
            self.conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            if self.path != ":memory:":
                self.conn.execute("PRAGMA journal_mode = WAL")
            self.conn.execute("PRAGMA synchronous = NORMAL")
            with self._transaction():
                for stmt in _SCHEMA.strip().split(";"):
                    if stmt.strip():
                        self.conn.execute(stmt)
                self.conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

    @classmethod
    def reader(cls, path, timeout=None):
        """A read-only connection to the store at ``path``, which another process of this
        package holds open (a worker reading what its parent stored).

        The file is not checked (its opener did) and SQLite's ``mode=ro`` refuses writes; while
        the opener's connection is open, its ``-wal`` and ``-shm`` files exist and nothing is
        created (without one, SQLite creates them beside the store and leaves them there).
        ``timeout`` as for :class:`Store`.

        Raises
        ------
        StoreUnavailable
            The store cannot be opened or read (missing, locked for longer than ``timeout``).
        """
        if not Path(path).is_file():
            raise StoreUnavailable(path, f"no results store file at {path} to read")
        self = cls.__new__(cls)
        self.path = str(path)
        self.timeout = (float(os.environ.get("DLBASICS_STORE_TIMEOUT", DEFAULT_TIMEOUT))
                        if timeout is None else timeout)
        self.conn = None
        with self._faults():
            self.conn = sqlite3.connect(f"{Path(self.path).resolve().as_uri()}?mode=ro",
                                        uri=True, timeout=self.timeout, isolation_level=None)
            self.conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
        return self

    # -- plumbing ------------------------------------------------------------------------------
    def _fault(self, exc):
        return _unavailable(self.path, exc, self.timeout)

    @contextlib.contextmanager
    def _faults(self):
        """Turn SQLite's operational errors (I/O, locks, permissions) into StoreUnavailable."""
        try:
            yield
        except StoreUnavailable:
            raise
        except (sqlite3.OperationalError, OSError) as exc:
            if self.conn is not None and self.conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.conn.execute("ROLLBACK")
            raise self._fault(exc) from exc

    @contextlib.contextmanager
    def _transaction(self):
        """``BEGIN IMMEDIATE`` ... ``COMMIT`` (rolled back on an exception)."""
        with self._faults():
            self.conn.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self.conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self.conn.execute("ROLLBACK")
                raise
            self.conn.execute("COMMIT")

    def close(self):
        if self.conn is not None:
            self.conn.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- writing -------------------------------------------------------------------------------
    def put(self, row):
        """Insert or replace one run (a dict with the keys of the table) in its own transaction."""
        self.put_many([row])

    def put_many(self, rows):
        """Upsert several runs in one transaction."""
        if not rows:
            return
        cols = ", ".join(_COLUMNS)
        marks = ", ".join("?" for _ in _COLUMNS)
        update = ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[3:])
        sql = (f"INSERT INTO runs ({cols}) VALUES ({marks}) "
               f"ON CONFLICT (study, config_hash, seed) DO UPDATE SET {update}")
        values = []
        for row in rows:
            if row["status"] not in STATUSES:
                raise ValueError(f"status must be one of {STATUSES}, got {row['status']!r}")
            values.append(tuple(
                _dumps(row.get(c)) if c in _JSON else row.get(c) for c in _COLUMNS
            ))
        with self._transaction():
            self.conn.executemany(sql, values)

    def delete(self, keys):
        """Delete the runs ``(study, config_hash, seed)`` in ``keys`` (one transaction)."""
        keys = list(keys)
        with self._transaction():
            self.conn.executemany(
                "DELETE FROM runs WHERE study = ? AND config_hash = ? AND seed = ?", keys)
        return len(keys)

    def delete_seeds(self, study, profile, backend, seeds):
        """Delete every run of ``study`` at ``profile`` on ``backend`` with a seed in ``seeds``
        (one transaction), whatever its setting: ``--fresh`` for a tuned study, whose stored
        grid points depend on which runs failed. Returns the number deleted."""
        seeds = [int(s) for s in seeds]
        if not seeds:
            return 0
        marks = ", ".join("?" for _ in seeds)
        with self._transaction():
            cur = self.conn.execute(
                f"DELETE FROM runs WHERE study = ? AND profile = ? AND backend = ? "
                f"AND seed IN ({marks})", (study, profile, backend, *seeds))
        return cur.rowcount

    # -- reading -------------------------------------------------------------------------------
    def done_keys(self, study=None):
        """Set of ``(study, config_hash, seed)`` whose status is ok or diverged."""
        sql = f"SELECT study, config_hash, seed FROM runs WHERE status IN {DONE!r}"
        args = ()
        if study is not None:
            sql += " AND study = ?"
            args = (study,)
        with self._faults():
            return {tuple(r) for r in self.conn.execute(sql, args)}

    def rows(self, study=None, keys=None):
        """Runs as dicts (JSON columns decoded), ordered by study, config hash and seed.

        ``keys``: only these ``(study, config_hash, seed)``.
        """
        sql = f"SELECT {', '.join(_COLUMNS)} FROM runs"
        args = ()
        if study is not None:
            sql += " WHERE study = ?"
            args = (study,)
        sql += " ORDER BY study, config_hash, seed"
        wanted = None if keys is None else set(keys)
        out = []
        with self._faults():
            found = self.conn.execute(sql, args).fetchall()
        for r in found:
            row = dict(zip(_COLUMNS, r, strict=True))
            if wanted is not None and (row["study"], row["config_hash"], row["seed"]) not in wanted:
                continue
            for c in _JSON:
                if row[c] is not None:
                    row[c] = json.loads(row[c])
            out.append(row)
        return out

    def studies(self):
        """Names of the studies with at least one row."""
        with self._faults():
            found = self.conn.execute("SELECT DISTINCT study FROM runs ORDER BY study")
            return [r[0] for r in found]

    def count(self, study=None):
        """``{status: n}`` over all rows (of one study)."""
        sql = "SELECT status, COUNT(*) FROM runs"
        args = ()
        if study is not None:
            sql += " WHERE study = ?"
            args = (study,)
        with self._faults():
            return dict(self.conn.execute(sql + " GROUP BY status", args).fetchall())

    # -- export --------------------------------------------------------------------------------
    def export_csv(self, out, studies=None, history=True):
        """Write one CSV line per run to ``out`` (a path or a text file); return the count.

        Scalar columns first (final metrics from the summary), then the JSON columns as text.
        """
        summary_keys = ("epochs", "final_train_loss", "final_full_loss", "final_full_accuracy",
                        "final_val_loss", "final_val_accuracy", "best_val_loss",
                        "best_val_epoch", "test_loss", "test_accuracy", "updates",
                        "grad_evals")
        head = ["study", "label", "profile", "config_hash", "seed", "status", "error", "backend",
                "path", *summary_keys, "wall_s", "train_s", "started_at", "finished_at",
                "config", "factors", "versions", "machine"]
        if history:
            head.append("history")
        close = False
        if isinstance(out, (str, os.PathLike)):
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            out = open(out, "w", newline="")  # noqa: SIM115
            close = True
        try:
            w = csv.writer(out)
            w.writerow(head)
            n = 0
            names = self.studies() if studies is None else list(studies)
            for name in names:
                for row in self.rows(name):
                    summary = row["summary"] or {}
                    line = [row[c] for c in head[:9]]
                    line += [_csv_num(summary.get(k)) for k in summary_keys]
                    line += [row["wall_s"], row["train_s"], row["started_at"],
                             row["finished_at"]]
                    line += [_dumps(row[c]) for c in ("config", "factors", "versions",
                                                      "machine")]
                    if history:
                        line.append(_dumps(row["history"]))
                    w.writerow(line)
                    n += 1
        finally:
            if close:
                out.close()
        return n


def _csv_num(v):
    if isinstance(v, float) and not math.isfinite(v):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
    return "" if v is None else v
