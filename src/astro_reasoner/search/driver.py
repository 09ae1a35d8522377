"""The batched driver: many trees advance together, in waves (rStar-Math's batching + ASTRO's MCTS).

One wave:
1. select up to ``leaves_per_tree`` leaves in every active tree (virtual loss keeps them apart);
2. ONE expansion request per leaf, all gathered into one backend call (chunked at ``batch_size``
   sequences): k samples each, stopped at the step delimiter;
3. ONE rollout call for every new non-terminal child of the wave: ``rollouts`` samples each, to the end;
4. ONE checker batch for all new terminal steps and finished rollouts;
5. backprop, graft rollouts, finish trees that reached their budget or the early-stop condition, and admit
   waiting problems in their place.
Prompts come from ``prompts.PromptBuilder``; the tree operations from ``mcts`` (pure).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..io import stable_seed
from ..prompts import PromptBuilder, PromptConfig
from ..tasks import gold_of, task_fields
from ..text import STEP_DELIMITER
from ..types import Completion, GenParams, Problem, SearchTree, Verdict
from . import mcts
from .config import SearchConfig

if TYPE_CHECKING:  # annotations only: the protocols every backend / checker (and test double) implements
    from ..backends.base import Policy
    from ..checking import AnswerChecker


@dataclass
class Counters:
    """Work done by one driver (summed over trees), for tokens/s and the run summary."""

    generated_tokens: int = 0
    prompt_tokens: int = 0
    backend_calls: int = 0
    sequences: int = 0
    rollouts: int = 0
    checks: int = 0
    waves: int = 0
    generate_seconds: float = 0.0
    generate_cpu_seconds: float = 0.0  # this process's CPU time in generate: robust to other jobs' load
    check_seconds: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Active:
    problem: Problem
    tree: SearchTree
    started: float
    iterations: int = 0
    expansions: int = 0
    rollouts: int = 0
    checks: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0
    calls: set[int] = field(default_factory=set)


@dataclass
class _Check:
    """One item of the wave's checker batch and where its verdict goes."""

    st: _Active
    node: int
    text: str
    rollout: Completion | None = None  # set for rollouts (else the item is a terminal step)


