"""ktae analyze: rollouts -> core values -> terminal tables, HTML report, PNG figures, a real browser."""
from __future__ import annotations

import json
import os
import tempfile
from html.parser import HTMLParser

import numpy as np
import pytest
import torch

from browser import chromium, run_browser
import ktae
from ktae.analysis import analyze, load_rollouts, write_html, write_report
from ktae.analysis.cli import main as analyze_main, parse_config
from ktae.analysis.figure import layout, plot_rollout
from ktae.analysis.tokens import decode_ids

PROMPT1 = "Find the sum of all real solutions of $x^2 - 5x + 6 = 0$."
PROMPT2 = "Compute $7 \\times 8$."
CORRECT1 = [
    "We factor: $(x-2)(x-3) = 0$.\nSo $x = 2$ or $x = 3$.\n\nThe sum is $\\boxed{5}$.",
    "By Vieta's formulas the sum is $-b/a = 5$.  Done → $\\boxed{5}$ ✓",
    "Factor: $(x-2)(x-3)$, roots 2 and 3, sum 5.\n\n$\\boxed{5}$",
]
WRONG1 = [
    "The sum is $b/a = -5$.\nI think the answer is $\\boxed{-5}$.",
    "We factor: $(x+2)(x+3)$, so the sum is $-5$. 答案 $\\boxed{-5}$",
    "The product of the roots is 6, so I think it is $\\boxed{6}$.\n",
]
TRAINING_TEXT = CORRECT1 + WRONG1 + [PROMPT1, PROMPT2, "7 × 8 = 56, so $\\boxed{56}$. café naïve 🙂"]


