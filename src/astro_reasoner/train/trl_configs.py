"""The training stages' configs ARE TRL's configs (ASTRO §3.3 SFT, §3.4 RL), open-r1 style.

``SFTStageConfig`` is a dataclass subclass of ``trl.SFTConfig`` and ``RLStageConfig`` of ``trl.GRPOConfig``: every
TRL / transformers option is a key of its own (``learning_rate``, ``top_k``, ``vllm_max_model_length``...), and
the object is handed to the trainer as its ``args``. The classes add only what TRL lacks (model, data, LoRA,
resume, the reward and checker, behaviour logging...) and re-declare a TRL field only to change its default,
each with the reason. Where a default comes from the paper it says "ASTRO"; the paper gives few optimiser
details, so most numbers are "our choice" or TRL's default.

Construction validates (TRL-style; an invalid config never exists): our checks first, with messages naming
cause and fix, then TRL's own ``__post_init__``, whose ValueErrors become ConfigErrors. Before TRL's checks run,
``runtime.resolve_device_fields`` fills device and precision from this machine (TRL's ``bf16=True`` default
would fail on a CPU-only one). Options TRL documents a fixed set of values for (``loss_type``...) are checked
against TRL's own metadata, not a copy.
"""

from __future__ import annotations

import dataclasses
import os
import re
from dataclasses import dataclass
from typing import Any

from trl import GRPOConfig, SFTConfig

from ..config import ConfigError, require
from .runtime import resolve_device_fields, resolve_report_to

# Fields TRL documents a value set for only in its help text (no ``choices`` metadata); checked on construction.
DOCUMENTED_CHOICES = ("loss_type", "scale_rewards", "vllm_mode")


def trl_choices(cls: type, name: str) -> set[str]:
    """The values TRL allows for field ``name`` of ``cls``: its ``choices`` metadata, else the quoted names of the
    help's "Supported values are ..." / "Must be one of ..." sentence (else of the whole help). Empty when TRL
    documents none (then TRL itself is left to judge)."""
    # the metadata of TRL's declaration (a field we re-declare to change its default has none)
    meta = next((c.__dataclass_fields__[name].metadata for c in cls.__mro__
                 if name in getattr(c, "__dataclass_fields__", {}) and c.__dataclass_fields__[name].metadata), {})
    if meta.get("choices"):
        return {str(c) for c in meta["choices"]}
    text = meta.get("help", "")
    names = lambda s: set(re.findall(r"[`']+(\w+)'", s))  # noqa: E731 - 'x', `'x'` and `x' (a TRL typo)
    sentence = re.search(r"(?:Supported values are|Must be one of)(.*?)\.(?:\s|$)", text, re.S)
    found = names(sentence.group(1)) if sentence else set()
    return found if len(found) >= 2 else names(text)


def _check_choices(cfg: Any) -> None:
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if not isinstance(value, str) or not (f.metadata.get("choices") or f.name in DOCUMENTED_CHOICES):
            continue
        allowed = trl_choices(type(cfg), f.name)
        require(not allowed or value in allowed,
                f"{f.name}={value!r}: use one of {', '.join(sorted(allowed))} (the values TRL documents)")


