"""``close_process_group``: the last call of every training entry point. A rank that finishes first waits for the
others (rank 0 may still be writing the output folder) and each rank leaves with its process group torn down."""

import sys
import textwrap

from distributed_utils import child_env, free_port, run_group

SCRIPT = textwrap.dedent(
    """
    import json, os, sys, time
    import torch.distributed as dist
    from mung.training.distributed import close_process_group

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    out = sys.argv[1]
    if rank == 0:
        time.sleep(1.5)  # rank 0 still "saving" while rank 1 is done
        open(os.path.join(out, "saved"), "w").close()
    close_process_group()
    record = {"saved_when_leaving": os.path.exists(os.path.join(out, "saved")), "initialized": dist.is_initialized()}
    with open(os.path.join(out, f"rank{rank}.json"), "w") as f:
        json.dump(record, f)
    close_process_group()  # a second call (no group any more) is a no-op
    """
)


def test_ranks_wait_for_each_other_and_leave_without_a_process_group(tmp_path):
    import json

    script = tmp_path / "teardown.py"
    script.write_text(SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(script), str(tmp_path)]
    run_group(cmd, child_env(), tmp_path / "log.txt", timeout=120)
    for rank in (0, 1):
        record = json.loads((tmp_path / f"rank{rank}.json").read_text())
        assert record == {"saved_when_leaving": True, "initialized": False}, f"rank {rank}: {record}"
