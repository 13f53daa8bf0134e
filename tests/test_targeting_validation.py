"""benchmarks/targeting_validation.py: study 3's gains from its CSV, Spearman's rho with its exact p, the report."""
import itertools
import json
from pathlib import Path

import pytest
from benchmark_scripts import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
STUDY = ROOT / "docs" / "data" / "study-learning-3.csv"


@pytest.fixture(scope="module")
def script():
    return load_benchmark("targeting_validation")


def plain_auc(points):
    """Mean height of the held-out curve by trapezoids, written out."""
    area = 0.0
    for (t0, v0), (t1, v1) in zip(points, points[1:]):
        area += (t1 - t0) * (v0 + v1) / 2
    return 100 * area / (points[-1][0] - points[0][0])


def test_study_gains_are_the_paired_auc_differences(script):
    import csv

    curves = {}
    with open(STUDY, newline="") as handle:
        for row in csv.DictReader(handle):
            if row["heldout_accuracy"]:
                curves.setdefault((row["arm"], int(row["seed"])), []).append((int(row["step"]),
                                                                               float(row["heldout_accuracy"])))
    gains = script.study_gains(STUDY)
    arms = {arm: rule for arm, rule in script.ARM_RULES.items() if any(a == arm for a, _ in curves)}
    assert set(gains) == set(arms.values()) and gains["grpo"] == 0
    for arm, rule in arms.items():
        seeds = sorted(seed for a, seed in curves if a == arm)
        diffs = [plain_auc(sorted(curves[(arm, s)])) - plain_auc(sorted(curves[("grpo", s)])) for s in seeds]
        assert gains[rule] == pytest.approx(sum(diffs) / len(diffs)), rule
    assert gains["oracle-blame"] == pytest.approx(1.49, abs=0.005)       # docs/study-learning.md, study 3


def test_spearman_and_its_exact_p_agree_with_scipy(script):
    stats = pytest.importorskip("scipy.stats")
    x, y = [0.1, 0.4, 0.35, 0.9, 0.5, 0.2], [-1.7, -0.3, 0.0, 1.5, 0.9, 0.4]
    rho, p = script.spearman(x, y)
    assert rho == pytest.approx(stats.spearmanr(x, y).statistic)
    null = [stats.spearmanr(x, list(order)).statistic for order in itertools.permutations(y)]
    assert p == pytest.approx(sum(abs(r) >= abs(rho) - 1e-12 for r in null) / len(null))
    assert script.ranks([3.0, 1.0, 3.0, 2.0]) == [3.5, 1.0, 3.5, 2.0]


def test_the_report_over_a_targeting_json(script, tmp_path, capsys):
    from ktae.targeting.score import MEASURES

    rules = {"grpo": 0.0, "ktae": 0.2, "gate": 0.1, "oracle": 0.9, "oracle-blame": 1.0, "prefix": 0.7}
    measures = {rule: {m: value for m in MEASURES} for rule, value in rules.items()}
    (tmp_path / "t.json").write_text(json.dumps({"rules": measures}))
    (tmp_path / "gains.csv").write_text("rule,gain,source\nprefix,1.42,pilot\n")
    out = tmp_path / "v.md"
    assert script.main([str(tmp_path / "t.json"), "--study", str(STUDY), "--gains", str(tmp_path / "gains.csv"),
                        "--out", str(out)]) == 0
    text = out.read_text()
    assert "| auroc_pooled |" in text and "+1.42" in text and "n = 6" in text      # 5 study arms + the pilot
    assert script.validate(measures, {"grpo": 0, "ktae": 1, "gate": 2}, leave_out=("gate",))["blame_share"]["n"] == 2
    assert text in capsys.readouterr().out
    (tmp_path / "bad.csv").write_text("name,value\n")
    with pytest.raises(ValueError, match="rule,gain"):
        script.table_gains(tmp_path / "bad.csv")


def test_the_first_curves_file_that_has_a_rule_gives_its_gain(script, tmp_path, capsys):
    """Study 3's CSV and study 4's pilots: grpo, ktae and the oracles from study 3, prefix and line from the pilots."""
    pilots = STUDY.parent / "study-learning-4-pilots.csv"
    measures = {"rules": {rule: {name: 0.5 for name in script.MEASURES} for rule in
                          ("grpo", "ktae", "ktae-tuned", "gate", "oracle", "oracle-blame", "prefix", "line")}}
    (tmp_path / "t.json").write_text(json.dumps(measures))
    assert script.main([str(tmp_path / "t.json"), "--study", str(STUDY), "--study", str(pilots)]) == 0
    gain_row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| *gain"))
    assert "n = 8" in gain_row
    study3, pilot = script.study_gains(STUDY), script.study_gains(pilots)
    assert set(pilot) >= {"prefix", "line", "oracle-blame"} and pilot["oracle-blame"] != study3["oracle-blame"]
    assert f"{study3['oracle-blame']:+.2f}" in gain_row and f"{pilot['prefix']:+.2f}" in gain_row
