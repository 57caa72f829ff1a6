"""benchmarks.gpu_check: the real configs it builds are the published models (parameter counts from their model
cards, counted on the meta device), and its CPU smoke mode runs every part (training contenders, generation with and
without the generator, the 4-bit QLoRA reload, the ZeRO-3 start) through the same code, writing one table to the
file named by --out.

The smoke run is one model (Qwen2.5-VL-3B: the only one with the full fine-tuning row) in a child process (the
ZeRO-3 part opens a process group)."""

import re
import sys

import pytest
import torch

from benchmarks.real_configs import REAL, build_config
from distributed_utils import REPO, child_env, free_port, run_group

# Published sizes: llava-hf/llava-1.5-7b-hf 7.06 B, Qwen/Qwen2.5-VL-3B-Instruct 3.75 B, google/gemma-3-4b-it 4.30 B.
PUBLISHED_BILLIONS = {"LLaVA-1.5-7B": 7.06, "Qwen2.5-VL-3B": 3.75, "Gemma-3-4B": 4.30}


@pytest.mark.parametrize("name", list(REAL))
def test_a_real_config_has_the_published_parameter_count(name):
    from transformers import AutoModelForImageTextToText

    with torch.device("meta"):
        model = AutoModelForImageTextToText.from_config(build_config(name, smoke=False))
    billions = sum(p.numel() for p in model.parameters()) / 1e9
    assert billions == pytest.approx(PUBLISHED_BILLIONS[name], abs=0.01)


@pytest.fixture(scope="module")
def smoke_table(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("gpu_check")
    out = root / "table.md"
    cmd = [sys.executable, "-m", "benchmarks.gpu_check", "--smoke", "--device", "cpu", "--models", "Qwen2.5-VL-3B",
           "--out", str(out)]
    run_group(cmd, child_env(MASTER_PORT=str(free_port())), root / "log.txt", timeout=600)
    return out.read_text()


def rows(markdown: str) -> dict[str, list[str]]:
    lines = [line for line in markdown.splitlines() if line.startswith("|")][2:]
    return {cells[1]: cells[2:] for cells in ([c.strip() for c in line.strip("|").split("|")] for line in lines)}


@pytest.mark.slow
def test_smoke_mode_measures_every_part_with_positive_finite_numbers(smoke_table):
    table = rows(smoke_table)
    assert list(table) == ["train MuNG", "train LoRA r32", "train MuNG+LoRA r32", "train full fine-tuning",
                           "generate, generator off", "generate, MuNG sampling", "train MuNG+QLoRA r32 (4-bit)",
                           "train MuNG, DeepSpeed ZeRO-3 (1 device)"]
    for what, (step, tpot, peak, note) in table.items():
        assert "FAILED" not in note, (what, note)
        assert float(step) > 0, what
        assert (tpot == "–") == what.startswith("train"), what
    assert "loss finite: True" in table["train MuNG, DeepSpeed ZeRO-3 (1 device)"][3]
    assert smoke_table.startswith("`python -m benchmarks.gpu_check --smoke ")
    assert "## GPU check: SMOKE" in smoke_table


@pytest.mark.slow
def test_smoke_mode_trains_what_each_contender_should(smoke_table):
    """Trained counts in the smoke model (text width 64, 2 layers, 4 heads / 2 KV heads of 16, MLP 128): the
    generator is six 64x64 linears with biases; LoRA r32 on q,k,v,o,gate,up,down of each layer adds r x (in + out)."""
    table = rows(smoke_table)
    trained = {what: int(re.search(r"([\d,]+) trained", cells[3]).group(1).replace(",", ""))
               for what, cells in table.items() if "trained" in cells[3]}
    generator = 6 * (64 * 64 + 64)
    shapes = [(64, 64), (64, 32), (64, 32), (64, 64), (64, 128), (64, 128), (128, 64)]  # q k v o gate up down
    lora = 2 * sum(32 * (i + o) for i, o in shapes)
    assert trained["train MuNG"] == generator
    assert trained["train LoRA r32"] == lora
    assert trained["train MuNG+LoRA r32"] == generator + lora


def test_the_full_size_check_refuses_to_run_on_cpu(capsys):
    from benchmarks import gpu_check

    with pytest.raises(SystemExit) as stop:
        gpu_check.main(["--device", "cpu"])
    assert stop.value.code == 2 and "needs a GPU" in capsys.readouterr().err


def test_parts_past_the_time_budget_are_skipped_with_a_row_each(tmp_path, monkeypatch):
    from benchmarks import gpu_check

    monkeypatch.setattr(gpu_check, "new_model", lambda *a: pytest.fail("a part ran past the budget"))
    out = tmp_path / "t.md"
    assert gpu_check.main(["--smoke", "--device", "cpu", "--models", "LLaVA-1.5-7B", "--max-minutes", "0",
                           "--out", str(out)]) == 0
    table = rows(out.read_text())
    assert list(table) == ["train MuNG", "train LoRA r32", "train MuNG+LoRA r32", "generate",
                           "QLoRA", "ZeRO-3"]
    assert all(cells[3] == "skipped: past --max-minutes 0" for cells in table.values())
