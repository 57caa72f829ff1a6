"""``mung.compare --lr-search``: grids, the choice on the validation split, the two phases (the grid at seed 0,
then the other seeds at the chosen rate), the tables' chosen rate; and (slow) a real 2-method, 2-rate, 1-seed,
few-step search whose choice is checked against the validation answers scored by hand."""

import json
from pathlib import Path

import pytest

from mung.compare import lr_search, runner
from mung.compare.__main__ import budget_of, parse_args
from mung.compare.session import compare
from tiny_world import FAMILIES


def test_grids_default_per_tuning_and_a_flag_replaces_one():
    grids = lr_search.parse_grids(["lora=1e-2,1e-4"], lr_search.DEFAULT_TINY_GRIDS)
    assert grids["lora"] == (1e-4, 1e-2)
    assert grids["full"] == lr_search.DEFAULT_TINY_GRIDS["full"]
    for tuning, rates in lr_search.DEFAULT_TINY_GRIDS.items():  # the documented promise: >= 3 rates, >= 30x
        assert len(rates) >= 3 and max(rates) / min(rates) >= 30, tuning
    for bad in ("lora", "lorax=1e-3", "lora=a,b", "lora=1e-3,1e-3", "lora=-1"):
        with pytest.raises(ValueError, match="--lr-grid"):
            lr_search.parse_grids([bad], None)


def run(lr, val, seed=0):
    return {"method": "m", "seed": seed, "search": True, "learning_rate": lr, "val": {"overall": val}}


def test_the_best_validation_score_wins_and_ties_go_to_the_lower_rate():
    assert lr_search.choose([run(1e-3, 0.4), run(1e-2, 0.6), run(1e-4, 0.5)])["learning_rate"] == 1e-2
    assert lr_search.choose([run(1e-2, 0.5), run(1e-3, 0.5)])["learning_rate"] == 1e-3
    # The same 136 of 300 summed in another order: a tie, not a win for the higher rate by 1e-16.
    tie = (0.5466666666666666 + 0.6 + 0.3333333333333333 + 0.3333333333333333) / 4
    other = (0.52 + 0.5733333333333334 + 0.32 + 0.4) / 4
    assert other > tie and lr_search.choose([run(3e-3, other), run(5e-4, tie)])["learning_rate"] == 5e-4
    assert lr_search.choose([]) is None


# Fabricated training: validation and test accuracy as a function of (method, rate, seed).
VAL = {("LoRA r32", 1e-3): 0.7, ("LoRA r32", 1e-2): 0.4, ("MuNG", 1e-3): 0.2, ("MuNG", 1e-2): 0.5}


def scores(value):
    return {"scores": {"per_family": dict.fromkeys(FAMILIES, value), "overall": value, "n": 5}}


@pytest.fixture
def fake_training(monkeypatch):
    calls = []

    def fake_run_method(unit, method, ctx, start):
        calls.append((unit.method, unit.seed, unit.lr))
        if not method.trains:
            return {"tuning": None, "learning_rate": None, "search": False, "eval": scores(0.1)}
        test = VAL[(unit.method, unit.lr)] + 0.01 * unit.seed + 0.05
        result = {"tuning": method.tuning, "learning_rate": unit.lr, "search": True, "eval": scores(test),
                  "train": {"trainable_params": 1, "trainable_percent": 1.0, "seconds_per_step": 0.1, "steps": 2}}
        if ctx.val_questions:  # later seeds score lower: the search table must show the seed-0 runs it chose on
            val = VAL[(unit.method, unit.lr)] - 0.3 * unit.seed
            result["val"] = {**scores(val), "overall": val}
        return result

    monkeypatch.setattr(runner, "run_method", fake_run_method)
    return calls


def test_search_trains_the_grid_at_seed_0_then_the_other_seeds_at_the_chosen_rate(tiny_world, tmp_path,
                                                                                   fake_training):
    world = str(Path(tiny_world["image_folder"]).parent)
    args = parse_args(["--backbone", "llava", "--plan", "main", "--methods", "base,LoRA r32,MuNG", "--seeds", "2",
                       "--lr-search", "--lr-grid", "lora=1e-3,1e-2", "--lr-grid", "noise=1e-3,1e-2",
                       "--world", world, "--start", "/ckpt/base", "--out", str(tmp_path)])
    built = compare(args, budget_of(args))
    search = [c for c in fake_training if c[0] != "base"][:4]
    assert sorted(search) == sorted((m, 0, lr) for m in ("LoRA r32", "MuNG") for lr in (1e-3, 1e-2))
    assert fake_training[-2:] == [("LoRA r32", 1, 1e-3), ("MuNG", 1, 1e-2)]  # the best validation rates
    rows = {row["method"]: row for row in built["tables"]["main"]}
    assert rows["LoRA r32"]["learning_rate"] == 1e-3 and rows["MuNG"]["learning_rate"] == 1e-2
    # test accuracy at the chosen rate only: (0.7 + 0.05) and (0.7 + 0.06) for the two seeds of LoRA r32
    assert rows["LoRA r32"]["colour"]["mean"] == pytest.approx(0.755) and rows["LoRA r32"]["runs"] == 2
    assert rows["MuNG"]["colour"]["mean"] == pytest.approx(0.555)
    assert {r["method"]: r["chosen"] for r in built["lr_search"]} == {"LoRA r32": 1e-3, "MuNG": 1e-2}
    assert {r["method"]: [c["val_overall"] for c in r["rates"]] for r in built["lr_search"]} == {
        "LoRA r32": [0.7, 0.4], "MuNG": [0.2, 0.5]}
    markdown = (tmp_path / "tables.md").read_text()
    assert "Learning rates chosen on the validation split" in markdown and "**70.0**" in markdown


