#!/usr/bin/env bash
# The study of docs/study-learning.md, one seed at a time, so that a stopped study has whole same-seed pairs.
# Resumable: run the same command again; finished runs are reused, an interrupted one resumed from its last
# checkpoint. Parts (each can run in its own process; they share OUT/runs and OUT/curves.csv):
#
#   benchmarks/study_learning.sh grpo  [OUT [SEEDS]]   # GRPO, GRPO+KTAE: seed 0, then seed 1, ...
#   benchmarks/study_learning.sh dapo  [OUT [SEEDS]]   # DAPO, DAPO+KTAE
#   benchmarks/study_learning.sh gamma [OUT [SEEDS]]   # GRPO+KTAE with gamma = 0 (reuses the GRPO runs)
#   benchmarks/study_learning.sh tables [OUT [SEEDS]]  # ktae compare's own tables and figures over all seeds
#
# defaults: OUT=runs/study-learning, SEEDS=8. Every run adds its curves to OUT/curves.csv (study
# "study-learning"); python benchmarks/study_tables.py OUT/curves.csv --target 0.40 makes the study's tables.
# Set KTAE="python -m ktae" (default: ktae) to run the package from a source folder on PYTHONPATH.
set -euo pipefail
PART=${1:?"part: grpo, dapo, gamma or tables"}
OUT=${2:-runs/study-learning}
SEEDS=${3:-8}
KTAE=${KTAE:-ktae}
common=(--task word-small --steps 30 --eval_every 5 --target_accuracy 0.40 --runs_dir "$OUT/runs"
        --csv "$OUT/curves.csv" --study study-learning --dump_key_tokens_every 10)
case "$PART" in
  grpo) extra=() ;;
  dapo) extra=(--dapo) ;;
  gamma) extra=(--ablations gamma) ;;
  tables)
    $KTAE compare "${common[@]}" --seeds "$SEEDS" --output "$OUT/grpo"
    $KTAE compare "${common[@]}" --seeds "$SEEDS" --dapo --output "$OUT/dapo"
    exit 0 ;;
  *) echo "study_learning.sh: unknown part '$PART' (expected grpo, dapo, gamma or tables)" >&2; exit 2 ;;
esac
for ((s = 0; s < SEEDS; s++)); do
  echo "=== $(date -u +%H:%M:%S) $PART, seed $s"
  $KTAE compare "${common[@]}" "${extra[@]}" --seeds 1 --first_seed "$s" --output "$OUT/by-seed/$PART-s$s"
done
echo "=== $(date -u +%H:%M:%S) $PART: all $SEEDS seeds done"
