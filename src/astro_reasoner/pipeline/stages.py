"""The ASTRO recipe as a stage graph (ASTRO §2-§4), built from a :class:`PipelineConfig`.

data -> search -> clone-{direct,astro} -> sft-{..} -> filter-{..} -> rl-{..}
     -> eval-{base, sft-.., rl-..} (+ eval of intermediate RL checkpoints) -> analysis -> report

Each stage function is thin glue: it builds that stage's own config from the pipeline section, points it at
its inputs' directories and calls the stage's public Python API. All of the real work, and its resume logic,
lives in the stage packages.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from ..config import ConfigError, build_config
from ..data.specs import load_spec
from ..io import read_json, write_json
from .config import PipelineConfig
from .runner import Stage, StageGraph, stage_stats

log = logging.getLogger(__name__)
T = TypeVar("T")


def _problems_path(stage_dir: Path, split: str) -> Path:
    return stage_dir / f"{split}.jsonl"


class _Builder:
    """Creates the stage callables; one instance per pipeline run (holds the config only)."""

    def __init__(self, cfg: PipelineConfig):
        self.cfg = cfg
        self.stage_order: list[str] = []

    # -- helpers -----------------------------------------------------------------------------------------
    def with_policy(self, model: str, out: Path, work: Callable[[Any], T], name: str = "server") -> T:
        """``work(policy)`` with a backend generating with ``model``.

        With a ``server:`` section the checkpoint gets its own server(s) for the duration (logs in
        ``<out>/server-logs``). If a server dies under the stage, it is restarted (``server.restarts`` times)
        and ``work`` is called again: search, eval and the filter resume their own output files, so
        finished work is kept and nothing is done twice."""
        from ..backends import BackendError, make_backend

        spec = self.cfg.server_spec()
        if spec is None:
            policy = make_backend(self.cfg.backend, model, **self.cfg.backend_options)
            try:
                return work(policy)
            finally:
                policy.close()
        from ..backends.server import ModelServer

        restarts = 0
        with ModelServer(spec, model, out / "server-logs", name=name) as srv:
            while True:
                policy = make_backend("openai", model, **{**self.cfg.backend_options, "base_url": srv.urls})
                try:
                    return work(policy)
                except BackendError as exc:
                    if not srv.dead() or restarts >= spec.restarts:
                        raise
                    restarts += 1
                    log.warning("the inference server for %s died (%s); restarting it (%d/%d), then resuming",
                                model, exc, restarts, spec.restarts)
                    srv.restart_dead()
                finally:
                    policy.close()

    def train(self, command: str, cfg, out: Path) -> dict[str, Any]:
        """Run one training stage (``sft`` or ``rl``) with ``cfg`` in this process, or under ``accelerate
        launch`` (``launcher: {kind: accelerate}``); either way its stats come from the files it wrote."""
        spec = self.cfg.launcher_spec()
        if spec.kind == "accelerate":
            from .launch import run_launched

            ckpt = run_launched(spec, command, cfg, out)
        else:
            from ..train import run_grpo, run_sft

            if command == "sft":
                ckpt = run_sft(cfg.data, cfg.output_dir, cfg)["checkpoint"]
            else:
                ckpt = run_grpo(cfg.prompts, cfg.output_dir, cfg)["checkpoint"]
        return {"checkpoint": ckpt, **_train_accounting(Path(ckpt))}

    def section_config(self, cls, name: str, **fixed: Any):
        values = {**self.cfg.section(name), **fixed}
        return build_config(cls, values, where=f"pipeline section {name!r}")

    def base_model(self, inputs: dict[str, Path]) -> str:
        """The model every arm starts from: the warm-started checkpoint when there is one, else ``model``."""
        if "warm-start" in inputs:
            return stage_stats(inputs["warm-start"])["checkpoint"]
        return self.cfg.model

    # -- stages ------------------------------------------------------------------------------------------
    def warm_start(self, out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
        """SFT on direct solutions, the base of everything else (issue 16): pipeline/warm_start.py."""
        from .warm_start import run_warm_start

        return run_warm_start(self, out, inputs)

    def data(self, out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
        from ..data import write_problems

        d = self.cfg.data
        train = load_spec(d.train, d.data_dir, d.train_limit, where="data.train")
        test = load_spec(d.test, d.data_dir, d.eval_limit, where="data.test")
        # The held-out set must be disjoint from training problems (by text), or the table measures recall.
        seen = {p.problem.strip() for p in train}
        overlap = [p for p in test if p.problem.strip() in seen]
        test = [p for p in test if p.problem.strip() not in seen]
        if not test:
            raise ConfigError("data: every test problem also occurs in the training set; use another seed")
        write_problems(_problems_path(out, "train"), train)
        write_problems(_problems_path(out, "test"), test)
        return {"train": len(train), "test": len(test), "test_dropped_overlap": len(overlap)}

    def search(self, out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
        from ..checking import Checker
        from ..data import load_problems
        from ..search import SearchConfig, run_search

        cfg = self.section_config(SearchConfig, "search")
        problems = load_problems(str(_problems_path(inputs["data"], "train")))

        def work(policy):
            with Checker() as checker:
                return run_search(problems, out, cfg, policy=policy, checker=checker, reporter=_search_reporter())
        summary = self.with_policy(self.base_model(inputs), out, work)
        return {"tokens": int(summary.get("generated_tokens_total", 0)),
                "prompt_tokens": int(summary.get("prompt_tokens_total", 0)),
                "trees": summary.get("trees", len(problems)),
                "share_with_correct": summary.get("share_with_correct")}

    def clone(self, mode: str):
        def run(out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
            from ..checking import Checker
            from ..clone import CloneConfig, run_clone

            cfg = self.section_config(CloneConfig, "clone", mode=mode, seed=self.cfg.seed)

            def work(policy):
                with Checker() as checker:
                    return run_clone(inputs["search"] / "trees.jsonl", out, cfg, policy=policy, checker=checker,
                                     overwrite=True)
            stats = self.with_policy(self.base_model(inputs), out, work) if cfg.uses_lm else work(None)
            return {"examples": stats.get("exported", stats.get("examples")), "clone": stats}
        return run

    def sft(self, mode: str):
        def run(out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
            from ..train import SFTStageConfig
            from .warm_start import replay_mix

            data, replayed = replay_mix(self.cfg, inputs, inputs[f"clone-{mode}"] / "sft.jsonl", out)
            cfg = self.section_config(SFTStageConfig, "sft", model=self.base_model(inputs), data=str(data),
                                      output_dir=str(out / "model"), seed=self.cfg.seed)
            return {**self.train("sft", cfg, out), **({"replayed_rows": replayed} if replayed else {})}
        return run

    def filter(self, mode: str):
        def run(out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
            from ..io import read_jsonl, write_jsonl
            from ..train import FilterConfig, run_filter

            sec = self.cfg.section("rl_filter")
            min_kept = int(sec.pop("min_kept", 1))
            sec.update(prompts=str(inputs[f"clone-{mode}"] / "rl.jsonl"),
                       model=stage_stats(inputs[f"sft-{mode}"])["checkpoint"], out=str(out / "rl.jsonl"),
                       backend=self.cfg.backend, backend_options=self.cfg.backend_options, seed=self.cfg.seed)
            cfg = build_config(FilterConfig, sec, where="pipeline section 'rl_filter'")
            res = self.with_policy(cfg.model, out, lambda policy: run_filter(cfg.prompts, cfg.out, cfg, policy=policy))
            used = "filtered"
            if res["kept"] < min_kept:
                # A weak model can leave no prompt in the band (all groups would then have zero advantage);
                # train on every prompt rather than not at all, and say so in the report.
                every = list(read_jsonl(cfg.prompts))
                log.warning("only %d of %d scored prompts in the pass-rate band %s (< min_kept=%d); RL uses all "
                            "%d prompts", res["kept"], res["total"], cfg.keep, min_kept, len(every))
                write_jsonl(out / "rl.jsonl", every)
                used = "all (too few in band)"
            return {"total": res["total"], "kept": res["kept"], "too_easy": res["too_easy"],
                    "too_hard": res["too_hard"], "used": used, "tokens": res["generated_tokens"]}
        return run

    def rl(self, mode: str):
        def run(out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
            from ..train import RLStageConfig

            cfg = self.section_config(RLStageConfig, "rl", model=stage_stats(inputs[f"sft-{mode}"])["checkpoint"],
                                      prompts=str(inputs[f"filter-{mode}"] / "rl.jsonl"),
                                      output_dir=str(out / "model"), seed=self.cfg.seed)
            return self.train("rl", cfg, out)
        return run

    def evaluate_stage(self, model_of: str | None):
        """Evaluate the base model (``model_of=None``) or the checkpoint of the named stage."""
        def run(out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
            model = self.base_model(inputs) if model_of is None else stage_stats(inputs[model_of])["checkpoint"]
            return self._evaluate(model, out)
        return run

    def _eval_config(self):
        from ..evaluate import EvalConfig

        datasets = [str(_problems_path(self.cfg.run_dir_path / "data", "test"))] + list(self.cfg.data.eval)
        return self.section_config(EvalConfig, "eval", datasets=datasets, data_dir=self.cfg.data.data_dir,
                                   seed=self.cfg.seed)

    def _evaluate(self, model: str, out: Path) -> dict[str, Any]:
        from ..evaluate import run_eval

        cfg = self._eval_config()
        summary = self.with_policy(model, out, lambda policy: run_eval(None, out, cfg, policy=policy, model=model))
        run = summary.get("run", {})
        return {"tokens": run.get("generated_tokens", 0), "prompt_tokens": run.get("prompt_tokens", 0),
                "model": model}

    def eval_checkpoints(self, mode: str):
        """Evaluate each intermediate RL checkpoint: the points of the behaviour/accuracy correlation."""
        def run(out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
            model_dir = Path(stage_stats(inputs[f"rl-{mode}"])["checkpoint"])
            ckpts = sorted((p for p in model_dir.glob("checkpoint-*") if p.is_dir()),
                           key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
            final_step = stage_stats(inputs[f"rl-{mode}"]).get("steps")
            # the last checkpoint is the final model, which eval-rl-<mode> evaluates already
            ckpts = [c for c in ckpts if int(re.sub(r"\D", "", c.name) or 0) != final_step]
            tokens = prompt_tokens = 0
            for ck in ckpts:
                st = self._evaluate(str(ck), out / ck.name)
                tokens += st.get("tokens", 0)
                prompt_tokens += st.get("prompt_tokens", 0)
            return {"tokens": tokens, "prompt_tokens": prompt_tokens, "checkpoints": [c.name for c in ckpts]}
        return run

    def analysis(self, out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
        from ..evaluate.analyze import correlation_report, training_report

        result: dict[str, Any] = {}
        for mode in self.cfg.modes:
            runs = [inputs[f"eval-sft-{mode}"]]
            ck = inputs.get(f"eval-rl-{mode}-checkpoints")
            if ck is not None:
                runs += sorted((p for p in ck.iterdir() if (p / "summary.json").exists()),
                               key=lambda p: int(re.sub(r"\D", "", p.name) or 0))
            runs.append(inputs[f"eval-rl-{mode}"])
            result[mode] = correlation_report(runs, out / f"correlation-{mode}")
            metrics = Path(stage_stats(inputs[f"rl-{mode}"])["checkpoint"]) / "metrics.jsonl"
            if metrics.exists():
                training_report(metrics, out / f"training-{mode}")
        write_json(out / "analysis.json", result)
        from ..checking import Checker
        from ..evaluate.attempts import eval_dir_attempts

        with Checker() as checker:  # each eval's outputs as attempts: does a check discriminate? (attempts.py)
            attempts = {name: eval_dir_attempts(path, checker) for name, path in sorted(inputs.items())
                        if name.startswith("eval-") and (path / "samples.jsonl").exists()}
        write_json(out / "attempts.json", attempts)
        return {"modes": list(result)}

    def report(self, out: Path, inputs: dict[str, Path]) -> dict[str, Any]:
        from ..viz.report import build_report
        from .table import write_results

        table = write_results(self.cfg, out, self.stage_order)
        page = build_report(self.cfg.run_dir_path, out / "report.html")
        return {"report": str(page), "table": str(table)}


def _train_accounting(model_dir: Path) -> dict[str, Any]:
    """Tokens a training stage processed: SFT's trained tokens, GRPO's sampled completion tokens."""
    from ..io import read_jsonl

    out: dict[str, Any] = {}
    summary = model_dir / "train_summary.json"
    if summary.exists():
        s = read_json(summary)
        out["trained_tokens"] = int(s.get("trained_tokens") or s.get("final_metrics", {}).get("num_tokens", 0) or 0)
        out["steps"] = s.get("global_step")
    metrics = model_dir / "metrics.jsonl"
    if metrics.exists():  # GRPO: the completions it sampled are its generated tokens
        # every rank's completions (completions.jsonl, completions.rank{k}.jsonl under a multi-process launch)
        n_completions = sum(sum(1 for _ in read_jsonl(comp, tolerate_torn_tail=True))
                            for comp in model_dir.glob("completions*.jsonl"))
        rows = list(read_jsonl(metrics, tolerate_torn_tail=True))
        if rows and n_completions:
            mean_len = sum(r.get("length_mean", 0.0) for r in rows) / len(rows)
            out["tokens"] = int(mean_len * n_completions)
    return out


def _search_reporter():
    try:
        from ..search.cli import RichReporter  # progress bar shared with `astro search`
    except ImportError:
        return None
    return RichReporter()


def validate_sections(cfg: PipelineConfig) -> None:
    """Build every stage config once with placeholder paths, so a bad setting fails before any work."""
    from ..clone import CloneConfig
    from ..evaluate import EvalConfig
    from ..extras import installed
    from ..search import SearchConfig
    from ..train.config import FilterConfig

    placeholders = {
        "search": (SearchConfig, {}),
        "clone": (CloneConfig, {}),
        "rl_filter": (FilterConfig, {"model": cfg.model, "prompts": "rl.jsonl", "out": "out.jsonl"}),
        "eval": (EvalConfig, {"datasets": ["test"]}),
    }
    # The training configs are TRL's: without the [train] extra they cannot be built, and a run that stops
    # before training (--until search) must not need it (require_extras refuses a run that trains).
    if installed("trl"):
        from ..train.trl_configs import RLStageConfig, SFTStageConfig

        placeholders["sft"] = (SFTStageConfig, {"model": cfg.model, "data": "sft.jsonl", "output_dir": "out"})
        placeholders["rl"] = (RLStageConfig, {"model": cfg.model, "prompts": "rl.jsonl", "output_dir": "out"})
    for name, (cls, fixed) in placeholders.items():
        values = {**cfg.section(name), **fixed}
        values.pop("min_kept", None)
        build_config(cls, values, where=f"pipeline section {name!r}")


def build_graph(cfg: PipelineConfig) -> StageGraph:
    """The ASTRO stage graph; each stage's settings are its config section plus the inputs' identity."""
    b = _Builder(cfg)
    validate_sections(cfg)
    common = {"model": cfg.model, "backend": cfg.backend, "backend_options": cfg.backend_options, "seed": cfg.seed}
    if cfg.server is not None:  # the engine that generates is part of what a stage's output is
        common["server"] = {k: v for k, v in cfg.server.items() if k not in ("ready_timeout", "restarts")}
    sec = cfg.section
    launch = cfg.launcher_spec().settings()  # training stages only: {} in-process, so existing keys stay
    stages = [Stage("data", b.data, settings={"data": vars(cfg.data)}, title="problems (train / held-out test)")]
    warm: tuple[str, ...] = ()
    if cfg.warm_start is not None:
        warm = ("warm-start",)
        held_out = {"test": cfg.data.test, "data_dir": cfg.data.data_dir, "eval_limit": cfg.data.eval_limit}
        # replay is read by the SFT stages, not the warm start: changing it must not redo the warm start
        ws = {k: v for k, v in cfg.warm_start.items() if k != "replay"}
        stages.append(Stage("warm-start", b.warm_start, (), {**common, "warm_start": ws, **held_out, **launch},
                            "warm start: SFT on direct solutions (the base model of both arms)"))
    stages.append(Stage("search", b.search, ("data", *warm), {**common, **sec("search")}, "MCTS search (ASTRO §2.1)"))
    replay = {"replay": cfg.warm_start["replay"]} if (cfg.warm_start or {}).get("replay") else {}  # keys stay
    for mode in cfg.modes:
        stages += [
            Stage(f"clone-{mode}", b.clone(mode), ("search", *warm), {"mode": mode, **common, **sec("clone")},
                  f"procedure cloning, {mode} (ASTRO §2.2-2.3)"),
            Stage(f"sft-{mode}", b.sft(mode), (f"clone-{mode}", *warm), {**common, **sec("sft"), **launch, **replay},
                  f"SFT, {mode} (ASTRO §3.3)"),
            Stage(f"filter-{mode}", b.filter(mode), (f"clone-{mode}", f"sft-{mode}"), {**common, **sec("rl_filter")},
                  f"difficulty filter, {mode} (ASTRO §3.4)"),
            Stage(f"rl-{mode}", b.rl(mode), (f"sft-{mode}", f"filter-{mode}"), {**common, **sec("rl"), **launch},
                  f"GRPO, {mode} (ASTRO §3.4)"),
        ]
    ev = {"eval": sec("eval"), "extra": cfg.data.eval, **common}
    stages.append(Stage("eval-base", b.evaluate_stage(None), ("data", *warm), ev, "evaluate the base model"))
    for mode in cfg.modes:
        stages.append(Stage(f"eval-sft-{mode}", b.evaluate_stage(f"sft-{mode}"), ("data", f"sft-{mode}"), ev,
                            f"evaluate {mode}-SFT"))
        stages.append(Stage(f"eval-rl-{mode}", b.evaluate_stage(f"rl-{mode}"), ("data", f"rl-{mode}"), ev,
                            f"evaluate {mode}-RL"))
        if cfg.eval_rl_checkpoints:
            stages.append(Stage(f"eval-rl-{mode}-checkpoints", b.eval_checkpoints(mode), ("data", f"rl-{mode}"),
                                ev, f"evaluate intermediate {mode}-RL checkpoints"))
    analysis_deps = tuple(s.name for s in stages if s.name.startswith(("eval-sft", "eval-rl", "rl-")))
    stages.append(Stage("analysis", b.analysis, analysis_deps, {}, "behaviour vs accuracy correlation"))
    stages.append(Stage("report", b.report, tuple(s.name for s in stages), {"about": cfg.about},
                        "final table and report"))
    b.stage_order = [s.name for s in stages]
    return StageGraph(cfg.run_dir_path, stages)
