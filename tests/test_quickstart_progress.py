"""A long quickstart stage shows its progress on screen (its output still goes whole to its log), and an answering
command ends by saying how many answers it wrote, where, and how long it took."""

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "scripts"))

import quickstart_progress  # noqa: E402

from mung.eval.entry import finished_line  # noqa: E402

TRAINER_OUTPUT = (" 40%|████      | 24/60 [00:09<00:14,  2.51it/s]\r"
                  "{'loss': '1.052', 'grad_norm': '3.1', 'learning_rate': '0.0002', 'epoch': '0.4'}\n"
                  " 42%|████▏     | 25/60 [00:10<00:14,  2.50it/s]\r")


def test_the_progress_line_has_the_last_step_and_loss():
    progress = quickstart_progress.Progress()
    progress.read(TRAINER_OUTPUT)
    assert progress.line("stage 1: base (full fine-tuning)", 42.4) == "[quickstart] stage 1: 42 s, step 25/60, loss 1.052"
    assert quickstart_progress.Progress().line("eval before: base", 10) == "[quickstart] eval before: 10 s, working"


def test_a_running_stage_prints_progress_and_logs_everything(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(quickstart_progress, "EVERY", 0.2)
    child = ("import sys, time\n"
             f"sys.stderr.write({TRAINER_OUTPUT!r}); sys.stderr.flush()\n"
             "time.sleep(1.0)\n"
             "print('done', sys.stdin.read())\n")
    log = tmp_path / "stage.log"
    status = quickstart_progress.run_logged("stage 1: base", [sys.executable, "-c", child], tmp_path, None, log,
                                            stdin="typed")
    assert status == 0
    assert log.read_bytes().decode("utf-8") == TRAINER_OUTPUT + "done typed\n"
    lines = capsys.readouterr().out.splitlines()
    assert lines and all(line.startswith("[quickstart] stage 1: ") for line in lines)
    assert lines[-1].endswith(", step 25/60, loss 1.052")


@pytest.mark.parametrize("records, line", [
    ([{"text": "a"}, {"text": "b"}], "2 answers written to out/a.jsonl in 12.3 s (loading 4.0 s)."),
    ([{"text": "a"}, {"text": "", "metadata": {"skipped": "unreadable image"}}],
     "1 answer (1 of 2 questions skipped: see metadata.skipped) written to out/a.jsonl in 12.3 s (loading 4.0 s)."),
])
def test_an_answering_run_ends_with_how_many_where_and_how_long(records, line):
    assert finished_line(records, "out/a.jsonl", 12.34, 4.0) == line
