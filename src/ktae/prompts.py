"""Prompt templates for math problems: ``qwen_math`` (the paper's), ``r1`` and the tokenizer's ``chat`` template.

>>> from ktae.prompts import format_prompt
>>> print(format_prompt("What is 1+1?", "qwen_math"))  # doctest: +NORMALIZE_WHITESPACE
<|im_start|>system
Please reason step by step, and put your final answer within \\boxed{}.<|im_end|>
<|im_start|>user
What is 1+1?<|im_end|>
<|im_start|>assistant
<BLANKLINE>
"""
from __future__ import annotations

from typing import Any

__all__ = ["TEMPLATES", "BOXED_INSTRUCTION", "format_prompt", "template_names"]

#: The instruction of the paper's evaluation prompt (spec section 7).
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."

_QWEN_MATH = (
    "<|im_start|>system\n" + BOXED_INSTRUCTION + "<|im_end|>\n"
    "<|im_start|>user\n{problem}<|im_end|>\n"
    "<|im_start|>assistant\n"
)

_R1 = (
    "A conversation between User and Assistant. The User asks a question, and the Assistant solves it. "
    "The Assistant first thinks about the reasoning process and then gives the answer. The reasoning "
    "process is enclosed within <think> </think> tags and the answer within <answer> </answer> tags, "
    "i.e., <think> reasoning process here </think> <answer> answer here </answer>. Inside the answer, "
    "put the final result within \\boxed{}.\n"
    "User: {problem}\n"
    "Assistant: <think>"
)

#: Named templates; ``chat`` uses the tokenizer's own chat template.
TEMPLATES: dict[str, str | None] = {
    "qwen_math": _QWEN_MATH,
    "r1": _R1,
    "chat": None,
}


def template_names() -> list[str]:
    """Names accepted by :func:`format_prompt`."""
    return list(TEMPLATES)


def format_prompt(problem: str, template: str = "qwen_math", tokenizer: Any = None) -> str:
    """The prompt text for ``problem``.

    ``template``: ``qwen_math`` (the paper's Qwen2.5-Math prompt with the
    ``\\boxed{}`` instruction in the system turn), ``r1`` (DeepSeek-R1-Zero
    style with ``<think>``/``<answer>`` tags, the generation starts inside
    ``<think>``), ``chat`` (the tokenizer's chat template, one user turn holding
    the problem and the ``\\boxed{}`` instruction; needs ``tokenizer``), or any
    custom string containing ``{problem}``.
    """
    if not isinstance(problem, str):
        raise TypeError(f"problem must be a str, got {type(problem).__name__}")
    if not isinstance(template, str):
        raise TypeError(f"template must be a str, got {type(template).__name__}")
    if template == "chat":
        if tokenizer is None:
            raise ValueError("template='chat' needs a tokenizer (its chat template formats the prompt)")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError(
                "template='chat': this tokenizer has no chat template; use template='qwen_math' or 'r1'"
            )
        messages = [{"role": "user", "content": f"{problem}\n{BOXED_INSTRUCTION}"}]
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    if template in TEMPLATES:
        return TEMPLATES[template].replace("{problem}", problem)
    if "{problem}" in template:
        return template.replace("{problem}", problem)
    raise ValueError(
        f"template must be one of {template_names()} or a string containing '{{problem}}', got {template!r}"
    )
