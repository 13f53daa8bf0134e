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
#
# STUDY=3 (issue 25: can this testbed reward token-level credit at all?) has its own parts, every seed with its own
# warm start (--warm_start_per_seed); pilot and sweep seeds start at 100, apart from the study's seeds 0, 1, ...:
#
#   STUDY=3 benchmarks/study_learning.sh pilot [OUT [SEEDS]]   # GRPO vs the oracles (default 2 pilot seeds)
#   STUDY=3 benchmarks/study_learning.sh sweep [OUT [SEEDS]]   # the KTAE sweep: top 0.25..2 x beta 0/1, alpha 0
#                                                               # (default 2 pilot seeds)
#   STUDY=3 TUNED=top0.5-beta0 benchmarks/study_learning.sh study [OUT [SEEDS]]  # the seven arms, seed by seed
#                                           # (FIRST_SEED=6 ... study OUT 6: seeds 6-11, e.g. in a second process)
#   STUDY=3 TUNED=top0.5-beta0 benchmarks/study_learning.sh tables [OUT [SEEDS]]
#
# STUDY=4 (issue 31: do label-free rules recover the oracle's gain?):
#
#   STUDY=4 benchmarks/study_learning.sh pilot [OUT [SEEDS]]   # shared warm start, seeds 300-303 by default: grpo,
#                                           # grpo-ktae, both oracles, grpo-prefix, grpo-line
#   STUDY=4 RULES=a,b benchmarks/study_learning.sh study [OUT [SEEDS]]   # each seed its own warm start: grpo,
#                                           # grpo-ktae, both oracles and the two chosen label-free rules
#   STUDY=4 RULES=a,b benchmarks/study_learning.sh tables [OUT [SEEDS]]
#
# TUNED (or a 4th argument) is the KTAE point chosen after the sweep, written as an arm of the sweep without its
# 'grpo-ktae-' (e.g. top0.5-beta0). The pilot and the sweep end with one comparison over all their seeds (their
# tables; every run reused) and write their curves as the studies <name>-pilot and <name>-sweep.
set -euo pipefail
PART=${1:?"part: grpo, dapo, gamma or tables (STUDY=3: pilot, sweep, study or tables)"}
case "${STUDY:-2}" in
  1) name=study-learning; design=(--task word-small --steps 30 --eval_every 5 --target_accuracy 0.40) ;;
  2) name=study-learning-2; design=(--task word-easy --steps 30 --eval_every 2 --target_accuracy 0.60) ;;
  3) name=study-learning-3
     design=(--task word-easy --steps 30 --eval_every 2 --target_accuracy 0.60 --warm_start_per_seed) ;;
  4) name=study-learning-4
     design=(--task word-easy --steps 30 --eval_every 2 --target_accuracy 0.60) ;;
  *) echo "study_learning.sh: unknown STUDY '$STUDY' (expected 1, 2, 3 or 4)" >&2; exit 2 ;;
esac
OUT=${2:-runs/$name}
KTAE=${KTAE:-ktae}
TUNED=${4:-${TUNED:-}}
common=("${design[@]}" --runs_dir "$OUT/runs" --csv "$OUT/curves.csv" --dump_key_tokens_every 10)
PILOT_FIRST_SEED=100
SWEEP_POINTS=top0.25-beta0,top0.25-beta1,top0.5-beta0,top0.5-beta1,top1-beta0,top2-beta0,top2-beta1,alpha0

need_tuned() {
  if [[ -z "$TUNED" ]]; then
    echo "study_learning.sh: STUDY=3 part '$PART' needs the tuned KTAE point chosen after the sweep: set TUNED (e.g." \
         "TUNED=top0.5-beta0) or give it as the 4th argument" >&2
    exit 2
  fi
}

# by_seed STUDY_NAME PART FIRST_SEED SEEDS ARGS...: one comparison per seed, then (with SUMMARY=1) one over all
by_seed() {
  local study=$1 part=$2 first=$3 count=$4
  shift 4
  for ((s = first; s < first + count; s++)); do
    echo "=== $(date -u +%H:%M:%S) $study $part, seed $s"
    $KTAE compare "${common[@]}" --study "$study" "$@" --seeds 1 --first_seed "$s" --output "$OUT/by-seed/$part-s$s"
  done
  echo "=== $(date -u +%H:%M:%S) $study $part: all $count seeds done"
  if [[ "${SUMMARY:-0}" == 1 ]]; then
    $KTAE compare "${common[@]}" --study "$study" "$@" --seeds "$count" --first_seed "$first" --output "$OUT/$part"
  fi
}

if [[ "${STUDY:-2}" == 4 ]]; then
  need_rules() {
    if [[ -z "${RULES:-}" ]]; then
      echo "study_learning.sh: STUDY=4 part '$PART' needs the two chosen label-free rules: RULES=a,b" >&2
      exit 2
    fi
  }
  case "$PART" in
    pilot) SUMMARY=1 by_seed "$name-pilots" pilot "${FIRST_SEED:-300}" "${3:-4}" --oracle_arms --label_free_arms prefix,line ;;
    study) need_rules; by_seed "$name" study "${FIRST_SEED:-0}" "${3:-12}" --warm_start_per_seed --oracle_arms \
             --label_free_arms "$RULES" ;;
    tables)
      need_rules
      $KTAE compare "${common[@]}" --study "$name" --warm_start_per_seed --oracle_arms --label_free_arms "$RULES" \
        --seeds "${3:-12}" --output "$OUT/study" ;;
    *) echo "study_learning.sh: unknown part '$PART' of STUDY=4 (expected pilot, study or tables)" >&2; exit 2 ;;
  esac
  exit 0
fi

if [[ "${STUDY:-2}" == 3 ]]; then
  study_arms=(--oracle_arms --gate_arm --entropy_arm)
  case "$PART" in
    pilot) SUMMARY=1 by_seed "$name-pilot" pilot "$PILOT_FIRST_SEED" "${3:-2}" --oracle_arms ;;
    sweep) SUMMARY=1 by_seed "$name-sweep" sweep "$PILOT_FIRST_SEED" "${3:-2}" --ktae_points "$SWEEP_POINTS" ;;
    study) need_tuned; by_seed "$name" study "${FIRST_SEED:-0}" "${3:-8}" "${study_arms[@]}" --ktae_tuned "$TUNED" ;;
    tables)
      need_tuned
      $KTAE compare "${common[@]}" --study "$name" "${study_arms[@]}" --ktae_tuned "$TUNED" --seeds "${3:-8}" \
        --output "$OUT/study" ;;
    *) echo "study_learning.sh: unknown part '$PART' of STUDY=3 (expected pilot, sweep, study or tables)" >&2; exit 2 ;;
  esac
  exit 0
fi

SEEDS=${3:-8}
case "$PART" in
  grpo) extra=() ;;
  dapo) extra=(--dapo) ;;
  gamma) extra=(--ablations gamma) ;;
  tables)
    $KTAE compare "${common[@]}" --study "$name" --seeds "$SEEDS" --output "$OUT/grpo"
    $KTAE compare "${common[@]}" --study "$name" --seeds "$SEEDS" --dapo --output "$OUT/dapo"
    exit 0 ;;
  *) echo "study_learning.sh: unknown part '$PART' (expected grpo, dapo, gamma or tables)" >&2; exit 2 ;;
esac
by_seed "$name" "$PART" 0 "$SEEDS" "${extra[@]}"
