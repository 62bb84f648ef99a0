"""The workspace registry: characters, photos, identity vectors, adapters, runs, takes and scores.

SQLite through sqlite-utils, schema changes as numbered migrations (``m001_…``) recorded in
``_migrations``. Every multi-row write happens inside one transaction (``with reg.transaction():``).
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

import numpy as np
import sqlite_utils

from .errors import RegistryError
from .lock import flock_within
from .workspace import Workspace, check_handle


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


# ---------------------------------------------------------------- migrations
MIGRATIONS: list[Callable[[sqlite_utils.Database], None]] = []


def migration(fn: Callable[[sqlite_utils.Database], None]) -> Callable[[sqlite_utils.Database], None]:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(db: sqlite_utils.Database) -> None:
    db["characters"].create(
        {"handle": str, "name": str, "kind": str, "description": str, "consent": str, "licence": str, "created_at": str},
        pk="handle",
    )
    db["photos"].create(
        {"id": int, "handle": str, "sha256": str, "path": str, "source": str, "width": int, "height": int,
         "phash": str, "consent": str, "licence": str, "added_at": str},
        pk="id", foreign_keys=[("handle", "characters", "handle")],
    )
    db["photos"].create_index(["handle"])
    db["photos"].create_index(["sha256"])
    db["embeddings"].create(
        {"id": int, "handle": str, "photo_id": int, "encoder": str, "encoder_version": str, "licence": str,
         "dim": int, "box": str, "score": float, "vector": bytes, "created_at": str},
        pk="id", foreign_keys=[("handle", "characters", "handle"), ("photo_id", "photos", "id")],
    )
    db["embeddings"].create_index(["handle", "encoder", "encoder_version"])
    db["adapters"].create(
        {"id": int, "handle": str, "path": str, "sha256": str, "base": str, "trigger": str, "weight": float,
         "rank": int, "added_at": str},
        pk="id", foreign_keys=[("handle", "characters", "handle")],
    )
    db["runs"].create(
        {"id": int, "series": str, "spec_path": str, "backend": str, "settings": str, "started_at": str,
         "finished_at": str, "status": str},
        pk="id",
    )
    db["takes"].create(
        {"id": int, "run_id": int, "series": str, "episode_id": str, "shot_id": str, "take": int, "seed": int,
         "backend": str, "path": str, "num_frames": int, "fps": int, "mode": str, "decision": str, "reason": str,
         "keep_start": int, "keep_end": int, "conditioning": str, "created_at": str},
        pk="id", foreign_keys=[("run_id", "runs", "id")],
    )
    db["takes"].create_index(["series", "shot_id"])
    db["character_scores"].create(
        {"id": int, "take_id": int, "handle": str, "encoder": str, "bound": float, "frames_scored": int,
         "frames_missing": int, "frames_drifted": int, "mean": float, "min": float, "p5": float},
        pk="id", foreign_keys=[("take_id", "takes", "id")],
    )
    db["frame_scores"].create(
        {"take_id": int, "frame": int, "time": float, "handle": str, "encoder": str, "similarity": float,
         "box": str, "drifted": int},
        foreign_keys=[("take_id", "takes", "id")],
    )
    db["frame_scores"].create_index(["take_id"])
    db["episodes"].create(
        {"id": int, "run_id": int, "series": str, "episode_id": str, "path": str, "duration": float, "frames": int,
         "shots_used": str, "shots_rejected": str, "created_at": str},
        pk="id", foreign_keys=[("run_id", "runs", "id")],
    )


@migration
def m002_registry_identity(db: sqlite_utils.Database) -> None:
    """Per-character identity statistics per encoder version; adapter name and training steps."""
    db["identity"].create(
        {"handle": str, "encoder": str, "encoder_version": str, "n": int, "dim": int, "centroid": bytes,
         "max_distance": float, "mean_distance": float, "bound": float, "bound_source": str, "updated_at": str},
        pk=("handle", "encoder", "encoder_version"), foreign_keys=[("handle", "characters", "handle")],
    )
    db["adapters"].add_column("name", str)
    db["adapters"].add_column("steps", int)
    db["embeddings"].create_index(["photo_id"])


@migration
def m003_checker(db: sqlite_utils.Database) -> None:
    """Checker: temporal signals and findings per take, centroid/consistency per character, cached observations."""
    db["takes"].add_column("flicker", float)
    db["takes"].add_column("findings", str)
    for col, typ in (("centroid_mean", float), ("subject_consistency", float), ("bound_source", str), ("mode", str),
                     ("mean_vector", str)):
        db["character_scores"].add_column(col, typ)
    db["character_scores"].create_index(["take_id"])
    db["frame_scores"].add_column("centroid", float)
    db["frame_scores"].add_column("source", str)
    db["check_cache"].create(
        {"sha256": str, "encoder": str, "encoder_version": str, "params": str, "frames": int, "flicker": float,
         "observations": str, "created_at": str},
        pk=("sha256", "encoder", "encoder_version", "params"),
    )


@migration
def m004_episodes(db: sqlite_utils.Database) -> None:
    """Takes and moods: each take's mood and whether the episode used it; episodes' contact sheet and signing."""
    db["takes"].add_column("mood", str)
    db["takes"].add_column("used", int)
    db["episodes"].add_column("contact_sheet", str)
    db["episodes"].add_column("signed", int)



@migration
def m005_resume(db: sqlite_utils.Database) -> None:
    """Resumable renders: each take's cache key and whether this run generated it; each episode's assembly key."""
    db["takes"].add_column("cache_key", str)
    db["takes"].add_column("generated", int)
    db["takes"].create_index(["cache_key"])
    db["episodes"].add_column("key", str)
    db["episodes"].add_column("reused", int)


@migration
def m006_decisions_and_cohort(db: sqlite_utils.Database) -> None:
    """Take control and lookalikes (issue 15): the creator's decisions on takes; cached cohort vectors per encoder version."""
    db["take_decisions"].create(
        {"id": int, "series": str, "shot_id": str, "take": int, "action": str, "reason": str, "cache_key": str,
         "created_at": str},
        pk="id",
    )
    db["take_decisions"].create_index(["series", "shot_id"])
    db["takes"].add_column("human", str)  # JSON of the creator's decision honoured for this take, if any
    db["cohort"].create(
        {"encoder": str, "encoder_version": str, "source": str, "face": int, "vector": bytes, "created_at": str},
        pk=("encoder", "encoder_version", "source", "face"),
    )


