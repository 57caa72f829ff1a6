"""Training any transformers VLM with MuNG (``python -m vlm_noise.train.train``) on the tiny world, end to end: 30
steps lower the loss, every checkpoint loads through ``mung.loading.load`` (generator-only over the base, LoRA
adapter + generator) and answers like the trained model, the eval and chat commands and the VLMEvalKit class run on
it; resume, finished runs, bad samples, m noise draws, LoRA placement and what trains.

The suite trains a few families (``IN_SUITE``); ``MUNG_VLM_FAMILIES=all`` trains every family (the by-hand run).
"""

import io
import json
import os
import sys

import pytest
import torch

from mung.bad_samples import BadSampleCause, BadSampleError
from mung.loading import LoadOptions, load
from mung.serve import cli
from noise_generator import find_noise_generator
from vlm_helpers import FAMILY_NAMES, family_folder, world_images
from vlm_noise.data import ConversationCollator, ConversationDataset, read_sample
from vlm_noise.train.train import parse, train

STEPS = 30
# family: its --tune in the end-to-end runs (the suite's; the rest with MUNG_VLM_FAMILIES=all).
IN_SUITE = {"gemma3": "noise_lora", "qwen3_vl": "noise", "smolvlm": "noise"}
EVERY = {name: "noise_lora" if k % 2 else "noise" for k, name in enumerate(FAMILY_NAMES)} | IN_SUITE
FAMILIES = EVERY if os.environ.get("MUNG_VLM_FAMILIES") == "all" else IN_SUITE
NEEDS_AN_IMAGE = {"paligemma"}
# A generator trained by vlm_noise on a stock Qwen2.5-VL is served by the bespoke Qwen backbone (same noise).
SERVED_BY = {"qwen2_5_vl": "qwen"}
EVAL_QUESTIONS = 12


def train_file(tiny_world, path, count: int) -> str:
    """The first ``count`` training records."""
    rows = json.load(open(tiny_world["qwen_train_json"]))[:count]
    path.write_text(json.dumps(rows))
    return str(path)


def argv(folder, data, tiny_world, out, *extra):
    return ["--model_name_or_path", folder, "--data_path", data, "--image_folder", tiny_world["image_folder"],
            "--output_dir", str(out), "--ng_heads", "4", "--learning_rate", "1e-2", "--logging_steps", "1",
            "--report_to", "none", "--use_cpu", "True", "--disable_tqdm", "True", "--seed", "0",
            "--dataloader_num_workers", "0", "--lora_r", "4", "--lora_alpha", "8", *extra]


