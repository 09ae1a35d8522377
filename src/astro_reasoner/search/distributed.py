"""``--workers N``: search shards in N Ray actors, each owning its backend and checker.

The head process (the one running ``astro search``) keeps the single writer role: workers stream finished
trees back (Ray streaming generators), the head appends each to ``trees.jsonl`` as it arrives, so resume,
the progress bar and the summary work exactly as in one process. Worker i searches the pending problems
at positions i, i+N, ... and runs the same batched driver on them. A worker that dies mid-run (killed, OOM,
lost node) has the problems of its shard that were not written yet re-dispatched to a new actor (``_drive``).

Each worker builds its backend from a :class:`BackendSpec` (kind, model, options): with ``hf`` every worker
loads its own copy of the model; with ``openai`` all workers send requests to the same server(s). Ray is
started locally (``num_cpus = workers * cpus_per_worker``) unless ``address`` names a running cluster
(``ray start --head`` / ``"auto"``); on a multi-node cluster the model path and this package must exist on
every node.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import BackendError
from ..trees import append_tree, load_trees, trees_path
from ..types import Problem, SearchTree
from . import storage
from .config import SearchConfig
from .driver import Counters
from .run import Reporter, pending_problems, write_summary

log = logging.getLogger(__name__)

# Environment passed to workers so they behave like the head (offline hubs, thread counts).
_PASS_ENV = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HOME", "TOKENIZERS_PARALLELISM",
             "ASTRO_CACHE")


@dataclass(frozen=True)
class BackendSpec:
    """How a worker builds its own policy: ``make_backend(kind, model, **options)``."""

    kind: str
    model: str
    options: dict[str, Any] = field(default_factory=dict)

    def build(self):
        from ..backends import make_backend

        return make_backend(self.kind, self.model, **self.options)


def _worker_class(ray):
    @ray.remote
    class SearchWorker:
        def __init__(self, spec: BackendSpec, cfg: dict[str, Any], checker_workers: int):
            from ..checking import Checker

            self.policy = spec.build()
            self.checker = Checker(workers=checker_workers)
            self.cfg = SearchConfig(**cfg)

        def run(self, problems: list[dict[str, Any]]):
            from .driver import Driver

            driver = Driver(self.policy, self.checker, self.cfg)
            for tree in driver.run([Problem.from_json(p) for p in problems]):
                yield {"tree": tree.to_json(), "counters": driver.counters.to_json()}

        def close(self) -> None:
            self.checker.close()
            self.policy.close()

    return SearchWorker


def _init_ray(ray, workers: int, cpus_per_worker: int, address: str | None) -> bool:
    """Connect to ``address`` or start a local Ray; returns True if we started it (and must stop it)."""
    if ray.is_initialized():
        return False
    common = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.WARNING,
                  configure_logging=True)
    if address:
        ray.init(address=address, **common)
        return False
    ray.init(num_cpus=workers * cpus_per_worker, object_store_memory=256 * 1024 * 1024, **common)
    return True


def run_search_distributed(problems: Sequence[Problem], spec: BackendSpec, cfg: SearchConfig, out_dir, *,
                           workers: int, address: str | None = None, cpus_per_worker: int = 1,
                           checker_workers: int = 1, reporter: Reporter | None = None,
                           meta: dict[str, Any] | None = None, max_retries: int = 2) -> dict[str, Any]:
    """Like :func:`run.run_search`, with the search spread over ``workers`` Ray actors.

    A worker that dies mid-run has its unfinished problems re-dispatched to a new actor, at most
    ``max_retries`` times per shard (then BackendError naming the problems left)."""
    from ..extras import require

    require("ray", what="--workers")  # one line naming the extra (or drop --workers)
    import ray
    if workers < 1:
        raise BackendError(f"--workers {workers}: need at least 1 worker")
    os.makedirs(out_dir, exist_ok=True)
    lock = storage.check_settings(out_dir, cfg.search_settings())  # noqa: F841 - held for the run
    todo, done = pending_problems(problems, out_dir)
    path = trees_path(out_dir)
    if reporter:
        correct = sum(t.stats.get("terminals_correct", 0) > 0 for t in load_trees(path)) \
            if path.exists() else 0
        reporter.start(len(todo) + len(done), len(done), correct)
    t0 = time.perf_counter()
    snapshots: dict[int, dict[str, Any]] = {}
    if todo:
        started = _init_ray(ray, workers, cpus_per_worker, address)
        try:
            _drive(ray, todo, spec, cfg, path, workers, cpus_per_worker, checker_workers, reporter, snapshots,
                   max_retries)
        finally:
            if started:
                ray.shutdown()
    totals = _sum_counters(snapshots)
    meta = {"backend": spec.kind, "model": spec.model, "workers": workers, **(meta or {})}
    return write_summary(out_dir, cfg, totals.to_json(), time.perf_counter() - t0, None, meta)


def _sum_counters(snapshots: dict[int, dict[str, Any]]) -> Counters:
    """Each worker reports its cumulative counters; the run's are their sum."""
    total = Counters()
    for snap in snapshots.values():
        for k, v in snap.items():
            setattr(total, k, getattr(total, k) + v)
    return total


