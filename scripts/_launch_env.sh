#!/bin/bash
# Environment shared by the recipe launchers (scripts/v1_5/_launch.sh, scripts/qwen/_launch.sh); sourced from the
# repository root.
#   use_repo_venv           the recipes call python / torchrun / deepspeed from PATH. When that python is not itself
#                           in a virtual environment (none activated: the system python, which lacks the project's
#                           packages), the repository's .venv (made by scripts/install.sh) goes first on PATH, so a
#                           recipe works as written without `source .venv/bin/activate`. An activated environment wins.
#   default_cpu_threads P W without a GPU and without OMP_NUM_THREADS set: OMP/MKL threads per process =
#                           max(1, cores / (P processes x (1 + W DataLoader workers))), cores = what this process may
#                           use (affinity, cgroup CPU quota). More threads than free cores slow a small model down
#                           many times over (every op waits for all threads). Set OMP_NUM_THREADS to choose yourself.

use_repo_venv() {
    if [ -x .venv/bin/python ] && ! python -c 'import sys; sys.exit(sys.prefix == sys.base_prefix)' 2>/dev/null; then
        PATH="$PWD/.venv/bin:$PATH"
        export PATH
    fi
}

usable_cores() {
    local cores quota period
    cores=$(nproc 2>/dev/null || echo 1)
    if [ -r /sys/fs/cgroup/cpu.max ]; then
        read -r quota period < /sys/fs/cgroup/cpu.max
        if [ "$quota" != "max" ] && [ "${period:-0}" -gt 0 ]; then
            quota=$(( (quota + period - 1) / period ))
            if [ "$quota" -lt "$cores" ]; then cores=$quota; fi
        fi
    fi
    echo "$cores"
}

default_cpu_threads() {
    local processes="$1" workers="$2" threads
    if [ -n "${OMP_NUM_THREADS:-}" ]; then return; fi
    threads=$(( $(usable_cores) / (processes * (1 + workers)) ))
    if [ "$threads" -lt 1 ]; then threads=1; fi
    export OMP_NUM_THREADS="$threads"
    export MKL_NUM_THREADS="${MKL_NUM_THREADS:-$threads}"
}

# Several machines (nodes). Every recipe reads:
#   NNODES (1)        nodes in the job            NODE_RANK (0)  this node's index in [0, NNODES)
#   MASTER_ADDR       node 0's address (required when NNODES > 1 without HOSTFILE; with HOSTFILE its first host by
#                     default; 127.0.0.1 on one node)
#   MASTER_PORT       a free port on node 0 (29500)
#   HOSTFILE          DeepSpeed hostfile ("host slots=N" lines): the deepspeed launcher on node 0 starts every node
#                     over ssh/pdsh; run the recipe once, on node 0, without NODE_RANK.
# Without HOSTFILE each node runs the same recipe with its own NODE_RANK (torchrun, static rendezvous at
# MASTER_ADDR:MASTER_PORT), as a SLURM job does with srun (scripts/slurm/train_2nodes.sbatch).
#   check_nodes       refuses an inconsistent setting with one line and exit 2; sets the variables above and
#                     NODES_IN_JOB (NNODES, or the hostfile's host count)
#   launcher_for KIND PROCESSES MODULE
#                     fills the array `launcher` with the command that starts MODULE as PROCESSES processes per
#                     node: KIND gpu -> deepspeed (--hostfile or one node) or torchrun (NNODES > 1);
#                     KIND cpu -> torchrun when more than one process in all, else plain python.

refuse() {
    echo "error: $*" >&2
    exit 2
}

is_count() { [[ "$1" =~ ^[0-9]+$ ]]; }

hostfile_hosts() {
    grep -cvE '^[[:space:]]*(#|$)' "$1" || true
}

