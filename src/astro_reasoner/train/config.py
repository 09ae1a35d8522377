"""Configs of the training stages (ASTRO §3.3 SFT, §3.4 RL): ours, small, validated on construction; mapped onto TRL.

``SFTStageConfig`` maps onto ``trl.SFTConfig`` and ``RLStageConfig`` onto ``trl.GRPOConfig`` (see
``common.trl_kwargs``). Any other TRL/transformers option goes in ``trl_args`` (a dict, e.g.
``trl_args={"lr_scheduler_type": "constant", "vllm_model_impl": "vllm"}``); its keys are checked against the
TRL config at run time. ``FilterConfig`` is the difficulty filter (``astro rl filter``).

Where a default comes from the paper it says "ASTRO"; the paper gives few optimiser details, so most
numbers are "our choice" (with the reason) or TRL's default.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..config import ConfigError, require

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
# TRL 1.16's loss types (a copy: configs validate without importing TRL); tests/test_train_config.py fails when
# the installed TRL documents another set.
LOSS_TYPES = ("dapo", "bnpo", "grpo", "dr_grpo", "cispo", "sapo", "luspo", "vespo")
SCALE_REWARDS = ("group", "batch", "none")
VLLM_MODES = ("server", "colocate")


@dataclass
class TrainCommon:
    """Options shared by SFT and RL. Runtime options (device, precision, threads) are resolved in common.py."""

    model: str = ""  # HF dir, hub id, or alias (``smollm2-135m``) resolved by astro_reasoner.models
    out_dir: str = ""
    # -- device / precision (common.resolve_runtime: auto -> bf16 on a GPU that has it or a CPU with AMX, else fp32)
    device: str = "auto"  # auto | cpu | cuda
    precision: str = "auto"  # auto | fp32 | bf16 | fp16 (fp16 needs a CUDA GPU; bf16 a GPU or a CPU with AMX/BF16)
    threads: int = 0  # torch intra-op threads on CPU; 0 = OMP_NUM_THREADS or torch's default (one per core)
    gradient_checkpointing: bool | None = None  # None = on for GPU (memory), off on CPU (speed); our choice
    # -- optimisation
    learning_rate: float = 1e-5
    num_train_epochs: float = 1.0
    max_steps: int = -1  # > 0 overrides epochs
    per_device_train_batch_size: int = 4
    gradient_accumulation_steps: int = 1
    lr_scheduler_type: str = "cosine"  # our choice (open-r1 recipes); TRL default is linear
    warmup_steps: float = 0.0  # < 1 is a fraction of the run (transformers 5)
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    seed: int = 0
    # -- LoRA (peft); full fine-tuning when false
    lora: bool = False
    lora_r: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    lora_target_modules: str = "all-linear"  # comma list or "all-linear" (peft)
    merge_lora: bool = True  # save a merged full checkpoint (loadable by hf/vLLM); else the adapter only
    # -- bookkeeping
    logging_steps: int = 10
    save_steps: int = 200
    save_total_limit: int | None = 2
    resume: str = "auto"  # auto (latest checkpoint in out_dir, if any) | never | path to a checkpoint dir
    report_to: str = "auto"  # auto (tensorboard when installed) | none | comma list (tensorboard,wandb,...)
    overwrite: bool = False  # retrain even if out_dir holds a finished run with another config
    trl_args: dict[str, Any] = field(default_factory=dict)  # passed through to the TRL config

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): an invalid config never exists, so a bad value fails where it
        # is written, not later in the stage. validate() stays public to re-check after a field is assigned.
        self.validate()

    def validate(self) -> None:
        self._validate_common()

    def _validate_common(self) -> None:
        require(self.device in DEVICES, f"device={self.device!r}: use one of {', '.join(DEVICES)}")
        require(self.precision in PRECISIONS,
                f"precision={self.precision!r}: use one of {', '.join(PRECISIONS)} (auto: bf16 on a GPU that has it or a CPU with AMX, else fp32)")
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
        require(self.logging_steps >= 1 and self.save_steps >= 1, "logging_steps and save_steps must be >= 1")
        require(self.save_total_limit is None or self.save_total_limit >= 1,
                f"save_total_limit={self.save_total_limit!r}: must be >= 1 (or null to keep every checkpoint)")
        require(isinstance(self.trl_args, dict),
                f"trl_args={self.trl_args!r}: must be a mapping of TRL option -> value")
        require(bool(self.model), "model is not set: pass --model (an HF dir, hub id, or smollm2-135m)")
        require(bool(self.out_dir), "out_dir is not set: pass --out DIR")


@dataclass
class SFTStageConfig(TrainCommon):
    """ASTRO §3.3: supervised fine-tuning on the search-derived long CoTs.

    Defaults follow the paper's SFT recipe (ASTRO Appendix B.2 as quoted by a public re-implementation; not
    verified against the paper's text here): loss on ALL tokens, 1 epoch, learning rate 3e-6,
    cosine schedule, 8,192-token sequences. ``completion_only_loss=true`` puts the loss on the CoT only
    (TRL's own field of that name), an option the paper does not use.
    """

    data: str = ""  # sft.jsonl: {"problem_id", "prompt": [messages], "completion": [assistant message]}
    # Long CoTs must fit: TRL's default 1024 cuts the *end* (where the answer is). 8192 as in the paper;
    # examples longer than this are counted and reported (or dropped with drop_long).
    max_length: int | None = 8192
    drop_long: bool = False  # drop examples longer than max_length instead of truncating them
    packing: bool = False
    completion_only_loss: bool = False  # paper: loss on all tokens, no masking; true = loss on the CoT only
    learning_rate: float = 3e-6  # paper (B.2)
    num_train_epochs: float = 1.0  # paper (B.2)
    lr_scheduler_type: str = "cosine"  # paper (B.2)
    logging_steps: int = 10

    def validate(self) -> None:
        self._validate_common()
        require(bool(self.data), "data is not set: pass --data sft.jsonl (written by `astro clone`)")
        require(self.max_length is None or self.max_length >= 16,
                f"max_length={self.max_length}: too small for a chat example; use >= 16 (or null for no limit)")
        require(not (self.packing and self.max_length is None),
                "packing=true needs a max_length (the packed sequence length); set max_length")


@dataclass
class RLStageConfig(TrainCommon):
    """ASTRO §3.4: GRPO with a verifiable +1/-1 reward and no KL term, on top of the SFT checkpoint."""

    prompts: str = ""  # rl.jsonl: {"problem_id", "prompt": [messages], "answer": gold}
    # ASTRO §3.4: the policy-gradient loss has no KL penalty -> beta=0 (also: TRL then loads no reference model).
    beta: float = 0.0
    # ASTRO §3.4: loss normalised at the token level (DAPO-style), not per sequence. "dapo" normalises by the
    # tokens of the global accumulated batch, "bnpo" by those of the local batch (TRL 1.16 semantics).
    loss_type: str = "dapo"
    # Group size: a reviewer of the paper reports 4 samples per prompt (the paper itself does not state it).
    num_generations: int = 4
    epsilon: float = 0.2  # PPO/GRPO clip (TRL and DeepSeekMath default)
    epsilon_high: float | None = None  # None = symmetric clip; DAPO's clip-higher uses 0.28
    temperature: float = 1.0  # sample at T=1 during RL (GRPO convention, TRL default); our choice
    top_p: float = 1.0
    # Long CoTs need room; 4096 is our choice for a small-GPU default. Truncated completions have no \boxed{}
    # and get the unparseable reward.
    max_completion_length: int = 4096
    scale_rewards: str = "group"  # GRPO's (r - mean) / std per group
    mask_truncated_completions: bool = False
    num_iterations: int = 1  # mu: on-policy, one gradient pass per generation batch
    steps_per_generation: int | None = None  # TRL: defaults to gradient_accumulation_steps
    learning_rate: float = 1e-6  # TRL GRPO default; our choice for full-parameter RL
    lr_scheduler_type: str = "constant"  # our choice: RL runs are usually stopped by step count
    logging_steps: int = 1  # behaviour metrics every optimizer step (cheap; the correlation analysis uses them)
    save_steps: int = 50
    # Reward (ASTRO §3.4: +1 correct, -1 otherwise). Unparseable = no final answer could be extracted.
    reward_correct: float = 1.0
    reward_wrong: float = -1.0
    reward_unparseable: float = -1.0
    checker_workers: int | None = None  # None = the checker's default pool size
    checker_deadline: float = 10.0  # seconds per check, enforced by killing the worker process
    behaviour_logging: bool = True  # reflections/backtracks per completion -> metrics.jsonl + tensorboard
    save_completions: bool = True  # every completion with reward and behaviour counts -> completions.jsonl
    # vLLM generation (GPU only): server mode talks to `trl vllm-serve`/`vllm serve`; colocate shares the GPU.
    use_vllm: bool = False
    vllm_mode: str = "server"
    vllm_server_base_url: str | None = None  # e.g. http://host:8000; default host/port from TRL (0.0.0.0:8000)
    vllm_gpu_memory_utilization: float = 0.3
    # colocate: vLLM's tensor parallel size; server mode: the one the server was started with (TRL ignores it
    # then; `astro pipeline --plan` sizes the server with it)
    vllm_tensor_parallel_size: int = 1

    def validate(self) -> None:
        self._validate_common()
        require(bool(self.prompts), "prompts is not set: pass --prompts rl.jsonl (written by `astro clone`)")
        require(self.beta >= 0, f"beta={self.beta}: must be >= 0 (ASTRO uses 0, no KL)")
        require(self.loss_type in LOSS_TYPES, f"loss_type={self.loss_type!r}: use one of {', '.join(LOSS_TYPES)}")
        require(self.num_generations >= 2,
                f"num_generations={self.num_generations}: GRPO needs >= 2 samples per prompt to compare them")
        require(self.epsilon > 0, f"epsilon={self.epsilon!r}: must be > 0")
        require(self.epsilon_high is None or self.epsilon_high >= self.epsilon,
                f"epsilon_high={self.epsilon_high} must be >= epsilon={self.epsilon} (or null)")
        require(self.temperature > 0, f"temperature={self.temperature!r}: must be > 0 (GRPO needs diverse samples)")
        require(0 < self.top_p <= 1, f"top_p={self.top_p!r}: must be in (0, 1]")
        require(self.max_completion_length >= 1, f"max_completion_length={self.max_completion_length!r}: must be >= 1")
        require(self.scale_rewards in SCALE_REWARDS,
                f"scale_rewards={self.scale_rewards!r}: use one of {', '.join(SCALE_REWARDS)}")
        require(self.num_iterations >= 1, f"num_iterations={self.num_iterations!r}: must be >= 1")
        require(self.steps_per_generation is None or self.steps_per_generation >= 1,
                f"steps_per_generation={self.steps_per_generation!r}: must be >= 1 (or null)")
        require(self.checker_deadline > 0, f"checker_deadline={self.checker_deadline!r}: must be > 0 seconds")
        require(self.checker_workers is None or self.checker_workers >= 1,
                f"checker_workers={self.checker_workers!r}: must be >= 1 (or null)")
        require(self.vllm_mode in VLLM_MODES, f"vllm_mode={self.vllm_mode!r}: use server or colocate")
        require(0 < self.vllm_gpu_memory_utilization <= 1,
                f"vllm_gpu_memory_utilization={self.vllm_gpu_memory_utilization!r}: must be in (0, 1]")
        require(self.vllm_tensor_parallel_size >= 1,
                f"vllm_tensor_parallel_size={self.vllm_tensor_parallel_size!r}: must be >= 1")


def parse_band(text: str) -> tuple[float, float]:
    """``"0.1-0.9"`` -> (0.1, 0.9); both ends inclusive, 0 <= lo <= hi <= 1."""
    lo_s, sep, hi_s = str(text).partition("-")
    try:
        lo, hi = float(lo_s), float(hi_s)
    except ValueError:
        raise ConfigError(f"keep={text!r}: expected a pass-rate band LO-HI such as 0.1-0.9") from None
    require(bool(sep) and 0 <= lo <= hi <= 1, f"keep={text!r}: need 0 <= LO <= HI <= 1, e.g. 0.1-0.9")
    return lo, hi


@dataclass
class FilterConfig:
    """Difficulty filter (ASTRO §3.4 trains RL on "moderately difficult" prompts): keep a pass-rate band."""

    prompts: str = ""
    model: str = ""
    out: str = ""  # kept prompts (rl.jsonl format + pass_rate); pass rates of all prompts go beside it
    n: int = 8
    keep: str = "0.1-0.9"  # inclusive pass-rate band
    backend: str = "hf"  # hf | openai (astro_reasoner.backends.make_backend)
    backend_options: dict[str, Any] = field(default_factory=dict)  # e.g. {"base_url": "http://..:8000/v1"}
    max_tokens: int = 2048
    temperature: float = 1.0  # the RL sampling temperature, so pass rates match what GRPO will see
    top_p: float = 1.0
    batch_size: int = 8  # prompts per backend call
    seed: int = 0
    limit: int | None = None  # only the first N prompts
    checker_workers: int | None = None
    checker_deadline: float = 10.0

    def __post_init__(self) -> None:
        # Validated on construction (TRL-style): an invalid config never exists, so a bad value fails where it
        # is written, not later in the stage. validate() stays public to re-check after a field is assigned.
        self.validate()

    def validate(self) -> None:
        require(bool(self.prompts), "prompts is not set: pass --prompts rl.jsonl")
        require(bool(self.model), "model is not set: pass --model CKPT")
        require(bool(self.out), "out is not set: pass --out kept.jsonl")
        require(self.n >= 1, f"n={self.n!r}: must be >= 1 (samples per prompt)")
        parse_band(self.keep)
        require(self.max_tokens >= 1, f"max_tokens={self.max_tokens!r}: must be >= 1")
        require(self.temperature >= 0, f"temperature={self.temperature!r}: must be >= 0")
        require(self.batch_size >= 1, f"batch_size={self.batch_size!r}: must be >= 1")
        require(self.limit is None or self.limit >= 1, f"limit={self.limit!r}: must be >= 1 (or null)")
        require(self.checker_deadline > 0, f"checker_deadline={self.checker_deadline!r}: must be > 0 seconds")
