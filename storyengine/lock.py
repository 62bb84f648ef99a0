"""One renderer per workspace: an advisory ``flock`` on ``renders/.lock``.

The kernel drops the lock when its holder dies (even by ``kill -9``), so a stale lock never
blocks a re-run. The file carries the holder's pid, start time and command for the message
the second process shows.
"""

from __future__ import annotations

import fcntl
import signal
import threading
from contextlib import contextmanager
from typing import Iterator
import json
import os
import sys
import time
from datetime import datetime, timezone

from .errors import WorkspaceBusy
from .workspace import Workspace


def flock_within(fd: int, wait: float, poll: float = 0.05) -> bool:
    """Take an exclusive flock on ``fd``, trying for up to ``wait`` seconds; False if another process kept it."""
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(poll)


class WorkspaceLock:
    """``with WorkspaceLock(ws, wait=0):`` — raise WorkspaceBusy at once, or wait up to ``wait`` seconds."""

    def __init__(self, ws: Workspace, *, wait: float = 0.0, poll: float = 0.2) -> None:
        self.path = ws.renders / ".lock"
        self.wait = wait
        self.poll = poll
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            info = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            info = {}
        if not info:
            return "another storyengine process"
        return f"pid {info.get('pid')} (`{info.get('command', '?')}`, started {info.get('started', '?')})"

    def acquire(self) -> "WorkspaceLock":
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except IsADirectoryError:
            raise WorkspaceBusy(f"{self.path} is a folder; it must be the lock file storyengine makes: remove the "
                                f"folder (nothing of storyengine is in it) and render again") from None
        except OSError as e:
            raise WorkspaceBusy(f"cannot open the lock {self.path}: {e.strerror or e}") from None
        if not flock_within(fd, self.wait, self.poll):
            holder = self._holder()
            os.close(fd)
            hint = "wait for it to finish" if self.wait == 0 else f"waited {self.wait:g} s"
            raise WorkspaceBusy(f"workspace {self.path.parent.parent} is being rendered by {holder}; {hint}, "
                                f"or pass --wait SECONDS to queue behind it") from None
        os.ftruncate(fd, 0)
        os.write(fd, json.dumps({"pid": os.getpid(), "command": " ".join(["storyengine", *sys.argv[1:]])[:200],
                                 "started": datetime.now(timezone.utc).isoformat(timespec="seconds")}).encode())
        os.fsync(fd)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "WorkspaceLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """The one place signals are handled: inside the block SIGTERM (and SIGHUP) raise KeyboardInterrupt,
    as Ctrl-C does, so ``kill`` stops a render the same clean way (temp files removed, run marked
    ``interrupted``). Outside the main thread (the studio's worker) nothing is installed."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def _raise(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    old = {s: signal.signal(s, _raise) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)