check_nodes() {
    NNODES_SET=${NNODES:+1}
    MASTER_ADDR_SET=${MASTER_ADDR:+1}
    NNODES=${NNODES:-1}
    NODE_RANK=${NODE_RANK:-0}
    MASTER_PORT=${MASTER_PORT:-29500}
    is_count "$NNODES" && [ "$NNODES" -ge 1 ] || refuse "NNODES=$NNODES: give the number of nodes (1 or more)."
    is_count "$NODE_RANK" || refuse "NODE_RANK=$NODE_RANK: give this node's index (0 to NNODES-1)."
    is_count "$MASTER_PORT" && [ "$MASTER_PORT" -ge 1 ] && [ "$MASTER_PORT" -le 65535 ] \
        || refuse "MASTER_PORT=$MASTER_PORT: give a free TCP port of node 0 (1-65535)."
    if [ -n "${HOSTFILE:-}" ]; then
        [ -f "$HOSTFILE" ] || refuse "HOSTFILE=$HOSTFILE: no such file; write one \"host slots=GPUS\" line per node."
        local hosts; hosts=$(hostfile_hosts "$HOSTFILE")
        [ "$hosts" -ge 1 ] || refuse "HOSTFILE=$HOSTFILE lists no host; write one \"host slots=GPUS\" line per node."
        [ "$NODE_RANK" = "0" ] || refuse "NODE_RANK=$NODE_RANK with HOSTFILE: the deepspeed launcher starts every node from node 0; run the recipe there only, without NODE_RANK."
        if [ -n "$NNODES_SET" ] && [ "$NNODES" -gt "$hosts" ]; then
            refuse "NNODES=$NNODES but HOSTFILE=$HOSTFILE lists $hosts host(s): add hosts or lower NNODES."
        fi
        [ -n "$NNODES_SET" ] || NNODES=$hosts
        [ "$HAS_GPU" = "1" ] || refuse "HOSTFILE is for the deepspeed launcher on GPU nodes; on CPU set NNODES and NODE_RANK on every node instead."
    elif [ "$NNODES" -gt 1 ] && [ -z "${MASTER_ADDR:-}" ]; then
        refuse "NNODES=$NNODES needs MASTER_ADDR: the address of node 0, reachable from every node."
    fi
    [ "$NODE_RANK" -lt "$NNODES" ] || refuse "NODE_RANK=$NODE_RANK with NNODES=$NNODES: node ranks run from 0 to $((NNODES - 1))."
    MASTER_ADDR=${MASTER_ADDR:-127.0.0.1}
    NODES_IN_JOB=$NNODES
}

launcher_for() {
    local kind="$1" processes="$2" module="$3"
    local nodes=(--nnodes "$NNODES" --node_rank "$NODE_RANK" --master_addr "$MASTER_ADDR" --master_port "$MASTER_PORT")
    if [ "$kind" = "gpu" ] && [ -n "${HOSTFILE:-}" ]; then
        # without MASTER_ADDR, deepspeed takes the hostfile's first host (not this script's 127.0.0.1 default)
        local address=(); if [ -n "$MASTER_ADDR_SET" ]; then address=(--master_addr "$MASTER_ADDR"); fi
        launcher=(deepspeed --hostfile "$HOSTFILE" --num_nodes "$NNODES" --num_gpus "$processes"
                  "${address[@]}" --master_port "$MASTER_PORT" --module "$module")
    elif [ "$NNODES" -gt 1 ] || { [ "$kind" = "cpu" ] && [ "$processes" -gt 1 ]; }; then
        launcher=(torchrun "${nodes[@]}" --nproc_per_node "$processes" -m "$module")
    elif [ "$kind" = "gpu" ]; then
        launcher=(deepspeed --num_gpus "$processes" --master_port "$MASTER_PORT" --module "$module")
    else
        launcher=(python -m "$module")
    fi
}

# A driver that runs recipes one after another (the comparisons: python -m mung.compare) runs once, on node 0: it
# reaches several nodes only through HOSTFILE (each recipe's deepspeed launcher starts the other nodes); the recipes
# check the rest of the settings.
check_driver_nodes() {
    if [ "${NNODES:-1}" != "1" ] && [ -z "${HOSTFILE:-}" ]; then
        refuse "NNODES=$NNODES: a comparison trains and evaluates from one node; give HOSTFILE (the deepspeed launcher starts the other nodes) and run it on node 0 only."
    fi
    if [ -n "${HOSTFILE:-}" ] && [ ! -f "$HOSTFILE" ]; then
        refuse "HOSTFILE=$HOSTFILE: no such file; write one \"host slots=GPUS\" line per node."
    fi
    [ "${NODE_RANK:-0}" = "0" ] || refuse "NODE_RANK=$NODE_RANK: run a comparison on node 0 only (with HOSTFILE)."
}
