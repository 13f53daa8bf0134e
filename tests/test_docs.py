"""The README and the documentation site: every ``ktae ...`` command they show parses against the real command line,
the worked example matches the core, the site builds with ``mkdocs build --strict``, and its pages render in a
headless browser."""
from __future__ import annotations

import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from browser import chromium, run_browser
from ktae import cli

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
FENCE = re.compile(r"^```(\w*)\s*$")
INLINE = re.compile(r"`(ktae [^`]+)`")
ASSIGN = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")


def _shell_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, command)`` of the shell code blocks: continuation lines joined, comments dropped, simple
    ``NAME="value"`` assignments of the block expanded where ``$NAME`` is used."""
    out, block, variables, pending, start = [], None, {}, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = FENCE.match(line.strip())
        if fence:
            block = fence.group(1) if block is None else None
            variables = {}
            continue
        if block not in ("bash", "sh", "shell", "console"):
            continue
        start = start or number
        pending += line.rstrip().removesuffix("\\") + " "
        if line.rstrip().endswith("\\"):
            continue
        command = shlex.split(pending, comments=True)
        pending, first = "", start
        start = 0
        if len(command) == 1 and ASSIGN.match(command[0]):
            name, value = ASSIGN.match(command[0]).groups()
            variables[name] = value
            continue
        joined = " ".join(shlex.quote(word) for word in command)
        for name, value in variables.items():
            joined = joined.replace(f"'${name}'", value).replace(f"${name}", value)
        out.append((first, joined))
    return out


def _ktae_commands(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, argv after 'ktae')`` of every ktae command in the shell code blocks."""
    found = []
    for number, line in _shell_lines(text):
        for segment in re.split(r"\s(?:&&|;|\|\|)\s", line):
            words = shlex.split(segment)
            if words and words[0] == "ktae":  # '...' stands for "your other arguments"
                found.append((number, [w for w in words[1:] if w != "..."]))
    return found


def _inline_mentions(text: str) -> list[tuple[int, list[str]]]:
    """``(line number, argv after 'ktae')`` of the commands mentioned in running text (`ktae train --preset NAME`)."""
    found = []
    for number, line in enumerate(text.splitlines(), 1):
        for match in INLINE.finditer(line):
            words = shlex.split(match.group(1).replace("...", ""))
            found.append((number, words[1:]))
    return found


def _commands(find) -> list:
    params = []
    for page in PAGES:
        for number, argv in find(page.read_text(encoding="utf-8")):
            where = f"{page.relative_to(ROOT)}:{number}"
            params.append(pytest.param(argv, id=f"{where} ktae {' '.join(argv)}"[:150]))
    return params


def check_command(argv: list[str]) -> None:
    """Parse ``ktae ARGV`` as the command would, without running it; raise on what the command would refuse."""
    name, rest = argv[0], argv[1:]
    assert name in cli.COMMANDS, f"no command ktae {name}"
    if any(a in ("-h", "--help") or a.startswith("--help=") for a in rest):
        with contextlib.redirect_stdout(io.StringIO()):
            assert cli.main(argv) == 0
        return
    if name == "verl":  # verl's Hydra overrides: composed by verl and checked by the launcher, nothing started
        pytest.importorskip("verl", reason="verl is not installed: pip install \"ktae[verl]\"")
        # In a subprocess: --cpu loads the CPU runtime, which selects verl's cpu platform for the whole process.
        # --rehearse is left out: it reads the user's model config (here a Hub id, unreachable in tests); the
        # rehearsal itself is tested in tests/test_integrations_verl_cpu.py.
        check = ["--check", *[a for a in rest if a not in ("--check", "--rehearse")]]
        done = subprocess.run([sys.executable, "-m", "ktae", "verl", *check], capture_output=True, text=True,
                              timeout=600, env={**os.environ, "HF_HUB_OFFLINE": "1"})
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        return
    if name == "train":
        from ktae.train.config import make_config, parse_command
        from ktae.train.presets import PRESETS

        launch, options = parse_command(rest)
        assert not launch.preset or launch.preset in PRESETS, f"no preset {launch.preset!r}"
        if not launch.resume and not launch.config:  # the values are checked as the run would check them
            make_config(launch.preset or None, **options)
        return
    if name == "compare":
        from ktae.experiments.compare import parse_args

        parse_args(rest)
        return
    from ktae.options import parse

    parsed = parse(cli.command_parser(name), rest)
    if name == "eval":
        parsed[0].check()


def test_the_pages_show_commands_of_every_kind():
    commands = {argv[0] for page in PAGES for _, argv in _ktae_commands(page.read_text(encoding="utf-8")) if argv}
    assert commands == set(cli.COMMANDS)


@pytest.mark.parametrize("argv", _commands(_ktae_commands))
def test_every_ktae_command_in_the_readme_and_docs_parses(argv):
    check_command(argv)


@pytest.mark.parametrize("argv", _commands(_inline_mentions))
def test_every_command_and_option_mentioned_in_the_text_exists(argv):
    if not argv or argv[0].startswith("<"):  # `ktae ...`, `ktae <command> --help`: any command
        return
    assert argv and argv[0] in cli.COMMANDS, f"no command ktae {argv[:1]}"
    if argv[0] not in cli.PARSERS:
        return
    known = {s for action in cli.command_parser(argv[0])._actions for s in action.option_strings}
    if argv[0] == "train":
        from ktae.train.config import Launch, make_parser

        known |= {s for a in make_parser([Launch], prog="ktae train")._actions for s in a.option_strings}
    for word in argv[1:]:
        if word.startswith("-"):
            assert word.partition("=")[0] in known, f"ktae {argv[0]} has no option {word}"