def hand_scored(answers, truth):
    """Validation overall from the answer and truth files, per family then averaged, without tiny_world's scorer."""
    right = {r["question_id"]: r for r in map(json.loads, Path(truth).read_text().splitlines())}
    per_family = {}
    for line in Path(answers).read_text().splitlines():
        row = json.loads(line)
        truth_row = right[row["question_id"]]
        ok = row["text"].strip().strip(".").lower() == truth_row["answer"]
        per_family.setdefault(truth_row["family"], []).append(ok)
    return sum(sum(v) / len(v) for v in per_family.values()) / len(per_family)


@pytest.mark.slow
def test_a_real_search_picks_the_rate_with_the_best_validation_score(tiny_world, tmp_path):
    world = str(Path(tiny_world["image_folder"]).parent)
    args = parse_args(["--backbone", "llava", "--plan", "main", "--methods", "LoRA r32,MuNG", "--seeds", "1",
                       "--lr-search", "--lr-grid", "lora=1e-4,3e-2", "--lr-grid", "noise=1e-4,3e-2",
                       "--steps", "3", "--base-steps", "2", "--batch", "2", "--eval-per-family", "2",
                       "--world", world, "--out", str(tmp_path)])
    built = compare(args, budget_of(args))
    for row in built["lr_search"]:
        method_dir = tmp_path / "units" / row["method"].lower().replace(" ", "-").replace("+", "-")
        val = {lr: hand_scored(method_dir / f"lr{lr:g}" / "seed0" / "val_answers.jsonl", tmp_path / "val" /
                               "eval_answers.jsonl") for lr in (1e-4, 3e-2)}
        best = max(val.values())
        assert row["chosen"] == min(lr for lr, v in val.items() if v == best)
        assert [cell["val_overall"] for cell in row["rates"]] == pytest.approx([val[1e-4], val[3e-2]])


# ------------------------------------------------------------------------------------- resuming a searched folder
def searched_setup(grids, rates=None, generator=None):
    from mung.backbones import by_name
    from mung.compare.plan import Budget
    from mung.compare.setup import tiny_setup

    manifest = {k: f"/w/{k}" for k in ("llava_shift_train_json", "shift_eval_questions", "shift_eval_answers",
                                        "shift_val_questions", "shift_val_answers", "image_folder")}
    setup = tiny_setup("llava", by_name("llava").comparison, manifest, "/w", Budget(7, 2, None, None), start=None,
                       lr_grids=grids)
    import dataclasses
    return dataclasses.replace(setup, learning_rates={**setup.learning_rates, **(rates or {})},
                               generator_lr=generator if generator is not None else setup.generator_lr)


def test_a_searched_folder_resumes_with_a_wider_grid_and_other_default_rates_but_not_a_narrower_grid(tmp_path):
    from mung.compare.setup import SETUP_FILE, check_or_store

    grids = dict(lr_search.DEFAULT_TINY_GRIDS)
    check_or_store(tmp_path, searched_setup(grids))
    wider = {**grids, "lora": (*grids["lora"], 1.0)}
    # The defaults moved (the same generator : LoRA ratio): a search trains at its grid, so nothing changes.
    moved = {"lora": 9e-3, "noise_lora": 4e-3}
    check_or_store(tmp_path, searched_setup(wider, moved, generator=4e-3))
    stored = json.loads((tmp_path / SETUP_FILE).read_text())
    assert stored["lr_grids"]["lora"][-1] == 1.0  # the folder records the wider grid
    with pytest.raises(ValueError, match=r"lr_grids\[lora\].*may only add rates"):
        check_or_store(tmp_path, searched_setup(grids))
    with pytest.raises(ValueError, match="generator_ratio"):  # MuNG+LoRA's generator would train at another rate
        check_or_store(tmp_path, searched_setup(wider, {"noise_lora": 4e-3}, generator=4e-2))


def test_backbone_grids_replace_the_defaults_kind_by_kind():
    grids = lr_search.tiny_grids({"noise": (1.0, 2.0)})
    assert grids["noise"] == (1.0, 2.0) and grids["lora"] == lr_search.DEFAULT_TINY_GRIDS["lora"]
    assert lr_search.tiny_grids(None) == lr_search.DEFAULT_TINY_GRIDS
    for tuning, rates in lr_search.DEFAULT_TINY_GRIDS.items():  # >= 3 rates spanning >= 30x (the floor)
        assert len(rates) >= 3 and max(rates) / min(rates) >= 30, tuning
