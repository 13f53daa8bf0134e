"""The trainer's configuration: one typed dataclass, presets, a YAML file and ``--key value`` overrides.

Precedence (later wins): the dataclass defaults (the embedded CPU run) < the preset
(``--preset NAME``, see :mod:`ktae.train.presets`) < the YAML file (``--config FILE``)
< ``--key value`` on the command line. ``--resume RUN_DIR`` starts from the run's
saved ``config.yaml`` instead, and the command line may still override (e.g. ``--steps``).

>>> cfg = make_config("dapo", steps=10)          # from Python
>>> cfg = parse_args(["--preset", "dapo", "--steps", "10", "--lr", "1e-5"])
"""
from __future__ import annotations

import dataclasses
import math
import textwrap
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ktae.core.config import FISHER_AT_ONE, ROLLOUT_ESTIMATORS
from ktae.core.losses import KL_KINDS, LOSS_AGG_MODES

#: a rollout-level estimator of the core, alone or with key-token values
ESTIMATORS = tuple(e + suffix for e in ROLLOUT_ESTIMATORS for suffix in ("", "+ktae"))
REWARDS = ("math", "dapo")
LR_SCHEDULES = ("constant", "cosine")
DTYPES = ("auto", "float32", "bfloat16", "float16")
BACKENDS = ("hf", "vllm")
TASKS = ("arithmetic", "word")


def _f(default: Any, help: str, group: str, **extra: Any):
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"help": help, "group": group, **extra})
    return field(default=default, metadata={"help": help, "group": group, **extra})


