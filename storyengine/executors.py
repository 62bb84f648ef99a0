"""Where shots run: in this process (``local``), in worker processes on this machine (``process``) or as
tasks on a Ray cluster (``ray``); ``auto`` (the default) picks ``process`` for back-ends that say it is
safe to run several copies of them (``VideoBackend.parallel_processes``: the CPU-bound ``motion``) and
``local`` otherwise (two copies of a 14B diffusers pipeline on one GPU would not fit).

Every executor takes the same input — continuity chains of shot plans (a chain is a shot and the
shots that continue from its last frame, in order) — and hand every finished ShotResult to the
driver's ``on_result`` callback, which alone writes to SQLite and stitches episodes.

Ray (optional extra: ``pip install -e ".[ray]"``): one actor per GPU (or per CPU slot when
``gpus_per_shot`` is 0) builds the back-end once and renders many shots. A chain goes to one
actor and each shot's task receives its predecessor's result as a Ray object ref, so Ray starts
it only once the predecessor is accepted — a dependency, not polling. Actors restart when their
process dies (``max_restarts=-1``) and Ray re-runs the interrupted task (``max_task_retries=-1``);
finished takes are already in the shared take cache, so a retry regenerates only what was lost.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .errors import StoryEngineError
from .shots import RefSpec, ShotContext, ShotResult, produce_shot
from .specs import ShotPlan

OnResult = Callable[[ShotResult], None]
_log = logging.getLogger("storyengine")


def continue_plan(plan: ShotPlan, predecessor: ShotResult | None, ctx: ShotContext) -> ShotPlan:
    """The plan with its still resolved from the predecessor's last accepted frame (for ``still: previous``)."""
    if not getattr(plan, "continues_from", None):
        return plan
    from pathlib import Path

    from .continuity import continue_from

    if predecessor is None:
        raise StoryEngineError(f"shot {plan.shot_id!r} continues from {plan.continues_from!r}, which has not rendered")
    return continue_from(plan, predecessor, Path(ctx.series_dir) / "stills")


class Executor(Protocol):
    def run(self, chains: list[list[ShotPlan]], refs: list[RefSpec], ctx: ShotContext, on_result: OnResult,
            progress: Callable[[str, int, int, str], None] | None = None) -> None: ...


class LocalExecutor:
    """Shots one after another in this process, with the back-end the driver built."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    def run(self, chains, refs, ctx, on_result, progress=None) -> None:
        built = [r.build(ctx.settings) for r in refs]
        for chain in chains:
            prev: ShotResult | None = None
            for plan in chain:
                res = produce_shot(continue_plan(plan, prev, ctx), self.backend, built, ctx, progress)
                on_result(res)
                prev = res


# ---------------------------------------------------------------- worker processes on this machine
EXECUTORS = ("auto", "local", "process", "ray")
AUTO_MIN_WORK = 10e6  # pixel-frames (a 4 s shot at 640x360 and 24 fps is 22e6; starting a worker costs about 5e6): below, workers cost more than they save


def work_of(chains: list[list[ShotPlan]]) -> float:
    """Pixel-frames the chains will generate at least (one take per shot): the cost ``auto`` weighs."""
    return float(sum(p.num_frames * p.width * p.height for c in chains for p in c))


def pool_size(workers: int, chains: int) -> int:
    """Worker processes for ``chains`` chains: ``workers`` (0: one per CPU), never more than the chains."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(workers or cpus, chains))


def choose(executor: str, backend_cls: type, chains: list[list[ShotPlan]], workers: int = 0) -> str:
    """``local`` or ``process`` for the ``executor`` setting (``ray`` is the caller's to build).

    ``auto`` picks ``process`` when the back-end is safe to copy into several processes
    (``parallel_processes``), there are at least two chains and two CPUs to run them on, and the shots
    add up to at least :data:`AUTO_MIN_WORK` pixel-frames; otherwise ``local``.
    """
    if executor in ("local", "process"):
        return executor
    if executor != "auto":
        raise StoryEngineError(f"setting 'executor' is {executor!r}; here it must be one of auto, local, process "
                               f"(ray is chosen with `render --executor ray`)")
    parallel = getattr(backend_cls, "parallel_processes", False)
    ok = parallel and pool_size(workers, len(chains)) >= 2 and work_of(chains) >= AUTO_MIN_WORK
    return "process" if ok else "local"


