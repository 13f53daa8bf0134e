"""ktae plot draws several runs' curves into one PNG."""
import json

import pytest

from ktae.experiments.plot import main, plot_runs, series


def fake_run(path, slope, evals=True):
    path.mkdir(parents=True)
    with open(path / "metrics.jsonl", "w") as f:
        if evals:
            f.write(json.dumps({"step": 0, "eval_accuracy": 0.2}) + "\n")
        for step in range(1, 11):
            f.write(json.dumps({"step": step, "accuracy": min(1.0, 0.2 + slope * step), "response_length": 20 + step,
                                "entropy": 1.0 / step}) + "\n")
        if evals:
            f.write(json.dumps({"step": 10, "eval_accuracy": 0.2 + slope * 10}) + "\n")
        f.write('{"step": 11, "accur')          # a torn last line (crash while writing) is ignored
    return path


def test_plot_writes_a_png_with_several_runs(tmp_path, capsys):
    a = fake_run(tmp_path / "a", 0.05)
    b = fake_run(tmp_path / "b", 0.03, evals=False)
    out = tmp_path / "fig" / "curves.png"
    assert main([str(a), str(b), "-o", str(out), "--labels", "grpo,ktae"]) == 0
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
    assert str(out) in capsys.readouterr().out


def test_series_and_errors(tmp_path):
    a = fake_run(tmp_path / "a", 0.05)
    from ktae.train.logger import read_metrics

    steps, values = series(read_metrics(a), "eval_accuracy")
    assert steps == [0, 10] and values == pytest.approx([0.2, 0.7])
    with pytest.raises(ValueError, match="not a run folder"):
        plot_runs([tmp_path / "missing"], tmp_path / "x.png")
    with pytest.raises(ValueError, match="labels"):
        plot_runs([a], tmp_path / "x.png", labels=["a", "b"])
    assert main([str(tmp_path / "missing")]) == 2


def test_plot_options_spellings_and_errors(tmp_path, capsys):
    """``-o`` and ``--output``, options before or after the run folders, errors naming the option, --help."""
    from ktae.experiments.plot import PlotOptions, build_parser
    from ktae.options import parse

    short, positional = parse(build_parser(), ["a", "b", "-o", "x.png", "--smooth", "3"])
    long, positional2 = parse(build_parser(), ["--output", "x.png", "--smooth", "3", "a", "b"])
    assert short == long == PlotOptions(output="x.png", smooth=3)
    assert positional.run_dirs == positional2.run_dirs == ["a", "b"]
    run = fake_run(tmp_path / "a", 0.05)
    assert main([str(run), "--title", "t", "--smooth", "1"]) == 0
    assert (run / "curves.png").is_file()
    capsys.readouterr()
    for argv, message in ((["--smooth", "x"], "argument --smooth: invalid int value: 'x'"),
                          ([], "the following arguments are required: run_dirs")):
        with pytest.raises(SystemExit) as exc:
            main([*argv])
        assert exc.value.code == 2 and f"ktae plot: error: {message}" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert exc.value.code == 0
    assert "--output, -o OUTPUT" in text and "(1 = raw) (default: 5)" in text and "run_dirs" in text