@dataclass
class TrainConfig:
    """Every option of ``ktae train``; the defaults are the embedded CPU run (GRPO+KTAE)."""

    # ---------------------------------------------------------------- run
    preset: str = _f("default", "preset the other values started from (informational; set it with --preset)", "run")
    run_dir: str = _f("", "folder of this run (metrics, checkpoints); empty: <output_root>/<preset>-<estimator>-<time>",
                      "run")
    output_root: str = _f("runs", "parent folder of automatically named run folders", "run")
    seed: int = _f(0, "seed of sampling, prompt order and initialisation of everything random", "run")
    steps: int = _f(150, "RL steps (one step = generate, reward, advantages, PPO update)", "run")
    quiet: bool = _f(False, "print only the start/end summary, not one line per step", "run")

    # ---------------------------------------------------------------- model
    model: str = _f("embedded", "'embedded' (tiny model built locally), a Hugging Face model id, a local folder, "
                    "or a local .gguf file", "model")
    gguf_file: str = _f("", "GGUF file name inside the --model folder/repo (a .gguf path in --model sets it)", "model")
    tokenizer: str = _f("", "tokenizer id/path if it differs from the model's", "model")
    dtype: str = _f("auto", f"compute dtype, one of {DTYPES} (trained weights stay float32, bf16/fp16 run under "
                    "autocast); auto: bfloat16 on a GPU, float32 on a CPU", "model")
    device: str = _f("auto", "'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ...", "model")
    trust_remote_code: bool = _f(False, "allow custom model code from the Hub", "model")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass (saves memory)", "model")
    threads: int = _f(0, "torch CPU threads (0: 1 for the embedded tiny model, whose small matrices gain "
                                 "nothing from more; torch's default, one per core, otherwise)", "model")

    # ---------------------------------------------------------------- data
    data: str = _f("embedded", "'embedded' (procedural arithmetic), a Hub dataset id, a .jsonl/.json/.parquet file, "
                   "or a datasets.save_to_disk folder", "data")
    data_config: str = _f("", "Hub dataset configuration (subset) name", "data")
    split: str = _f("train", "split of --data to train on", "data")
    problem_field: str = _f("problem", "field holding the problem text", "data")
    answer_field: str = _f("answer", "field holding the reference answer (or the solution, see below)", "data")
    answer_from_solution: bool = _f(False, "the answer field is a worked solution: use its last \\boxed{} as answer",
                                    "data")
    filter_field: str = _f("", "keep only rows whose FIELD value is in --filter_values (e.g. level)", "data")
    filter_values: list = _f([], "accepted values of --filter_field, comma-separated (e.g. 'Level 3,Level 4')", "data")
    eval_data: str = _f("", "held-out set (same forms as --data); empty: the embedded task's held-out problems, "
                        "or none for other data", "data")
    eval_data_config: str = _f("", "Hub configuration of --eval_data", "data")
    eval_split: str = _f("test", "split of --eval_data", "data")
    eval_size: int = _f(200, "held-out problems evaluated (greedy) on schedule; 0 = all", "data")
    template: str = _f("auto", "prompt template: 'qwen_math', 'r1', 'chat', a string with {problem}, or 'auto' "
                       "('{problem}\\n' for the embedded task, qwen_math otherwise)", "data")
    max_prompt_tokens: int = _f(1024, "prompts longer than this are skipped", "data")

    # ---------------------------------------------------------------- embedded task and tiny model
    task: str = _f("arithmetic", "embedded task: 'arithmetic' (expressions, character tokens, fixed-shape solutions) "
                   "or 'word' (word problems, BPE tokens, solutions of varying length with labelled mistakes)",
                   "embedded")
    task_min_operands: int = _f(3, "embedded task: fewest operands per expression", "embedded")
    task_max_operands: int = _f(4, "embedded task: most operands per expression", "embedded")
    task_max_operand: int = _f(9, "embedded task: operands are 1..N", "embedded")
    tiny_hidden_size: int = _f(64, "tiny model: width", "embedded")
    tiny_layers: int = _f(4, "tiny model: transformer blocks", "embedded")
    tiny_heads: int = _f(4, "tiny model: attention heads", "embedded")
    tiny_intermediate_size: int = _f(192, "tiny model: MLP width", "embedded")
    tiny_max_positions: int = _f(128, "tiny model: longest prompt + response in tokens", "embedded")
    tiny_sft_steps: int = _f(800, "tiny model: supervised warm-start steps (cached after the first run)", "embedded")
    tiny_sft_batch_size: int = _f(64, "tiny model: sequences per warm-start step", "embedded")
    tiny_sft_lr: float = _f(3e-3, "tiny model: warm-start peak learning rate", "embedded")
    tiny_correct_fraction: float = _f(0.35, "tiny model: share of warm-start solutions with the right order of "
                                      "operations (the rest evaluate left to right)", "embedded")
    tiny_seed: int = _f(1234, "tiny model: seed of its initialisation and warm-start data", "embedded")
    cache_dir: str = _f("", "cache of built models (default: $KTAE_CACHE or ~/.cache/ktae)", "embedded")

    # ---------------------------------------------------------------- rollouts
    prompts_per_step: int = _f(16, "prompts (groups) per RL step", "rollout")
    rollouts_per_prompt: int = _f(8, "sampled responses per prompt (group size n)", "rollout")
    max_new_tokens: int = _f(64, "longest response in tokens", "rollout")
    temperature: float = _f(1.0, "sampling temperature of the rollouts (also divides the logits in the update)",
                            "rollout")
    top_p: float = _f(1.0, "nucleus sampling threshold of the rollouts", "rollout")
    generation_batch_size: int = _f(128, "sequences per generate() call", "rollout")
    backend: str = _f("hf", "generation backend: 'hf' (transformers) or 'vllm' (GPU, needs ktae[vllm])", "rollout")
    vllm_gpu_memory_utilization: float = _f(0.4, "vLLM: share of GPU memory for its engine", "rollout")

    # ---------------------------------------------------------------- algorithm
    estimator: str = _f("grpo+ktae", f"advantage estimator, one of {ESTIMATORS}", "algorithm")
    ktae_alpha: float = _f(1.0, "KTAE: weight of Fisher's exact test (0 = ablate)", "algorithm")
    ktae_beta: float = _f(1.0, "KTAE: weight of the information gain (0 = ablate)", "algorithm")
    ktae_gamma: float = _f(1.0, "KTAE: weight of the term-frequency direction (0 = ablate)", "algorithm")
    ktae_top: float = _f(1.0, "KTAE: bound of the key-token value", "algorithm")
    ktae_fisher_at_one: str = _f("exp", "KTAE: 'exp' (paper-effective) or 'zero' (F = 0 when p = 1)", "algorithm")
    ktae_threshold: float = _f(0.0, "KTAE: a rollout is correct when its reward is > this", "algorithm")
    reward: str = _f("math", "'math' (1 correct / 0 wrong) or 'dapo' (+1 / -1 plus overlong shaping)", "algorithm")
    overlong_buffer: int = _f(0, "DAPO overlong shaping: length of the soft-penalty zone before max_new_tokens "
                              "(0 = off)", "algorithm")
    overlong_penalty: float = _f(1.0, "DAPO overlong shaping: penalty factor", "algorithm")
    dynamic_sampling: bool = _f(False, "DAPO: drop groups whose rollouts all have the same accuracy and keep "
                                "generating until prompts_per_step groups are kept", "algorithm")
    generation_prompts: int = _f(0, "prompts per generation batch with dynamic sampling (0 = prompts_per_step)",
                                 "algorithm")
    max_generation_batches: int = _f(10, "dynamic sampling: most generation batches per step", "algorithm")
    grader_workers: int = _f(1, "processes grading answers (0 = in this process)", "algorithm")

    # ---------------------------------------------------------------- update
    ppo_epochs: int = _f(1, "passes over the step's rollouts", "update")
    mini_batch_prompts: int = _f(0, "prompts per PPO mini-batch (one optimizer step each); 0 = all", "update")
    micro_batch_size: int = _f(0, "rollouts per forward/backward (gradient accumulation); 0 = whole mini-batch",
                               "update")
    lr: float = _f(1e-4, "learning rate (AdamW)", "update")
    weight_decay: float = _f(0.0, "AdamW weight decay", "update")
    adam_beta1: float = _f(0.9, "AdamW beta1", "update")
    adam_beta2: float = _f(0.99, "AdamW beta2", "update")
    warmup_steps: int = _f(0, "linear learning-rate warm-up steps", "update")
    lr_schedule: str = _f("constant", f"after warm-up, one of {LR_SCHEDULES}", "update")
    grad_clip: float = _f(1.0, "clip the gradient norm to this (0 = no clipping)", "update")
    clip_low: float = _f(0.2, "PPO clip epsilon below 1 (ratio >= 1 - clip_low)", "update")
    clip_high: float = _f(0.2, "PPO clip epsilon above 1 (DAPO clip-higher: 0.28; KTAE paper: 0.24)", "update")
    dual_clip: float = _f(0.0, "dual-clip constant c > 1 for negative advantages (0 = off)", "update")
    loss_agg_mode: str = _f("token-mean", f"loss aggregation, one of {LOSS_AGG_MODES}", "update")
    kl_coef: float = _f(0.001, "coefficient of the KL-to-reference loss (0 = no reference model)", "update")
    kl_kind: str = _f("low_var_kl", f"KL estimator, one of {KL_KINDS}", "update")
    entropy_coef: float = _f(0.0, "entropy bonus coefficient", "update")
    top_entropy_quantile: float = _f(1.0, "share of the highest-entropy tokens of each forward batch that the policy "
                                     "loss keeps (1 = all; 0.2 = the top 20%, Wang et al. 2025 / TRL's "
                                     "top_entropy_quantile)", "update")

    # ---------------------------------------------------------------- schedule and logging
    eval_every: int = _f(10, "evaluate on the held-out set every N steps (and at step 0 and the end; 0 = never)",
                         "schedule")
    eval_max_new_tokens: int = _f(0, "longest response when evaluating (0 = max_new_tokens)", "schedule")
    eval_batch_size: int = _f(200, "sequences per generate() call when evaluating", "schedule")
    save_every: int = _f(20, "checkpoint every N steps (and at the end and on Ctrl-C; 0 = only then)", "schedule")
    keep_checkpoints: int = _f(1, "checkpoints kept in the run folder (oldest removed first)", "schedule")
    save_model: bool = _f(True, "also write the final policy as a Hugging Face folder <run_dir>/final", "schedule")
    tensorboard: bool = _f(False, "also log to tensorboard (<run_dir>/tensorboard; needs ktae[tensorboard])",
                           "schedule")
    wandb: bool = _f(False, "also log to Weights & Biases (needs ktae[wandb])", "schedule")
    wandb_project: str = _f("ktae", "W&B project", "schedule")
    dump_key_tokens_every: int = _f(0, "every N steps write the step's rollouts to key_tokens/step_XXXX.jsonl "
                                    "(and an HTML key-token report; 0 = never)", "schedule")

    # ------------------------------------------------------------------ helpers
    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad option; returns self."""
        def need(cond: bool, name: str, expected: str) -> None:
            if not cond:
                raise ValueError(f"--{name}: expected {expected}, got {getattr(self, name)!r}")

        need(self.estimator in ESTIMATORS, "estimator", f"one of {ESTIMATORS}")
        need(self.reward in REWARDS, "reward", f"one of {REWARDS}")
        need(self.loss_agg_mode in LOSS_AGG_MODES, "loss_agg_mode", f"one of {LOSS_AGG_MODES}")
        need(self.kl_kind in KL_KINDS, "kl_kind", f"one of {KL_KINDS}")
        need(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {LR_SCHEDULES}")
        need(self.dtype in DTYPES, "dtype", f"one of {DTYPES}")
        need(self.backend in BACKENDS, "backend", f"one of {BACKENDS}")
        need(self.task in TASKS, "task", f"one of {TASKS}")
        need(self.ktae_fisher_at_one in FISHER_AT_ONE, "ktae_fisher_at_one", f"one of {FISHER_AT_ONE}")
        for name in ("steps", "prompts_per_step", "rollouts_per_prompt", "max_new_tokens", "ppo_epochs",
                     "generation_batch_size", "max_generation_batches", "eval_batch_size", "max_prompt_tokens",
                     "keep_checkpoints"):
            need(getattr(self, name) >= 1, name, "an integer >= 1")
        for name in ("eval_every", "save_every", "eval_size", "mini_batch_prompts", "micro_batch_size", "warmup_steps",
                     "overlong_buffer", "generation_prompts", "eval_max_new_tokens", "dump_key_tokens_every",
                     "grader_workers", "threads"):
            need(getattr(self, name) >= 0, name, "an integer >= 0")
        need(self.overlong_buffer <= self.max_new_tokens, "overlong_buffer", "at most max_new_tokens")
        need(self.rollouts_per_prompt >= 2 or not self.estimator.startswith("rloo"), "rollouts_per_prompt",
             ">= 2 for RLOO")
        need(self.lr >= 0, "lr", "a number >= 0")
        need(self.temperature > 0, "temperature", "a number > 0 (RL needs sampling)")
        need(0 < self.top_p <= 1, "top_p", "a number in (0, 1]")
        need(0 <= self.clip_low < 1, "clip_low", "a number in [0, 1)")
        need(self.clip_high >= 0, "clip_high", "a number >= 0")
        need(self.dual_clip == 0 or self.dual_clip > 1, "dual_clip", "0 (off) or a number > 1")
        need(self.kl_coef >= 0, "kl_coef", "a number >= 0")
        need(0 < self.top_entropy_quantile <= 1, "top_entropy_quantile", "a number in (0, 1]")
        need(self.grad_clip >= 0, "grad_clip", "a number >= 0")
        need(0 <= self.tiny_correct_fraction <= 1, "tiny_correct_fraction", "a number in [0, 1]")
        need(bool(self.model), "model", "'embedded', a model id, a folder or a .gguf file")
        need(bool(self.data), "data", "'embedded', a dataset id, a file or a folder")
        need(self.model != "embedded" or self.data == "embedded", "data",
             "'embedded' when --model is 'embedded' (the tiny model only knows the embedded task's symbols)")
        need(not self.filter_field or bool(self.filter_values), "filter_values", "at least one value with --filter_field")
        for name in ("lr", "clip_low", "clip_high", "kl_coef", "entropy_coef", "temperature", "grad_clip",
                     "weight_decay", "overlong_penalty"):
            need(math.isfinite(getattr(self, name)), name, "a finite number")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @property
    def uses_ktae(self) -> bool:
        return self.estimator.endswith("+ktae")

    @property
    def rollout_estimator(self) -> str:
        return self.estimator.split("+")[0]

    def ktae_config(self, ignore_token_ids: tuple[int, ...] = ()):
        """The core's :class:`~ktae.KTAEConfig` of this run (``ktae_*`` options, the rollout estimator)."""
        from ktae.core.config import KTAEConfig

        return KTAEConfig(alpha=self.ktae_alpha, beta=self.ktae_beta, gamma=self.ktae_gamma, top=self.ktae_top,
                          threshold=self.ktae_threshold, fisher_at_one=self.ktae_fisher_at_one,
                          rollout=self.rollout_estimator, ignore_token_ids=tuple(ignore_token_ids))