@dataclass
class _AstroTraining:
    """What SFT and RL share beyond TRL: the model, threads, LoRA, resume; and TRL defaults we change for both."""

    model: str = ""  # HF dir, hub id, or alias (``smollm2-135m``) resolved by astro_reasoner.models
    threads: int = 0  # torch intra-op threads on CPU; 0 = OMP_NUM_THREADS or torch's default (one per core)
    # CPU: glibc keeps freed memory in its heap during the training loop (1.3x per step), released when the loop
    # ends; the heap grows over a long loop, so off unless asked (train/allocator.py, BENCHMARKS.md)
    tune_malloc: bool = False
    # -- LoRA (peft); full fine-tuning when false
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # comma list or "all-linear" (peft)
    merge_lora: bool = True  # save a merged full checkpoint (loadable by hf/vLLM); else the adapter only
    resume: str = "auto"  # auto (latest checkpoint in output_dir, if any) | never | path to a checkpoint dir
    overwrite: bool = False  # retrain even if output_dir holds a finished run with another config
    # -- TRL options whose default we change
    num_train_epochs: float = 1.0  # one pass (ASTRO B.2 for SFT; RL runs are sized by max_steps); TRL: 3
    per_device_train_batch_size: int = 4  # our choice (RL: one group of num_generations=4); TRL: 8
    seed: int = 0  # our choice (the pipeline passes its own seed); TRL: 42
    save_total_limit: int | None = 2  # keep the 2 latest checkpoints (null: every one); TRL keeps all
    # auto: tensorboard when installed | none | comma list (tensorboard,wandb,...); TRL: none
    report_to: str | list[str] | None = "auto"
    # TRL turns it on; None lets our device rule decide (on for GPU: memory, off on CPU: speed; runtime.py).
    # Its transformers-5 name activation_checkpointing works too (and wins).
    gradient_checkpointing: bool | None = None
    # Keys of the configs before issue 13 made them TRL's -> the fix (build_config names it for an old file).
    RENAMED_KEYS = {
        "out_dir": "output_dir (the CLI's --out)",
        "device": "use_cpu: true for device: cpu; device: auto and cuda need nothing (GPU-only options on a "
                  "CPU-only machine are refused when the run starts)",
        "precision": "TRL's bf16 / fp16: precision auto -> leave both unset, fp32 -> bf16: false, bf16 -> bf16: "
                     "true, fp16 -> fp16: true",
        "trl_args": "top-level keys: every TRL option is a key of its own now (e.g. top_k: 20, not trl_args: "
                    "{top_k: 20})",
    }

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): a bad value fails where it is written. Our checks come first,
        # so their messages (cause and fix) win over TRL's for the same mistake.
        self._given = _given_values(self)
        self.validate()
        resolve_device_fields(self)
        self.report_to = resolve_report_to(self.report_to)
        self._before_trl()
        try:
            super().__post_init__()  # type: ignore[misc]  # TRL's SFTConfig / GRPOConfig
        except (ValueError, TypeError) as exc:
            raise ConfigError(self._explain(f"{type(self).__name__}: {exc}")) from None

    def _before_trl(self) -> None:
        """Hook: class-specific adjustments right before TRL's __post_init__."""

    def _explain(self, message: str) -> str:
        return message

    def validate(self) -> None:
        """Our checks (public, to re-check after a field is assigned)."""
        self._validate_common()

    def with_changes(self, **changes: Any):
        """A copy with ``changes``, rebuilt from the values this config was built from (``dataclasses.replace``
        works too, but rebuilds from the resolved values, which then count as given: see ``given``)."""
        return type(self)(**{**self._given, **changes})

    @property
    def given(self) -> dict[str, Any]:
        """The options this config was built with that differ from the class defaults, before any resolution:
        what `astro sft|rl --config` needs to rebuild it anywhere (pipeline/launch.py)."""
        return dict(self._given)

    def _validate_common(self) -> None:
        require(self.threads >= 0, f"threads={self.threads}: use 0 (default) or a positive thread count")
        require(self.learning_rate > 0, f"learning_rate={self.learning_rate}: must be > 0")
        require(self.num_train_epochs > 0 or self.max_steps > 0,
                f"num_train_epochs={self.num_train_epochs!r}: must be > 0 (or set max_steps > 0)")
        require(self.max_steps == -1 or self.max_steps > 0, f"max_steps={self.max_steps}: use -1 (epochs) or > 0")
        require(self.per_device_train_batch_size >= 1,
                f"per_device_train_batch_size={self.per_device_train_batch_size!r}: must be >= 1")
        require(self.gradient_accumulation_steps >= 1,
                f"gradient_accumulation_steps={self.gradient_accumulation_steps!r}: must be >= 1")
        require(self.warmup_steps >= 0,
                f"warmup_steps={self.warmup_steps!r}: must be >= 0 (a count, or a fraction < 1)")
        require(self.lora_r >= 1 and self.lora_alpha >= 1, "lora_r and lora_alpha must be >= 1")
        require(0 <= self.lora_dropout < 1, f"lora_dropout={self.lora_dropout!r}: must be in [0, 1)")
        require(self.logging_steps > 0 and self.save_steps > 0,
                "logging_steps and save_steps must be > 0 (a step count, or a fraction < 1 of the run)")
        require(self.save_total_limit is None or self.save_total_limit >= 1,
                f"save_total_limit={self.save_total_limit!r}: must be >= 1 (or null to keep every checkpoint)")
        require(self.resume in ("auto", "never") or bool(self.resume),
                "resume is empty: use auto, never, or a path to a checkpoint-N directory")
        require(bool(self.model), "model is not set: pass --model (an HF dir, hub id, or smollm2-135m)")
        require(bool(self.output_dir), "output_dir is not set: pass --out DIR")
        _check_choices(self)


