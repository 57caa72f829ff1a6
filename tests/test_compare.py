"""python -m mung.compare: the methods as data (each becomes the right recipe and flags on each backbone), the
report's numbers against hand computations on fabricated unit results, the settings check, the chart, and (slow)
a real 2-method, 1-seed, few-step comparison that a rerun resumes instead of retraining."""

import json
import math
import shlex
from pathlib import Path

import pytest

from mung.backbones import by_name
from mung.compare import report, runner, tables
from mung.compare.__main__ import budget_of, parse_args
from mung.compare.commands import training_env
from mung.compare.plan import METHODS, PLANS, Budget, methods_of, plans_of
from mung.compare.session import compare
from mung.compare.setup import check_or_store, tiny_setup
from mung.compare.units import method_unit

MANIFEST = {"image_folder": "/w/images", "llava_vision_tower": "/w/clip", "llava_shift_train_json": "/w/l.json",
            "qwen_shift_train_json": "/w/q.json", "shift_eval_questions": "/w/q.jsonl",
            "shift_eval_answers": "/w/a.jsonl"}


def env_of(backbone: str, method: str, seed: int = 4) -> tuple[str, dict, list[str]]:
    spec = by_name(backbone).comparison
    setup = tiny_setup(backbone, spec, MANIFEST, "/w", Budget(7, 2, None, None), start=None)
    env = training_env(spec, setup, METHODS[method], seed, "/ckpt/base", Path("/out/x"), MANIFEST)
    return spec.recipes[METHODS[method].tuning].script, env, shlex.split(env["EXTRA_ARGS"])


# ----------------------------------------------------------------------------------------------------- plan
def test_plans_hold_the_papers_rows():
    assert PLANS["main"] == ("base", "full FT", "LoRA r32", "DoRA r32", "MuNG", "MuNG+LoRA r32", "LoRA r128",
                             "NEFTune (full FT)", "NEFTune+LoRA r32")
    assert PLANS["ablation"] == ("MuNG+LoRA r32", "MLP generator", "multiplicative", "no sampling (mu only)",
                                 "Gaussian noise", "no answer conditioning", "LoRA r32")
    assert plans_of("all") == ("main", "ablation", "efficiency")
    both = [m.name for m in methods_of(("main", "ablation"))]
    assert len(both) == len(set(both)) == 14  # LoRA r32 and MuNG+LoRA r32 are shared, run once
    assert [m.name for m in methods_of(("main",), ["MuNG", "base"])] == ["base", "MuNG"]  # plan order kept
    with pytest.raises(ValueError, match="unknown method"):
        methods_of(("main",), ["LoRA r64"])


@pytest.mark.parametrize("backbone, method, script, env, flags", [
    ("llava", "DoRA r32", "scripts/v1_5/finetune_lora.sh", {"LORA_R": "32", "LORA_ALPHA": "64"},
     ["--lora_use_dora", "True"]),
    ("qwen", "DoRA r32", "scripts/qwen/finetune_dora.sh", {"LORA_R": "32", "LORA_ALPHA": "32"}, []),
    ("llava", "LoRA r128", "scripts/v1_5/finetune_lora.sh", {"LORA_R": "128", "LORA_ALPHA": "256", "LR": "0.002"}, []),
    ("qwen", "MuNG+LoRA r32", "scripts/qwen/finetune_lora.sh", {"TUNE": "noise_lora", "NG_LR": "0.1"}, []),
    ("qwen", "MuNG", "scripts/qwen/finetune_noise.sh", {"LR": "0.1"}, []),
    ("llava", "multiplicative", "scripts/v1_5/finetune_noise_lora.sh", {"LORA_R": "32"}, ["--ng_injection", "mul"]),
    ("qwen", "Gaussian noise", "scripts/qwen/finetune_lora.sh", {"TUNE": "noise_lora"}, ["--ng_kind", "gaussian"]),
    ("llava", "full FT", "scripts/v1_5/finetune.sh", {"LR": "0.003", "PRETRAIN_MM_MLP_ADAPTER": ""}, []),
    ("llava", "NEFTune+LoRA r32", "scripts/v1_5/finetune_lora.sh", {"LORA_R": "32"}, ["--neftune_noise_alpha", "5"]),
    ("qwen", "NEFTune (full FT)", "scripts/qwen/finetune_full.sh", {"LR": "0.003"}, ["--neftune_noise_alpha", "5"]),
])
def test_each_method_becomes_its_backbones_recipe_and_flags(backbone, method, script, env, flags):
    got_script, got_env, extra = env_of(backbone, method)
    assert got_script == script
    assert {k: got_env.get(k) for k in env} == env
    assert extra[:4] == ["--seed", "4", "--data_seed", "4"]
    assert extra[4:] == flags
    assert got_env["MODEL_PATH"] == "/ckpt/base" and got_env["MAX_STEPS"] == "7" and got_env["BATCH_SIZE"] == "2"
    assert got_env["DATA_PATH"] == MANIFEST[f"{backbone}_shift_train_json"]


