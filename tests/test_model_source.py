"""--model means the same for every command (folder, GGUF file, Hub id), with errors that say what was tried;
`ktae eval` on a GGUF file; a failed `ktae eval` does not block the corrected command."""
from __future__ import annotations

import json
import os

import pytest
import torch

from ktae.cli import main as ktae_main
from ktae.model_source import explain_load_error, resolve_model_source
from test_analysis_report import byte_level_tokenizer
from test_generation import build_tiny_lm


def write_tiny_gguf(path):
    """A 2-layer Qwen2 with a small byte-level BPE tokenizer, written as a float32 GGUF file by the gguf package."""
    gguf = pytest.importorskip("gguf")
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = byte_level_tokenizer()
    state = json.loads(tok.backend_tokenizer.to_str())
    tokens = [None] * len(tok)
    for text, i in state["model"]["vocab"].items():
        tokens[i] = text
    for added in state["added_tokens"]:
        tokens[added["id"]] = added["content"]
    tokens.append("<|im_start|>")  # the chat marker the Qwen2 GGUF tokenizer expects
    merges = [" ".join(m) if isinstance(m, list) else m for m in state["model"]["merges"]]
    torch.manual_seed(0)
    config = Qwen2Config(vocab_size=len(tokens), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                         tie_word_embeddings=False, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    model = Qwen2ForCausalLM(config)
    writer = gguf.GGUFWriter(str(path), "qwen2")
    writer.add_context_length(256)  # room for the qwen_math prompt and a response
    writer.add_embedding_length(32)
    writer.add_block_count(2)
    writer.add_feed_forward_length(64)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)
    writer.add_rope_freq_base(10000.0)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("qwen2")
    writer.add_token_list(tokens)
    writer.add_token_types([3 if t.startswith("<|") else 1 for t in tokens])
    writer.add_token_merges(merges)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_pad_token_id(tok.pad_token_id)
    names = gguf.get_tensor_name_map(gguf.MODEL_ARCH.QWEN2, 2)
    for name, tensor in model.state_dict().items():
        writer.add_tensor(names.get_name(name, try_suffixes=(".weight", ".bias")), tensor.float().numpy())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return model, tok


@pytest.fixture(scope="module")
def tiny_folder(tmp_path_factory):
    return str(build_tiny_lm(tmp_path_factory.mktemp("tiny_lm")))


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "math.jsonl"
    path.write_text("".join(json.dumps({"problem": f"What is {i}+1?", "answer": str(i + 1)}) + "\n" for i in range(2)))
    return str(path)


def test_resolve_kinds_and_errors(tiny_folder, tmp_path, monkeypatch):
    assert resolve_model_source(tiny_folder).kind == "folder"
    assert resolve_model_source("Qwen/Qwen2.5-Math-7B") == resolve_model_source("Qwen/Qwen2.5-Math-7B")
    assert resolve_model_source("Qwen/Qwen2.5-Math-7B").kind == "hub"
    gguf_file = tmp_path / "m.Q4_1.gguf"
    gguf_file.write_bytes(b"GGUF")
    source = resolve_model_source(str(gguf_file))
    assert (source.kind, source.name, source.gguf_file, source.label) == ("gguf", str(tmp_path), "m.Q4_1.gguf", "m.Q4_1")
    monkeypatch.chdir(tmp_path)
    assert resolve_model_source("m.Q4_1.gguf").name == str(tmp_path)  # a bare file name in the current folder
    with pytest.raises(ValueError, match="no such GGUF file 'missing.gguf'"):
        resolve_model_source("missing.gguf")
    with pytest.raises(ValueError, match=r"there is no folder 'runs/x/final' \(looked in .*\), and it cannot be a "
                                         r"Hugging Face Hub id"):
        resolve_model_source("runs/x/final")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "a.gguf").write_bytes(b"GGUF")
    with pytest.raises(ValueError, match="holds no model .*'a.gguf': give that file"):
        resolve_model_source("empty")
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(ValueError, match="is a file, but not a .gguf file"):
        resolve_model_source("notes.txt")
    err = explain_load_error(resolve_model_source("someone/missing-model"), OSError("404 not found"))
    assert "no local folder of that name, so it was tried as a Hugging Face Hub id, which failed: 404" in str(err)


def test_eval_mistyped_path_then_corrected_command(tiny_folder, data_file, tmp_path, capsys):
    out = str(tmp_path / "eval")
    common = ["--data", data_file, "--benchmarks", "math", "--limit", "2", "--max-new-tokens", "4",
              "--output", out, "--grading-workers", "1", "--no-progress"]
    assert ktae_main(["eval", "--model", "runs/x/final", *common]) == 2
    err = capsys.readouterr().err
    assert "there is no folder 'runs/x/final'" in err and "Repo id must be" not in err
    assert ktae_main(["eval", "--model", tiny_folder, *common]) == 0  # the empty folder is not a run to protect
    assert "Table 1" in capsys.readouterr().out
    saved = open(os.path.join(out, "generations.jsonl")).read()
    assert ktae_main(["eval", "--model", "runs/x/other", *common]) == 2  # refused before the folder is touched
    assert "there is no folder 'runs/x/other'" in capsys.readouterr().err
    assert open(os.path.join(out, "generations.jsonl")).read() == saved
    assert ktae_main(["eval", "--model", tiny_folder, *common, "--max-new-tokens", "5"]) == 2  # other settings
    assert "other settings" in capsys.readouterr().err


def test_eval_accepts_a_gguf_file(tmp_path, data_file, capsys):
    original, tok = write_tiny_gguf(tmp_path / "tiny.gguf")
    from ktae.loading import load_model

    model, tokenizer = load_model(resolve_model_source(str(tmp_path / "tiny.gguf")), device="cpu", dtype="float32")
    ids = torch.tensor([tok("Compute 7", add_special_tokens=False)["input_ids"]])
    assert tokenizer("Compute 7", add_special_tokens=False)["input_ids"] == ids[0].tolist()
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, original(ids).logits, rtol=1e-4, atol=1e-4)
    out = str(tmp_path / "eval")
    rc = ktae_main(["eval", "--model", str(tmp_path / "tiny.gguf"), "--data", data_file, "--benchmarks", "math",
                    "--limit", "2", "--max-new-tokens", "4", "--output", out, "--grading-workers", "1",
                    "--no-progress"])
    assert rc == 0 and "Table 1" in capsys.readouterr().out
    assert len(open(os.path.join(out, "generations.jsonl")).read().splitlines()) == 2
    with pytest.raises(ValueError, match="needs --backend hf"):
        load_model(resolve_model_source(str(tmp_path / "tiny.gguf")), backend="vllm")