def _given_values(cfg: Any) -> dict[str, Any]:
    """The init fields of ``cfg`` whose value differs from the field's default (read before any resolution)."""
    out = {}
    for f in dataclasses.fields(cfg):
        if not f.init:
            continue
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        value = getattr(cfg, f.name)
        if value is not default and value != default:
            out[f.name] = value
    return out


@dataclass
class SFTStageConfig(_AstroTraining, SFTConfig):
    """ASTRO §3.3: supervised fine-tuning on the search-derived long CoTs (``trl.SFTConfig`` + our options).

    Defaults follow the paper's SFT recipe (ASTRO Appendix B.2 as quoted by a public re-implementation; not
    verified against the paper's text here): loss on ALL tokens, 1 epoch, learning rate 3e-6,
    cosine schedule, 8,192-token sequences. ``completion_only_loss=true`` puts the loss on the CoT only
    (TRL's own field of that name), an option the paper does not use. TRL defaults kept: ``packing=false``,
    ``assistant_only_loss=false``, ``logging_steps=10``.
    """

    data: str = ""  # sft.jsonl: {"problem_id", "prompt": [messages], "completion": [assistant message]}
    drop_long: bool = False  # drop examples longer than max_length instead of truncating them
    # Long CoTs must fit: TRL's default 1024 cuts the *end* (where the answer is). 8192 as in the paper;
    # examples longer than this are counted and reported (or dropped with drop_long).
    max_length: int | None = 8192
    completion_only_loss: bool | None = False  # paper: loss on all tokens; TRL's None masks the prompt
    learning_rate: float = 3e-6  # paper (B.2); TRL: 2e-5
    lr_scheduler_type: str = "cosine"  # paper (B.2); TRL: linear
    save_steps: float = 200  # our choice; TRL: 500

    def validate(self) -> None:
        self._validate_common()
        require(bool(self.data), "data is not set: pass --data sft.jsonl (written by `astro clone`)")
        require(self.max_length is None or self.max_length >= 16,
                f"max_length={self.max_length}: too small for a chat example; use >= 16 (or null for no limit)")
        require(not (self.packing and self.max_length is None),
                "packing=true needs a max_length (the packed sequence length); set max_length")


