"""Decode a token sequence into one faithful piece of text per token.

A heat-map needs, for every token, the exact characters it contributes to the
decoded response, such that the pieces concatenated give the decoded text back.
Decoding tokens one by one does not do that: byte-level BPE (GPT-2, Qwen,
Llama 3, DeepSeek) splits multi-byte characters over several tokens, so a lone
token decodes to U+FFFD garbage, and SentencePiece tokenizers drop a leading
space depending on context.

Two paths:

* byte-level tokenizers (a ``ByteLevel`` decoder): every token is mapped to its
  raw bytes, the byte stream is decoded once, and each character goes to the
  token holding its *first* byte. Tokens that only carry continuation bytes of a
  character started earlier get an empty piece and point to that token
  (``TokenPieces.joined_to``).
* any other tokenizer with a ``decode`` method: incremental decoding over a
  short context window; text that cannot be emitted yet (an incomplete
  character) goes to the first token of the pending run.

Either way the result is checked against ``tokenizer.decode(ids)``; a mismatch
falls back to exact prefix decoding.
"""
from __future__ import annotations

import codecs
import logging
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

logger = logging.getLogger(__name__)

_REPLACEMENT = "\ufffd"


@dataclass
class TokenPieces:
    """Per-token text of one decoded sequence.

    ``pieces[k]`` is the text token ``k`` shows; ``"".join(pieces) == text``.
    ``joined_to[k]`` is ``-1``, or the index of the earlier token whose piece
    holds the character that token ``k`` (partly) encodes. ``special[k]`` marks
    added/special tokens (``<|im_end|>`` ...).
    """

    text: str
    pieces: list[str]
    joined_to: list[int]
    special: list[bool]

    def __len__(self) -> int:
        return len(self.pieces)