def step_losses(trainer) -> list[float]:
    return [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def trained(request, vlm_families, tiny_world, tmp_path_factory):
    """A 30-step run of one family (batch 4, checkpoints every 10 steps): (name, tune, trainer, output folder)."""
    name = request.param
    folder = family_folder(vlm_families, name)
    root = tmp_path_factory.mktemp(f"train_{name}")
    data = train_file(tiny_world, root / "train.json", 4 * STEPS)  # PaliGemma leaves the text-only records out
    extra = ["--ng_noise_deepstack", "True"] if name == "qwen3_vl" else []
    trainer = train(argv(folder, data, tiny_world, root / "out", "--tune", FAMILIES[name], "--max_steps", str(STEPS),
                         "--per_device_train_batch_size", "4", "--save_steps", "10", *extra))
    return name, FAMILIES[name], trainer, root / "out"


def logits_of(model, processor, tiny_world):
    from vlm_helpers import chat_batch

    batch = chat_batch(processor, world_images(tiny_world), ["What color is it?", "Is there a red circle?"])
    mode = {"noise_mode": "mean"} if find_noise_generator(model) is not None else {}
    with torch.no_grad():
        return model(**batch, **mode).logits


# --- end to end ---------------------------------------------------------------------------------------------------


def test_thirty_steps_lower_the_loss(trained):
    name, tune, trainer, _ = trained
    losses = step_losses(trainer)
    assert len(losses) == STEPS and all(map(torch.isfinite, torch.tensor(losses)))
    first, last = sum(losses[:5]) / 5, sum(losses[-5:]) / 5
    print(f"[{name} --tune {tune}] loss {losses[0]:.4f} -> {losses[-1]:.4f} (mean of 5: {first:.4f} -> {last:.4f})")
    assert last < first


def test_every_checkpoint_loads_and_answers_like_the_trained_model(trained, vlm_families, tiny_world):
    name, tune, trainer, out = trained
    base = vlm_families[name]
    files = {"noise": {"noise_generator.safetensors", "noise_generator_config.json"},
             "noise_lora": {"noise_generator.safetensors", "adapter_model.safetensors", "adapter_config.json"}}[tune]
    for step in (10, 20, 30):
        assert files <= set(os.listdir(out / f"checkpoint-{step}"))
        assert "model.safetensors" not in os.listdir(out / f"checkpoint-{step}")  # never the frozen base again
    trainer.model.eval()
    expected = logits_of(trainer.model, trainer.processing_class, tiny_world)
    # generator-only folders need the base; a LoRA adapter names its own
    loaded = load(str(out), model_base=base if tune == "noise" else None, options=LoadOptions(device="cpu"))
    assert loaded.backbone.name == SERVED_BY.get(name, "vlm")
    got = logits_of(loaded.model, loaded.processor, tiny_world)
    if tune == "noise":
        assert torch.equal(got, expected)
    else:  # the adapter is merged into the weights at loading: the same function, rounded differently
        torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    trainer.model.train()
    by_step = {step: logits_of(load(str(out / f"checkpoint-{step}"), model_base=base if tune == "noise" else None,
                                    options=LoadOptions(device="cpu")).model, loaded.processor, tiny_world)
               for step in (10, 30)}
    assert torch.equal(by_step[30], got) and not torch.equal(by_step[10], got)


def test_the_eval_and_chat_commands_run_on_the_result(trained, vlm_families, tiny_world, tmp_path, monkeypatch,
                                                      capsys):
    from mung.eval import model_vqa_loader

    name, tune, _, out = trained
    base = ["--model-base", vlm_families[name]] if tune == "noise" else []
    rows = [json.loads(line) for line in open(tiny_world["eval_questions"])][:EVAL_QUESTIONS]
    (tmp_path / "q.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    model_vqa_loader.main(["--model-path", str(out), *base, "--question-file", str(tmp_path / "q.jsonl"),
                           "--image-folder", tiny_world["image_folder"], "--answers-file", str(tmp_path / "a.jsonl"),
                           "--temperature", "0", "--max_new_tokens", "4", "--device", "cpu", "--num-workers", "0",
                           "--batch-size", "4"])
    answers = [json.loads(line) for line in open(tmp_path / "a.jsonl")]
    assert [a["question_id"] for a in answers] == [r["question_id"] for r in rows]
    assert all(a["metadata"]["noise_mode"] == "sample (checkpoint default)" for a in answers)
    image = os.path.join(tiny_world["image_folder"], rows[0]["image"])
    monkeypatch.setattr(sys, "stdin", io.StringIO("What shape is it?\nAnd its colour?\n\n"))
    session = cli.run(cli.parse_args(["--model-path", str(out), *base, "--image-file", image, "--device", "cpu",
                                      "--temperature", "0", "--max-new-tokens", "4"]))
    assert [role for role, _ in session.turns] == ["user", "assistant", "user", "assistant"]
    assert capsys.readouterr().out.rstrip().endswith("exit...")


def test_the_vlmevalkit_class_answers_as_the_eval_command(trained, vlm_families, tiny_world, tmp_path):
    from mung.eval import model_vqa_loader
    from mung.vlmeval_base import CheckpointVLM

    name, tune, _, out = trained
    base = [vlm_families[name]] if tune == "noise" else []
    row = json.loads(open(tiny_world["eval_questions"]).readline())
    (tmp_path / "q.jsonl").write_text(json.dumps(row) + "\n")
    model_vqa_loader.main(["--model-path", str(out), *(["--model-base", *base] if base else []), "--question-file",
                           str(tmp_path / "q.jsonl"), "--image-folder", tiny_world["image_folder"], "--answers-file",
                           str(tmp_path / "a.jsonl"), "--temperature", "0", "--max_new_tokens", "4", "--device", "cpu",
                           "--noise-mode", "mean"])
    expected = json.loads(open(tmp_path / "a.jsonl").readline())["text"]
    vlm = CheckpointVLM(str(out), *base, noise_mode="mean", max_new_tokens=4, device="cpu")
    image = os.path.join(tiny_world["image_folder"], row["image"])
    assert vlm.loaded.backbone.name == SERVED_BY.get(name, "vlm") and vlm.loaded.noise_mode == "mean"
    assert vlm.generate([image, row["text"]]) == expected


