"""``RankLogCallback`` passed to a backbone's ``train(argv, callbacks=...)``: its per-step loss is what the Trainer
logs (one process, so the rank's loss is the logged one; with gradient accumulation a step's loss is the sum of its
micro-batches' shares), its digests follow the trainable parameters, and the production Trainers record nothing
without it."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from distributed_utils import logged_losses, rank_logs
from mung.training.rank_log import RankLogCallback
from noise_generator import WEIGHTS_NAME
from tiny_runs import tiny_argv, train_in_process


@pytest.mark.parametrize("backbone", ["qwen", "llava"])
def test_rank_log_matches_the_logged_loss_and_the_saved_generator(backbone, tiny_world, tmp_path):
    data = json.loads(Path(tiny_world[f"{backbone}_train_json"]).read_text())[:8]
    (tmp_path / "data.json").write_text(json.dumps(data))
    out = tmp_path / "out"
    argv = tiny_argv(backbone, tiny_world, tmp_path / "data.json", tiny_world["image_folder"], out,
                     "--max_steps", "2", "--per_device_train_batch_size", "2", "--gradient_accumulation_steps", "2",
                     "--dataloader_num_workers", "0")
    train_in_process(backbone, argv, callbacks=[RankLogCallback(tmp_path / "rank_log")])
    (records,) = rank_logs(tmp_path / "rank_log", 1)
    logged = logged_losses(out)
    assert [r["step"] for r in records] == [1, 2] == sorted(logged)
    for record in records:
        assert record["loss"] == pytest.approx(logged[record["step"]], abs=1e-6)
    trainables = torch.load(tmp_path / "rank_log" / "trainables.pt", weights_only=True)
    generator = {k.split("noise_generator.", 1)[1]: v for k, v in trainables.items() if "noise_generator." in k}
    saved = load_file(out / WEIGHTS_NAME)
    assert generator.keys() == saved.keys() and all(torch.equal(generator[k], saved[k]) for k in saved)
    final = [sum(float(t.double().sum()) for t in trainables.values()),
             sum(float(t.double().pow(2).sum()) for t in trainables.values())]
    assert records[-1]["digest"] == pytest.approx(final, rel=1e-12)
    assert records[0]["digest"] != records[1]["digest"]


def test_trainers_record_no_rank_log_of_their_own(tiny_world, tmp_path, monkeypatch):
    """The environment switch of the old Trainer bases is gone: only an injected callback records ranks."""
    data = json.loads(Path(tiny_world["qwen_train_json"]).read_text())[:2]
    (tmp_path / "data.json").write_text(json.dumps(data))
    monkeypatch.setenv("MUNG_RANK_LOG_DIR", str(tmp_path / "rank_log"))
    argv = tiny_argv("qwen", tiny_world, tmp_path / "data.json", tiny_world["image_folder"], tmp_path / "out",
                     "--max_steps", "1", "--per_device_train_batch_size", "2")
    trainer = train_in_process("qwen", argv)
    assert not (tmp_path / "rank_log").exists()
    assert not any(isinstance(c, RankLogCallback) for c in trainer.callback_handler.callbacks)