def executor_for(settings: Any, backend_name: str, backend_options: dict[str, Any], chains: list[list[ShotPlan]],
                 backend: Any = None) -> "Executor":
    """The executor the ``executor`` and ``workers`` settings ask for.

    A back-end object handed in (tests, library users with tiny pipelines) runs in this process under
    ``auto``; under ``process`` each worker builds its own from the object's class and options.
    """
    from . import plugins

    if settings.executor == "ray":
        return RayExecutor(backend_name, backend_options, workers=settings.workers or None)
    cls = type(backend) if backend is not None else plugins.backend_class(backend_name)
    kind = choose("local" if backend is not None and settings.executor == "auto" else settings.executor, cls, chains,
                  settings.workers)
    if kind == "local":
        return LocalExecutor(backend if backend is not None else cls(backend_options))
    options = backend.options.model_dump() if backend is not None else backend_options
    return ProcessExecutor(backend_name if backend is None else cls, options, workers=settings.workers)


_W: dict[str, Any] = {}  # in a worker process: its back-end, references, context and event queue


def _worker_init(backend: str | type, options: dict[str, Any], refs: list[RefSpec], ctx: ShotContext,
                 events: Any, parent: int, log_level: int = logging.WARNING) -> None:
    """Runs once in every worker: signals, the driver watch, logging, and what every chain needs (the
    back-end is built on the first chain, so that a failure to build it is an error naming a shot, not a
    broken pool)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: only the driver acts
    signal.signal(signal.SIGTERM, _worker_sigterm)  # the driver's stop: clean up temp files, then exit
    root = logging.getLogger()  # log records go to the driver, which shows them as its own
    root.handlers[:] = [_PipeHandler(events)]
    logging.getLogger("storyengine").setLevel(log_level)
    _W.update(backend_spec=(backend, options), refs=refs, ctx=ctx, events=events, last={}, busy=False)
    threading.Thread(target=_watch_driver, args=(parent,), name="storyengine-driver-watch", daemon=True).start()


class _PipeHandler(logging.handlers.QueueHandler):
    """A worker's log records, formatted, onto the driver's event queue (a SimpleQueue: no put_nowait)."""

    def enqueue(self, record: logging.LogRecord) -> None:
        self.queue.put(record)


def _worker_sigterm(signum: int, frame: object) -> None:
    if not _W.get("busy"):
        os._exit(128 + signum)
    raise KeyboardInterrupt("stopped by the driver")  # unwinds produce_shot (temp files, ffmpeg) in _render_chain


def _watch_driver(parent: int) -> None:
    """Exit when the driver is gone (killed with SIGKILL): nobody would read what this worker makes."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)


def _worker_progress(shot: str, done: int, total: int, stage: str) -> None:
    """A shot's progress, to the driver: every start and end of a stage, and at most 4 updates a second between."""
    now = time.monotonic()
    last = _W["last"]
    if done == 0 or done >= total or now - last.get(shot, 0.0) >= 0.25:
        last[shot] = now
        _W["events"].put(("progress", os.getpid(), shot, done, total, stage))


def _worker_backend() -> Any:
    if "backend" not in _W:
        from . import plugins

        name, options = _W["backend_spec"]
        cls = plugins.backend_class(name) if isinstance(name, str) else name
        _W["backend"] = cls(options)
        _W["built"] = [r.build(_W["ctx"].settings) for r in _W["refs"]]
    return _W["backend"]