def byte_level_tokenizer():
    """A small GPT-2 style byte-level BPE (like Qwen's), trained here."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=330, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>", "<|im_end|>"], show_progress=False,
    )
    core.train_from_iterator(TRAINING_TEXT * 3, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )


@pytest.fixture(scope="module")
def tok():
    return byte_level_tokenizer()


@pytest.fixture(scope="module")
def rollouts_file(tok, tmp_path_factory):
    """Group p1 as text (3 correct, 3 wrong), group p2 as token ids with EOS (2 correct, 1 wrong), p3 all correct."""
    rows = []
    for text in CORRECT1:
        rows.append({"group": "p1", "prompt": PROMPT1, "reference": "5", "response": text, "reward": 1.0, "correct": True})
    for text in WRONG1:
        rows.append({"group": "p1", "prompt": PROMPT1, "reference": "5", "response": text, "reward": 0.0, "correct": False})
    for text, reward in (("$7 \\times 8 = 56$, so $\\boxed{56}$.", 1.0), ("Seven eights: 56.\n$\\boxed{56}$", 1.0),
                         ("$7 \\times 8 = 54$, so $\\boxed{54}$.", 0.0)):
        ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
        rows.append({"group": "p2", "prompt": PROMPT2, "reference": "56", "response": text, "token_ids": ids,
                     "reward": reward, "correct": reward > 0})
    rows.append({"prompt": "1+1?", "response": "2, so $\\boxed{2}$", "correct": True})
    rows.append({"prompt": "1+1?", "response": "It is $\\boxed{2}$.", "correct": True})
    path = tmp_path_factory.mktemp("rollouts") / "rollouts.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def analysis(tok, rollouts_file):
    return analyze(load_rollouts(rollouts_file), tok, num_tokens=5, progress=False)


def _batch(analysis):
    ids = analysis.token_ids
    length = max(len(x) for x in ids)
    responses = torch.zeros(len(ids), length, dtype=torch.int64)
    mask = torch.zeros(len(ids), length, dtype=torch.int64)
    for i, x in enumerate(ids):
        responses[i, : len(x)] = torch.tensor(x)
        mask[i, : len(x)] = 1
    scores = torch.tensor([r.score for r in analysis.rollouts])
    group = [r.group for r in analysis.rollouts]
    return responses, mask, scores, group


# ---------------------------------------------------------------------------------------------------------------
# values come from the core
# ---------------------------------------------------------------------------------------------------------------


def test_values_equal_the_core(tok, analysis):
    responses, mask, scores, group = _batch(analysis)
    cfg = analysis.config
    assert set(cfg.ignore_token_ids) == {tok.eos_token_id, tok.pad_token_id}
    expected = ktae.key_token_values(responses, mask, scores, group, cfg)
    for i, values in enumerate(analysis.values):
        assert torch.equal(values, expected[i, : len(values)])
    assert torch.allclose(torch.tensor(analysis.advantages, dtype=torch.float64),
                          ktae.rollout_advantages(scores, group, cfg).double())
    table = ktae.explain(responses, mask, scores, group, cfg)
    assert torch.equal(table.value, analysis.table.value) and torch.equal(table.token, analysis.table.token)
    for g in analysis.groups:
        # the k tokens of largest / smallest K, ranked by the score s behind K (no ties at saturation)
        rows = [r for r in table.records() if r["group"] == g.index]
        pos = sorted((r for r in rows if r["value"] > 0), key=lambda r: -r["score"])[:5]
        neg = sorted((r for r in rows if r["value"] < 0), key=lambda r: r["score"])[:5]
        assert [r["token"] for r in g.positive] == [r["token"] for r in pos]
        assert [r["token"] for r in g.negative] == [r["token"] for r in neg]
        assert g.positive == pos and g.negative == neg
    assert [(g.key, g.n_correct, g.n_wrong) for g in analysis.groups] == [("p1", 3, 3), ("p2", 2, 1), ("1+1?", 2, 0)]
    mixed = analysis.groups[0]
    assert mixed.positive and mixed.negative
    assert all(r["value"] > 0 for r in mixed.positive) and all(r["value"] < 0 for r in mixed.negative)
    # EOS is ignored: K = 0 wherever it occurs
    for ids, values in zip(analysis.token_ids, analysis.values):
        for t, token in enumerate(ids):
            if token == tok.eos_token_id:
                assert values[t] == 0


def test_text_and_ids_give_the_same_tokens(tok, analysis):
    for r, ids in zip(analysis.rollouts, analysis.token_ids):
        if r.token_ids is None:
            assert ids == tok(r.response, add_special_tokens=False)["input_ids"]
        else:
            assert ids == r.token_ids
            assert analysis.pieces[analysis.rollouts.index(r)].text == r.response + "<|im_end|>"


# ---------------------------------------------------------------------------------------------------------------
# HTML
# ---------------------------------------------------------------------------------------------------------------


class _Report(HTMLParser):
    """Collects, per rollout (<details id="rN">), the token spans of its text: (class, data-k, title, text)."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.rollouts: dict[int, list[dict]] = {}
        self.current: int | None = None
        self.in_text = False
        self.span: dict | None = None
        self.depth = 0
        self.tags: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.tags.append(tag)
        if tag == "a" and "href" in attrs:
            self.links.append(attrs["href"])
        if tag == "details" and (attrs.get("id") or "").startswith("r"):
            self.current = int(attrs["id"][1:])
            self.rollouts[self.current] = []
        elif tag == "div" and attrs.get("class") == "text" and self.current is not None:
            self.in_text = True
        elif tag == "span" and self.in_text:
            assert self.span is None, "token spans must not nest"
            self.span = {"class": attrs.get("class", ""), "k": attrs.get("data-k"), "title": attrs.get("title", ""),
                         "text": ""}

    def handle_endtag(self, tag):
        if tag == "span" and self.span is not None:
            self.rollouts[self.current].append(self.span)
            self.span = None
        elif tag == "div" and self.in_text:
            self.in_text = False
        elif tag == "details":
            self.current = None

    def handle_data(self, data):
        if self.span is not None:
            self.span["text"] += data
        elif self.in_text:
            assert not data, f"text outside token spans: {data!r}"


def _parse(path) -> _Report:
    parser = _Report()
    parser.feed(open(path, encoding="utf-8").read())
    parser.close()
    return parser


def test_html_one_span_per_token_with_core_values(tok, analysis, tmp_path):
    files = write_html(analysis, tmp_path / "report.html", progress=False)
    assert files == [str(tmp_path / "report.html")]
    source = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<style>" in source and "http://" not in source and "https://" not in source and "<script" not in source
    for needle in (PROMPT1.replace("$", "$"), "Reference answer:", "leans to", "Key tokens of correct answers"):
        assert needle in source.replace("&#x27;", "'")
    report = _parse(tmp_path / "report.html")
    assert sorted(report.rollouts) == list(range(len(analysis.rollouts)))
    for i, spans in report.rollouts.items():
        ids = analysis.token_ids[i]
        values = analysis.values[i].tolist()
        assert len(spans) == len(ids)
        # the concatenated spans are exactly the decoded response: no Ġ/Ċ, no broken characters
        assert "".join(s["text"] for s in spans) == decode_ids(tok, ids)
        for span, value in zip(spans, values):
            assert float(span["k"]) == pytest.approx(value, rel=1e-6, abs=1e-7)
            shade = span["class"].split()[0]
            assert shade == "z" if value == 0 else shade[0] == ("p" if value > 0 else "n")
            assert f"K {value:+.4f}" in span["title"]
    joined = "".join(s["text"] for spans in report.rollouts.values() for s in spans)
    assert "答案" in joined and "→" in joined and "✓" in joined and "Ġ" not in joined and "\ufffd" not in joined
    # both colours are used in the mixed group
    classes = {s["class"][0] for s in report.rollouts[0] + report.rollouts[3]}
    assert {"p", "n"} <= classes


