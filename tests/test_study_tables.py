"""benchmarks/study_tables.py: the study's outcomes and paired differences from a curves CSV alone."""

import pytest
from benchmark_scripts import load_benchmark

from ktae.experiments.compare import mean_ci, write_curves_csv


def load_script():
    return load_benchmark("study_tables")


def run_rows(arm, seed, held, roll, length, every=5, study="s"):
    """Rows of one run: held-out accuracy every ``every`` steps from 0, rollout values at steps 1..N."""
    rows = [{"study": study, "arm": arm, "seed": seed, "step": 0, "rollout_accuracy": None,
             "heldout_accuracy": held[0], "response_length": None}]
    for t, (r, n) in enumerate(zip(roll, length), start=1):
        rows.append({"study": study, "arm": arm, "seed": seed, "step": t, "rollout_accuracy": r,
                     "heldout_accuracy": held[t // every] if t % every == 0 else None, "response_length": n})
    return rows


def test_outcomes_of_one_run():
    st = load_script()
    run = run_rows("grpo", 0, [0.1, 0.3, 0.5], [0.1] * 5 + [0.5] * 5, [50.0] * 8 + [40.0, 30.0])
    out = st.outcomes(run, target=0.3, last=2)
    # trapezoids: (0.1+0.3)/2*5 + (0.3+0.5)/2*5 = 3.0 over 10 steps -> 30%
    assert out["auc"] == pytest.approx(30.0)
    assert out["steps_to_target"] == 5
    assert out["final_length"] == pytest.approx(35.0)
    assert out["final_heldout"] == pytest.approx(50.0)
    assert out["first_rollout"] == pytest.approx(10.0) and out["final_rollout"] == pytest.approx(50.0)
    assert st.outcomes(run, target=0.6, last=2)["steps_to_target"] is None


def test_tables_pair_same_seeds_and_leave_out_unfinished_runs(tmp_path, capsys):
    st = load_script()
    rows = []
    gains = {0: 0.1, 1: 0.2, 2: 0.0}
    for seed, gain in gains.items():
        rows += run_rows("grpo", seed, [0.1, 0.2, 0.3], [0.2] * 10, [50.0] * 10)
        rows += run_rows("grpo-ktae", seed, [0.1, 0.2 + gain, 0.3 + gain], [0.2] * 10, [45.0] * 10)
    rows += run_rows("dapo", 0, [0.1, 0.2], [0.2] * 5, [50.0] * 5)  # stopped at step 5 of 10
    path = write_curves_csv(tmp_path / "curves.csv", rows)
    assert st.main([str(path), "--target", "0.25", "--out", str(tmp_path / "t.md"),
                    "--figure", str(tmp_path / "f.png")]) == 0
    text = (tmp_path / "t.md").read_text()
    assert "Unfinished (left out): dapo s0 (step 5)" in text
    # paired AUC differences: gain * (5/2 + 5) / 10 = 0.75 gain -> 7.5, 15, 0 points
    mean, ci = mean_ci([7.5, 15.0, 0.0])
    paired = next(line for line in text.splitlines() if line.startswith("| GRPO+KTAE − GRPO"))
    assert f"{mean:.1f} ± {ci:.1f}" in paired
    assert "-5.0 ± 0.0 *" in paired  # final length 45 vs 50 in every seed
    assert "(3/3 reached)" in text and (tmp_path / "f.png").stat().st_size > 10_000
    assert "| 10 | 30.0 ± 0.0 |" in text
    with pytest.raises(SystemExit):
        st.main([str(path), "--target", "0.25", "--study", "nope"])
    with pytest.raises(SystemExit):
        st.main([str(path), "--target", "2"])


def test_study_3_arms_pair_with_grpo(tmp_path):
    st = load_script()
    assert st.pair_of("grpo-ktae-no-gamma") == "grpo" and st.pair_of("dapo-ktae") == "dapo"
    assert st.pair_of("grpo-oracle-blame") == "grpo" and st.pair_of("grpo-ktae-top0.5-beta0") == "grpo"
    assert st.pair_of("grpo") is None and st.pair_of("other") is None
    rows = []
    for seed in (0, 1):
        rows += run_rows("grpo", seed, [0.1, 0.2, 0.3], [0.2] * 10, [50.0] * 10)
        for arm in ("grpo-oracle", "grpo-ktae-top0.5-beta0"):
            rows += run_rows(arm, seed, [0.1, 0.2, 0.3], [0.2] * 10, [40.0] * 10)
    path = write_curves_csv(tmp_path / "curves.csv", rows)   # with the mixed_group_fraction column, empty
    assert st.main([str(path), "--target", "0.25", "--out", str(tmp_path / "t.md")]) == 0
    text = (tmp_path / "t.md").read_text()
    for label in ("GRPO+oracle − GRPO", "grpo-ktae-top0.5-beta0 − GRPO"):
        paired = next(line for line in text.splitlines() if line.startswith(f"| {label} "))
        assert "-10.0 ± 0.0 *" in paired
    assert "Share of mixed groups" not in text   # the column is empty: no table


def test_named_pairs_and_the_mixed_group_table(tmp_path):
    st = load_script()
    rows = []
    for seed, gap in ((0, 0.1), (1, 0.3)):
        for arm, held in (("grpo", [0.1, 0.2, 0.3]), ("grpo-oracle-blame", [0.1, 0.4, 0.5]),
                          ("grpo-ktae-gate", [0.1, 0.4 - gap, 0.5 - gap])):
            run = run_rows(arm, seed, held, [0.2] * 10, [50.0] * 10)
            for r in run:
                r["mixed_group_fraction"] = None if r["step"] == 0 else (0.5 if r["step"] <= 5 else 0.75 + seed / 8)
            rows += run
    path = write_curves_csv(tmp_path / "curves.csv", rows)
    out = tmp_path / "t.md"
    assert st.main([str(path), "--target", "0.25", "--last", "5", "--out", str(out),
                    "--pair", "grpo-ktae-gate:grpo-oracle-blame"]) == 0
    text = out.read_text()
    # gate - blame: -gap at steps 5 and 10 -> AUC -0.75 gap: -7.5 and -22.5 points
    mean, ci = mean_ci([-7.5, -22.5])
    paired = next(line for line in text.splitlines() if line.startswith("| GRPO+KTAE gate − GRPO+oracle (blame) "))
    assert f"{mean:.1f} ± {ci:.1f}" in paired
    assert any(line.startswith("| GRPO+KTAE gate − GRPO ") for line in text.splitlines())
    # steps 1-5: 50% in every run; steps 6-10: 75% and 87.5% -> 81.2 ± its interval
    mean, ci = mean_ci([75.0, 87.5])
    assert "| 1-5 | 50.0 ± 0.0 | 50.0 ± 0.0 | 50.0 ± 0.0 |" in text
    assert f"| 6-10 | {mean:.1f} ± {ci:.1f} |" in text
    for bad in ("grpo-ktae-gate", "grpo-ktae-gate:nope"):
        with pytest.raises(SystemExit):
            st.main([str(path), "--target", "0.25", "--pair", bad])


def test_per_seed_table_uses_trapezoids_and_pairs_each_seed(tmp_path):
    st = load_script()
    rows = []
    curves = {("grpo", 0): [0.1, 0.5, 0.6], ("grpo", 1): [0.2, 0.4, 0.4],
              ("grpo-ktae-top0.5-beta0", 0): [0.1, 0.6, 0.6], ("grpo-ktae-top0.5-beta0", 1): [0.2, 0.5, 0.5]}
    for (arm, seed), held in curves.items():
        rows += run_rows(arm, seed, held, [0.2] * 10, [50.0] * 10)
    rows += run_rows("grpo-oracle", 0, [0.1, 0.9], [0.2] * 5, [50.0] * 5)  # stopped at step 5 of 10: left out
    path = write_curves_csv(tmp_path / "curves.csv", rows)
    out = tmp_path / "t.md"
    assert st.main([str(path), "--target", "0.25", "--per_seed", "--out", str(out)]) == 0
    text = out.read_text().split("Held-out AUC per seed")[1]

    def trapezoid(held):  # steps 0, 5, 10: the mean height of the trapezoids, in percent
        return 100 * ((held[0] + held[1]) / 2 + (held[1] + held[2]) / 2) / 2

    area = {k: trapezoid(v) for k, v in curves.items()}
    assert area["grpo", 0] == pytest.approx(42.5)   # the plain mean of the evaluations would be 40.0
    diffs = [area["grpo-ktae-top0.5-beta0", s] - area["grpo", s] for s in (0, 1)]
    row = next(line for line in text.splitlines() if line.startswith("| grpo-ktae-top0.5-beta0 |"))
    assert row == (f"| grpo-ktae-top0.5-beta0 | GRPO | {area['grpo-ktae-top0.5-beta0', 0]:.1f} | "
                   f"{area['grpo-ktae-top0.5-beta0', 1]:.1f} | {diffs[0]:+.2f} | {diffs[1]:+.2f} | "
                   f"{sum(diffs) / 2:+.2f} |")
    assert f"| GRPO | – | {area['grpo', 0]:.1f} | {area['grpo', 1]:.1f} | – | – | – |" in text
    assert "| GRPO+oracle |" not in text
    assert st.main([str(path), "--target", "0.25", "--out", str(out)]) == 0
    assert "Held-out AUC per seed" not in out.read_text()   # only with --per_seed


def test_holm_adjusts_step_down_in_the_order_given():
    st = load_script()
    # sorted: 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> kept at 0.06 (never below an earlier one)
    assert st.holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert st.holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])


def test_primary_comparisons_and_the_share_of_the_oracle_gain(tmp_path):
    st = load_script()
    rows = []
    gains = {0: 0.1, 1: 0.2, 2: 0.3, 3: 0.1}
    for seed, gain in gains.items():
        rows += run_rows("grpo", seed, [0.1, 0.2, 0.3], [0.2] * 10, [50.0] * 10)
        rows += run_rows("grpo-oracle-blame", seed, [0.1, 0.2 + gain, 0.3 + gain], [0.2] * 10, [50.0] * 10)
        rows += run_rows("grpo-line", seed, [0.1, 0.2 + gain / 2, 0.3 + gain / 2], [0.2] * 10, [50.0] * 10)
    path = write_curves_csv(tmp_path / "curves.csv", rows)
    out = tmp_path / "t.md"
    assert st.main([str(path), "--target", "0.25", "--primary", "grpo-line,grpo-oracle-blame",
                    "--share_of", "grpo-oracle-blame", "--out", str(out)]) == 0
    text = out.read_text()
    # blame's AUC gains: 0.75 * gain -> 7.5, 15, 22.5, 7.5 points; line's half of each
    blame = next(line for line in text.splitlines() if line.startswith("| GRPO+oracle (blame) − GRPO | 4 | +13.1"))
    from scipy import stats

    p = stats.ttest_1samp([7.5, 15.0, 22.5, 7.5], 0.0).pvalue
    assert f"| {p:.3f} |" in blame and "| 4/4 |" in blame
    # the line rule gains exactly half on every seed: every bootstrap resample gives 50%
    assert "| GRPO+line | 4 | 50% | 50% to 50% |" in text
    with pytest.raises(SystemExit):
        st.main([str(path), "--target", "0.25", "--share_of", "grpo-oracle-blame"])
    with pytest.raises(SystemExit):
        st.main([str(path), "--target", "0.25", "--primary", "grpo-prefix"])