def _render_chain(chain: list[ShotPlan]) -> list[ShotResult]:
    """A worker's task: one continuity chain, in order, with this worker's back-end."""
    import traceback

    ctx: ShotContext = _W["ctx"]
    events = _W["events"]
    out: list[ShotResult] = []
    prev: ShotResult | None = None
    _W["busy"] = True
    try:
        for plan in chain:
            events.put(("start", os.getpid(), plan.shot_id, 0, 0, ""))
            try:
                backend = _worker_backend()
                prev = produce_shot(continue_plan(plan, prev, ctx), backend, _W["built"], ctx, _worker_progress)
            except StoryEngineError as e:
                if plan.shot_id not in str(e) and e.args and isinstance(e.args[0], str):
                    e.args = (f"shot {plan.shot_id!r}: {e.args[0]}", *e.args[1:])
                raise
            except KeyboardInterrupt:
                raise
            except Exception as e:  # a bug or a library's error: say where, since the worker's traceback stays here
                where = traceback.extract_tb(e.__traceback__)[-1]
                raise StoryEngineError(f"shot {plan.shot_id!r} failed in worker process {os.getpid()}: "
                                       f"{type(e).__name__}: {e} (at {where.filename}:{where.lineno})") from None
            out.append(prev)
            events.put(("done", os.getpid(), plan.shot_id, 0, 0, ""))
    except KeyboardInterrupt:  # SIGTERM from the driver: temp files are gone, the take writer closed
        os._exit(128 + signal.SIGTERM)
    finally:
        _W["busy"] = False
    return out


def _plain_worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver alone handles Ctrl-C and stops the workers
    threading.Thread(target=_watch_driver, args=(os.getppid(),), name="storyengine-driver-watch", daemon=True).start()


def map_in_processes(fn: Callable[[Any], Any], items: list[Any], workers: int = 0) -> list[Any]:
    """``[fn(x) for x in items]`` in worker processes (``spawn``; ``fn`` a module-level function), in order.

    One item or one worker: in this process. On an error or an interrupt every worker is stopped
    and waited for before the exception goes on.
    """
    n = pool_size(workers, len(items))
    if n < 2:
        return [fn(x) for x in items]
    import concurrent.futures as cf
    import multiprocessing as mp

    pool = cf.ProcessPoolExecutor(n, mp_context=mp.get_context("spawn"), initializer=_plain_worker_init)
    ok, procs = False, []
    try:
        futures = [pool.submit(fn, x) for x in items]
        procs = list((pool._processes or {}).values())  # private, but the only handle on the workers (3.11)
        out = [f.result() for f in futures]
        ok = True
        return out
    finally:
        if ok:
            pool.shutdown(wait=True)
        else:
            pool.shutdown(wait=False, cancel_futures=True)
            _terminate(procs, 10.0)


def _terminate(procs: list[Any], timeout: float) -> None:
    """SIGTERM every live worker, then SIGKILL whatever has not exited ``timeout`` seconds later."""
    for p in procs:
        if p.exitcode is None:
            p.terminate()
    deadline = time.monotonic() + timeout
    for p in procs:
        p.join(timeout=max(0.0, deadline - time.monotonic()))
        if p.exitcode is None:
            _log.warning("worker process %s did not stop in %.0f s; killing it", p.pid, timeout)
            p.kill()
            p.join()