# ---------------------------------------------------------------------------- parsing
def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in fields(TrainConfig)}


def _coerce(name: str, value: Any, kind: type) -> Any:
    """Turn a YAML value or a command-line string into the option's type (ValueError naming the option)."""
    try:
        if kind is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind is int:
            if isinstance(value, bool):
                raise ValueError
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                return int(value)
            return int(str(value).strip().replace("_", ""))
        if kind is float:
            if isinstance(value, bool):
                raise ValueError
            return float(value)
        if kind is list or typing.get_origin(kind) is list:
            if value is None:
                return []
            if isinstance(value, (list, tuple)):
                return [str(v) for v in value]
            text = str(value).strip()
            return [part.strip() for part in text.split(",") if part.strip()] if text else []
        if kind is str:
            if value is None:
                return ""
            if isinstance(value, (dict, list)):
                raise ValueError
            return str(value)
    except (TypeError, ValueError):
        pass
    type_name = "list (comma-separated)" if kind is list else kind.__name__
    raise ValueError(f"--{name}: expected {type_name}, got {value!r}")


def _apply(cfg: TrainConfig, values: dict, source: str) -> TrainConfig:
    types_ = _field_types()
    updates = {}
    for key, value in values.items():
        name = str(key).replace("-", "_")
        if name not in types_:
            close = [n for n in types_ if name in n or n in name][:3]
            hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
            raise ValueError(f"{source}: unknown option {key!r}{hint}; see 'ktae train --help'")
        updates[name] = _coerce(name, value, types_[name])
    return dataclasses.replace(cfg, **updates)