class Driver:
    """Runs the wave loop for one policy/checker pair. Use :func:`search_iter` unless you need counters."""

    def __init__(self, policy: Policy, checker: AnswerChecker, cfg: SearchConfig,
                 on_wave: Callable[[Counters], None] | None = None):
        self.policy, self.checker, self.cfg = policy, checker, cfg
        self.builder = PromptBuilder(policy, PromptConfig(few_shot=cfg.few_shot))
        self.counters = Counters()
        self.on_wave = on_wave

    # --- backend calls ------------------------------------------------------------------------------
    def _generate(self, kind: str, requests: Sequence[tuple[_Active, int]], params: GenParams
                  ) -> list[list[Completion]]:
        """One wave phase: a prompt per (tree, node) request, in calls of at most ``batch_size`` sequences
        (>= 1 prompt).

        Seeds (issue 14: a resumed search must equal an uninterrupted one): prompt i is seeded with
        ``stable_seed(run seed, kind, problem id, the node's path of steps)`` through ``GenParams.seeds``, so
        its samples do not depend on the wave number or on which other trees share the batch. A node is
        expanded at most once and simulated at most once, and siblings have distinct texts, so the key is
        unique; it uses the path, not the node id, so grafting rollouts (which takes ids) changes no sample.
        The call-level ``seed`` (for backends that can only seed a whole call) is derived from the call's own
        prompt seeds, never from a run-local counter.
        """
        owners = [st for st, _ in requests]
        prompts = [self._prompt(st, node) for st, node in requests]
        keys = [stable_seed(self.cfg.seed, kind, st.problem.id, mcts.path_steps(st.tree, node))
                for st, node in requests]
        # A backend that queues requests itself (a server with continuous batching: ``queues_requests``) gets
        # the whole phase in one call: chunking would make every chunk wait for its slowest sequence while
        # the server's slots idle (BENCHMARKS.md, Engines). Seeds are per prompt, so the samples are the same.
        per_call = len(prompts) if getattr(self.policy, "queues_requests", False) else \
            max(1, self.cfg.batch_size // max(params.n, 1))
        out: list[list[Completion]] = []
        for start in range(0, len(prompts), per_call):
            seeds = tuple(keys[start:start + per_call])
            call = GenParams(**{**params.__dict__, "seed": stable_seed(self.cfg.seed, kind, *seeds),
                                "seeds": seeds})
            t0, c0 = time.perf_counter(), time.process_time()
            batch = self.policy.generate(list(prompts[start:start + per_call]), call)
            self.counters.generate_seconds += time.perf_counter() - t0
            self.counters.generate_cpu_seconds += time.process_time() - c0
            self.counters.backend_calls += 1
            call_id = self.counters.backend_calls
            for st, prompt, comps in zip(owners[start:start + per_call], prompts[start:start + per_call], batch):
                p_tok = comps[0].prompt_tokens if comps and comps[0].prompt_tokens else \
                    self.policy.count_tokens(prompt)
                g_tok = sum(c.tokens for c in comps)
                st.prompt_tokens += p_tok
                st.generated_tokens += g_tok
                st.calls.add(call_id)
                self.counters.prompt_tokens += p_tok
                self.counters.generated_tokens += g_tok
                self.counters.sequences += len(comps)
            out.extend(batch)
        if len(out) != len(prompts):
            from ..errors import BackendError

            raise BackendError(f"{getattr(self.policy, 'name', 'backend')} returned {len(out)} results for "
                               f"{len(prompts)} prompts")
        return out

    def _prompt(self, st: _Active, node: int) -> str:
        return self.builder.continuation(st.problem, mcts.path_steps(st.tree, node))  # the task's prompt

    def _params(self, n: int, max_tokens: int, stop: tuple[str, ...]) -> GenParams:
        return GenParams(n=n, max_tokens=max_tokens, stop=stop, temperature=self.cfg.temperature,
                         top_p=self.cfg.top_p)

    # --- one wave -----------------------------------------------------------------------------------
    def _select(self, active: list[_Active]) -> tuple[list[tuple[_Active, int]], list[_Active]]:
        cfg = self.cfg
        requests, exhausted = [], []
        for st in active:
            virtual: dict[int, int] = {}
            leaves: list[int] = []
            for _ in range(min(cfg.leaves_per_tree, cfg.iterations - st.iterations)):
                leaf = mcts.select_leaf(st.tree, cfg.c_puct, cfg.unvisited_q, virtual=virtual,
                                        virtual_value=cfg.reward_range[0])
                if leaf is None or leaf in leaves:  # exhausted, or virtual loss could not divert it
                    break
                leaves.append(leaf)
                mcts.add_virtual(st.tree, leaf, virtual)
            if not leaves:
                exhausted.append(st)
            st.iterations += len(leaves)
            st.expansions += len(leaves)
            requests.extend((st, leaf) for leaf in leaves)
        return requests, exhausted

    def _judged(self, chk: _Check) -> str:
        """The text the checker judges: the new step or rollout (its final answer is all the verifier reads),
        or with ``verify_steps`` the whole path, whose every step must hold."""
        if not self.cfg.verify_steps:
            return chk.text
        steps = mcts.path_steps(chk.st.tree, chk.node)
        return STEP_DELIMITER.join(steps if chk.rollout is None else [*steps, chk.text])

    def wave(self, active: list[_Active]) -> list[_Active]:
        """Advance every active tree by one wave; returns the trees that cannot advance (exhausted)."""
        cfg = self.cfg
        requests, exhausted = self._select(active)
        checks: list[_Check] = []
        simulate: list[tuple[_Active, int]] = []
        known: list[tuple[_Active, int]] = []  # terminals whose verdict needs no checker (depth limit)
        if requests:
            outs = self._generate("expand", requests, self._params(cfg.k, cfg.max_step_tokens, (STEP_DELIMITER,)))
            for (st, leaf), samples in zip(requests, outs):
                exp = mcts.add_children(st.tree, leaf, samples, cfg.max_depth)
                checks += [_Check(st, c, st.tree.nodes[c].step) for c in exp.to_check]
                known += [(st, c) for c in exp.children if st.tree.nodes[c].verdict is not None]
                simulate += [(st, c) for c in exp.to_simulate]
        rollouts: list[list[Completion]] = []
        if simulate and cfg.rollouts > 0:
            rollouts = self._generate("rollout", simulate, self._params(cfg.rollouts, cfg.max_rollout_tokens, ()))
        rewards: dict[tuple[int, int], list[float]] = {}
        for (st, child), comps in zip(simulate, rollouts):
            st.rollouts += len(comps)
            self.counters.rollouts += len(comps)
            for comp in comps:
                text = mcts.cut_at_answer(comp.text)
                if mcts.has_boxed(text) or comp.finish_reason in ("eos", "stop"):
                    checks.append(_Check(st, child, text, comp))
                else:  # cut off by the token limit before any answer: no final answer (our rule)
                    rewards.setdefault((id(st), child), []).append(cfg.reward_unparseable)
        results = []
        if checks:
            t0 = time.perf_counter()
            results = self.checker.check_batch([(gold_of(c.st.problem, verify_steps=cfg.verify_steps), self._judged(c))
                                                 for c in checks])
            self.counters.check_seconds += time.perf_counter() - t0
            self.counters.checks += len(checks)
        for chk, res in zip(checks, results):
            verdict = Verdict(res.verdict)
            chk.st.checks += 1
            if chk.rollout is None:
                mcts.set_verdict(chk.st.tree, chk.node, verdict, res.answer)
                mcts.backprop(chk.st.tree, chk.node, cfg.reward(verdict))
                continue
            rewards.setdefault((id(chk.st), chk.node), []).append(cfg.reward(verdict))
            if cfg.keep_rollouts:
                mcts.graft_rollout(chk.st.tree, chk.node, chk.text, verdict, res.answer,
                                   chk.rollout.finish_reason)
        for st, child in known:
            mcts.backprop(st.tree, child, cfg.reward(st.tree.nodes[child].verdict))
        for st, child in simulate:
            vals = rewards.get((id(st), child))
            if vals:  # one evaluation: the mean reward of the child's rollouts (ASTRO §2.2)
                mcts.backprop(st.tree, child, sum(vals) / len(vals))
        self.counters.waves += 1
        if self.on_wave:
            self.on_wave(self.counters)
        return exhausted

    def _finished(self, st: _Active) -> str | None:
        cfg = self.cfg
        if (cfg.early_stop_correct or cfg.early_stop_wrong) and st.iterations >= cfg.min_iterations:
            correct, wrong = mcts.early_stop_counts(st.tree)
            if correct >= cfg.early_stop_correct and wrong >= cfg.early_stop_wrong:
                return "early_stop"
        if st.iterations >= cfg.iterations:
            return "iterations"
        return None

    def _close(self, st: _Active, reason: str) -> SearchTree:
        tree = st.tree
        correct, wrong = mcts.terminal_counts(tree)
        exp_correct, exp_wrong = mcts.early_stop_counts(tree)
        tree.stats.update({
            "stop_reason": reason, "iterations": st.iterations, "expansions": st.expansions,
            "rollouts": st.rollouts, "checks": st.checks, "prompt_tokens": st.prompt_tokens,
            "generated_tokens": st.generated_tokens, "backend_calls": len(st.calls),
            "wall_seconds": round(time.time() - st.started, 3), "nodes": len(tree.nodes),
            "terminals_correct": correct, "terminals_wrong": wrong,
            "expanded_correct": exp_correct, "expanded_wrong_answers": exp_wrong,
            "max_depth": max(n.depth for n in tree.nodes),
            "expanded_max_depth": max(n.depth for n in tree.nodes if n.source == "expand"),
            "backend": getattr(self.policy, "name", type(self.policy).__name__),
        })
        return tree

    def run(self, problems: Sequence[Problem]) -> Iterator[SearchTree]:
        """Search every problem; yield each tree as soon as it is finished (not in input order)."""
        queue = deque(problems)
        active: list[_Active] = []
        chash = self.cfg.config_hash()
        while queue or active:
            while queue and len(active) < self.cfg.max_active_trees:
                p = queue.popleft()
                active.append(_Active(p, mcts.new_tree(p.id, p.problem, p.answer, chash), time.time()))
                active[-1].tree.task = task_fields(p)  # clone reads the task from the tree
            exhausted = {id(st) for st in self.wave(active)}
            still = []
            for st in active:
                reason = "exhausted" if id(st) in exhausted else self._finished(st)
                if reason:
                    yield self._close(st, reason)
                else:
                    still.append(st)
            active = still


def search_iter(problems: Sequence[Problem], policy: Policy, checker: AnswerChecker, cfg: SearchConfig,
                on_wave: Callable[[Counters], None] | None = None) -> Iterator[SearchTree]:
    """Search ``problems`` with ``policy`` (a backends.Policy) and ``checker`` (a checking.AnswerChecker);
    yields finished trees as they finish. No files are touched (see :func:`run.run_search`)."""
    yield from Driver(policy, checker, cfg, on_wave).run(problems)