@dataclass
class ProcessExecutor:
    """Chains of shots in worker processes on this machine (``concurrent.futures``, ``spawn`` start method).

    Each worker builds the back-end once and renders whole chains, in order; results come back to the
    driver, which hands them to ``on_result`` in the order :class:`LocalExecutor` would (so SQLite rows,
    the report and the episodes are the same as a serial render's). Workers ignore SIGINT: Ctrl-C, or
    SIGTERM turned into KeyboardInterrupt by ``lock.terminate_as_interrupt``, stops the driver, which
    then stops every worker (SIGTERM: temp files removed; SIGKILL after 10 s) and waits for it.

    ``spawn`` starts each worker as a fresh interpreter that imports the driver's ``__main__`` module:
    the ``storyengine`` command and ``python -m storyengine`` are safe, but a script of your own that
    renders with this executor must keep its work under ``if __name__ == "__main__":``.
    """

    backend: str | type  # a registered back-end name, or a back-end class importable by the workers
    backend_options: dict[str, Any]
    workers: int = 0  # 0: one per CPU, never more than the chains
    stop_timeout: float = 10.0  # seconds a stopped worker has to clean up before SIGKILL

    def run(self, chains, refs, ctx, on_result, progress=None) -> None:
        import concurrent.futures as cf
        import multiprocessing as mp
        from concurrent.futures.process import BrokenProcessPool

        if not chains:
            return
        mpc = mp.get_context("spawn")
        # a SimpleQueue writes in put() itself (no feeder thread): a worker killed right after saying which
        # shot it started has said it, so a dead worker's shot can be named
        events = mpc.SimpleQueue()
        n = pool_size(self.workers, len(chains))
        pool = cf.ProcessPoolExecutor(n, mp_context=mpc, initializer=_worker_init,
                                      initargs=(self.backend, self.backend_options, refs, ctx, events, os.getpid(),
                                                _log.getEffectiveLevel()))
        self._procs: dict[int, Any] = {}
        self._current: dict[int, str] = {}  # worker pid -> the shot it is rendering
        ok = False
        try:
            futures = {pool.submit(_render_chain, chain): i for i, chain in enumerate(chains)}
            self._procs = dict(pool._processes or {})  # started by the submits above; private, but the only handle (3.11)
            finished: dict[int, list[ShotResult]] = {}
            nxt = 0
            pending = set(futures)
            while pending:
                done, pending = cf.wait(pending, timeout=0.1, return_when=cf.FIRST_COMPLETED)
                self._drain(events, progress)
                for f in done:
                    try:
                        finished[futures[f]] = f.result()
                    except BrokenProcessPool:
                        raise self._died(chains, futures, pending | done) from None
                while nxt in finished:  # in chain order, as a serial render records them
                    for res in finished.pop(nxt):
                        on_result(res)
                    nxt += 1
            ok = True
        finally:
            self._stop(pool, events, ok)

    def _drain(self, events: Any, progress: Callable[[str, int, int, str], None] | None) -> None:
        while True:
            if events.empty():
                return
            item = events.get()
            if isinstance(item, logging.LogRecord):  # a worker's log line, shown by the driver's handlers
                logging.getLogger(item.name).handle(item)
                continue
            kind, pid, shot, done, total, stage = item
            if kind == "start":
                self._current[pid] = shot
            elif kind == "done":
                self._current.pop(pid, None)
            elif progress is not None:
                progress(shot, done, total, stage)

    def _died(self, chains, futures, unfinished) -> StoryEngineError:
        """The error for a pool broken by a worker that died (killed, out of memory, a crash in C code)."""
        for p in self._procs.values():
            p.join(timeout=2)
        stopped = (None, 0, 128 + signal.SIGTERM, -signal.SIGTERM)  # the pool stops the others with SIGTERM
        dead = [(pid, p.exitcode) for pid, p in self._procs.items() if p.exitcode not in stopped]
        shots = [self._current[pid] for pid, _ in dead if pid in self._current]
        if not shots:  # which worker died is unknown: name what was in flight
            shots = list(self._current.values())
        how = ", ".join(f"pid {pid} " + (f"killed by signal {-code}" if code < 0 else f"exit code {code}")
                        for pid, code in dead) or "no exit code"
        where = (f"while rendering shot(s) {', '.join(map(repr, shots))}" if shots else
                 f"before it started a shot (waiting: {', '.join(repr(chains[futures[f]][0].shot_id) for f in unfinished)})")
        return StoryEngineError(f"a worker process died ({how}) {where}; finished takes are kept: run the same command "
                                f"again to resume (try `--workers 1` if memory is short)")

    def _stop(self, pool: Any, events: Any, ok: bool) -> None:
        """Shut the pool down; after an error or an interrupt, stop every worker and wait for it."""
        if ok:
            pool.shutdown(wait=True)
        else:
            pool.shutdown(wait=False, cancel_futures=True)
            _terminate(list(self._procs.values()) or list((pool._processes or {}).values()), self.stop_timeout)
        events.close()