def migrate(db: sqlite_utils.Database, path: object = "the registry") -> list[str]:
    """Apply pending migrations in order; return the names applied.

    Refuses (RegistryError) a registry that recorded a migration this version does not know: it was
    made by a newer storyengine, and writing to it with an older schema could lose data."""
    if "_migrations" not in db.table_names():
        db["_migrations"].create({"name": str, "applied_at": str}, pk="name")
    done = {r["name"] for r in db["_migrations"].rows}
    unknown = sorted(done - {fn.__name__ for fn in MIGRATIONS})
    if unknown:
        raise RegistryError(f"{path} was made by a newer storyengine (schema step {unknown[-1]} is unknown to this "
                            f"version); upgrade storyengine to use this workspace")
    applied = []
    for fn in sorted(MIGRATIONS, key=lambda f: f.__name__):
        if fn.__name__ in done:
            continue
        with db.atomic():
            fn(db)
            db["_migrations"].insert({"name": fn.__name__, "applied_at": now()})
        applied.append(fn.__name__)
    return applied


def registry_error(e: BaseException, path: object) -> RegistryError:
    """A sqlite error as one line naming the registry file and what it means for the user."""
    msg = str(e)
    low = msg.lower()
    if "not a database" in low:
        what = "is not a storyengine registry (not a SQLite database); restore it from a backup or move it aside"
    elif "malformed" in low or "corrupt" in low:
        what = "is damaged (" + msg + "); restore it from a backup"
    elif "locked" in low or "busy" in low:
        what = "is busy: another storyengine process held it for over 30 s; try again when it has finished"
    elif "readonly" in low or "read-only" in low:
        what = "is read-only here; commands that change the registry need a writable workspace"
    elif "full" in low or "too large" in low:
        what = "cannot be written: file too large / disk full; nothing was changed"
    elif "unable to open" in low:
        what = "cannot be opened (" + msg + "); check that the folder exists and is readable"
    else:
        what = "failed: " + msg
    return RegistryError(f"registry {path} {what}")


# ---------------------------------------------------------------- records
@dataclass
class StoredVector:
    photo_id: int
    encoder: str
    encoder_version: str
    vector: np.ndarray
    box: tuple[int, int, int, int] | None