def _bytes_to_unicode() -> dict[int, str]:
    """The printable-character alphabet of byte-level BPE: byte value -> char."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1)) + list(range(0xAE, 0xFF + 1))
    table: dict[int, str] = {}
    extra = 0
    for byte in range(256):
        if byte in keep:
            table[byte] = chr(byte)
        else:
            table[byte] = chr(256 + extra)
            extra += 1
    return table


@lru_cache(maxsize=1)
def _unicode_to_byte() -> dict[str, int]:
    return {char: byte for byte, char in _bytes_to_unicode().items()}


def decode_ids(tokenizer: Any, ids: Sequence[int]) -> str:
    """``tokenizer.decode`` keeping special tokens and without space clean-up (when supported)."""
    ids = [int(i) for i in ids]
    try:
        return tokenizer.decode(ids, skip_special_tokens=False, clean_up_tokenization_spaces=False)
    except TypeError:
        return tokenizer.decode(ids)


def _special_ids(tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for i in getattr(tokenizer, "all_special_ids", None) or ():
        ids.add(int(i))
    added = getattr(tokenizer, "added_tokens_decoder", None) or {}
    for i, tok in added.items():
        if getattr(tok, "special", False):
            ids.add(int(i))
    return ids


def _is_byte_level(tokenizer: Any) -> bool:
    backend = getattr(tokenizer, "backend_tokenizer", None)
    decoder = getattr(backend, "decoder", None) if backend is not None else None
    return decoder is not None and type(decoder).__name__ == "ByteLevel" and hasattr(tokenizer, "convert_ids_to_tokens")


def _token_bytes(tokenizer: Any, ids: Sequence[int], cache: dict[int, bytes] | None = None) -> list[bytes] | None:
    """Raw bytes of each token of a byte-level tokenizer, or None if a token is not byte-level.

    ``cache`` (token id -> bytes) may be shared between calls with the same tokenizer.
    """
    cache = {} if cache is None else cache
    missing = sorted({int(i) for i in ids if int(i) not in cache})
    if missing:
        table = _unicode_to_byte()
        added = {int(i): tok for i, tok in (getattr(tokenizer, "added_tokens_decoder", None) or {}).items()}
        strings = tokenizer.convert_ids_to_tokens(missing)
        for token_id, string in zip(missing, strings):
            if string is None:
                return None
            if token_id in added:
                cache[token_id] = str(getattr(added[token_id], "content", string)).encode("utf-8")
                continue
            try:
                cache[token_id] = bytes(table[c] for c in string)
            except KeyError:
                return None
    return [cache[int(i)] for i in ids]


def _pieces_from_bytes(chunks: list[bytes]) -> tuple[list[str], list[int]]:
    """Split the UTF-8 decoding of ``b"".join(chunks)`` into one piece per chunk.

    Each character (including each U+FFFD of an invalid sequence, decoded as
    Python's ``errors="replace"`` does) goes to the chunk holding its first byte.
    """
    n = len(chunks)
    pieces = [""] * n
    joined_to = [-1] * n
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    # owner of the first byte of the decoder's pending buffer
    pending_owner = -1
    pending = False
    for k, chunk in enumerate(chunks):
        if not pending:
            try:  # fast path: the chunk is made of whole, valid characters
                pieces[k] = chunk.decode("utf-8")
                continue
            except UnicodeDecodeError:
                pass
        elif chunk:
            joined_to[k] = pending_owner
        for j in range(len(chunk)):
            before = decoder.getstate()[0]
            start_owner = pending_owner if before else k
            text = decoder.decode(chunk[j : j + 1])
            if text:
                pieces[start_owner] += text[0]
                pieces[k] += text[1:]
            left = decoder.getstate()[0]
            if left:
                # the buffer either grew (same owner) or restarted at this byte
                pending_owner = start_owner if (before and len(left) == len(before) + 1) else k
        pending = bool(decoder.getstate()[0])
    tail = decoder.decode(b"", final=True)
    if tail:
        pieces[pending_owner] += tail
    return pieces, joined_to


def _pieces_incremental(tokenizer: Any, ids: list[int], window: int | None) -> tuple[list[str], list[int]]:
    """Incremental decoding; ``window`` tokens of context (None: the whole prefix)."""
    n = len(ids)
    pieces = [""] * n
    joined_to = [-1] * n
    prefix = 0  # first token of the decoding context
    read = 0  # tokens before this one have had their text emitted
    emitted = ""  # decode(ids[prefix:read])
    for k in range(n):
        new = decode_ids(tokenizer, ids[prefix : k + 1])
        if new.endswith(_REPLACEMENT) or not new.startswith(emitted):
            if k > read:
                joined_to[k] = read
            continue
        pieces[read] += new[len(emitted) :]
        read = k + 1
        if window is None:
            emitted = new
        else:
            prefix = max(prefix, read - window)
            emitted = decode_ids(tokenizer, ids[prefix:read]) if prefix < read else ""
    if read < n:
        new = decode_ids(tokenizer, ids[prefix:])
        pieces[read] += new[len(emitted) :] if new.startswith(emitted) else new
    return pieces, joined_to


def token_pieces(tokenizer: Any, ids: Sequence[int], cache: dict | None = None) -> TokenPieces:
    """Decode ``ids`` into one text piece per token (see the module docstring).

    Args:
        tokenizer: a Hugging Face tokenizer, or any object with ``decode(list[int]) -> str``.
        ids: token ids of one sequence, no padding.
        cache: optional dict reused across calls with the same tokenizer (speeds up many sequences).
    Returns:
        TokenPieces with ``"".join(pieces) == tokenizer.decode(ids)`` (special tokens kept,
        no clean-up of spaces), except for tokenizers whose decoding is not prefix-stable,
        where the text is the concatenation of the pieces.
    """
    if not hasattr(tokenizer, "decode"):
        raise TypeError(f"tokenizer must have a decode(ids) method, got {type(tokenizer).__name__}")
    ids = [int(i) for i in ids]
    cache = {} if cache is None else cache
    if "special" not in cache:
        cache["special"] = _special_ids(tokenizer)
        cache["byte_level"] = _is_byte_level(tokenizer)
        cache["bytes"] = {}
    special = cache["special"]
    flags = [i in special for i in ids]
    if not ids:
        return TokenPieces("", [], [], [])
    text = decode_ids(tokenizer, ids)
    if cache["byte_level"]:
        chunks = _token_bytes(tokenizer, ids, cache["bytes"])
        if chunks is not None:
            pieces, joined = _pieces_from_bytes(chunks)
            if "".join(pieces) == text:
                return TokenPieces(text, pieces, joined, flags)
    pieces, joined = _pieces_incremental(tokenizer, ids, window=6)
    if "".join(pieces) != text:
        pieces, joined = _pieces_incremental(tokenizer, ids, window=None)
    joined_text = "".join(pieces)
    if joined_text != text:
        logger.warning("tokenizer decoding is not prefix-stable; showing the concatenated token pieces")
        text = joined_text
    return TokenPieces(text, pieces, joined, flags)