# --- flags --------------------------------------------------------------------------------------------------------


def test_generator_flags_come_from_the_config_fields(vlm_families, tmp_path):
    from dataclasses import fields

    from noise_generator import NoiseGeneratorConfig

    _, _, ng_args, _ = parse(["--model_name_or_path", vlm_families["gemma3"], "--data_path", "d.json",
                              "--output_dir", str(tmp_path), "--ng_noise_video", "True", "--ng_noise_deepstack",
                              "True", "--ng_num_samples", "3", "--ng_heads", "4"])
    config = ng_args.to_config(64, "gemma3")
    assert (config.noise_video, config.noise_deepstack, config.num_samples, config.num_heads) == (True, True, 3, 4)
    flags = {f.name for f in fields(ng_args)}
    assert {f"ng_{f.name}" for f in fields(NoiseGeneratorConfig)} - {"ng_hidden_size", "ng_base_model_type",
                                                                      "ng_num_heads"} <= flags


@pytest.mark.parametrize("bad, message", [
    (["--tune", "nope"], "--tune 'nope' is not one of"),
    (["--tune", "noise", "--tune_vision_tower", "True"], "--tune_vision_tower True needs --tune full"),
    (["--tune", "full", "--bits", "4"], "cannot be combined with --tune full"),
    (["--lora_target", "q_proj,1x"], None),
    (["--on_bad_sample", "ignore"], "--on_bad_sample 'ignore' is not supported"),
])
def test_bad_flags_are_refused_before_loading(bad, message, vlm_families, tmp_path):
    args = ["--model_name_or_path", vlm_families["gemma3"], "--data_path", "d.json", "--output_dir", str(tmp_path)]
    if message is None:  # only found where the regex is built
        model_args = parse(args + bad)[0]
        with pytest.raises(ValueError, match="--lora_target must be comma-separated"):
            model_args.lora_target_regex("model.language_model")
        return
    with pytest.raises(ValueError, match=message):
        parse(args + bad)


def test_a_model_that_cannot_carry_a_generator_is_refused_with_the_reason(tiny_world, tmp_path):
    with pytest.raises(ValueError, match="cannot carry a noise generator: model_type 'llama' is not an image-text"):
        train(argv(tiny_world["llava_llm"], "d.json", tiny_world, tmp_path / "out"))


# --- what trains --------------------------------------------------------------------------------------------------


def prepared(folder, tmp_path, *flags):
    from vlm_noise.train.prepare import prepare_model

    model_args, _, ng_args, training_args = parse(["--model_name_or_path", folder, "--data_path", "d.json",
                                                   "--output_dir", str(tmp_path), "--use_cpu", "True",
                                                   "--ng_heads", "4", "--lora_r", "4", *flags])
    return prepare_model(model_args, training_args, ng_args)[0]


def trainable(model) -> list[str]:
    return [name for name, param in model.named_parameters() if param.requires_grad]


@pytest.mark.parametrize("name, decoder", [("gemma3", "model.language_model"), ("idefics3", "model.text_model")])
def test_lora_sits_on_the_language_models_linears_only_and_the_generator_trains(name, decoder, vlm_families, tmp_path):
    model = prepared(vlm_families[name], tmp_path, "--tune", "noise_lora")
    names = trainable(model)
    lora = [n for n in names if "lora_" in n]
    prefix = f"base_model.model.{decoder}.layers."
    assert lora and all(n.startswith(prefix) for n in lora)
    leaves = {n.split(".lora_")[0].rsplit(".", 1)[-1] for n in lora}
    assert leaves == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    generator = [n for n in names if "noise_generator" in n]
    assert generator and not any("lora_" in n for n in generator)  # its own q_proj / v_proj stay plain
    assert len(generator) == len(list(find_noise_generator(model).parameters()))
    assert set(names) == set(lora) | set(generator)


