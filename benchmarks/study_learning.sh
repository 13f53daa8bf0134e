#!/usr/bin/env bash
# The learning studies of docs/study-learning.md, one seed at a time, so that a stopped study has whole same-seed
# pairs. Resumable: run the same command again; finished runs are reused, an interrupted one resumed from its last
# checkpoint. Parts (each can run in its own process; they share OUT/runs and OUT/curves.csv):
#
#   benchmarks/study_learning.sh grpo  [OUT [SEEDS]]   # GRPO, GRPO+KTAE: seed 0, then seed 1, ...
#   benchmarks/study_learning.sh dapo  [OUT [SEEDS]]   # DAPO, DAPO+KTAE
#   benchmarks/study_learning.sh gamma [OUT [SEEDS]]   # GRPO+KTAE with gamma = 0 (reuses the GRPO runs)
#   benchmarks/study_learning.sh tables [OUT [SEEDS]]  # ktae compare's own tables and figures over all seeds
#
# STUDY picks the study: 2 (default; testbed word-easy) or 1 (the first, word-small). Defaults: OUT=runs/<study
# name>, SEEDS=8. Every run adds its curves to OUT/curves.csv; benchmarks/study_tables.py makes the study's tables
# from that file (docs/study-learning.md gives the command). Set KTAE="python -m ktae" (default: ktae) to run the
# package from a source folder on PYTHONPATH.
set -euo pipefail
PART=${1:?"part: grpo, dapo, gamma or tables"}
case "${STUDY:-2}" in
  1) name=study-learning; design=(--task word-small --steps 30 --eval_every 5 --target_accuracy 0.40) ;;
  2) name=study-learning-2; design=(--task word-easy --steps 30 --eval_every 2 --target_accuracy 0.60) ;;
  *) echo "study_learning.sh: unknown STUDY '$STUDY' (expected 1 or 2)" >&2; exit 2 ;;
esac
OUT=${2:-runs/$name}
SEEDS=${3:-8}
KTAE=${KTAE:-ktae}
common=("${design[@]}" --runs_dir "$OUT/runs" --csv "$OUT/curves.csv" --study "$name" --dump_key_tokens_every 10)
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
  echo "=== $(date -u +%H:%M:%S) $name $PART, seed $s"
  $KTAE compare "${common[@]}" "${extra[@]}" --seeds 1 --first_seed "$s" --output "$OUT/by-seed/$PART-s$s"
done
echo "=== $(date -u +%H:%M:%S) $name $PART: all $SEEDS seeds done"