def test_methods_without_lora_get_no_rank():
    _, env, _ = env_of("llava", "MuNG")
    assert "LORA_R" not in env and "NG_LR" not in env
    assert env["VISION_TOWER"] == "/w/clip"


def test_llava_dora_flag_is_refused_without_lora():
    import transformers

    from llava_noise.train.args import TrainingArguments

    parser = transformers.HfArgumentParser(TrainingArguments)
    (args,) = parser.parse_args_into_dataclasses(["--output_dir", "/tmp/x", "--lora_enable", "True",
                                                  "--lora_use_dora", "True", "--use_cpu", "True"])
    assert args.lora_use_dora is True
    with pytest.raises(ValueError, match="--lora_use_dora True needs --lora_enable True"):
        parser.parse_args_into_dataclasses(["--output_dir", "/tmp/x", "--lora_use_dora", "True", "--use_cpu", "True"])


# ----------------------------------------------------------------------------------------------------- report
FAMILIES = ["colour", "shape"]


def fabricated(method, seed, colour, shape, trainable=None):
    result = {"method": method, "seed": seed,
              "eval": {"scores": {"per_family": {"colour": colour, "shape": shape}, "overall": (colour + shape) / 2}}}
    if trainable:
        result["train"] = {"trainable_params": trainable, "trainable_percent": 10.0, "seconds_per_step": trainable / 1e4,
                           "peak_gpu_memory_bytes": None}
    return result


RESULTS = [
    fabricated("LoRA r32", 0, 0.5, 0.2, 1000), fabricated("LoRA r32", 1, 0.6, 0.4, 1000),
    fabricated("LoRA r32", 2, 0.7, 0.9, 1000), fabricated("LoRA r32", 3, 0.0, 0.0, 1000),  # seed 3 not asked for
    fabricated("MuNG", 0, 0.9, 0.3, 500), fabricated("base", 0, 0.4, 0.3),
]
TRUTH = ([{"family": "colour", "answer": "red"}] * 6 + [{"family": "colour", "answer": "blue"}] * 4
         + [{"family": "shape", "answer": "circle"}] * 10)
CHANCE = {"colour": 1 / 6, "shape": 1 / 3}


def test_report_mean_and_std_match_a_hand_computation():
    base = report.baselines(TRUTH, CHANCE)
    built = report.build_report(RESULTS, ("main",), list(PLANS["main"]), [0, 1, 2], base, None)
    rows = {row["method"]: row for row in built["tables"]["main"]}
    lora = rows["LoRA r32"]
    assert lora["runs"] == 3 and lora["seeds"] == [0, 1, 2]
    assert lora["colour"]["mean"] == pytest.approx(0.6) and lora["colour"]["std"] == pytest.approx(0.1)
    assert lora["shape"]["mean"] == pytest.approx(0.5)
    assert lora["shape"]["std"] == pytest.approx(math.sqrt((0.3 ** 2 + 0.1 ** 2 + 0.4 ** 2) / 2))
    # overall = mean of the two families per run: 0.35, 0.5, 0.8
    assert lora["overall"]["mean"] == pytest.approx(0.55)
    assert lora["overall"]["std"] == pytest.approx(math.sqrt((0.2 ** 2 + 0.05 ** 2 + 0.25 ** 2) / 2))
    assert {k: rows["MuNG"]["colour"][k] for k in ("mean", "std", "n", "half")} == {"mean": 0.9, "std": None, "n": 1,
                                                                                 "half": None}  # no question count
    assert rows["full FT"]["runs"] == 0 and rows["full FT"]["overall"]["mean"] is None
    assert base == {"colour": {"chance": 1 / 6, "majority": 0.6, "n": 10},
                    "shape": {"chance": 1 / 3, "majority": 1.0, "n": 10}}
    cost = {row["method"]: row for row in built["tables"]["training_cost"]}
    assert cost["MuNG"]["time_vs_reference"] == pytest.approx(0.5)  # 0.05 s vs 0.1 s per step
    assert set(cost) == {"LoRA r32", "MuNG"}


