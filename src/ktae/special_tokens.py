"""The special-token ids that get no key-token value by default (a tokenizer's pad and EOS ids), and the ids that
end a line."""
from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=8)
def newline_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """The ids whose decoded text holds a newline: the tokens that end a line for the line rules
    (:mod:`ktae.core.label_free`). Decodes the whole vocabulary once per tokenizer (cached).

    Args:
        tokenizer: a ``PreTrainedTokenizerBase`` (or a processor holding one as ``.tokenizer``).

    Returns:
        The ids, sorted; () when no token holds a newline.
    """
    tok = getattr(tokenizer, "tokenizer", tokenizer)
    texts = tok.batch_decode([[i] for i in range(len(tok))])
    return tuple(i for i, text in enumerate(texts) if "\n" in text)