def test_noise_trains_the_generator_alone_and_full_all_but_the_vision_encoder(vlm_families, tmp_path):
    model = prepared(vlm_families["qwen3_vl"], tmp_path, "--tune", "noise")
    assert trainable(model) and all(n.startswith("noise_generator.") for n in trainable(model))
    model = prepared(vlm_families["qwen3_vl"], tmp_path, "--tune", "full")
    names = set(trainable(model))
    assert find_noise_generator(model) is None
    frozen = {n for n, _ in model.named_parameters()} - names
    assert frozen and all(n.startswith("model.visual.") for n in frozen)
    assert any(n.startswith("model.visual.merger.") for n in names)  # the connector inside the encoder trains
    assert any(n.startswith("model.visual.deepstack_merger_list.") for n in names)
    assert not any(n.startswith("model.visual.blocks.") for n in names)
    assert "lm_head.weight" in names and any(n.startswith("model.language_model.") for n in names)


# --- m noise draws ------------------------------------------------------------------------------------------------


def test_m_draws_average_the_loss_of_m_forwards_with_num_items_unchanged(vlm_families, tiny_world, tmp_path):
    """--ng_num_samples 2: the training loss is the mean of two single-draw losses (each with its own eps, each
    normalised by the Trainer's num_items_in_batch as given), computed here by hand."""
    from vlm_helpers import GeneratorCalls
    from vlm_noise.train.trainer import VLMTrainer

    model = prepared(vlm_families["llava"], tmp_path, "--tune", "noise", "--ng_num_samples", "2")
    training_args = parse(["--model_name_or_path", vlm_families["llava"], "--data_path", "d", "--output_dir",
                           str(tmp_path), "--use_cpu", "True", "--report_to", "none"])[3]
    trainer = VLMTrainer(model=model, args=training_args, tune="noise")
    rows = json.load(open(tiny_world["qwen_train_json"]))[:3]
    processor = __import__("transformers").AutoProcessor.from_pretrained(vlm_families["llava"])
    batch = ConversationCollator(processor)([read_sample(r, tiny_world["image_folder"], "s") for r in rows])
    queries = [int((ids == model.config.image_token_id).sum()) for ids in batch["input_ids"]]
    generator = find_noise_generator(model)
    eps = [[torch.randn(n, 64) for n in queries] for _ in range(2)]
    count = torch.tensor(37)  # any count: each draw's loss is divided by it as given
    model.train()
    calls = GeneratorCalls(generator, eps)
    loss = trainer.compute_loss(model, dict(batch), num_items_in_batch=count)
    assert len(calls.key_masks) == 2
    single = []
    for draw in eps:
        calls.eps = [draw]
        single.append(model(**batch, num_items_in_batch=count).loss)
    calls.remove()
    assert torch.allclose(loss, (single[0] + single[1]) / 2)
    assert not torch.allclose(single[0], single[1])


# --- text-only batches under ZeRO-3 -------------------------------------------------------------------------------


def module_order(model, batch) -> list[str]:
    """Names of the modules owning parameters, in the order a training forward + backward runs them."""
    seen = []
    handles = [module.register_forward_pre_hook(lambda *_, name=name: seen.append(name))
               for name, module in model.named_modules() if list(module.parameters(recurse=False))]
    model(**batch).loss.backward()
    for handle in handles:
        handle.remove()
    return seen


@pytest.mark.parametrize("name", [n for n in FAMILY_NAMES if n not in NEEDS_AN_IMAGE])
def test_a_text_only_batch_runs_the_modules_of_an_image_batch_in_order_with_the_stock_loss(name, vlm_families,
                                                                                            tiny_world, tmp_path):
    """ZeRO-3 gathers parameters module by module on every rank: a rank with a text-only batch must run the modules
    a rank with images runs, in the same order (the blank-image pass), and still get the text's own loss."""
    from vlm_noise.train.blank_image import BlankImagePass

    model = prepared(family_folder(vlm_families, name), tmp_path, "--tune", "noise")
    processor = __import__("transformers").AutoProcessor.from_pretrained(vlm_families[name])
    rows = json.load(open(tiny_world["qwen_train_json"]))
    collate = ConversationCollator(processor)
    images = collate([read_sample(r, tiny_world["image_folder"], "i") for r in rows if r.get("image")][:2])
    texts = collate([read_sample(r, tiny_world["image_folder"], "t") for r in rows if not r.get("image")][:2])
    model.train()
    with_images = module_order(model, images)
    assert module_order(model, texts) != with_images  # the stock model skips the vision side
    torch.manual_seed(0)
    stock = model(**texts).loss
    blank = BlankImagePass(model, processor).install()
    assert module_order(model, texts) == with_images
    torch.manual_seed(0)
    assert torch.equal(model(**texts).loss, stock)
    blank.remove()