def _drive(ray, todo, spec, cfg, path, workers, cpus_per_worker, checker_workers, reporter, snapshots,
           max_retries) -> None:
    """Run shard i (``todo[i::n]``) on actor i and append trees as they arrive, retrying dead workers.

    Fault tolerance is done here rather than with Ray's ``max_restarts``/``max_task_retries``: a retried
    streaming task would search its whole shard again, while the head knows which trees it already wrote,
    so a shard whose actor died (SIGKILL, OOM, lost node) is re-dispatched to a fresh actor with only its
    unwritten problems, at most ``max_retries`` times per shard. Trees are seeded by problem id, so a
    retried problem gives the tree it would have given on the first worker, and the single writer never
    writes an id twice. Errors raised by the search itself (and a backend that fails to build) are not
    retried: they would fail again. A dead actor's last counters snapshot stays in the run's totals.
    """
    env = {k: os.environ[k] for k in _PASS_ENV if k in os.environ}
    env["OMP_NUM_THREADS"] = str(cpus_per_worker)
    cls = _worker_class(ray).options(num_cpus=cpus_per_worker, runtime_env={"env_vars": env})
    cfg_json = dataclasses.asdict(cfg)
    died = tuple(getattr(ray.exceptions, name) for name in ("RayActorError", "WorkerCrashedError", "ObjectLostError",
                                                             "NodeDiedError") if hasattr(ray.exceptions, name))
    n = min(workers, len(todo))
    shards = [todo[i::n] for i in range(n)]
    written: set[str] = set()
    runs: dict[Any, tuple[int, Any, int]] = {}  # generator -> (shard, actor, key of its counters snapshot)
    live: list[Any] = []  # actors to close or kill at the end
    retries = [0] * n

    def launch(shard: int, left: list[Problem]) -> Any:
        actor = cls.remote(spec, cfg_json, checker_workers)
        live.append(actor)
        gen = actor.run.options(num_returns="streaming").remote([p.to_json() for p in left])
        runs[gen] = (shard, actor, len(runs))  # a new actor's counters start at 0: a new snapshot key
        return gen

    pending = [launch(i, shards[i]) for i in range(n)]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for gen in ready:
                shard, actor, key = runs[gen]
                try:
                    item = ray.get(next(gen))
                except StopIteration:
                    _release(ray, actor, live, graceful=True)  # frees its CPUs for a retry
                    continue
                except died as exc:
                    if getattr(exc, "actor_init_failed", False):
                        raise BackendError(f"search worker {shard} could not start: {exc}") from None
                    _release(ray, actor, live, graceful=False)
                    left = [p for p in shards[shard] if p.id not in written]
                    if not left:
                        continue
                    ids = ", ".join(p.id for p in left)
                    if retries[shard] >= max_retries:
                        raise BackendError(f"search worker {shard} died {retries[shard] + 1} times "
                                           f"({_first_line(exc)}); problems not searched: {ids}") from None
                    retries[shard] += 1
                    log.warning("search worker %d died (%s); retry %d/%d of its %d unfinished problems on a new "
                                "worker: %s", shard, _first_line(exc), retries[shard], max_retries, len(left), ids)
                    pending.append(launch(shard, left))
                    continue
                except ray.exceptions.RayError as exc:
                    cause = getattr(exc, "cause", None) or exc
                    raise BackendError(f"search worker {shard} failed: {cause}") from None
                pending.append(gen)
                snapshots[key] = item["counters"]
                tree = SearchTree.from_json(item["tree"])
                if tree.problem_id in written:  # cannot happen (only unwritten ids are re-dispatched): guard
                    log.warning("search worker %d sent %s a second time: dropped", shard, tree.problem_id)
                    continue
                append_tree(path, tree)
                written.add(tree.problem_id)
                if reporter:
                    reporter.tree(tree)
                    reporter.wave(_sum_counters(snapshots))
    finally:
        for actor in list(live):  # only on an error: a still-busy actor would not get to close() for a while
            _release(ray, actor, live, graceful=False)


def _release(ray, actor, live: list[Any], *, graceful: bool) -> None:
    """Close a finished actor's checker and backend (best effort), then end it so its CPUs are free."""
    live.remove(actor)
    if graceful:
        try:
            ray.get(actor.close.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - best effort: the actor may have died meanwhile
            pass
    try:
        ray.kill(actor, no_restart=True)
    except Exception:  # noqa: BLE001 - already gone; never mask the error that brought us here
        pass


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]
