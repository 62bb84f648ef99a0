"""Renders started from the studio: one background thread per render, fed by the same :class:`RenderRun`.

A :class:`Job` holds the workspace lock for the whole run (taken by the request that starts it, so
a second request is told at once who holds it), builds the run in its thread (the registry's SQLite
connection lives there), and keeps every event in order for the server-sent-event stream.
"""

from __future__ import annotations

import itertools
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from ..episode import LoadedSpec
from ..errors import StoryEngineError
from ..lock import WorkspaceLock
from ..registry import Registry
from ..render import RenderRun
from ..settings import Settings
from ..workspace import Workspace

_ids = itertools.count(1)
UPDATE_EVERY = 0.1  # seconds: how often frame counts wake the event streams


class Job:
    """One render: its events (dicts with ``kind``), its state and, when it failed, the reason."""

    def __init__(self, ws: Workspace, spec_path: Path, episodes: list[str] | None, label: str) -> None:
        self.id = next(_ids)
        self.ws, self.spec_path, self.episodes, self.label = ws, spec_path, episodes, label
        self.events: list[dict[str, Any]] = []
        self.state = "starting"  # starting | running | done | failed
        self.error = ""
        self.started = time.monotonic()
        self.cond = threading.Condition()
        self.ready = threading.Event()  # set once the run is validated (or failed validating)
        self.thread: threading.Thread | None = None
        self._woke = 0.0

    # ---- the Reporter protocol (render.Reporter), called from the render thread
    def start(self, key: str, description: str, total: int) -> None:
        self.push("progress", key=key, description=description, completed=0, total=total)

    def update(self, key: str, completed: int, description: str | None = None) -> None:
        self.push("progress", key=key, description=description, completed=completed)

    def done(self, key: str) -> None:
        self.push("progress", key=key, done=True)

    def event(self, kind: str, **data: Any) -> None:
        self.push(kind, **{k: (str(v) if isinstance(v, Path) else v) for k, v in data.items()})

    def push(self, kind: str, **data: Any) -> None:
        """Keep the event; wake the streams at once, except for frame counts (at most every ``UPDATE_EVERY`` s)."""
        now = time.monotonic()
        with self.cond:
            self.events.append({"kind": kind, "t": round(now - self.started, 3), **data})
            if kind != "progress" or "completed" not in data or "total" in data or now - self._woke >= UPDATE_EVERY:
                self._woke = now
                self.cond.notify_all()

    def batch(self, n: int, timeout: float = 0.25) -> tuple[list[dict[str, Any]], int]:
        """(events after the first ``n``, how many were read), waiting up to ``timeout`` for one; frame counts merged per bar.

        A render reports every frame generated and checked; a page needs the latest count of each bar
        only, so consecutive updates of one bar in a batch become the last one.
        """
        with self.cond:
            if len(self.events) <= n and not self.finished:
                self.cond.wait(timeout)
            evs = self.events[n:]
        out: list[dict[str, Any]] = []
        for e in evs:
            if (e["kind"] == "progress" and "completed" in e and "total" not in e and out
                    and out[-1]["kind"] == "progress" and out[-1].get("key") == e["key"] and "total" not in out[-1]
                    and not out[-1].get("done")):
                out[-1] = {**e, "description": e.get("description") or out[-1].get("description")}
            else:
                out.append(e)
        return out, len(evs)

    def since(self, n: int) -> list[dict[str, Any]]:
        with self.cond:
            return self.events[n:]

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed")


def start_job(ws: Workspace, spec_path: Path, episodes: list[str] | None, label: str, settings: Settings,
              backend_factory: Callable[[], Any] | None = None) -> Job:
    """Take the workspace lock, validate and plan in a new thread, and return once the run has started.

    Raises WorkspaceBusy (someone holds the lock) or the run's validation error; in both cases
    nothing was written and the lock is not held.
    """
    lock = WorkspaceLock(ws, wait=0).acquire()
    job = Job(ws, spec_path, episodes, label)
    failure: list[BaseException] = []

    def work() -> None:
        reg = None
        try:
            try:
                from .. import media

                media.require_tools()
                loaded = LoadedSpec.load(spec_path, ws)
                reg = Registry.open(ws)
                run = RenderRun(loaded, settings, reg, job, episodes=episodes,
                                backend=backend_factory() if backend_factory else None)
            except BaseException as e:  # validation: the request shows it
                failure.append(e)
                job.state = "failed"
                return
            finally:
                job.ready.set()
            job.push("started", label=label, shots=len(run.plans))
            state, error = "running", ""
            job.state = state
            try:
                run.run()
                state = "done"
            except StoryEngineError as e:
                state, error = "failed", str(e)
            except Exception as e:  # shown on the page as one line; the trace goes to the server log
                traceback.print_exc()
                state, error = "failed", f"{type(e).__name__}: {e}"
            reg.close()
            reg = None
            lock.release()  # before `end`: a page that sees it can start the next render at once
            job.error, job.state = error, state
            job.push("end", state=state, error=error)
        finally:
            if reg is not None:
                reg.close()
            lock.release()

    job.thread = threading.Thread(target=work, name=f"studio-render-{job.id}", daemon=True)
    job.thread.start()
    job.ready.wait()
    if failure:
        job.thread.join()
        raise failure[0]
    return job
