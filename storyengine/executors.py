"""Where shots run: in this process (``local``, the default) or as tasks on a Ray cluster (``ray``).

Both executors take the same input — continuity chains of shot plans (a chain is a shot and the
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

from dataclasses import dataclass
from typing import Any, Callable, Protocol

from .errors import StoryEngineError
from .shots import RefSpec, ShotContext, ShotResult, produce_shot
from .specs import ShotPlan

OnResult = Callable[[ShotResult], None]


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