# --- resume, finished runs, bad samples ---------------------------------------------------------------------------


def tensors(path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


class StepsRun(__import__("transformers").TrainerCallback):
    def __init__(self):
        self.steps = []

    def on_step_end(self, args, state, control, **kwargs):
        self.steps.append(state.global_step)


@pytest.mark.parametrize("tune", ["noise", "noise_lora"])
def test_a_resumed_run_ends_where_an_uninterrupted_one_does_and_a_finished_one_does_nothing(
        tune, vlm_families, tiny_world, tmp_path, capsys):
    data = train_file(tiny_world, tmp_path / "train.json", 40)

    def run(out, steps):
        ran = StepsRun()
        trainer = train(argv(vlm_families["gemma3"], data, tiny_world, out, "--max_steps", str(steps),
                             "--per_device_train_batch_size", "2", "--save_steps", "3", "--lr_scheduler_type",
                             "constant", "--tune", tune), callbacks=[ran])
        return trainer, ran.steps

    straight, _ = run(tmp_path / "straight", 8)
    run(tmp_path / "resumed", 4)  # stopped after step 4 (its final state is checkpoint-4)
    resumed, steps = run(tmp_path / "resumed", 8)
    assert steps == [5, 6, 7, 8]
    assert step_losses(resumed) == pytest.approx(step_losses(straight), abs=1e-6)
    weights = ["noise_generator.safetensors"] + (["adapter_model.safetensors"] if tune == "noise_lora" else [])
    for name in weights:  # the resumed run restored the generator (and the adapter) it had saved
        a, b = tensors(tmp_path / "straight" / name), tensors(tmp_path / "resumed" / name)
        assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    before = sorted(os.listdir(tmp_path / "resumed"))
    assert run(tmp_path / "resumed", 8)[0] is None
    assert "already holds a finished run (step 8 of 8); nothing to do" in capsys.readouterr().out
    assert sorted(os.listdir(tmp_path / "resumed")) == before


def bad_data(tiny_world, path) -> str:
    rows = json.load(open(tiny_world["qwen_train_json"]))
    good = [r for r in rows if isinstance(r.get("image"), str)][:3]
    text = next(r for r in rows if not r.get("image"))
    bad = [good[0], {**good[1], "image": "nowhere/missing.png"}, {**good[2], "conversations": "hi"},
           {**good[0], "conversations": [{"from": "human", "value": "<image>\n" + "Is it red? " * 100},
                                         {"from": "gpt", "value": "yes"}]}, text]
    path.write_text("".join(json.dumps(r) + "\n" for r in bad))
    return str(path)


@pytest.mark.parametrize("index, cause, field", [
    (1, BadSampleCause.MISSING_IMAGE, r"sample 1 \(line 2\) id train-\d+: image .*nowhere/missing.png does not exist"),
    (2, BadSampleCause.FORMAT, r"sample 2 \(line 3\) id train-\d+: 'conversations' must be"),
    (3, BadSampleCause.TOO_LONG, r"sample 3 \(line 4\) id train-\d+: \d+ tokens with its images, more than max_length"),
])
def test_bad_samples_name_the_sample_and_what_is_wrong(index, cause, field, vlm_families, tiny_world, tmp_path):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(vlm_families["gemma3"])
    data = bad_data(tiny_world, tmp_path / "bad.jsonl")
    strict = ConversationDataset(data, processor, tiny_world["image_folder"], max_length=256, on_bad_sample="raise")
    with pytest.raises(BadSampleError, match=field) as caught:
        strict[index]
    assert caught.value.cause == cause
    lenient = ConversationDataset(data, processor, tiny_world["image_folder"], max_length=256, max_bad_sample_share=1)
    assert lenient[index].name.endswith(f"sample 4 (line 5) id {json.loads(open(data).readlines()[4])['id']}")
    assert lenient.skipped == 4 - index


def test_text_only_records_are_left_out_for_a_family_that_needs_an_image(vlm_families, tiny_world, tmp_path,
                                                                           caplog):
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(family_folder(vlm_families, "paligemma"))
    data = bad_data(tiny_world, tmp_path / "bad.jsonl")
    dataset = ConversationDataset(data, processor, tiny_world["image_folder"], on_bad_sample="raise")
    assert len(dataset) == 4 and dataset[3].name.startswith(f"{data} sample 3 (line 4)")
    left_out = "1 of 5 records have no image and are left out: PaliGemmaProcessor takes no prompt without an image"
    assert left_out in caplog.text
    assert len(ConversationDataset(data, AutoProcessor.from_pretrained(vlm_families["gemma3"]))) == 5
def test_full_fine_tuning_saves_whole_models_that_load_alone(vlm_families, tiny_world, tmp_path):
    from safetensors.torch import load_file

    data = train_file(tiny_world, tmp_path / "train.json", 12)
    trainer = train(argv(vlm_families["gemma3"], data, tiny_world, tmp_path / "out", "--tune", "full", "--max_steps",
                         "3", "--per_device_train_batch_size", "4", "--save_steps", "2", "--learning_rate", "1e-3"))
    base = load_file(os.path.join(vlm_families["gemma3"], "model.safetensors"))
    for folder in (tmp_path / "out", tmp_path / "out" / "checkpoint-2"):
        config = json.load(open(folder / "config.json"))
        assert config["use_cache"] is True and config["text_config"]["use_cache"] is True
        assert "noise_generator" not in config
        saved = load_file(folder / "model.safetensors")
        vision = [k for k in base if "vision_tower." in k]  # names as the family's checkpoints store them
        head = next(k for k in base if k.endswith("lm_head.weight"))
        assert vision and all(torch.equal(saved[k], base[k]) for k in vision)  # frozen
        assert not torch.equal(saved[head], base[head])
    loaded = load(str(tmp_path / "out"), options=LoadOptions(device="cpu"))
    assert find_noise_generator(loaded.model) is None and loaded.noise_mode == "off"
    trainer.model.eval()
    assert torch.equal(logits_of(loaded.model, loaded.processor, tiny_world),
                       logits_of(trainer.model, trainer.processing_class, tiny_world))


def test_a_mung_folder_is_continued_with_its_own_settings_only(vlm_families, tmp_path):
    from transformers import AutoModelForImageTextToText, AutoProcessor

    from noise_generator import NoiseGeneratorConfig, attach

    model = AutoModelForImageTextToText.from_pretrained(vlm_families["gemma3"])
    saved = attach(model, NoiseGeneratorConfig(hidden_size=64, num_heads=4, init="normal", init_std=0.3))
    folder = tmp_path / "gemma3-mung"
    model.save_pretrained(folder)
    AutoProcessor.from_pretrained(vlm_families["gemma3"]).save_pretrained(folder)
    continued = find_noise_generator(prepared(str(folder), tmp_path, "--tune", "noise", "--ng_init", "normal",
                                              "--ng_init_std", "0.3"))
    assert all(torch.equal(a, b) for a, b in zip(continued.state_dict().values(), saved.state_dict().values()))
    with pytest.raises(ValueError, match=r"a noise generator with other settings \(init='normal', init_std=0.3"):
        prepared(str(folder), tmp_path, "--tune", "noise")
    with pytest.raises(ValueError, match="--tune lora trains no noise generator, but .* carries one"):
        prepared(str(folder), tmp_path, "--tune", "lora")


def test_a_busy_output_dir_stops_the_run_before_loading_naming_the_holder(vlm_families, tiny_world, tmp_path):
    import socket
    import subprocess

    from mung.training.output_dir import LOCK_NAME, OutputDirBusy

    out = tmp_path / "out"
    out.mkdir()
    other = subprocess.Popen(["sleep", "60"])
    try:
        (out / LOCK_NAME).write_text(json.dumps({"pid": other.pid, "host": socket.gethostname(),
                                                 "process_start": None, "started": "2026-01-02T03:04:05+00:00",
                                                 "command": "python -m vlm_noise.train.train"}))
        data = train_file(tiny_world, tmp_path / "d.json", 4)
        with pytest.raises(OutputDirBusy, match=rf"--output_dir {out} is in use by another training run \(pid {other.pid}"):
            train(argv(vlm_families["gemma3"], data, tiny_world, out, "--max_steps", "1"))
        assert json.loads((out / LOCK_NAME).read_text())["pid"] == other.pid
    finally:
        other.kill()
        other.wait()