@dataclass
class RLStageConfig(_AstroTraining, GRPOConfig):
    """ASTRO §3.4: GRPO with a verifiable +1/-1 reward and no KL term, on top of the SFT checkpoint.

    TRL defaults kept: ``epsilon=0.2`` (PPO/GRPO clip, TRL and DeepSeekMath default); ``epsilon_high=None``
    (symmetric clip; DAPO's clip-higher uses 0.28); ``temperature=1.0`` and ``top_p=1.0`` (sample at T=1
    during RL, the GRPO convention); ``scale_rewards="group"`` (GRPO's (r - mean) / std per group);
    ``num_iterations=1`` (mu: on-policy, one gradient pass per generation batch); ``steps_per_generation``
    unset (= gradient_accumulation_steps); ``learning_rate=1e-6`` (TRL's GRPO default, our choice for
    full-parameter RL); vLLM (GPU only) off, ``vllm_gpu_memory_utilization=0.3``, ``vllm_tensor_parallel_size=1``
    (colocate: vLLM's tensor parallel size; server mode: the one the server was started with, which TRL then
    ignores and `astro pipeline --plan` sizes the server with); ``vllm_server_base_url`` unset = TRL's
    0.0.0.0:8000.
    """

    prompts: str = ""  # rl.jsonl: {"problem_id", "prompt": [messages], "answer": gold}
    # Reward (ASTRO §3.4: +1 correct, -1 otherwise). Unparseable = no final answer could be extracted.
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    reward_unparseable: float = -1.0
    checker_workers: int | None = None  # None = the checker's default pool size
    checker_deadline: float = 10.0  # seconds per check, enforced by killing the worker process
    behaviour_logging: bool = True  # reflections/backtracks per completion -> metrics.jsonl + tensorboard
    save_completions: bool = True  # every completion with reward and behaviour counts -> completions.jsonl
    # ASTRO §3.4: the policy-gradient loss has no KL penalty -> beta=0 (also: TRL then loads no reference model).
    # Pinned although TRL 1.16's default is the same: the recipe must not follow a change of TRL's default.
    beta: float = 0.0
    # ASTRO §3.4: loss normalised at the token level (DAPO-style), not per sequence. "dapo" normalises by the
    # tokens of the global accumulated batch, "bnpo" by those of the local batch (TRL 1.16 semantics). Pinned
    # like beta.
    loss_type: str = "dapo"
    # Group size: a reviewer of the paper reports 4 samples per prompt (the paper itself does not state it); TRL: 8
    num_generations: int | None = 4
    # Long CoTs need room; 4096 is our choice for a small-GPU default (TRL: 512). Truncated completions have no
    # \boxed{} and get the unparseable reward.
    max_completion_length: int | None = 4096
    lr_scheduler_type: str = "constant"  # our choice: RL runs are usually stopped by step count; TRL: linear
    logging_steps: float = 1  # behaviour metrics every optimizer step (cheap; the correlation analysis uses them)
    save_steps: float = 50  # our choice; TRL: 500
    # server mode talks to `trl vllm-serve`/`vllm serve`; colocate shares the GPU. Server: our choice (TRL:
    # colocate), so a 70B policy's generation does not have to fit beside its training.
    vllm_mode: str = "server"

    def validate(self) -> None:
        self._validate_common()
        require(bool(self.prompts), "prompts is not set: pass --prompts rl.jsonl (written by `astro clone`)")
        require(self.beta >= 0, f"beta={self.beta}: must be >= 0 (ASTRO uses 0, no KL)")
        require(self.num_generations is not None and self.num_generations >= 2,
                f"num_generations={self.num_generations}: GRPO needs >= 2 samples per prompt to compare them")
        require(self.epsilon > 0, f"epsilon={self.epsilon!r}: must be > 0")
        require(self.epsilon_high is None or self.epsilon_high >= self.epsilon,
                f"epsilon_high={self.epsilon_high} must be >= epsilon={self.epsilon} (or null)")
        require(self.temperature > 0, f"temperature={self.temperature!r}: must be > 0 (GRPO needs diverse samples)")
        require(0 < self.top_p <= 1, f"top_p={self.top_p!r}: must be in (0, 1]")
        require(self.max_completion_length is not None and self.max_completion_length >= 1,
                f"max_completion_length={self.max_completion_length!r}: must be >= 1")
        require(self.num_iterations >= 1, f"num_iterations={self.num_iterations!r}: must be >= 1")
        require(self.steps_per_generation is None or self.steps_per_generation >= 1,
                f"steps_per_generation={self.steps_per_generation!r}: must be >= 1 (or null)")
        require(self.checker_deadline > 0, f"checker_deadline={self.checker_deadline!r}: must be > 0 seconds")
        require(self.checker_workers is None or self.checker_workers >= 1,
                f"checker_workers={self.checker_workers!r}: must be >= 1 (or null)")
        require(0 < self.vllm_gpu_memory_utilization <= 1,
                f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization!r}: must be in (0, 1]")
        require(self.vllm_tensor_parallel_size >= 1,
                f"vllm_tensor_parallel_size={self.vllm_tensor_parallel_size!r}: must be >= 1")

    def _before_trl(self) -> None:
        # TRL derives generation_batch_size from steps_per_generation and refuses both set, so a copy of a built
        # GRPOConfig (dataclasses.replace, which passes both) fails. A pair TRL itself derived is taken back.
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if self.generation_batch_size is not None and self.steps_per_generation is not None and \
                self.generation_batch_size == self.per_device_train_batch_size * world * self.steps_per_generation:
            self.generation_batch_size = None

    def _explain(self, message: str) -> str:
        if "divisible by num_generations" not in message:
            return message
        return (f"{message} A generation batch is per_device_train_batch_size x processes x steps_per_generation "
                "completions, i.e. whole groups of num_generations: e.g. set "
                f"per_device_train_batch_size={self.num_generations}")
