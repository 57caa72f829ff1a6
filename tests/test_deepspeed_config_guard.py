"""Per-group learning rates are never silently dropped by a DeepSpeed config that brings its own optimizer."""

import json
from pathlib import Path

import pytest

from mung.training.distributed import check_deepspeed_lr_groups

REPO = Path(__file__).resolve().parents[1]


def test_config_with_its_own_optimizer_refuses_ng_lr(tmp_path):
    path = tmp_path / "ds.json"
    path.write_text(json.dumps({"optimizer": {"type": "AdamW"}, "zero_optimization": {"stage": 3}}))
    with pytest.raises(ValueError, match=r"ds\.json defines its own \"optimizer\".*--ng_lr would be silently ignored"):
        check_deepspeed_lr_groups(str(path), {"--ng_lr": 5e-4, "--mm_projector_lr": None})


def test_no_override_or_no_optimizer_block_passes(tmp_path):
    check_deepspeed_lr_groups({"optimizer": {"type": "AdamW"}}, {"--ng_lr": None})
    check_deepspeed_lr_groups({"zero_optimization": {"stage": 2}}, {"--ng_lr": 1e-3, "--mm_projector_lr": 2e-5})
    check_deepspeed_lr_groups(None, {"--ng_lr": 1e-3})


@pytest.mark.parametrize("name", ["zero2.json", "zero3.json", "zero3_offload.json"])
def test_shipped_configs_keep_the_trainers_parameter_groups(name):
    check_deepspeed_lr_groups(str(REPO / "scripts" / name), {"--ng_lr": 5e-4, "--mm_projector_lr": 2e-5})


def test_missing_or_broken_config_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        check_deepspeed_lr_groups(str(tmp_path / "nope.json"), {"--ng_lr": 1e-3})
    broken = tmp_path / "broken.json"
    broken.write_text('{"zero_optimization":\n }')
    with pytest.raises(ValueError, match="line 2"):
        check_deepspeed_lr_groups(str(broken), {"--ng_lr": 1e-3})