class Registry:
    """The registry of one workspace. Open with :meth:`open`; it migrates on open."""

    def __init__(self, db: sqlite_utils.Database, workspace: Workspace | None = None) -> None:
        self.db = db
        self.workspace = workspace
        db.execute("PRAGMA foreign_keys = ON")
        with self.write_lock():
            migrate(db, workspace.registry_path if workspace else "the registry")

    @classmethod
    def open(cls, workspace: Workspace) -> "Registry":
        """Open (and migrate) the workspace's registry: the one place sqlite errors become RegistryError.

        A file that is not a SQLite database, a damaged one and one from a newer storyengine are
        refused with a message naming the file; nothing is written to it then."""
        path = workspace.registry_path
        try:
            workspace.characters.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RegistryError(f"cannot create {workspace.characters}: {e.strerror or e}") from None
        if path.exists() and not path.is_file():
            raise RegistryError(f"{path} is not a file; move it aside so storyengine can create the registry")
        if path.is_file() and path.stat().st_size:
            with open(path, "rb") as f:
                head = f.read(16)
            if head != b"SQLite format 3\x00":
                raise RegistryError(f"{path} is not a storyengine registry (not a SQLite database); "
                                    f"restore it from a backup or move it aside")
        conn = None
        read_only = path.is_file() and not (os.access(path, os.W_OK) and os.access(workspace.characters, os.W_OK))
        try:
            if read_only:  # a read-only workspace (mount, permissions): reading commands still work
                from urllib.parse import quote

                conn = sqlite3.connect(f"file:{quote(str(path))}?mode=ro&immutable=1", uri=True, timeout=30)
                db = sqlite_utils.Database(conn)
            else:
                conn = sqlite3.connect(str(path), timeout=30)
                db = sqlite_utils.Database(conn)
                if db.journal_mode != "wal":
                    db.enable_wal()
            return cls(db, workspace)
        except sqlite3.Error as e:
            if conn is not None:
                conn.close()
            raise registry_error(e, path) from None
        except BaseException:
            if conn is not None:
                conn.close()
            raise

    @contextmanager
    def write_lock(self, wait: float = 120.0) -> Iterator[None]:
        """Serialise writers that pair files with rows (``character add`` …): an ``flock`` on
        ``characters/.registry.lock``, released by the kernel if the holder dies."""
        if self.workspace is None:  # an in-memory registry has one user
            yield
            return
        path = self.workspace.characters / ".registry.lock"
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o644)
        except OSError as e:
            if e.errno in (errno.EROFS, errno.EACCES, errno.EPERM):  # read-only workspace: readers need no lock
                yield
                return
            raise RegistryError(f"cannot open {path}: {e.strerror or e}") from None
        try:
            if not flock_within(fd, wait):
                raise RegistryError(f"the registry {self.workspace.registry_path} is being written by another "
                                    f"storyengine process for over {wait:g} s; try again when it has finished")
            yield
        finally:
            os.close(fd)  # closing drops the flock

    @classmethod
    def memory(cls) -> "Registry":
        return cls(sqlite_utils.Database(memory=True))

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite_utils.Database]:
        """All writes in the block land together or not at all.

        The outermost block starts with ``BEGIN IMMEDIATE``: the write lock is taken before the first
        read, so two writers queue (busy timeout 30 s) instead of one failing with "database is
        locked" when it upgrades a read. sqlite errors become RegistryError naming the file."""
        conn = self.db.conn
        path = self.workspace.registry_path if self.workspace else "the registry"
        if conn.in_transaction:
            with self.db.atomic():
                yield self.db
            return
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as e:
            raise registry_error(e, path) from None
        try:
            yield self.db
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        try:
            conn.execute("COMMIT")
        except sqlite3.Error as e:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise registry_error(e, path) from None

    # ---- characters
    def has_character(self, handle: str) -> bool:
        return self.db["characters"].count_where("handle = ?", [handle]) > 0

    def character(self, handle: str) -> dict[str, Any]:
        """The character row; raises RegistryError naming the handle if it is not registered."""
        check_handle(handle)
        rows = list(self.db["characters"].rows_where("handle = ?", [handle]))
        if not rows:
            known = ", ".join(r["handle"] for r in self.db["characters"].rows) or "none"
            raise RegistryError(f"unknown character {handle!r} (registered: {known})")
        return rows[0]

    def characters(self) -> list[dict[str, Any]]:
        return list(self.db["characters"].rows_where(order_by="handle"))

    def photos(self, handle: str) -> list[dict[str, Any]]:
        return list(self.db["photos"].rows_where("handle = ?", [handle], order_by="id"))

    def all_phashes(self) -> list[dict[str, Any]]:
        return list(self.db.query("select id, handle, source, phash from photos"))

    def vectors(self, handle: str, encoder: str | None = None, version: str | None = None) -> list[StoredVector]:
        """Stored vectors of ``handle``; pass ``encoder`` and ``version`` (the configured encoder's
        ``.version``) when comparing, so vectors of other weights are never mixed in."""
        where, args = "handle = ?", [handle]
        if encoder:
            where += " and encoder = ?"
            args.append(encoder)
        if version:
            where += " and encoder_version = ?"
            args.append(version)
        out = []
        for r in self.db["embeddings"].rows_where(where, args, order_by="id"):
            vec = np.frombuffer(r["vector"], dtype=np.float32).copy()
            if vec.size != r["dim"]:
                raise RegistryError(f"vector {r['id']} of {handle!r} has {vec.size} values, expected {r['dim']}")
            out.append(StoredVector(r["photo_id"], r["encoder"], r["encoder_version"], vec,
                                    tuple(json.loads(r["box"])) if r["box"] else None))
        return out

    def encoders_of(self, handle: str) -> list[tuple[str, str]]:
        return [(r["encoder"], r["encoder_version"]) for r in self.db.query(
            "select distinct encoder, encoder_version from embeddings where handle = ? order by encoder", [handle])]

    def identity(self, handle: str, encoder: str | None = None) -> list[dict[str, Any]]:
        """Stored identity statistics of ``handle``, one dict per (encoder, encoder_version).

        Keys: handle, encoder, encoder_version, n, dim, centroid (float32 array, L2-normalised),
        max_distance / mean_distance (cosine distance over the pairs of its own photos), bound
        (cosine similarity a match must reach) and bound_source. Kept current by every write
        that changes the character's vectors (``register.refresh_identity``).
        """
        where, args = "handle = ?", [handle]
        if encoder:
            where += " and encoder = ?"
            args.append(encoder)
        out = []
        for r in self.db["identity"].rows_where(where, args, order_by="encoder, encoder_version"):
            out.append({**r, "centroid": np.frombuffer(r["centroid"], dtype=np.float32).copy()})
        return out

    def adapters(self, handle: str) -> list[dict[str, Any]]:
        return list(self.db["adapters"].rows_where("handle = ?", [handle], order_by="id"))

    # ---- runs and takes
    def start_run(self, series: str, spec_path: str, backend: str, settings: dict[str, Any]) -> int:
        with self.transaction():
            return self.db["runs"].insert({
                "series": series, "spec_path": spec_path, "backend": backend,
                "settings": json.dumps(settings, default=str), "started_at": now(), "finished_at": None,
                "status": "running"}).last_pk

    def finish_run(self, run_id: int, status: str = "done") -> None:
        with self.transaction():
            self.db["runs"].update(run_id, {"finished_at": now(), "status": status})

    def record_take(self, take: dict[str, Any], summaries: list[dict[str, Any]], frames: list[dict[str, Any]]) -> int:
        """Store a take, its per-character summaries and per-frame scores in one transaction."""
        with self.transaction():
            take_id = self.db["takes"].insert({**take, "created_at": now()}).last_pk
            self.db["character_scores"].insert_all([{**s, "take_id": take_id} for s in summaries])
            self.db["frame_scores"].insert_all([{**f, "take_id": take_id} for f in frames], batch_size=1000)
        return take_id

    def record_episode(self, row: dict[str, Any]) -> int:
        with self.transaction():
            return self.db["episodes"].insert({**row, "created_at": now()}).last_pk

    def latest_run(self, series: str) -> dict[str, Any] | None:
        rows = list(self.db.query("select * from runs where series = ? order by id desc limit 1", [series]))
        return rows[0] if rows else None

    def series_names(self) -> list[str]:
        return [r["series"] for r in self.db.query("select distinct series from runs order by series")]