def load_yaml(path: str | Path) -> dict:
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"--config: no such file {str(path)!r}")
    data = yaml.safe_load(path.read_text()) or {}
    if not isinstance(data, dict):
        raise ValueError(f"--config: {path} must hold a mapping of option: value, got {type(data).__name__}")
    return data


def save_yaml(cfg: TrainConfig, path: str | Path) -> None:
    import yaml

    Path(path).write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False, allow_unicode=True))


def make_config(preset: str | None = None, config_file: str | Path | None = None, /, **overrides: Any) -> TrainConfig:
    """Defaults < preset < YAML file < keyword overrides, validated.

    ``make_config("dapo-ktae", seed=2, steps=40)`` is what ``ktae train --preset dapo-ktae
    --seed 2 --steps 40`` runs.
    """
    from ktae.train.presets import get_preset

    file_values = load_yaml(config_file) if config_file else {}
    preset = preset or file_values.pop("preset", None) or overrides.pop("preset", None) or "default"
    file_values.pop("preset", None)
    overrides.pop("preset", None)
    cfg = TrainConfig()
    cfg = _apply(cfg, get_preset(preset), f"preset {preset!r}")
    cfg = dataclasses.replace(cfg, preset=preset)
    cfg = _apply(cfg, file_values, f"--config {config_file}")
    cfg = _apply(cfg, overrides, "arguments")
    return cfg.validate()


