"""The trainer's configuration: typed sections, presets, YAML files and command-line options.

:class:`TrainConfig` holds the run-level values (seed, steps, folders) and one section
per concern: ``model``, ``data``, ``task`` and ``tiny`` (the embedded task and its tiny
model, :class:`~ktae.recipes.tiny_model.TinyModelConfig` itself), ``rollout``,
``algorithm``, ``ktae`` (the core's :class:`~ktae.KTAEConfig` itself), ``ppo``, ``eval``
and ``log``. Each section checks its own values when it is made; :class:`TrainConfig`
checks the few rules that span sections.

The sections are the only schema: an option is a field of a section, named by its path
(``ktae.alpha``, ``ppo.lr``; ``steps`` for the run-level fields), and the command line
(``--ktae.alpha 0``), YAML files (nested sections) and Python (``make_config(ktae={"alpha": 0})``
or ``make_config(**{"ktae.alpha": 0})``) all map onto it. The flat names of earlier versions
(``--ktae_alpha``, ``lr:``, ``make_config(ktae_alpha=0)``) are aliases, all in one table,
:data:`FLAT_ALIASES`, applied where values come in. The command line is read by a
``transformers.HfArgumentParser`` built from the sections' fields (:mod:`ktae.options`); values
from YAML, Python and presets are converted to the field's type the way it reads their text
(:func:`typed`), so a YAML ``lr: 1e-4`` (a string to YAML) is the float it is on the command line.

Precedence (later wins): the defaults (the embedded CPU run) < the preset
(``--preset NAME``, see :mod:`ktae.train.presets`) < the YAML file (``--config FILE``)
< the options. ``--resume RUN_DIR`` starts from the run's saved ``config.yaml`` instead,
and options may still override it (e.g. ``--steps``).

>>> cfg = make_config("dapo", steps=10)
>>> cfg = parse_args(["--preset", "dapo", "--steps", "10", "--ppo.lr", "1e-5"])
>>> cfg.ppo.lr, cfg.ktae.alpha
(1e-05, 1.0)
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import functools
import math
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Mapping

from ktae.core.config import KTAEConfig
from ktae.core.losses import KL_KINDS, LOSS_AGG_MODES
from ktae.frontend.options import ESTIMATOR_NAMES, TOKEN_CREDITS, parse_estimator, token_credit
from ktae.decoding import DRAWS
from ktae.generation import BACKENDS
from ktae.loading import DTYPES
from ktae.options import add_field, make_parser, option, parse
from ktae.recipes.tiny_model import TinyModelConfig

#: a rollout-level estimator of the core, alone or with token credit (``grpo+ktae``; verl's ``grpo_ktae`` and
#: ``ktae``, GRPO with key-token values, are accepted too): key-token values (KTAE), the label-free specificity gate
#: (ktae.core.credit), the oracles that read the labelled wrong steps (the study's positive control), and the
#: label-free rules of ktae.core.label_free (``grpo+prefix``, ``grpo+line-ktae-blame``, ...)
ESTIMATORS = ESTIMATOR_NAMES
#: the oracles need a task that labels its wrong steps: the embedded word problems
ORACLE_CREDITS = ("oracle", "oracle-blame")
REWARDS = ("math", "dapo")
LR_SCHEDULES = ("constant", "cosine")
TASKS = ("arithmetic", "word")

#: fields of the core's KTAEConfig that the trainer sets itself (from --estimator and the tokenizer): not options
KTAE_SET_BY_TRAINER = ("rollout", "ignore_token_ids")


def _aliases(section: str, names: str, prefix: str = "") -> dict[str, str]:
    """``{prefix + name: "section.name"}`` for each of the space-separated ``names``."""
    return {prefix + name: f"{section}.{name}" for name in names.split()}


#: The flat names that the options had before the sections (``--lr`` for ``--ppo.lr``), kept as aliases: flat name
#: -> the option's path in :class:`TrainConfig`. The only alias table: it is read where values come in (command
#: line, YAML keys, keyword arguments) and where messages name an option; an option added later has its path only.
FLAT_ALIASES: dict[str, str] = {
    "model": "model.path", "data": "data.path", "data_config": "data.subset", "task": "task.name",
    "tiny_layers": "tiny.num_layers", "tiny_heads": "tiny.num_heads", "ppo_epochs": "ppo.epochs",
    "eval_data": "eval.path", "eval_data_config": "eval.subset",
    **_aliases("model", "gguf_file tokenizer dtype device trust_remote_code gradient_checkpointing threads cache_dir"),
    **_aliases("data", "split problem_field answer_field answer_from_solution filter_field filter_values template "
                       "max_prompt_tokens"),
    **_aliases("task", "min_operands max_operands max_operand max_count max_change", "task_"),
    **_aliases("tiny", "hidden_size intermediate_size max_positions sft_steps sft_batch_size sft_lr correct_fraction "
                       "seed", "tiny_"),
    **_aliases("rollout", "prompts_per_step rollouts_per_prompt max_new_tokens temperature top_p draw "
                          "generation_batch_size backend vllm_gpu_memory_utilization vllm_enforce_eager "
                          "dynamic_sampling generation_prompts max_generation_batches"),
    **_aliases("algorithm", "estimator ngram reward overlong_buffer overlong_penalty grader_workers"),
    **_aliases("ktae", "alpha beta gamma top threshold fisher_at_one eps", "ktae_"),
    **_aliases("ppo", "mini_batch_prompts micro_batch_size micro_batch_tokens lr weight_decay adam_beta1 adam_beta2 warmup_steps "
                      "lr_schedule grad_clip clip_low clip_high dual_clip loss_agg_mode kl_coef kl_kind entropy_coef "
                      "top_entropy_quantile"),
    **_aliases("eval", "split size every max_new_tokens batch_size", "eval_"),
    **_aliases("log", "quiet save_every keep_checkpoints save_model tensorboard wandb wandb_project "
                      "dump_key_tokens_every"),
}


def option_name(path: str) -> str:
    """How messages name the option at ``path``: its flat alias if it has one (``--lr``), else ``--<path>``."""
    return "--" + next((flat for flat, target in FLAT_ALIASES.items() if target == path), path)


class _Section:
    """Shared check of the sections: ``need(cond, name, expected)`` raises naming the option."""

    section: ClassVar[str] = ""

    def need(self, cond: bool, name: str, expected: str) -> None:
        if not cond:
            path = f"{self.section}.{name}" if self.section else name
            raise ValueError(f"{option_name(path)}: expected {expected}, got {getattr(self, name)!r}")

    def need_all(self, names: tuple[str, ...], check, expected: str) -> None:
        for name in names:
            self.need(check(getattr(self, name)), name, expected)


def _at_least(low: float):
    return lambda value: value >= low


def _finite(value: float) -> bool:
    return math.isfinite(value)


# ============================================================================ sections
@dataclass(frozen=True)
class ModelConfig(_Section):
    """The policy: where it comes from and how it runs."""

    section: ClassVar[str] = "model"
    path: str = option("embedded", "'embedded' (tiny model built locally), a Hugging Face model id, a local folder, "
                       "or a local .gguf file")
    gguf_file: str = option("", "GGUF file name inside the --model folder/repo (a .gguf path in --model sets it)")
    tokenizer: str = option("", "tokenizer id/path if it differs from the model's")
    dtype: str = option("auto", f"compute dtype, one of {DTYPES} (trained weights stay float32, bf16/fp16 run under "
                        "autocast; float64 trains in float64, for tests: short runs then agree across CPUs' SIMD "
                        "kernels); auto: bfloat16 on a GPU, float32 on a CPU")
    device: str = option("auto", "'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ...")
    trust_remote_code: bool = option(False, "allow custom model code from the Hub")
    gradient_checkpointing: bool = option(False, "recompute activations in the backward pass (saves memory)")
    threads: int = option(0, "torch CPU threads (0: 1 for the embedded tiny model, whose small matrices gain nothing "
                          "from more; torch's default, one per core, otherwise)")
    cache_dir: str = option("", "cache of built models (empty: $KTAE_CACHE or ~/.cache/ktae)")

    def __post_init__(self) -> None:
        self.need(bool(self.path), "path", "'embedded', a model id, a folder or a .gguf file")
        self.need(self.dtype in DTYPES, "dtype", f"one of {DTYPES}")
        self.need(self.threads >= 0, "threads", "an integer >= 0")


@dataclass(frozen=True)
class DataConfig(_Section):
    """The training problems and how they become prompts."""

    section: ClassVar[str] = "data"
    path: str = option("embedded", "'embedded' (the embedded task), a Hub dataset id, a .jsonl/.json/.parquet file, "
                       "or a datasets.save_to_disk folder")
    subset: str = option("", "Hub dataset configuration (subset) name")
    split: str = option("train", "split of --data to train on")
    problem_field: str = option("problem", "field holding the problem text")
    answer_field: str = option("answer", "field holding the reference answer (or the solution, see below)")
    answer_from_solution: bool = option(False, "the answer field is a worked solution: use its last \\boxed{} as "
                                        "answer")
    filter_field: str = option("", "keep only rows whose FIELD value is in --filter_values (e.g. level)")
    filter_values: list[str] = option([], "accepted values of --filter_field, comma-separated (e.g. 'Level 3,Level 4')")
    template: str = option("auto", "prompt template: 'qwen_math', 'r1', 'chat', a string with {problem}, or 'auto' "
                           "('{problem}\\n' for the embedded task, qwen_math otherwise)")
    max_prompt_tokens: int = option(1024, "prompts longer than this are skipped")

    def __post_init__(self) -> None:
        values = [self.filter_values] if isinstance(self.filter_values, str) else self.filter_values or []
        object.__setattr__(self, "filter_values",  # comma-separated, as on the command line
                           [v.strip() for item in values for v in str(item).split(",") if v.strip()])
        self.need(bool(self.path), "path", "'embedded', a dataset id, a file or a folder")
        self.need(not self.filter_field or bool(self.filter_values), "filter_values",
                  "at least one value with --filter_field")
        self.need(self.max_prompt_tokens >= 1, "max_prompt_tokens", "an integer >= 1")


@dataclass(frozen=True)
class TaskConfig(_Section):
    """The embedded task (used with ``--data embedded``)."""

    section: ClassVar[str] = "task"
    name: str = option("arithmetic", "embedded task: 'arithmetic' (expressions, character tokens, fixed-shape "
                       "solutions) or 'word' (word problems, BPE tokens, solutions of varying length with labelled "
                       "mistakes)")
    min_operands: int = option(3, "embedded arithmetic: fewest operands per expression")
    max_operands: int = option(4, "embedded arithmetic: most operands per expression")
    max_operand: int = option(9, "embedded arithmetic: operands are 1..N")
    max_count: int = option(200, "embedded word problems: every count of a story stays in 0..N")
    max_change: int = option(19, "embedded word problems: items bought, found or given away in one event are 2..N "
                             "(a plain start count 5..2N+2)")

    def __post_init__(self) -> None:
        self.need(self.name in TASKS, "name", f"one of {TASKS}")
        self.need(self.max_change >= 2, "max_change", "an integer >= 2")
        self.need(self.max_count >= 2 * self.max_change + 2, "max_count", "an integer >= 2 * max_change + 2")


@dataclass(frozen=True)
class RolloutConfig(_Section):
    """Sampling the responses of a step (dynamic sampling included)."""

    section: ClassVar[str] = "rollout"
    prompts_per_step: int = option(16, "prompts (groups) per RL step")
    rollouts_per_prompt: int = option(8, "sampled responses per prompt (group size n)")
    max_new_tokens: int = option(64, "longest response in tokens")
    temperature: float = option(1.0, "sampling temperature of the rollouts (also divides the logits in the update)")
    top_p: float = option(1.0, "nucleus sampling threshold of the rollouts")
    draw: str = option("inverse", "how a rollout's token is drawn (hf backend): 'inverse' (one uniform number per row) "
                       "or 'race' (one exponential number per vocabulary entry, as torch.multinomial: runs on one "
                       "seed whose policies differ a little share more tokens)")
    generation_batch_size: int = option(128, "sequences per generate() call")
    backend: str = option("hf", "generation backend: 'hf' (transformers) or 'vllm' (needs vLLM: docs/vllm.md)")
    vllm_gpu_memory_utilization: float = option(0.4, "vLLM: share of GPU memory for its engine")
    vllm_enforce_eager: bool = option(False, "vLLM: run the model eagerly, no torch.compile or CUDA graphs (no "
                                      "compile warm-up: starts faster, generates somewhat slower)")
    dynamic_sampling: bool = option(False, "DAPO: drop groups whose rollouts all have the same accuracy and keep "
                                    "generating until prompts_per_step groups are kept")
    generation_prompts: int = option(0, "prompts per generation batch with dynamic sampling (0 = prompts_per_step)")
    max_generation_batches: int = option(10, "dynamic sampling: most generation batches per step")

    def __post_init__(self) -> None:
        self.need_all(("prompts_per_step", "rollouts_per_prompt", "max_new_tokens", "generation_batch_size",
                       "max_generation_batches"), _at_least(1), "an integer >= 1")
        self.need(self.generation_prompts >= 0, "generation_prompts", "an integer >= 0")
        self.need(self.backend in BACKENDS, "backend", f"one of {BACKENDS}")
        self.need(self.draw in DRAWS and (self.backend == "hf" or self.draw == "inverse"), "draw",
                  f"one of {DRAWS} ('inverse' with backend vllm, which draws its own way)")
        self.need(self.temperature > 0, "temperature", "a number > 0 (RL needs sampling)")
        self.need(math.isfinite(self.temperature), "temperature", "a finite number")
        self.need(0 < self.top_p <= 1, "top_p", "a number in (0, 1]")


@dataclass(frozen=True)
class AlgorithmConfig(_Section):
    """Advantage estimator and rewards."""

    section: ClassVar[str] = "algorithm"
    estimator: str = option("grpo+ktae", "grpo, dr_grpo or rloo, alone or with token credit: +ktae (also grpo_ktae, "
                            "ktae), study 3's +ktae-gate, +oracle, +oracle-blame (instruments, not methods), or a label-free rule: "
                            "+prefix, +line, +first-novel, +tree, +line-ktae, +ngram-ktae (and their -blame forms)")
    ngram: int = option(3, "n of the token n-grams whose presence +ngram-ktae and +ngram-ktae-blame count in place "
                        "of single tokens")
    reward: str = option("math", "'math' (1 correct / 0 wrong) or 'dapo' (+1 / -1 plus overlong shaping)")
    overlong_buffer: int = option(0, "DAPO overlong shaping: length of the soft-penalty zone before max_new_tokens "
                                  "(0 = off)")
    overlong_penalty: float = option(1.0, "DAPO overlong shaping: penalty factor")
    grader_workers: int = option(1, "processes grading answers (0 = in this process)")

    def __post_init__(self) -> None:
        self.need(self.estimator in ESTIMATORS, "estimator", f"one of {ESTIMATORS}")
        self.need(self.reward in REWARDS, "reward", f"one of {REWARDS}")
        self.need_all(("overlong_buffer", "grader_workers"), _at_least(0), "an integer >= 0")
        self.need(math.isfinite(self.overlong_penalty), "overlong_penalty", "a finite number")
        self.need(self.ngram >= 1, "ngram", "an integer >= 1")


@dataclass(frozen=True)
class PPOConfig(_Section):
    """The policy update: optimiser, PPO clipping, loss."""

    section: ClassVar[str] = "ppo"
    epochs: int = option(1, "passes over the step's rollouts")
    mini_batch_prompts: int = option(0, "prompts per PPO mini-batch (one optimizer step each); 0 = all")
    micro_batch_size: int = option(0, "rollouts per forward/backward at most (gradient accumulation); 0 = no limit")
    micro_batch_tokens: int = option(2048, "padded tokens (prompt + response) per forward/backward at most, rollouts "
                                     "of similar length together; 0 = no limit")
    lr: float = option(1e-4, "learning rate (AdamW)")
    weight_decay: float = option(0.0, "AdamW weight decay")
    adam_beta1: float = option(0.9, "AdamW beta1")
    adam_beta2: float = option(0.99, "AdamW beta2")
    warmup_steps: int = option(0, "linear learning-rate warm-up steps")
    lr_schedule: str = option("constant", f"after warm-up, one of {LR_SCHEDULES}")
    grad_clip: float = option(1.0, "clip the gradient norm to this (0 = no clipping)")
    clip_low: float = option(0.2, "PPO clip epsilon below 1 (ratio >= 1 - clip_low)")
    clip_high: float = option(0.2, "PPO clip epsilon above 1 (DAPO clip-higher: 0.28; KTAE paper: 0.24)")
    dual_clip: float = option(0.0, "dual-clip constant c > 1 for negative advantages (0 = off)")
    loss_agg_mode: str = option("token-mean", f"loss aggregation, one of {LOSS_AGG_MODES}")
    kl_coef: float = option(0.001, "coefficient of the KL-to-reference loss (0 = no reference model)")
    kl_kind: str = option("low_var_kl", f"KL estimator, one of {KL_KINDS}")
    entropy_coef: float = option(0.0, "entropy bonus coefficient")
    top_entropy_quantile: float = option(1.0, "share of the highest-entropy tokens of each forward batch that the "
                                         "policy loss keeps (1 = all; 0.2 = the top 20%, Wang et al. 2025 / TRL's "
                                         "top_entropy_quantile)")

    def __post_init__(self) -> None:
        self.need(self.epochs >= 1, "epochs", "an integer >= 1")
        self.need_all(("mini_batch_prompts", "micro_batch_size", "micro_batch_tokens", "warmup_steps"), _at_least(0),
                      "an integer >= 0")
        self.need_all(("lr", "clip_low", "clip_high", "kl_coef", "entropy_coef", "grad_clip", "weight_decay"),
                      _finite, "a finite number")
        self.need_all(("lr", "clip_high", "kl_coef", "grad_clip"), _at_least(0), "a number >= 0")
        self.need(self.lr_schedule in LR_SCHEDULES, "lr_schedule", f"one of {LR_SCHEDULES}")
        self.need(self.loss_agg_mode in LOSS_AGG_MODES, "loss_agg_mode", f"one of {LOSS_AGG_MODES}")
        self.need(self.kl_kind in KL_KINDS, "kl_kind", f"one of {KL_KINDS}")
        self.need(0 <= self.clip_low < 1, "clip_low", "a number in [0, 1)")
        self.need(self.dual_clip == 0 or self.dual_clip > 1, "dual_clip", "0 (off) or a number > 1")
        self.need(0 < self.top_entropy_quantile <= 1, "top_entropy_quantile", "a number in (0, 1]")


@dataclass(frozen=True)
class EvaluationConfig(_Section):
    """The held-out evaluation (greedy) on schedule."""

    section: ClassVar[str] = "eval"
    path: str = option("", "held-out set (same forms as --data); empty: the embedded task's held-out problems, or none "
                       "for other data")
    subset: str = option("", "Hub configuration of --eval_data")
    split: str = option("test", "split of --eval_data")
    size: int = option(200, "held-out problems evaluated (greedy) on schedule; 0 = all")
    every: int = option(10, "evaluate every N steps (and at step 0 and the end; 0 = never)")
    max_new_tokens: int = option(0, "longest response when evaluating (0 = max_new_tokens)")
    batch_size: int = option(200, "sequences per generate() call when evaluating")

    def __post_init__(self) -> None:
        self.need_all(("size", "every", "max_new_tokens"), _at_least(0), "an integer >= 0")
        self.need(self.batch_size >= 1, "batch_size", "an integer >= 1")


@dataclass(frozen=True)
class LogConfig(_Section):
    """What the run writes: console lines, checkpoints, loggers, key-token dumps."""

    section: ClassVar[str] = "log"
    quiet: bool = option(False, "print only the start/end summary, not one line per step")
    save_every: int = option(20, "checkpoint every N steps (and at the end and on Ctrl-C; 0 = only then)")
    keep_checkpoints: int = option(1, "checkpoints kept in the run folder (oldest removed first)")
    save_model: bool = option(True, "also write the final policy as a Hugging Face folder <run_dir>/final")
    tensorboard: bool = option(False, "also log to tensorboard (<run_dir>/tensorboard; needs ktae[tensorboard])")
    wandb: bool = option(False, "also log to Weights & Biases (needs ktae[wandb])")
    wandb_project: str = option("ktae", "W&B project")
    dump_key_tokens_every: int = option(0, "every N steps, and at step 1 (the starting policy's rollouts), write the "
                                        "step's rollouts to key_tokens/step_XXXXXX.jsonl (and an HTML key-token "
                                        "report; 0 = never)")

    def __post_init__(self) -> None:
        self.need_all(("save_every", "dump_key_tokens_every"), _at_least(0), "an integer >= 0")
        self.need(self.keep_checkpoints >= 1, "keep_checkpoints", "an integer >= 1")


def _section(kind: type, help: str) -> Any:
    return field(default_factory=kind, metadata={"help": help})


@dataclass(frozen=True)
class TrainConfig(_Section):
    """Every option of ``ktae train``; the defaults are the embedded CPU run (GRPO+KTAE)."""

    preset: str = option("default", "preset the other values started from (informational; set it with --preset)")
    run_dir: str = option("", "folder of this run (metrics, checkpoints); empty: <output_root>/<preset>-<estimator>-"
                          "<time>")
    output_root: str = option("runs", "parent folder of automatically named run folders")
    seed: int = option(0, "seed of sampling, prompt order and initialisation of everything random")
    steps: int = option(150, "RL steps (one step = generate, reward, advantages, PPO update)")
    model: ModelConfig = _section(ModelConfig, "Model")
    data: DataConfig = _section(DataConfig, "Data")
    task: TaskConfig = _section(TaskConfig, "Embedded task (used with --data embedded)")
    tiny: TinyModelConfig = _section(TinyModelConfig, "Tiny model (used with --model embedded; cached once built)")
    rollout: RolloutConfig = _section(RolloutConfig, "Rollouts")
    algorithm: AlgorithmConfig = _section(AlgorithmConfig, "Algorithm (advantages and rewards)")
    ktae: KTAEConfig = _section(KTAEConfig, "KTAE (the core's KTAEConfig; used when --estimator has token credit: "
                                "+ktae, +ktae-gate, +oracle, +oracle-blame, the label-free rules)")
    ppo: PPOConfig = _section(PPOConfig, "Update (PPO)")
    eval: EvaluationConfig = _section(EvaluationConfig, "Held-out evaluation")
    log: LogConfig = _section(LogConfig, "Logging and checkpoints")

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> "TrainConfig":
        """Check the rules that span sections (each section checked its own values); returns self."""
        self.need(self.steps >= 1, "steps", "an integer >= 1")
        if self.algorithm.overlong_buffer > self.rollout.max_new_tokens:
            raise ValueError(f"--overlong_buffer: expected at most max_new_tokens ({self.rollout.max_new_tokens}), "
                             f"got {self.algorithm.overlong_buffer!r}")
        if self.algorithm.estimator.startswith("rloo") and self.rollout.rollouts_per_prompt < 2:
            raise ValueError(f"--rollouts_per_prompt: expected >= 2 for RLOO, got {self.rollout.rollouts_per_prompt}")
        if self.rollout.backend == "vllm" and self.model.dtype == "float64":
            raise ValueError("--dtype: expected auto, float32, bfloat16 or float16 with --backend vllm (vLLM has no "
                             "float64 kernels), got 'float64'")
        if self.token_credit in ORACLE_CREDITS and (self.task.name != "word" or self.data.path != "embedded"):
            raise ValueError(f"--estimator {self.algorithm.estimator}: the oracle reads the labelled wrong steps of "
                             f"the embedded word problems; expected --task word with --data embedded, got task "
                             f"{self.task.name!r} with data {self.data.path!r}")
        if self.model.path == "embedded" and self.data.path != "embedded":
            raise ValueError(f"--data: expected 'embedded' when --model is 'embedded' (the tiny model only knows the "
                             f"embedded task's symbols), got {self.data.path!r}")
        return self

    def to_dict(self) -> dict:
        """Nested plain values (what ``config.yaml`` holds; the KTAE fields set by the trainer left out)."""
        values = dataclasses.asdict(self)
        for name in KTAE_SET_BY_TRAINER:
            values["ktae"].pop(name)
        return values

    @property
    def uses_ktae(self) -> bool:
        return parse_estimator(self.algorithm.estimator)[1]

    @property
    def token_credit(self) -> str:
        """The token credit of ``--estimator`` (one of :data:`TOKEN_CREDITS`; ``ktae`` also for verl's spellings),
        or "" for a rollout estimator alone. :attr:`uses_ktae` (A_i + K) is true only for ``ktae``: the gate
        counts tokens as KTAE does but gives no key-token values, the oracles are not KTAE."""
        return token_credit(self.algorithm.estimator)

    @property
    def rollout_estimator(self) -> str:
        return parse_estimator(self.algorithm.estimator)[0] or "grpo"

    def ktae_config(self, ignore_token_ids: tuple[int, ...] = ()) -> KTAEConfig:
        """The core's :class:`~ktae.KTAEConfig` of this run: ``ktae`` with the rollout estimator and ignored ids."""
        return dataclasses.replace(self.ktae, rollout=self.rollout_estimator,
                                   ignore_token_ids=tuple(ignore_token_ids))


# ============================================================================ options: the sections' fields
@dataclass(frozen=True)
class Option:
    """One option of ``ktae train``: a field of :class:`TrainConfig` or of one of its sections."""

    path: str                  # "ppo.lr"; "steps" for the run-level fields
    field: dataclasses.Field   # the field that declares it (default, help)
    kind: Any                  # its type
    group: str                 # title of its section in --help

    @property
    def section(self) -> str:
        return self.path.rpartition(".")[0]

    @property
    def help(self) -> str:
        return self.field.metadata.get("help", "")

    @property
    def aliases(self) -> list[str]:
        """Its flat names (:data:`FLAT_ALIASES`)."""
        return [flat for flat, path in FLAT_ALIASES.items() if path == self.path]


@functools.cache
def options() -> dict[str, Option]:
    """Every option of ``ktae train`` by path, in ``--help`` order: the fields of :class:`TrainConfig` and of its
    sections (``preset`` is ``--preset``'s, the KTAE fields the trainer sets are none)."""
    out: dict[str, Option] = {}
    top_hints = typing.get_type_hints(TrainConfig)
    for top in fields(TrainConfig):
        kind = top_hints[top.name]
        if not dataclasses.is_dataclass(kind):
            if top.name != "preset":
                out[top.name] = Option(top.name, top, kind, "Run")
            continue
        hints = typing.get_type_hints(kind)
        for f in fields(kind):
            if not (top.name == "ktae" and f.name in KTAE_SET_BY_TRAINER):
                out[f"{top.name}.{f.name}"] = Option(f"{top.name}.{f.name}", f, hints[f.name], top.metadata["help"])
    return out


def _unknown(key: str, source: str) -> ValueError:
    names = list(options()) + list(FLAT_ALIASES)
    close = difflib.get_close_matches(key, names, n=3, cutoff=0.6) or [n for n in names if key in n][:3]
    hint = f" (did you mean {', '.join('--' + c for c in close)}?)" if close else ""
    return ValueError(f"{source}: unknown option {key!r}{hint}; see 'ktae train --help'")


def option_values(cfg: TrainConfig) -> dict[str, Any]:
    """``{path: value}`` of every option of ``cfg``."""
    return {path: getattr(getattr(cfg, o.section) if o.section else cfg, o.field.name)
            for path, o in options().items()}


def build(values: Mapping[str, Any], preset: str) -> TrainConfig:
    """The checked :class:`TrainConfig` of ``{path: typed value}``; options not in ``values`` keep their defaults."""
    top: dict[str, Any] = {"preset": preset}
    sections: dict[str, dict[str, Any]] = {}
    for path, value in values.items():
        section, _, name = path.rpartition(".")
        (sections.setdefault(section, {}) if section else top)[name] = value
    hints = typing.get_type_hints(TrainConfig)
    return TrainConfig(**top, **{name: hints[name](**kw) for name, kw in sections.items()})


# ============================================================================ reading values
_EXPECTED = {bool: "true or false", int: "an integer", float: "a number", str: "a text"}


def _scalar(value: Any, kind: type) -> Any:
    """``value`` as ``kind`` (bool, int, float or str): a text is read as the command line reads it; otherwise an
    int or float for a float, an int for an int, a bool or 0/1 for a bool, a number, a bool or None (empty) for a
    text. Raises ``TypeError`` or ``ValueError`` for anything else."""
    if isinstance(value, str):
        from transformers.hf_argparser import string_to_bool

        return string_to_bool(value) if kind is bool else kind(value)
    if kind is str:
        if value is None or isinstance(value, (bool, int, float)):
            return "" if value is None else str(value).lower() if isinstance(value, bool) else str(value)
    elif kind is bool:
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
    elif not isinstance(value, bool) and isinstance(value, (int, float) if kind is float else int):
        return kind(value)
    raise TypeError(f"not {kind.__name__}: {value!r}")


def typed(value: Any, option: Option, source: str) -> Any:
    """``value`` (from YAML, Python or a preset) as the type of ``option``, the same value the command line would
    give for its text: a YAML ``lr: 1e-4`` (a string to YAML) is the float 1e-4, ``filter_values: [a, b]`` a list.

    Raises:
        ValueError: naming ``source`` and the option, when the value is not one of its type.
    """
    kind = option.kind
    try:
        if typing.get_origin(kind) is list:
            items = [] if value is None else list(value) if isinstance(value, (list, tuple)) else [value]
            return [_scalar(item, str) for item in items]
        return _scalar(value, kind)
    except (TypeError, ValueError, argparse.ArgumentTypeError):
        expected = "a list of texts" if typing.get_origin(kind) is list else _EXPECTED[kind]
        raise ValueError(f"{source}: {option_name(option.path)}: expected {expected}, got {value!r}") from None


def read_values(values: Mapping[str, Any], source: str) -> dict[str, Any]:
    """``{path: typed value}`` of option values keyed by path (``ppo.lr``), flat alias (``lr``; dashes or
    underscores), or section (``ppo: {lr: ...}``, a mapping or the section's dataclass)."""
    sections = {o.section for o in options().values()} - {""}
    out: dict[str, Any] = {}
    for key, value in values.items():
        key = str(key).replace("-", "_")
        if key in sections and dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = {f.name: getattr(value, f.name) for f in fields(value)}
        if key in sections and isinstance(value, Mapping):
            out.update(read_values({f"{key}.{name}": v for name, v in value.items()
                                    if not (key == "ktae" and name in KTAE_SET_BY_TRAINER)}, source))
            continue
        path = FLAT_ALIASES.get(key, key)
        if path not in options():
            raise _unknown(key, source)
        out[path] = typed(value, options()[path], source)
    return out


def read_options(argv: list[str], source: str = "arguments") -> dict[str, Any]:
    """``{path: typed value}`` of the options written in ``argv`` (only those), read by the parser."""
    reader = parser(add_launch=False)
    for action in reader._actions:
        action.default = argparse.SUPPRESS  # keep only what argv sets
    try:
        namespace, rest = reader.parse_known_args(list(argv))
    except argparse.ArgumentError as exc:
        raise ValueError(f"{source}: {exc}") from None
    if rest:
        first = rest[0]
        if first.startswith("--"):
            raise _unknown(first[2:].partition("=")[0].replace("-", "_"), source)
        raise ValueError(f"{source}: unexpected argument {first!r}: options are written --key value")
    return vars(namespace)


# ============================================================================ the command line
@dataclass
class Launch:
    """How ``ktae train`` starts: from a preset and/or a YAML file, or from a run folder."""

    _argument_group_name: ClassVar[str] = "Start"
    preset: str = option("", "start from a preset (ktae train --help presets; default: 'default')",
                         metavar="NAME")
    config: str = option("", "YAML file of option: value pairs (nested sections or flat names)", metavar="FILE")
    resume: str = option("", "continue the run in this folder from its last checkpoint (same metrics as an "
                         "uninterrupted run)", metavar="RUN_DIR")


#: what ``ktae train --help`` shows besides the start options; the rest is one ``--help SECTION`` away
COMMON_OPTIONS = ("seed", "steps", "run_dir", "model.path", "data.path", "algorithm.estimator",
                  "rollout.prompts_per_step", "rollout.rollouts_per_prompt", "rollout.max_new_tokens", "ppo.lr",
                  "eval.every")
_USAGE = ("ktae train [--preset NAME] [--config FILE.yaml] [--key value ...]\n"
          "       ktae train --resume RUN_DIR [--key value ...]\n"
          "       ktae train --help [SECTION | presets | all]")
_DESCRIPTION = ("Reinforcement learning of a language model on verifiable math answers with GRPO or DAPO, with or "
                "without\nKey-token Advantage Estimation. Without arguments: a tiny model on the embedded arithmetic "
                "task, on a CPU,\nin a few minutes. Values: defaults < --preset < --config YAML < options. Options are "
                "named by section\n(--ktae.alpha); most also have the flat name of earlier versions (--ktae_alpha).")


def _add_options(parser, select=None, title: str | None = None):
    """Add the options to ``parser``, one argument group per section (or the ones ``select(option)`` keeps, in
    one group called ``title``): ``--<path>`` with its flat aliases; returns ``parser``."""
    groups: dict[str, Any] = {}
    for path, opt in options().items():
        if select is not None and not select(opt):
            continue
        group = title or opt.group
        if group not in groups:
            groups[group] = parser.add_argument_group(group)
        listed = list[str] if typing.get_origin(opt.kind) is list else opt.kind
        metavar = "LIST" if listed is not opt.kind else listed.__name__.upper()
        add_field(groups[group], opt.field, path, listed, aliases=opt.aliases, metavar=metavar)
    return parser


def help_topics() -> dict[str, str]:
    """``ktae train --help TOPIC``: each configuration section (``run`` for the run-level options) with its
    title, then ``presets`` and ``all``."""
    topics: dict[str, str] = {}
    for opt in options().values():
        topics.setdefault(opt.section or "run", opt.group)
    return {**topics, "presets": "the presets (--preset NAME)", "all": "every option of every section"}


def _presets_text() -> str:
    from ktae.train.presets import PRESET_HELP, preset_names

    width = max(len(name) for name in preset_names())
    return "presets:\n" + "\n".join(f"  {name:<{width}}  {PRESET_HELP.get(name, '')}" for name in preset_names())


def parser(add_launch: bool = True):
    """The ``HfArgumentParser`` of ``ktae train`` (every option with its default and help)."""
    return _add_options(make_parser([Launch] if add_launch else [], prog="ktae train", usage=_USAGE,
                                    description=_DESCRIPTION, epilog=_presets_text()))


def help_parser(topic: str | None = None):
    """The parser whose ``--help`` is ``ktae train --help [TOPIC]``: without a topic the start options, the
    :data:`COMMON_OPTIONS` and the list of topics; with one, that section (or the presets, or everything).

    Raises:
        ValueError: ``topic`` is not one of :func:`help_topics`.
    """
    topics = help_topics()
    if topic == "all":
        return parser()
    if topic == "presets":
        return make_parser([], prog="ktae train", usage=_USAGE, epilog=_presets_text(), add_help=False)
    if topic is None:
        width = max(len(name) for name in topics)
        listing = "\n".join(f"  {name:<{width}}  {title}" for name, title in topics.items())
        return _add_options(make_parser([Launch], prog="ktae train", usage=_USAGE, description=_DESCRIPTION,
                                        epilog=f"more options, by section (ktae train --help SECTION):\n{listing}"),
                            lambda o: o.path in COMMON_OPTIONS, "Common options")
    if topic not in topics:
        raise ValueError(f"--help: expected a section, 'presets' or 'all' ({', '.join(topics)}), got {topic!r}")
    section = "" if topic == "run" else topic
    return _add_options(make_parser([], prog="ktae train", usage=_USAGE, add_help=False),
                        lambda o: o.section == section)


def parse_command(argv: list[str]) -> tuple[Launch, dict[str, Any]]:
    """``(how to start, {path: value} of the options)`` from ``ktae train ARGS``."""
    launch, rest = parse(make_parser([Launch], prog="ktae train", add_help=False), argv, remaining=True)
    if launch.resume and (launch.preset or launch.config):
        raise ValueError("--resume continues a run with its saved configuration; --preset/--config cannot be combined")
    return launch, read_options(rest)


def parse_args(argv: list[str]) -> TrainConfig:
    """The configuration that ``ktae train ARGS`` runs (with ``--resume``: the run's, options applied)."""
    launch, overrides = parse_command(argv)
    if launch.resume:
        return resume_config(launch.resume, overrides)
    return make_config(launch.preset or None, launch.config or None, **overrides)


# ============================================================================ configurations
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


def with_options(cfg: TrainConfig, source: str = "arguments", /, **values: Any) -> TrainConfig:
    """``cfg`` with option values (paths, flat names or sections, see :func:`read_values`) replaced, checked."""
    return build({**option_values(cfg), **read_values(values, source)}, cfg.preset) if values else cfg


def make_config(preset: str | None = None, config_file: str | Path | None = None, /, **overrides: Any) -> TrainConfig:
    """Defaults < preset < YAML file < keyword overrides, checked.

    ``make_config("dapo-ktae", seed=2, steps=40)`` is what ``ktae train --preset dapo-ktae
    --seed 2 --steps 40`` runs; ``make_config(**{"ktae.alpha": 0})`` is ``--ktae.alpha 0``.
    """
    from ktae.train.presets import get_preset

    file_values = load_yaml(config_file) if config_file else {}
    preset = preset or file_values.pop("preset", None) or overrides.pop("preset", None) or "default"
    file_values.pop("preset", None)
    overrides.pop("preset", None)
    values = read_values(get_preset(preset), f"preset {preset!r}")
    values.update(read_values(file_values, f"--config {config_file}"))
    values.update(read_values(overrides, "arguments"))
    return build(values, preset)


def load_run_config(run_dir: str | Path) -> TrainConfig:
    """The configuration saved in ``run_dir/config.yaml`` (nested, or flat from older versions)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ValueError(f"--resume: {str(run_dir)!r} is not a run folder (no config.yaml in it)")
    saved = load_yaml(path)
    return with_options(TrainConfig(preset=str(saved.pop("preset", "default"))), str(path), **saved)


def resume_config(run_dir: str | Path, overrides: Mapping[str, Any] | None = None) -> TrainConfig:
    """The saved configuration of ``run_dir`` with ``overrides`` (option: value) applied."""
    values = dict(overrides or {})
    if "preset" in values or "config" in values:
        raise ValueError("--resume continues a run with its saved configuration; --preset/--config cannot be combined")
    return with_options(load_run_config(run_dir), "arguments", **values, run_dir=str(Path(run_dir)))


__all__ = [
    "TrainConfig", "ModelConfig", "DataConfig", "TaskConfig", "TinyModelConfig", "RolloutConfig", "AlgorithmConfig",
    "KTAEConfig", "PPOConfig", "EvaluationConfig", "LogConfig", "make_config", "parse_args", "parse_command",
    "resume_config", "load_run_config", "with_options", "option_values", "read_values", "parser", "read_options",
    "load_yaml", "save_yaml", "options", "option_name", "FLAT_ALIASES", "ESTIMATORS", "TOKEN_CREDITS", "help_parser",
    "help_topics", "COMMON_OPTIONS",
]
