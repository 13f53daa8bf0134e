"""The special-token ids that get no key-token value by default: a tokenizer's pad and EOS ids."""
from __future__ import annotations

from typing import Any


def special_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """The pad and EOS token ids of a Hugging Face tokenizer (or of a processor's ``.tokenizer``), sorted.

    Args:
        tokenizer: a ``PreTrainedTokenizerBase``, a processor holding one as ``.tokenizer``, or None.

    Returns:
        The distinct ids found (an ``eos_token_id`` that is a list contributes every entry); () for None.
    """
    if tokenizer is None:
        return ()
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    ids: set[int] = set()
    for name in ("pad_token_id", "eos_token_id"):
        value = getattr(tok, name, None)
        if value is None:
            continue
        for item in value if isinstance(value, (list, tuple)) else (value,):
            if item is not None and int(item) >= 0:
                ids.add(int(item))
    return tuple(sorted(ids))