def test_unlearned_families_are_named():
    base = report.baselines(TRUTH, CHANCE)
    built = report.build_report(RESULTS, ("main",), list(PLANS["main"]), [0, 1, 2], base, None)
    # colour: bar 0.6 (most common answer). LoRA r32's 0.5, 0.6, 0.7: 0.6 ± t(0.975, 2) 0.1 / sqrt(3) = 0.248, low
    # 0.352; MuNG's one 0.9 has no interval (no question count given): neither is shown above the bar.
    assert built["learned"]["colour"]["learned"] is False
    assert built["learned"]["colour"]["threshold"] == pytest.approx(0.6)
    assert built["learned"]["colour"]["best_method"] == "MuNG"
    text = tables.render(built)
    assert "Not learnt by any method" in text and "colour (best 90.0% by MuNG, bar 60.0%)" in text
    # shape 0.2, 0.4, 0.9: s = sqrt(0.13), half 4.3027 s / sqrt(3) = 0.896; overall 0.35, 0.5, 0.8: half 0.569
    assert "| LoRA r32 | 60.0 ± 24.8 | 50.0 ± 89.6 | 55.0 ± 56.9 | 3 | 10.00% |" in text


def test_ablation_rows_show_the_difference_to_their_reference():
    results = [fabricated("MuNG+LoRA r32", 0, 0.8, 0.6, 10), fabricated("MLP generator", 0, 0.6, 0.6, 10)]
    built = report.build_report(results, ("ablation",), list(PLANS["ablation"]), [0],
                                report.baselines(TRUTH, CHANCE), None)
    rows = {row["method"]: row for row in built["tables"]["ablation"]}
    assert rows["MLP generator"]["overall_vs_reference"] == pytest.approx(-0.1)
    assert rows["MuNG+LoRA r32"]["overall_vs_reference"] == pytest.approx(0.0)


