"""``close_process_group``: the last call of every training entry point. A rank that finishes first waits for the
others (rank 0 may still be writing the output folder) and each rank leaves with its process group torn down."""

import subprocess
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


END_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import torch.distributed as dist
    from mung.training.distributed import close_process_group

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    out = sys.argv[1]
    if rank == 0:
        time.sleep(1.5)
        open(os.path.join(out, "saved"), "w").close()
    print(f"rank {rank} done", flush=False)  # unflushed: leaving must flush it
    try:
        if sys.argv[2] == "fail" and rank == 1:
            raise RuntimeError("the run failed")
    finally:
        close_process_group(end_process=True)  # with an exception on its way out: no exit 0 here
    open(os.path.join(out, f"after{rank}"), "w").close()  # never reached by a process that ended
    """
)


def _run_end_script(tmp_path, mode):
    script = tmp_path / "end.py"
    script.write_text(END_SCRIPT)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(free_port()), str(script), str(tmp_path), mode]
    return subprocess.run(cmd, env=child_env(), capture_output=True, text=True, timeout=120)


def test_a_launched_process_that_ended_well_leaves_after_the_last_barrier_with_its_output(tmp_path):
    done = _run_end_script(tmp_path, "ok")
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "saved").exists()
    assert "rank 0 done" in done.stdout and "rank 1 done" in done.stdout
    assert not list(tmp_path.glob("after*"))  # left at close_process_group, nothing after it ran


def test_a_failing_run_is_not_ended_with_status_0(tmp_path):
    done = _run_end_script(tmp_path, "fail")
    assert done.returncode != 0
    assert "the run failed" in done.stderr