def test_a_wrong_command_is_caught():
    for argv in (["train", "--ktae_alpah", "0"], ["train", "--preset", "nope"], ["eval", "--limit", "x", "--model", "m"],
                 ["compare", "--seed", "3"], ["analyze", "--top", "3"]):
        with pytest.raises((ValueError, AssertionError, SystemExit)):
            check_command(argv)


def test_the_readme_stays_short():   # its two commands, which CI runs from it: tests/test_ci_commands.py
    assert len((ROOT / "README.md").read_text(encoding="utf-8").encode()) <= 15_000


def test_the_worked_example_shows_the_cores_numbers():
    import torch

    import ktae

    responses = torch.tensor([[11, 42, 7, 2], [11, 42, 9, 2], [11, 5, 9, 2], [13, 5, 2, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]])
    scores, group = torch.tensor([1.0, 1.0, 0.0, 0.0]), ["q1"] * 4
    config = ktae.KTAEConfig()
    records = {r["token"]: r for r in ktae.explain(responses, mask, scores, group, config).records()}
    row = records[11]
    advantages, _ = ktae.ktae_advantages(responses, mask, scores, group, config)
    rollout = ktae.grpo_advantages(scores, group)
    page = (ROOT / "docs" / "how-ktae-works.md").read_text(encoding="utf-8").replace("\u2212", "-")
    assert (row["a"], row["b"], row["n_correct"], row["n_wrong"]) == (2, 1, 2, 2)
    assert "| present | a = 2 | b = 1 |" in page
    for value in (row["p_value"], row["fisher"], row["info_gain"], row["arcsine"], row["tf_ratio"], row["score"],
                  row["value"]):
        assert f"| {value:.4f} |" in page, value
    shown = [f"{rollout[0]:.4f}", f"{advantages[0, 0]:.4f}", f"{advantages[2, 0]:.4f}", f"{records[42]['value']:.4f}",
             f"{records[2]['value']:.4f}"]
    for text in shown:
        assert text in page, text


def test_the_cli_reference_lists_every_option_of_every_command():
    sys.path.insert(0, str(ROOT / "docs" / "hooks"))
    try:
        from cli_reference import cli_reference
    finally:
        sys.path.pop(0)
    page = cli_reference()
    for name in cli.COMMANDS:
        assert f"## ktae {name}" in page
    for name in cli.PARSERS:
        for action in cli.command_parser(name)._actions:
            for string in set(action.option_strings) - {"-h", "--help"}:
                assert f"`{string}`" in page, (name, string)


# ---------------------------------------------------------------------------------------------------------------
# the built site
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    pytest.importorskip("mkdocs", reason="mkdocs is not installed: pip install -e \".[docs]\"")
    pytest.importorskip("material", reason="mkdocs-material is not installed: pip install -e \".[docs]\"")
    pytest.importorskip("mkdocstrings", reason="mkdocstrings is not installed: pip install -e \".[docs]\"")
    out = tmp_path_factory.mktemp("site")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")]),
           "NO_MKDOCS_2_WARNING": "1"}
    result = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"mkdocs build --strict failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}"
    return out


def test_the_site_builds_strictly_with_every_page(site):
    for page in ("index.html", "getting-started/index.html", "how-ktae-works/index.html", "training/index.html",
                 "presets-and-options/index.html", "evaluation/index.html", "verl/index.html", "trl/index.html",
                 "key-tokens/index.html", "does-ktae-help/index.html", "performance/index.html",
                 "troubleshooting/index.html", "reference/cli/index.html", "reference/api/index.html",
                 "changelog/index.html"):
        assert (site / page).is_file(), page
    cli_page = (site / "reference" / "cli" / "index.html").read_text(encoding="utf-8")
    assert "--ktae.alpha" in cli_page and "--from_generations" in cli_page and "--no_ray" in cli_page
    api_page = (site / "reference" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("key_token_values", "ktae_advantages", "KTAEConfig", "KTAEGRPOTrainer", "compute_ktae_advantage"):
        assert 'id="ktae.' in api_page and name in api_page, name


@pytest.mark.parametrize("page, expected", [("index.html", ["Getting started", "ktae_advantages"]),
                                            ("reference/cli/index.html", ["ktae train", "--ktae.alpha"])])
def test_pages_render_in_headless_chromium(site, page, expected, tmp_path):
    import matplotlib.image as mpimg

    browser = chromium()
    url = (site / page).as_uri()
    shot = tmp_path / "shot.png"
    with tempfile.TemporaryDirectory() as profile:
        result = run_browser(browser, profile, f"--screenshot={shot}", "--window-size=1400,1200", url)
        dom = run_browser(browser, profile, "--dump-dom", url).stdout
    assert shot.is_file(), f"chromium wrote no screenshot (rc {result.returncode}): {result.stderr[-2000:]}"
    for text in expected:
        assert text in dom, text
    image = mpimg.imread(shot)[..., :3]
    assert image.shape[:2] == (1200, 1400)
    body = image[100:, 300:1100]  # below the header bar, the main column
    dark = (body.mean(axis=2) < 0.45).mean()
    assert 0.005 < dark < 0.5, f"the page shows no text (dark share {dark:.4f})"
    assert (image[:60].mean(axis=(0, 1)) < 0.8).any(), "the theme's header bar is missing (CSS not loaded?)"
