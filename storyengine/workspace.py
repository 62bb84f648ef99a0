"""A workspace folder (characters/, episodes/, renders/) and the rules for names inside it."""

from __future__ import annotations

import errno
import os
import re
import secrets
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from .errors import OutputError, UnsafePathError

HANDLE_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,62}")
SLUG_RE = HANDLE_RE


def check_handle(handle: str) -> str:
    """Return ``handle`` if it is a lowercase slug; raise UnsafePathError otherwise."""
    if not isinstance(handle, str) or not HANDLE_RE.fullmatch(handle):
        raise UnsafePathError(
            f"handle {handle!r} is not allowed: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit"
        )
    return handle


def inside(root: Path, path: Path) -> Path:
    """Resolve ``path`` and refuse it unless it lies inside ``root``."""
    root_r = root.resolve()
    p = path.resolve()
    if p != root_r and root_r not in p.parents:
        raise UnsafePathError(f"path {str(path)!r} escapes the workspace {str(root_r)!r}")
    return p


def contained(root: Path, path: Path) -> Path:
    """``path`` with its folder resolved (links followed), refused unless that folder lies inside ``root``.

    The one check for every file the program writes, renames or deletes: the last component is kept
    as given, so unlinking or replacing a link touches the link itself, never what it points to,
    while a linked folder (``characters/mara/photos -> /elsewhere``) is refused.
    """
    path = Path(path)
    if not path.is_absolute():
        path = Path(root) / path
    parent = path.parent
    root_r = Path(root).resolve()
    parent_r = parent.resolve()
    if parent_r != root_r and root_r not in parent_r.parents:
        raise UnsafePathError(f"path {str(path)!r} escapes the workspace {str(root_r)!r} "
                              f"({str(parent)!r} leads to {str(parent_r)!r}); nothing was written or deleted there")
    return parent_r / path.name


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def at(cls, root: str | os.PathLike[str]) -> "Workspace":
        return cls(Path(root).expanduser().resolve())

    @property
    def characters(self) -> Path:
        return self.root / "characters"

    @property
    def registry_path(self) -> Path:
        return self.characters / "registry.db"

    @property
    def episodes(self) -> Path:
        return self.root / "episodes"

    @property
    def renders(self) -> Path:
        return self.root / "renders"

    def character_dir(self, handle: str) -> Path:
        return inside(self.root, self.characters / check_handle(handle))

    def contain(self, path: str | os.PathLike[str]) -> Path:
        """:func:`contained` for this workspace: relative paths are taken from its root."""
        return contained(self.root, Path(path))

    def series_dir(self, series: str) -> Path:
        return inside(self.root, self.renders / check_handle(series))

    def exists(self) -> bool:
        """True when the folder holds a workspace skeleton (any of characters/, episodes/, renders/)."""
        return is_workspace(self.root)

    def ensure(self) -> "Workspace":
        for p in (self.characters, self.episodes, self.renders):
            p.mkdir(parents=True, exist_ok=True)
        return self


def is_workspace(root: str | os.PathLike[str]) -> bool:
    """True when ``root`` holds a workspace skeleton (any of characters/, episodes/, renders/); creates nothing."""
    r = Path(root).expanduser()
    return any((r / name).is_dir() for name in ("characters", "episodes", "renders"))


DISK_FULL = _DISK_FULL = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG}


def open_temp_beside(final: Path, suffix: str = "", mode: int = 0o666) -> tuple[int, Path]:
    """Create a unique temp file beside ``final`` (``.<name>.<random><suffix>``); returns (fd, path).

    Unlike ``tempfile.mkstemp`` (always 0600) the file is created with ``mode`` filtered by the
    process umask, as ``open()`` would, so a renamed result can be shared or served like any file.
    """
    for _ in range(100):
        tmp = final.parent / f".{final.name}.{secrets.token_hex(4)}{suffix}"
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, f"no free temp name beside {final}")


_TEMP_RE = re.compile(r"\..+\.[0-9a-f]{8}(\.[A-Za-z0-9]+)?")


def sweep_temp(folder: Path) -> int:
    """Remove temp files :func:`open_temp_beside` left in ``folder`` (``.<name>.<8 hex><suffix>``,
    e.g. ``.day-1.mp4.1a2b3c4d.mp4`` of a killed stitch); return how many. Only call it while holding
    the lock of whatever writes there."""
    n = 0
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return 0
    for p in entries:
        if _TEMP_RE.fullmatch(p.name) and (p.is_file() or p.is_symlink()):
            p.unlink(missing_ok=True)
            n += 1
    return n


def temp_beside(final: Path, suffix: str = "", mode: int = 0o666) -> Path:
    """:func:`open_temp_beside`, closed: an empty temp file for a writer that opens it by name (ffmpeg, PIL)."""
    fd, tmp = open_temp_beside(final, suffix, mode)
    os.close(fd)
    return tmp


@contextmanager
def atomic_path(final: Path, suffix: str | None = None) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it over ``final`` only if the block succeeds.

    Whatever happens in the block, no partial file is left under either name. The file gets the
    mode a plain ``open()`` would give (0666 less the umask). Disk-full and permission errors become
    OutputError naming ``final``.
    """
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp_path = temp_beside(final, suffix or final.suffix)
    except OSError as e:
        raise OutputError(f"cannot write into {final.parent}: {e.strerror or e}") from None
    try:
        yield tmp_path
        if not tmp_path.exists() or tmp_path.stat().st_size == 0:
            raise OutputError(f"nothing was written to {final}")
        os.replace(tmp_path, final)
    except OSError as e:
        if e.errno in _DISK_FULL:
            raise OutputError(f"cannot write {final}: {e.strerror} (file too large / disk full); nothing was kept") from None
        raise OutputError(f"cannot write {final}: {e.strerror or e}") from None
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