def test_html_pagination(analysis, tmp_path):
    files = write_html(analysis, tmp_path / "big.html", page_size=1, progress=False)
    assert len(files) == 4
    index = _parse(files[0])
    assert any(link.startswith("big_pages/page-001.html") for link in index.links)
    seen = []
    for page in files[1:]:
        parsed = _parse(page)
        assert "../big.html" in parsed.links
        seen += sorted(parsed.rollouts)
    assert sorted(seen) == list(range(len(analysis.rollouts)))
    by_tokens = write_html(analysis, tmp_path / "t.html", page_tokens=1, progress=False)
    assert len(by_tokens) == 4
    assert len(write_html(analysis, tmp_path / "one.html", progress=False)) == 1
    with pytest.raises(ValueError, match="page_tokens"):
        write_html(analysis, tmp_path / "x.html", page_tokens=0)
    with pytest.raises(ValueError, match="page_size"):
        write_html(analysis, tmp_path / "x.html", page_size=0)
    with pytest.raises(ValueError, match="vmax"):
        write_html(analysis, tmp_path / "x.html", vmax=-1.0)


def test_write_report_for_the_trainer(tok, rollouts_file, tmp_path):
    out = tmp_path / "run" / "key_tokens.html"
    files = write_report(str(rollouts_file), tok, str(out))
    assert files[0] == str(out) and out.stat().st_size > 1000
    assert len(_parse(out).rollouts) == 11


# ---------------------------------------------------------------------------------------------------------------
# PNG figure
# ---------------------------------------------------------------------------------------------------------------


def test_layout_wraps_and_keeps_newlines():
    pieces = ["Hello", " world", ".\n\n", "x" * 25, " end", ""]
    lines, boxes = layout(pieces, width=10)
    assert all(len(line) <= 10 for line in lines)
    assert lines[0] == "Hello" and lines[1].startswith(" world.")
    assert sum(line.count("\u21b5") for line in lines) == 2
    assert "".join(lines).replace("\u21b5", "") == "".join(pieces).replace("\n", "")
    assert {k for k, *_ in boxes} == {0, 1, 2, 3, 4}
    with pytest.raises(ValueError, match="width"):
        layout(pieces, width=3)


def _colour_pixels(image):
    rgb = image[..., :3].astype(np.float64)
    if rgb.max() > 1.5:
        rgb = rgb / 255.0
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    green = int(((g - r > 0.15) & (g - b > 0.05)).sum())
    red = int(((r - g > 0.2) & (r - b > 0.2)).sum())
    return green, red


def test_png_figure_has_both_colours(tmp_path):
    import matplotlib.image as mpimg

    path = plot_rollout(["The", " answer", " is", " $\\boxed{5}$", "\n", "wrong"], [0.9, 0.3, 0.0, 0.8, 0.0, -0.7],
                        tmp_path / "fig.png", title="demo")
    image = mpimg.imread(path)
    green, red = _colour_pixels(image)
    assert green > 100 and red > 100
    with pytest.raises(ValueError, match="same length"):
        plot_rollout(["a"], [0.1, 0.2], tmp_path / "bad.png")


# ---------------------------------------------------------------------------------------------------------------
# the command
# ---------------------------------------------------------------------------------------------------------------


