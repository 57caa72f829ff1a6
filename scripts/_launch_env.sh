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
