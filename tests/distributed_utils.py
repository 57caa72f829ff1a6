"""Helpers of the multi-process tests: free ports, launching a process group with a time limit and killing all of it
on failure, and the per-rank logs written by ``mung.training.rank_log.RankLogCallback`` (``rank_log_command``: a
training run with it, through ``tests/rank_log_train.py``)."""

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RANK_LOG_TRAIN = Path(__file__).resolve().parent / "rank_log_train.py"


def rank_log_command(backbone: str, rank_log_dir: Path, argv: list[str]) -> list[str]:
    """The script and arguments of a ``backbone`` training run that records its ranks into ``rank_log_dir`` (put an
    interpreter or a launcher in front)."""
    return [str(RANK_LOG_TRAIN), "--backbone", backbone, "--rank_log_dir", str(rank_log_dir), *argv]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(**extra: str) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    env.update(extra)
    return env


def kill_group(process: subprocess.Popen) -> None:
    """SIGKILL the whole process group of ``process`` (launcher and ranks) and reap it."""
    try:
        os.killpg(process.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    process.wait()


def run_group(cmd: list[str], env: dict, log_path: Path, timeout: float) -> None:
    """Run ``cmd`` in its own session; on a non-zero exit or after ``timeout`` s kill the group and fail with the
    end of its output."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            kill_group(process)
            raise AssertionError(f"{' '.join(cmd[:6])} ... hung for {timeout} s:\n{tail(log_path)}") from None
        except BaseException:
            kill_group(process)
            raise
        kill_group(process)  # nothing of the group may outlive the test
    assert returncode == 0, f"exit {returncode}:\n{tail(log_path)}"


def tail(path: Path, chars: int = 4000) -> str:
    text = Path(path).read_text(errors="replace")
    lines = [l for l in text.splitlines() if "FutureWarning" not in l and "return func(" not in l]
    return "\n".join(lines)[-chars:]


def rank_logs(directory: Path, world_size: int) -> list[list[dict]]:
    """Per rank, its step records ({step, loss, digest})."""
    return [[json.loads(l) for l in (directory / f"rank{r}.jsonl").read_text().splitlines()] for r in range(world_size)]


def logged_losses(output_dir: Path) -> dict[int, float]:
    history = json.loads((output_dir / "trainer_state.json").read_text())["log_history"]
    return {entry["step"]: entry["loss"] for entry in history if "loss" in entry}
