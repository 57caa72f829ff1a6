"""The two ZeRO-3 traps of peft for a MuNG adapter, in one DeepSpeed process (CPU, bf16): peft's
``autocast_adapter_dtype`` would re-create the partitioned generator's parameters as plain empty ones, and peft's
``load_state_dict`` cannot copy into partitioned parameters (``load_adapter``)."""

import json
import sys

import pytest

from distributed_utils import REPO, child_env, free_port, run_group
from peft_helpers import mung_model
from vlm_helpers import family_folder


@pytest.mark.slow
def test_a_partitioned_generator_survives_autocast_and_loads_an_adapter(vlm_families, tmp_path):
    folder = family_folder(vlm_families, "gemma3")
    mung_model(folder, seed=9).save_pretrained(tmp_path / "adapter")
    env = child_env(MASTER_PORT=str(free_port()))
    cmd = [sys.executable, str(REPO / "tests" / "peft_zero3_single.py"), folder, str(tmp_path / "adapter")]
    run_group(cmd, env, tmp_path / "run.log", 240)
    result = json.loads((tmp_path / "run.log").read_text().strip().splitlines()[-1])
    width = 64
    assert result["partitioned"] and result["full_sizes"] == sorted([width * width] * 6 + [width] * 6)
    assert result["loaded_equal"]