def test_cli_end_to_end(tok, rollouts_file, tmp_path, capsys):
    folder = tmp_path / "tokenizer"
    tok.save_pretrained(folder)
    html_path, png_dir = tmp_path / "out" / "report.html", tmp_path / "out" / "png"
    rc = analyze_main([str(rollouts_file), "--tokenizer", str(folder), "--html", str(html_path), "--png", str(png_dir),
                       "--top", "3", "--png-limit", "2", "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0
    assert "prompt 1 · 6 rollouts (3 correct, 3 wrong)" in out
    assert "p-value" in out and "IG" in out and "all rollouts correct" in out
    assert html_path.is_file() and "HTML report" in out
    pngs = sorted(os.listdir(png_dir))
    assert len(pngs) == 2 and all(name.endswith(".png") for name in pngs)
    # the printed top token of prompt 1 is the core's
    analysis = analyze(load_rollouts(rollouts_file), tok, num_tokens=3, progress=False)
    first = analysis.groups[0].positive[0]
    assert f"{first['value']:+.3f}" in out


def test_cli_and_loader_errors(tok, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"group": 1, "response": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:1: needs the outcome"):
        load_rollouts(bad)
    bad.write_text('{"group": 1, "response": "x", "reward": 1}\nnot json\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        load_rollouts(bad)
    bad.write_text('{"reward": 1, "response": "x"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="group id"):
        load_rollouts(bad)
    bad.write_text('{"group": 1, "token_ids": [1, -2], "reward": 1}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="token_ids"):
        load_rollouts(bad)
    with pytest.raises(FileNotFoundError):
        load_rollouts(tmp_path / "missing.jsonl")
    folder = tmp_path / "tokenizer"
    tok.save_pretrained(folder)
    assert analyze_main([str(tmp_path / "missing.jsonl"), "--tokenizer", str(folder)]) == 2
    assert "not found" in capsys.readouterr().err
    good = tmp_path / "good.jsonl"
    good.write_text('{"group": 1, "response": "x", "reward": 1}\n', encoding="utf-8")
    assert analyze_main([str(good), "--tokenizer", str(folder), "--config", "alpah=1"]) == 2
    assert "unknown option(s) ['alpah']" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        analyze_main([str(good), "--tokenizer", str(folder), "--top", "-1"])
    with pytest.raises(TypeError, match="config"):
        analyze(load_rollouts(good), tok, config={"alpha": 1})


def test_config_from_pairs_and_yaml(tmp_path):
    cfg = parse_config(["alpha=0", "gamma=0.5", "fisher_at_one=zero"], (7,))
    assert (cfg.alpha, cfg.beta, cfg.gamma, cfg.fisher_at_one, cfg.ignore_token_ids) == (0.0, 1.0, 0.5, "zero", (7,))
    yaml_file = tmp_path / "c.yaml"
    yaml_file.write_text("ktae:\n  beta: 2.0\n  ignore_token_ids: [1, 2]\n", encoding="utf-8")
    cfg = parse_config([str(yaml_file), "threshold=0.5"], ())
    assert (cfg.beta, cfg.threshold, cfg.ignore_token_ids) == (2.0, 0.5, (1, 2))
    with pytest.raises(ValueError, match="--config.alpha: expected a number"):
        parse_config(["alpha=x"], ())


def test_config_from_a_run_config_yaml(tmp_path):
    """A trainer's config.yaml: its own options at the top, KTAEConfig fields under ``ktae:`` (some left out)."""
    run_config = tmp_path / "config.yaml"
    run_config.write_text("preset: grpo-ktae\nsteps: 150\nlr: 1.0e-05\nktae:\n  alpha: 0.5\n  gamma: 0\n"
                          "  fisher_at_one: zero\n  threshold: 0.5\n", encoding="utf-8")
    cfg = parse_config([str(run_config)], (7, 8))
    assert (cfg.alpha, cfg.beta, cfg.gamma, cfg.fisher_at_one, cfg.threshold) == (0.5, 1.0, 0.0, "zero", 0.5)
    assert (cfg.rollout, cfg.ignore_token_ids) == ("grpo", (7, 8))  # not in the section: the defaults
    dumped = {"alpha": 1.0, "rollout": "rloo", "ignore_token_ids": (3,)}
    cfg = parse_config([str(run_config), "beta=2"], (7, 8), base=dumped)
    assert (cfg.alpha, cfg.beta, cfg.rollout, cfg.ignore_token_ids) == (0.5, 2.0, "rloo", (3,))
    run_config.write_text("ktae:\n  alpha: 1\n  rollout: dr_grpo\n  ignore_token_ids: [1, 2]\n", encoding="utf-8")
    cfg = parse_config([str(run_config)], (7,))
    assert (cfg.rollout, cfg.ignore_token_ids) == ("dr_grpo", (1, 2))
    run_config.write_text("ktae:\n  alpha: 1\n  dump_every: 2\n", encoding="utf-8")
    with pytest.raises(ValueError, match="unknown option"):
        parse_config([str(run_config)], ())
    from ktae.train.config import make_config, save_yaml   # what ktae train writes: the estimator's rollout part

    save_yaml(make_config(estimator="rloo+ktae", ktae_gamma=0), run_config)
    assert parse_config([str(run_config)], (7,)) == ktae.KTAEConfig(gamma=0.0, rollout="rloo", ignore_token_ids=(7,))


def test_cli_options_spellings_and_flags():
    """Dashed and underscored spellings; --quiet and --config may come before the rollouts; defaults."""
    from ktae.analysis.cli import AnalyzeOptions, build_parser
    from ktae.options import parse

    def parsed(*argv):
        return parse(build_parser(), list(argv))

    dashed, positional = parsed("r.jsonl", "--tokenizer", "t", "--page-size", "2", "--png-limit", "0",
                                "--print-groups", "3", "--page-tokens", "99")
    underscored, _ = parsed("r.jsonl", "--tokenizer", "t", "--page_size", "2", "--png_limit", "0",
                            "--print_groups", "3", "--page_tokens", "99")
    assert dashed == underscored and positional.rollouts == "r.jsonl"
    assert (dashed.page_size, dashed.png_limit, dashed.print_groups, dashed.page_tokens) == (2, 0, 3, 99)
    options, positional = parsed("--quiet", "--config", "alpha=0", "r.jsonl", "--config", "c.yaml", "--tokenizer", "t")
    assert positional.rollouts == "r.jsonl" and options.quiet is True
    assert options.config == ["alpha=0", "c.yaml"]
    options, _ = parsed("r.jsonl", "--tokenizer", "t")
    assert options == AnalyzeOptions(tokenizer="t")
    assert (options.quiet, options.config, options.num_tokens, options.label, options.vmax) == (False, [], 20, "reward", None)


@pytest.mark.parametrize("argv, message", [
    (["--top", "x"], "argument --num_tokens/--num-tokens/--top: invalid int value: 'x'"),
    (["--vmax", "big"], "argument --vmax: invalid float value: 'big'"),
    (["--label", "score"], "argument --label: invalid choice: 'score'"),
    (["--page-size", "0"], "--page-size must be >= 1, got 0"),
    (["--png-limit", "-1"], "--png-limit must be >= 0, got -1"),
    (["--vmax", "0"], "--vmax must be > 0"),
    (["--quiet", "yes"], "unrecognized arguments: yes"),
])
def test_cli_bad_values_name_the_option(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:
        analyze_main(["r.jsonl", "--tokenizer", "t", *argv])
    assert exc.value.code == 2
    assert f"ktae analyze: error: {message}" in capsys.readouterr().err


def test_cli_help_shows_defaults_and_asks_for_a_tokenizer_only_when_unknown(capsys, tmp_path):
    plain = tmp_path / "r.jsonl"
    plain.write_text('{"group": "a", "response": "x", "reward": 1.0}\n')
    assert analyze_main([str(plain), "--quiet"]) == 2
    assert "do not say which tokenizer made them; give --tokenizer" in capsys.readouterr().err
    assert analyze_main(["--help", "all"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    for shown in ("--page_size, --page-size PAGE_SIZE prompts per HTML page (default: 10)",
                  "(default: 200000)", "0 for all (default: 50)", "--quiet no progress bars (default: False)",
                  "--label {reward,correct}", "(default: reward)", "fisher_at_one", "rollouts"):
        assert shown in text
    assert "--tokenizer TOKENIZER Hugging Face tokenizer name or folder with tokenizer files (default: the one" in text


def test_cli_short_help_names_num_tokens_with_top_and_the_run_folder(capsys):
    assert analyze_main(["--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "--num_tokens, --num-tokens, --top NUM_TOKENS key tokens listed per prompt and sign" in text
    assert "ktae analyze RUN_DIR|ROLLOUTS" in text and "or a run folder" in text


# ---------------------------------------------------------------------------------------------------------------
# a real browser
# ---------------------------------------------------------------------------------------------------------------


def test_report_renders_in_headless_chromium(analysis, tmp_path):
    import matplotlib.image as mpimg

    browser = chromium()
    page = tmp_path / "report.html"
    write_html(analysis, page, progress=False)
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        result = run_browser(browser, profile, f"--screenshot={shot}", "--window-size=1200,1400", page.as_uri())
    assert shot.is_file(), f"chromium wrote no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    image = mpimg.imread(shot)
    assert image.shape[0] >= 1000 and image.shape[1] >= 1000
    rgb = image[..., :3]
    assert rgb.std() > 0.05, "the page rendered blank"
    green, red = _colour_pixels(image)
    assert green > 500 and red > 500, f"expected shaded tokens in both colours, got {green} green and {red} red pixels"