def split_argv(argv: list[str]) -> dict[str, Any]:
    """``--key value``, ``--key=value`` and bare boolean ``--flag`` -> {key: value} (in order)."""
    types_ = _field_types()
    out: dict[str, Any] = {}
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("--") or arg == "--":
            raise ValueError(f"unexpected argument {arg!r}: options are written --key value (see 'ktae train --help')")
        key, eq, value = arg[2:].partition("=")
        key = key.replace("-", "_")
        if eq:
            out[key] = value
            i += 1
            continue
        is_bool = types_.get(key) is bool
        nxt = argv[i + 1] if i + 1 < len(argv) else None
        if is_bool and (nxt is None or nxt.startswith("--") or nxt.lower() not in
                        ("1", "0", "true", "false", "yes", "no", "on", "off")):
            out[key] = True
            i += 1
            continue
        if nxt is None:
            raise ValueError(f"--{key}: expected a value after it")
        out[key] = nxt
        i += 2
    return out


def parse_args(argv: list[str]) -> TrainConfig:
    """The configuration for ``ktae train ARGS`` (``--resume`` is handled by the CLI; see :func:`resume_config`)."""
    values = split_argv(list(argv))
    values.pop("resume", None)
    preset = values.pop("preset", None)
    config_file = values.pop("config", None)
    return make_config(preset, config_file, **values)