def _ray():
    try:
        import ray
    except ImportError:
        raise StoryEngineError('the Ray executor needs Ray: pip install -e ".[ray]" (or pip install "ray>=2.9")') from None
    return ray


@dataclass
class RayExecutor:
    """Shots as tasks on Ray actors (one per GPU, or per CPU when ``gpus_per_shot`` is 0)."""

    backend_name: str
    backend_options: dict[str, Any]
    address: str | None = None  # None: start a local instance; "auto"; "ray://host:10001"
    gpus_per_shot: float = 1.0
    workers: int | None = None  # default: as many as the cluster's GPUs (or CPUs) allow
    init_kwargs: dict[str, Any] | None = None

    def _connect(self) -> Any:
        ray = _ray()
        if not ray.is_initialized():
            kw = dict(self.init_kwargs or {})
            kw.setdefault("include_dashboard", False)
            kw.setdefault("log_to_driver", False)
            try:
                ray.init(address=self.address, **kw)
            except (ConnectionError, RuntimeError, ValueError) as e:
                raise StoryEngineError(f"cannot reach the Ray cluster at {self.address!r}: {e}") from None
        return ray

    def _pool_size(self, ray: Any, chains: int) -> int:
        res = ray.cluster_resources()
        if self.gpus_per_shot > 0:
            gpus = res.get("GPU", 0.0)
            if gpus < self.gpus_per_shot:
                raise StoryEngineError(f"the Ray cluster has {gpus:g} GPU(s) but each shot asks for {self.gpus_per_shot:g}; "
                                       "add GPU workers or pass --gpus-per-shot 0 to render on CPUs")
            n = int(gpus // self.gpus_per_shot)
        else:
            n = int(res.get("CPU", 1.0))
        return max(1, min(self.workers or n, n, chains))

    def run(self, chains, refs, ctx, on_result, progress=None) -> None:
        ray = self._connect()
        opts = {"num_gpus": self.gpus_per_shot} if self.gpus_per_shot > 0 else {"num_cpus": 1}
        worker_cls = ray.remote(max_restarts=-1, max_task_retries=-1)(ShotWorker).options(**opts)
        n = self._pool_size(ray, len(chains))
        actors = [worker_cls.remote(self.backend_name, self.backend_options) for _ in range(n)]
        refs_ref = ray.put(refs)
        ctx_ref = ray.put(ctx)
        # longest chains first, each to the least loaded actor (frames as the cost)
        load = [0] * n
        pending: dict[Any, ShotPlan] = {}
        for chain in sorted(chains, key=lambda c: -sum(p.num_frames for p in c)):
            a = min(range(n), key=lambda i: load[i])
            load[a] += sum(p.num_frames for p in chain)
            prev = None
            for plan in chain:
                ref = actors[a].shot.remote(plan, refs_ref, ctx_ref, prev)
                pending[ref] = plan
                prev = ref
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                plan = pending.pop(ready[0])
                try:
                    res = ray.get(ready[0])
                except ray.exceptions.RayTaskError as e:
                    cause = e.cause if isinstance(getattr(e, "cause", None), StoryEngineError) else None
                    raise (cause or StoryEngineError(f"shot {plan.shot_id!r} failed on a Ray worker: {e}")) from None
                on_result(res)
        finally:
            for a in actors:
                ray.kill(a)


class ShotWorker:
    """A Ray actor body: the back-end is built once per worker and reused for every shot it renders."""

    def __init__(self, backend_name: str, backend_options: dict[str, Any]) -> None:
        from . import plugins

        self.backend = plugins.backend_class(backend_name)(backend_options)

    def pid(self) -> int:
        import os

        return os.getpid()

    def shot(self, plan: ShotPlan, refs: list[RefSpec], ctx: ShotContext, predecessor: ShotResult | None) -> ShotResult:
        built = [r.build(ctx.settings) for r in refs]
        return produce_shot(continue_plan(plan, predecessor, ctx), self.backend, built, ctx)