def test_chart_is_a_png(tmp_path):
    pytest.importorskip("matplotlib")
    from mung.compare import chart

    base = report.baselines(TRUTH, CHANCE)
    built = report.build_report(RESULTS, ("main",), list(PLANS["main"]), [0, 1, 2], base, None)
    path = chart.draw(built["tables"]["main"], FAMILIES, base, "test", tmp_path / "main.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ------------------------------------------------------------------------------------ the base on white backgrounds
def test_the_white_base_is_judged_against_the_white_questions_bars_not_the_test_splits(tmp_path):
    from mung.compare.session import white_baselines

    # 60 white count questions, most common answer "three" (20 of 60); the test split's most common answer is 45%.
    answers = ["three"] * 20 + ["one"] * 14 + ["two"] * 13 + ["four"] * 13
    white_truth = [{"question_id": f"w{i}", "family": "count", "answer": a} for i, a in enumerate(answers)]
    (tmp_path / "white_eval").mkdir()
    (tmp_path / "white_eval" / "eval_answers.jsonl").write_text("".join(json.dumps(r) + "\n" for r in white_truth))
    base_result = {"white_eval": {"scores": {"per_family": {"count": 0.5}, "n_per_family": {"count": 60}}}}
    white = white_baselines(tmp_path, {"chance": {"count": 0.25}, "eval_answers": "/not/read"}, base_result)
    assert white["count"] == {"chance": 0.25, "majority": pytest.approx(20 / 60), "n": 60}
    test_split = {"count": {"chance": 0.25, "majority": 0.45, "n": 60}}
    # 50% of 60: binomial interval 37.3..62.7 — above the white bar (33.3%), not above the test split's 45%.
    mine = report.build_report([], ("main",), [], [0], test_split, None, None, base_result, white)["base_white"]
    theirs = report.build_report([], ("main",), [], [0], test_split, None, None, base_result)["base_white"]
    assert mine["count"]["learnt"] and not theirs["count"]["learnt"]
    assert white_baselines(tmp_path, None, base_result) is None  # your own data: no white split


# ----------------------------------------------------------------------------------------------------- setup
def test_a_rerun_with_other_settings_is_refused(tmp_path):
    spec = by_name("llava").comparison
    setup = tiny_setup("llava", spec, MANIFEST, "/w", Budget(7, 2, None, None), start=None)
    check_or_store(tmp_path, setup)
    check_or_store(tmp_path, setup)  # the same settings: fine
    other = tiny_setup("llava", spec, MANIFEST, "/w", Budget(8, 2, None, None), start=None)
    with pytest.raises(ValueError, match="budget"):
        check_or_store(tmp_path, other)


def test_fast_shortens_the_tiny_budget_and_flags_win():
    fast = budget_of(parse_args(["--backbone", "llava", "--out", "x", "--fast"]))
    full = budget_of(parse_args(["--backbone", "llava", "--out", "x"]))
    assert fast.steps < full.steps
    assert budget_of(parse_args(["--backbone", "llava", "--out", "x", "--fast", "--steps", "3"])).steps == 3
    real = budget_of(parse_args(["--backbone", "qwen", "--out", "x", "--train-data", "d.jsonl"]))
    assert real.steps is None and real.batch is None  # the recipes' own epochs and batch sizes


# ----------------------------------------------------------------------------------------------------- a real run
@pytest.fixture
def counted_runs(monkeypatch):
    """Every training (recipe) and evaluation (eval module) the runner starts, in order."""
    calls = []
    real_run, real_module = runner.run_logged, runner.run_module

    def counting_run(cmd, log, cwd, env=None):
        calls.append("train" if cmd[0] == "bash" else cmd[2])
        return real_run(cmd, log, cwd, env)

    def counting_module(module, argv, log):
        calls.append("eval")
        return real_module(module, argv, log)

    monkeypatch.setattr(runner, "run_logged", counting_run)
    monkeypatch.setattr(runner, "run_module", counting_module)
    return calls


def fast_args(world_dir, out, *extra):
    return parse_args(["--backbone", "llava", "--plan", "main", "--methods", "base,LoRA r32", "--seeds", "1",
                       "--steps", "2", "--base-steps", "2", "--batch", "2", "--eval-per-family", "1",
                       "--world", str(world_dir), "--out", str(out), *extra])


@pytest.mark.slow
def test_two_methods_run_and_a_rerun_resumes_instead_of_retraining(tiny_world, tmp_path, counted_runs):
    world_dir = Path(tiny_world["image_folder"]).parent
    args = fast_args(world_dir, tmp_path)
    built = compare(args, budget_of(args))
    # stage-1 base (train + eval on white), base (eval), LoRA r32 (train + eval)
    assert counted_runs == ["train", "eval", "eval", "train", "eval"]  # the base also answers the white split
    rows = {row["method"]: row for row in built["tables"]["main"]}
    assert rows["base"]["runs"] == rows["LoRA r32"]["runs"] == 1
    assert all(rows["LoRA r32"][f]["mean"] is not None for f in tiny_world["families"])
    assert rows["LoRA r32"]["trainable_percent"] > 0
    assert (tmp_path / "tables.md").is_file() and (tmp_path / "results.json").is_file()

    counted_runs.clear()
    compare(args, budget_of(args))
    assert counted_runs == []  # every unit was done

    method_unit(tmp_path, "LoRA r32", 0).marker.unlink()
    compare(args, budget_of(args))
    assert counted_runs == ["train", "eval"]  # only the unit without its marker


def test_list_checkpoints_prints_finished_runs(tmp_path, capsys):
    from mung.compare.session import list_checkpoints

    unit = method_unit(tmp_path, "LoRA r32", 1)
    unit.finish({"checkpoint": "/c/lora", "model_base": "/c/base"})
    assert list_checkpoints(tmp_path) == 0
    assert capsys.readouterr().out == "LoRA r32\t1\t/c/lora\t/c/base\n"


def test_time_left_is_estimated_per_kind_of_unit(tmp_path, capsys):
    progress = runner.Progress(total=5)
    train, evaluate = method_unit(tmp_path, "LoRA r32", 0), method_unit(tmp_path, "base", 0, trains=False)
    progress.finished(train, 60.0, "trained", remaining=[])
    progress.finished(evaluate, 10.0, "evaluated", remaining=[method_unit(tmp_path, "MuNG", 0)] * 2 + [evaluate])
    assert "left ~2m10s" in capsys.readouterr().out.splitlines()[-1]  # 2 x 60 s + 10 s
    assert progress._estimate(runner.Unit("efficiency", tmp_path)) == pytest.approx(35.0)  # nothing of its kind yet


def test_a_failing_eval_module_fails_its_unit_with_its_log(tmp_path, monkeypatch):
    (tmp_path / "broken_eval.py").write_text("def main(argv):\n    print('answering', argv)\n"
                                             "    raise ValueError('bad question file')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(runner.UnitFailed, match="bad question file") as err:
        runner.run_module("broken_eval", ["--x"], tmp_path / "eval.log")
    assert str(tmp_path / "eval.log") in str(err.value)
    assert "answering ['--x']" in (tmp_path / "eval.log").read_text()


@pytest.mark.parametrize("seed, expected", [(0, "/w"), (1, "own")])
def test_efficiency_never_hands_the_benchmarks_a_world_they_would_rebuild(tmp_path, monkeypatch, seed, expected):
    """benchmarks/ build (tiny, seed 0) into the folder they are given; a world of another seed must not be it."""
    worlds = []

    def fake_run(cmd, log, cwd, env=None):
        worlds.append(cmd[cmd.index("--world") + 1])
        out = Path(cmd[cmd.index("--json") + 1])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("{}")
        return 0.0, ""

    monkeypatch.setattr(runner, "run_logged", fake_run)
    spec = by_name("llava").comparison
    setup = tiny_setup("llava", spec, MANIFEST, "/w", Budget(7, 2, None, None), start=None)
    ctx = runner.Context(spec=spec, setup=setup, repo=tmp_path, out=tmp_path,
                         manifest={**MANIFEST, "preset": "tiny", "seed": seed})
    unit = runner.Unit("efficiency", tmp_path / "efficiency")
    runner.run_efficiency(unit, ctx)
    assert worlds == [str(unit.folder / "world") if expected == "own" else expected] * 2


def test_a_units_summary_gives_mean_losses_not_single_steps(tmp_path):
    """A flat run that ends on a high step (LLaVA's generator alone: 1.05 at step 1, 1.79 at step 80) must not
    read as a loss that rose; the means of the first and last tenth of the steps say what happened."""
    losses = [1.0, 1.2, 0.8, 1.1, 0.9, 1.0, 1.1, 0.9, 1.0, 1.0] * 2
    losses[-1] = 1.8
    history = [{"step": i + 1, "loss": loss} for i, loss in enumerate(losses)] + [{"train_runtime": 4.0}]
    (tmp_path / "trainer_state.json").write_text(json.dumps({"global_step": 20, "log_history": history}))
    log = "trainable params: 10 || all params: 100 || trainable%: 10.0"
    train = runner.training_summary(tmp_path, log, tmp_path / "train.log")
    assert (train["loss_start_mean"], train["loss_end_mean"]) == (pytest.approx(1.1), pytest.approx(1.4))
    assert runner.summary_of({"train": train}) == ("trained 20 steps (mean loss 1.100 -> 1.400 (first / last tenth), "
                                            "10.00% trainable)")
    old_unit = {k: v for k, v in train.items() if not k.endswith("_mean")}  # finished before the means existed
    assert runner.summary_of({"train": old_unit}) == "trained 20 steps (loss 1.000 -> 1.800, 10.00% trainable)"
