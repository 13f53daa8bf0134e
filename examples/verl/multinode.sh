#!/usr/bin/env bash
# Run the KTAE launch scripts on a Ray cluster of several GPU nodes.
#
# Every node needs the same software (pip install "ktae[verl]" plus verl's engine, e.g. "verl[vllm]") and must
# see the model and the parquet files at the same paths (shared file system, or copies).
#
#   node 0 (head):   bash examples/verl/multinode.sh head
#   nodes 1..N-1:    bash examples/verl/multinode.sh worker <head-ip>
#   node 0 (head):   NNODES=N bash examples/verl/multinode.sh run grpo_ktae.sh [hydra overrides...]
#                    NNODES=N bash examples/verl/multinode.sh run dapo_ktae.sh [hydra overrides...]
#   any node:        bash examples/verl/multinode.sh stop
#
# `run` starts the launch script on the head node; verl's ray.init() joins the running cluster, and its actors
# and rollout servers spread over all NNODES x GPUS_PER_NODE GPUs. To submit it as a Ray job instead (it keeps
# running when your shell closes): ray job submit --address http://<head-ip>:8265 -- \
#     env NNODES=N DATA_DIR=... MODEL_PATH=... bash "$PWD/examples/verl/grpo_ktae.sh"
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PORT=${RAY_PORT:-6379}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}

case "${1:-}" in
  head)
    ray start --head --port="$PORT" --num-gpus="$GPUS_PER_NODE" --dashboard-host=0.0.0.0
    ;;
  worker)
    [ -n "${2:-}" ] || { echo "usage: $0 worker <head-ip>" >&2; exit 2; }
    ray start --address="$2:$PORT" --num-gpus="$GPUS_PER_NODE"
    ;;
  run)
    [ -n "${2:-}" ] || { echo "usage: NNODES=N $0 run grpo_ktae.sh|dapo_ktae.sh [overrides...]" >&2; exit 2; }
    script="$HERE/$2"
    [ -f "$script" ] || { echo "no launch script $script" >&2; exit 2; }
    shift 2
    nodes=$(python3 -c "import ray; ray.init(address='auto', logging_level='ERROR'); print(sum(1 for n in ray.nodes() if n['Alive']))")
    if [ "${NNODES:-1}" != "$nodes" ]; then
      echo "NNODES=${NNODES:-1} but the Ray cluster has $nodes live nodes; set NNODES=$nodes" >&2
      exit 2
    fi
    RAY_ADDRESS=auto NNODES="$nodes" GPUS_PER_NODE="$GPUS_PER_NODE" bash "$script" "$@"
    ;;
  stop)
    ray stop
    ;;
  *)
    echo "usage: $0 head | worker <head-ip> | run <script> [overrides...] | stop" >&2
    exit 2
    ;;
esac