def resume_config(run_dir: str | Path, overrides: dict | None = None) -> TrainConfig:
    """The saved configuration of ``run_dir`` with ``overrides`` (option: value) applied."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ValueError(f"--resume: {str(run_dir)!r} is not a run folder (no config.yaml in it)")
    values = dict(overrides or {})
    values.pop("resume", None)
    if "preset" in values or "config" in values:
        raise ValueError("--resume continues a run with its saved configuration; --preset/--config cannot be combined")
    cfg = TrainConfig()
    cfg = _apply(cfg, load_yaml(path), f"{path}")
    cfg = _apply(cfg, values, "arguments")
    cfg = dataclasses.replace(cfg, run_dir=str(Path(run_dir)))
    return cfg.validate()


# ---------------------------------------------------------------------------- help
GROUP_TITLES = {
    "run": "Run",
    "model": "Model",
    "data": "Data",
    "embedded": "Embedded task and tiny model (used when --model embedded)",
    "rollout": "Rollouts",
    "algorithm": "Algorithm (advantages and rewards)",
    "update": "Update (PPO)",
    "schedule": "Schedule and logging",
}


def help_text() -> str:
    """The text of ``ktae train --help``: usage, presets, then every option with its default."""
    from ktae.train.presets import PRESET_HELP, preset_names

    defaults = TrainConfig()
    types_ = _field_types()
    lines = [
        "usage: ktae train [--preset NAME] [--config FILE.yaml] [--key value ...]",
        "       ktae train --resume RUN_DIR [--key value ...]",
        "",
        "Reinforcement learning of a language model on verifiable math answers with GRPO or DAPO, with or",
        "without Key-token Advantage Estimation. Without arguments: a tiny model on the embedded arithmetic",
        "task, on a CPU, in a few minutes. Values: defaults < --preset < --config YAML < --key value.",
        "",
        "  --preset NAME        start from a preset (below)",
        "  --config FILE        YAML file of option: value pairs",
        "  --resume RUN_DIR     continue a run from its last checkpoint (same metrics as an uninterrupted run)",
        "  -h, --help           show this text",
        "",
        "presets:",
    ]
    width = max(len(name) for name in preset_names())
    for name in preset_names():
        lines.append(f"  {name:<{width}}  {PRESET_HELP.get(name, '')}")
    groups: dict[str, list] = {}
    for f in fields(TrainConfig):
        groups.setdefault(f.metadata.get("group", "other"), []).append(f)
    wrap = textwrap.TextWrapper(width=110, initial_indent=" " * 6, subsequent_indent=" " * 6)
    for group, group_fields in groups.items():
        lines += ["", GROUP_TITLES.get(group, group) + ":"]
        for f in group_fields:
            kind = types_[f.name]
            kind_name = "list" if (kind is list or typing.get_origin(kind) is list) else kind.__name__
            default = getattr(defaults, f.name)
            shown = ",".join(default) if isinstance(default, list) else default
            lines.append(f"  --{f.name} {kind_name.upper()}  (default: {shown!r})")
            lines += wrap.wrap(f.metadata.get("help", ""))
    return "\n".join(lines)


__all__ = [
    "TrainConfig",
    "make_config",
    "parse_args",
    "resume_config",
    "help_text",
    "load_yaml",
    "split_argv",
    "save_yaml",
    "ESTIMATORS",
]
