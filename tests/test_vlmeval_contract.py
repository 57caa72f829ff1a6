"""VLMEvalKit's model contract on both backbones' tiny checkpoints.

The runner's call order (``vlmeval/inference.py``: set_dump_image, use_custom_prompt, generate(message=, dataset=)) and
the multi-turn one (``vlmeval/inference_mt.py``: chat over the turns so far) are replayed here; every answer is
checked against the backbone's own path for the same question and image (the eval loader, run_llava, the CLI).
"""

import ast
import base64
import io
import json
import os
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from test_eval_inference import build_tiny_llava

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_NEW_TOKENS = 6
DATASET = "TinyVQA"
TEXT_ONLY = "What colour is the sky?\nAnswer with one word."


# ----------------------------------------------------------------------------------------------------- VLMEvalKit
class TinyBenchmark:
    """What VLMEvalKit's runner uses of an image dataset: ``dataset_name``, rows with a base64 ``image``,
    ``dump_image(line)`` saving it as ``<img_root>/<index>.jpg``, ``build_prompt(line)`` -> [image, question]."""

    dataset_name = DATASET

    def __init__(self, rows, img_root):
        self.data, self.img_root = rows, str(img_root)

    def dump_image(self, line):
        path = os.path.join(self.img_root, f"{line['index']}.jpg")
        if not os.path.exists(path):
            os.makedirs(self.img_root, exist_ok=True)
            image = Image.open(io.BytesIO(base64.b64decode(line["image"])))
            (image.convert("RGB") if image.mode in ("RGBA", "P", "LA") else image).save(path)
        return [path]

    def build_prompt(self, line):
        return [{"type": "image", "value": p} for p in self.dump_image(line)] + [
            {"type": "text", "value": line["question"]}]


def run_like_vlmevalkit(model, dataset):
    """``infer_data`` for a local model on one rank: {index: prediction}."""
    assert not getattr(model, "is_api", False)
    model.set_dump_image(dataset.dump_image)
    predictions = {}
    for line in dataset.data:
        if hasattr(model, "use_custom_prompt") and model.use_custom_prompt(dataset.dataset_name):
            struct = model.build_prompt(line, dataset=dataset.dataset_name)
        else:
            struct = dataset.build_prompt(line)
        predictions[line["index"]] = model.generate(message=struct, dataset=dataset.dataset_name)
    return predictions


def chat_like_vlmevalkit(model, messages):
    """``chat_mt``: the reply to each user turn, given the model's own earlier replies."""
    stack, replies = [], []
    for i in range(len(messages) // 2):
        stack.append(messages[2 * i])
        reply = model.chat(stack, dataset=DATASET)
        stack.append({"role": "assistant", "content": reply})
        replies.append(reply)
    return replies


def record_model_inputs(monkeypatch, model_class):
    """The tensors each ``model_class.generate`` call receives (ids, mask, pixels, ...), in call order."""
    calls, original = [], model_class.generate

    def recording(self, *args, **kwargs):
        calls.append({k: v.detach().cpu().clone() for k, v in kwargs.items() if isinstance(v, torch.Tensor)})
        return original(self, *args, **kwargs)

    monkeypatch.setattr(model_class, "generate", recording)
    return calls


def assert_same_model_inputs(got, expected):
    assert len(got) == len(expected)
    for call, reference_call in zip(got, expected):
        assert call.keys() == reference_call.keys()
        for name, tensor in call.items():
            assert torch.equal(tensor, reference_call[name]), name


def base64_png(path):
    return base64.b64encode(open(path, "rb").read()).decode()


# ----------------------------------------------------------------------------------------------------- backbones
def eval_rows(tiny_world, n=3):
    """The first eval questions of ``n`` different families (absolute image paths)."""
    rows, seen = [], set()
    for line in open(tiny_world["eval_questions"]):
        row = json.loads(line)
        if row["category"] not in seen:
            seen.add(row["category"])
            rows.append({**row, "image": os.path.join(tiny_world["image_folder"], row["image"])})
    return rows[:n]


def write_questions(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def debug_dicts(stdout, key):
    # split("\n"), not splitlines(): a random tiny model may emit \x1c-\x1e, which splitlines() treats as breaks.
    return [ast.literal_eval(line) for line in stdout.split("\n") if line.startswith("{" + repr(key))]


@pytest.fixture(scope="module")
def llava(tiny_world, tmp_path_factory):
    from llava_noise.eval import model_vqa_loader
    from llava_noise.serve import cli
    from llava_noise.vlmeval import LlavaNoiseVLM

    checkpoint = build_tiny_llava(tiny_world, tmp_path_factory.mktemp("vlmeval_llava") / "tiny-llava")

    def eval_answers(rows, image_folder, out_dir):
        answers = out_dir / "llava_answers.jsonl"
        model_vqa_loader.main([
            "--model-path", checkpoint, "--question-file", write_questions(out_dir / "llava_q.jsonl", rows),
            "--image-folder", str(image_folder), "--answers-file", str(answers), "--conv-mode", "vicuna_v1",
            "--temperature", "0", "--max_new_tokens", str(MAX_NEW_TOKENS), "--device", "cpu", "--num-workers", "0"])
        return {r["question_id"]: r["text"] for r in map(json.loads, open(answers))}

    def cli_replies(monkeypatch, capsys, image, questions):
        monkeypatch.setattr(sys, "stdin", io.StringIO("".join(q + "\n" for q in questions) + "\n"))
        cli.main(["--model-path", checkpoint, "--image-file", image, "--device", "cpu",
                  "--temperature", "0", "--max-new-tokens", str(MAX_NEW_TOKENS), "--debug"])
        return debug_dicts(capsys.readouterr().out, "prompt")

    vlm = LlavaNoiseVLM(model_path=checkpoint, device="cpu", max_new_tokens=MAX_NEW_TOKENS)
    return SimpleNamespace(name="llava", vlm=vlm, checkpoint=checkpoint, eval_answers=eval_answers,
                           cli_replies=cli_replies, model_class=type(vlm.loaded.model))


@pytest.fixture(scope="module")
def qwen(tiny_world, tmp_path_factory):
    from transformers import AutoConfig

    from noise_generator import NoiseGenerator, NoiseGeneratorConfig, save_noise_generator
    from qwen_noise.eval.model_vqa_loader import main as eval_main
    from qwen_noise.serve.cli import main as cli_main
    from qwen_noise.vlmeval import QwenNoiseVLM

    base = tiny_world["qwen_model"]
    checkpoint = tmp_path_factory.mktemp("vlmeval_qwen") / "qwen-generator"
    width = AutoConfig.from_pretrained(base).text_config.hidden_size
    torch.manual_seed(0)  # a random generator: its noise changes the answers, which is all the equality tests need
    save_noise_generator(NoiseGenerator(NoiseGeneratorConfig(hidden_size=width, num_heads=4,
                                                             base_model_type="qwen2_5_vl")), checkpoint)
    checkpoint = str(checkpoint)

    def eval_answers(rows, image_folder, out_dir):
        answers = out_dir / "qwen_answers.jsonl"
        eval_main([
            "--model-path", checkpoint, "--model-base", base, "--image-folder", str(image_folder),
            "--question-file", write_questions(out_dir / "qwen_q.jsonl", rows), "--answers-file", str(answers),
            "--noise-mode", "mean", "--max_new_tokens", str(MAX_NEW_TOKENS), "--device", "cpu", "--num-workers", "0",
            "--temperature", "0"])
        return {r["question_id"]: r["text"] for r in map(json.loads, open(answers))}

    def cli_replies(monkeypatch, capsys, image, questions):
        monkeypatch.setattr(sys, "stdin", io.StringIO("".join(q + "\n" for q in questions) + "\n"))
        cli_main(["--model-path", checkpoint, "--model-base", base, "--image-file", image,
                  "--device", "cpu", "--temperature", "0", "--noise-mode", "mean",
                  "--max-new-tokens", str(MAX_NEW_TOKENS), "--debug"])
        return debug_dicts(capsys.readouterr().out, "prompt")

    # use_vllm=False: what VLMEvalKit's runner passes to models registered under a 'Qwen2.5-VL…' name.
    vlm = QwenNoiseVLM(model_path=checkpoint, model_base=base, noise_mode="mean", max_new_tokens=MAX_NEW_TOKENS,
                       device="cpu", use_vllm=False)
    return SimpleNamespace(name="qwen", vlm=vlm, checkpoint=checkpoint, eval_answers=eval_answers,
                           cli_replies=cli_replies, model_class=type(vlm.loaded.model))


@pytest.fixture(scope="module", params=["llava", "qwen"])
def backbone(request):
    return request.getfixturevalue(request.param)


@pytest.fixture(scope="module")
def reference(backbone, tiny_world, tmp_path_factory):
    """The eval loader's answers (``with_image``: the first eval question with its image; ``text``: a text-only
    question), with that ``image`` and ``question``."""
    row = eval_rows(tiny_world, 1)[0]
    rows = [{"question_id": "with_image", "image": row["image"], "text": row["text"]},
            {"question_id": "text", "text": TEXT_ONLY}]
    # (absolute image paths: the image folder only has to hold no output)
    answers = backbone.eval_answers(rows, tiny_world["image_folder"],
                                    tmp_path_factory.mktemp(f"ref_{backbone.name}"))
    assert any(answers.values()), "the tiny model answers nothing: the equalities below would prove little"
    return SimpleNamespace(image=row["image"], question=row["text"], **answers)


# ----------------------------------------------------------------------------------------------------- tests
def test_runner_call_order_gives_the_eval_loaders_inputs_and_answers(backbone, tiny_world, tmp_path, monkeypatch):
    rows = [{"index": i, "image": base64_png(r["image"]), "question": r["text"]}
            for i, r in enumerate(eval_rows(tiny_world))]
    dataset = TinyBenchmark(rows, tmp_path / "images" / DATASET)
    calls = record_model_inputs(monkeypatch, backbone.model_class)
    predictions = run_like_vlmevalkit(backbone.vlm, dataset)
    vlm_inputs = calls[:]
    calls.clear()
    # The loader reads the same dumped JPEGs (as VLMEvalKit's datasets write them) from the dataset's folder.
    expected = backbone.eval_answers(
        [{"question_id": r["index"], "image": f"{r['index']}.jpg", "text": r["question"]} for r in rows],
        dataset.img_root, tmp_path)
    # A random tiny model may answer alike for slightly different prompts: the token ids and pixels must be equal.
    assert_same_model_inputs(vlm_inputs, calls)
    assert predictions == expected
    assert backbone.vlm.dump_image(rows[0], DATASET) == [os.path.join(dataset.img_root, "0.jpg")]


def test_text_only_message_shapes_give_the_eval_loaders_answer(backbone, reference, tiny_world, tmp_path, monkeypatch):
    calls = record_model_inputs(monkeypatch, backbone.model_class)
    backbone.eval_answers([{"question_id": "text", "text": TEXT_ONLY}], tiny_world["image_folder"], tmp_path)
    expected_inputs = calls[:]
    calls.clear()
    vlm = backbone.vlm
    vlm.generate(TEXT_ONLY)
    assert_same_model_inputs(calls, expected_inputs)
    assert vlm.generate(TEXT_ONLY) == reference.text
    assert vlm.generate({"type": "text", "value": TEXT_ONLY}, dataset=DATASET) == reference.text
    assert vlm.generate([TEXT_ONLY]) == reference.text
    assert vlm.generate(message=[{"type": "text", "value": TEXT_ONLY}], dataset=DATASET) == reference.text


def test_list_of_strings_takes_an_image_path_as_the_image(backbone, reference):
    as_strings = backbone.vlm.generate([reference.image, reference.question], dataset=DATASET)
    as_items = backbone.vlm.generate([{"type": "image", "value": reference.image},
                                      {"type": "text", "value": reference.question}], dataset=DATASET)
    assert as_strings == as_items == reference.with_image


BAD_MESSAGES = {
    "unknown item type": ([{"type": "audio", "value": "hello"}], r"item 0 has type 'audio'.*takes 'text' and 'image'"),
    "missing image file": ([{"type": "image", "value": "/no/such/image.png"}, {"type": "text", "value": "Hi?"}],
                           r"item 0: image file '/no/such/image.png' does not exist"),
    "item without type": ([{"value": "Hi?"}], r"item 0 .* needs both 'type' and 'value'"),
    "mixed list": (["Hi?", {"type": "text", "value": "Hi?"}], r"is not a str, a \{'type', 'value'\} dict"),
    "not a message": (42, r"message 42 is not a str"),
    "placeholder in text": ([{"type": "text", "value": "<image>\nWhat is it?"}], r"contains the text '<image>'"),
    "value not text": ([{"type": "text", "value": 3}], r"item 0: its value must be a str"),
    "image URL": (["https://example.com/cat.jpg", "What is it?"], r"item 0 .* is a URL; save the file locally"),
}


@pytest.mark.parametrize("case", list(BAD_MESSAGES))
def test_bad_messages_are_refused_naming_the_item(backbone, case):
    message, pattern = BAD_MESSAGES[case]
    with pytest.raises(ValueError, match=pattern):
        backbone.vlm.generate(message, dataset=DATASET)


def test_an_image_item_whose_file_is_not_an_image_is_refused(backbone, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not an image")
    with pytest.raises(ValueError, match=r"item 0 has type 'image' but .*notes.txt' is a file of type 'text'"):
        backbone.vlm.generate([{"type": "image", "value": str(notes)}, {"type": "text", "value": "Hi?"}])


def test_dump_image_without_the_runner_writes_where_vlmevalkit_keeps_images(backbone, tiny_world, tmp_path,
                                                                            monkeypatch):
    monkeypatch.setenv("LMUData", str(tmp_path / "lmu"))
    (tmp_path / "lmu").mkdir()
    monkeypatch.setattr(backbone.vlm, "dump_image_func", None)
    source = eval_rows(tiny_world, 1)[0]["image"]
    line = {"index": 17, "image": base64_png(source), "question": "unused"}
    paths = backbone.vlm.dump_image(line, DATASET)
    assert paths == [str(tmp_path / "lmu" / "images" / DATASET / "17.jpg")]
    # The same bytes VLMEvalKit's dataset writes (PIL's JPEG of the decoded image), and the picture itself.
    expected = TinyBenchmark([line], tmp_path / "dataset").dump_image(line)[0]
    assert open(paths[0], "rb").read() == open(expected, "rb").read()
    dumped, original = Image.open(paths[0]), Image.open(source).convert("RGB")
    assert dumped.format == "JPEG" and dumped.size == original.size
    error = np.abs(np.asarray(dumped, dtype=np.float64) - np.asarray(original, dtype=np.float64)).mean()
    assert error < 4.0  # JPEG loss only


def test_dump_of_a_multi_image_line_uses_its_image_path_names(tiny_world, tmp_path):
    from mung.vlmeval_base import dump_line_images

    sources = [r["image"] for r in eval_rows(tiny_world, 2)]
    line = {"index": 3, "image": [base64_png(s) for s in sources], "image_path": ["3_a.jpg", "3_b.jpg"]}
    paths = dump_line_images(line, str(tmp_path))
    assert paths == [str(tmp_path / "3_a.jpg"), str(tmp_path / "3_b.jpg")]
    for path, source in zip(paths, sources):
        assert Image.open(path).format == "JPEG" and Image.open(path).size == Image.open(source).size
    # Without an 'image', the paths are the line's own (TSV files may store a list as its Python text).
    assert dump_line_images({"index": 4, "image_path": "['x.jpg', 'y.jpg']"}, str(tmp_path)) == ["x.jpg", "y.jpg"]
    with pytest.raises(ValueError, match=r"benchmark line 3 holds 2 images but 1 'image_path' names"):
        dump_line_images({**line, "image_path": ["only.jpg"]}, str(tmp_path))
    with pytest.raises(ValueError, match=r"benchmark line 5: the 'image' field is not a base64-encoded image"):
        dump_line_images({"index": 5, "image": "bm90IGFuIGltYWdl"}, str(tmp_path))


def test_chat_turns_must_alternate_from_a_user_turn_to_a_user_turn(backbone):
    with pytest.raises(ValueError, match=r"chat message 0 has role 'assistant'; turns must alternate"):
        backbone.vlm.chat([{"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Hi?"}])
    with pytest.raises(ValueError, match=r"a chat must end with a user turn"):
        backbone.vlm.chat([{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello"}])
    with pytest.raises(ValueError, match=r"chat message 0 .* must be a dict with 'role' and 'content'"):
        backbone.vlm.chat([{"content": "Hi?"}])


def test_chat_replays_vlmevalkit_multi_turn_like_the_cli(backbone, reference, monkeypatch, capsys):
    questions = ["What shape is it?", "And its colour?"]
    messages = [
        {"role": "user", "content": [{"type": "image", "value": reference.image},
                                     {"type": "text", "value": questions[0]}]},
        {"role": "assistant", "content": "a reference answer the model never sees"},
        {"role": "user", "content": questions[1]},
        {"role": "assistant", "content": "another reference answer"},
    ]
    replies = chat_like_vlmevalkit(backbone.vlm, messages)
    records = backbone.cli_replies(monkeypatch, capsys, reference.image, questions)
    assert replies == [r["outputs"] for r in records]
    assert backbone.vlm.chat([messages[0]]) == backbone.vlm.generate(messages[0]["content"])


def test_llava_prompt_of_a_chat_is_the_clis(llava, tiny_world, monkeypatch, capsys):
    image = eval_rows(tiny_world, 1)[0]["image"]
    first, second = llava.cli_replies(monkeypatch, capsys, image, ["What shape is it?", "And its colour?"])
    turns = [("user", "<image>\nWhat shape is it?"), ("assistant", first["outputs"]), ("user", "And its colour?")]
    from mung.backbones import Prompt

    loaded = llava.vlm.loaded

    def prompt(chat_turns):
        return loaded.backbone.render(loaded, Prompt(chat_turns))

    assert prompt(turns) == second["prompt"]
    assert prompt(turns[:1]).endswith("USER: <image>\nWhat shape is it? ASSISTANT:")


def test_llava_places_each_image_where_it_stands_like_run_llava(llava, tiny_world, capsys):
    from llava_noise.eval import run_llava

    first, second = (r["image"] for r in eval_rows(tiny_world, 2))
    question = "Which image shows a circle, the first or the second?"
    expected = run_llava.main(["--model-path", llava.checkpoint, "--image-file", f"{first},{second}", "--query",
                               f"<image-placeholder>\nor <image-placeholder>\n{question}", "--device", "cpu",
                               "--temperature", "0", "--max_new_tokens", str(MAX_NEW_TOKENS)])
    message = [{"type": "image", "value": first}, {"type": "text", "value": "or "},
               {"type": "image", "value": second}, {"type": "text", "value": question}]
    assert llava.vlm.message_to_turn(message)[0] == f"<image>\nor <image>\n{question}"
    assert llava.vlm.generate(message, dataset=DATASET) == expected
    assert llava.vlm.generate([first, "or ", second, question]) == expected


def test_qwen_refuses_vllm_before_loading_anything():
    from qwen_noise.vlmeval import QwenNoiseVLM

    with pytest.raises(ValueError, match="vLLM"):
        QwenNoiseVLM(model_path="/no/such/checkpoint", use_vllm=True)


def test_mung_vlm_subclasses_vlmevalkits_base_model_when_it_is_installed(tmp_path):
    package = tmp_path / "vlmeval" / "vlm"
    package.mkdir(parents=True)
    (tmp_path / "vlmeval" / "__init__.py").write_text("")
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text("class BaseModel:\n    INTERLEAVE = False\n")
    probe = ("import vlmeval.vlm.base as real\nfrom mung.vlmeval_base import MungVLM, StandaloneBaseModel\n"
             "print(MungVLM.__mro__[1] is real.BaseModel, issubclass(MungVLM, StandaloneBaseModel))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["True", "False"]

    from mung.vlmeval_base import MungVLM, StandaloneBaseModel

    assert MungVLM.__mro__[1] is StandaloneBaseModel  # no VLMEvalKit here: the same contract without it


def test_the_shared_image_placeholder_is_each_backbones_own():
    from llava_noise.constants import DEFAULT_IMAGE_TOKEN
    from mung.vlmeval_base import IMAGE_PLACEHOLDER
    from qwen_noise.data.prompting import IMAGE_PLACEHOLDER as QWEN_PLACEHOLDER

    assert IMAGE_PLACEHOLDER == DEFAULT_IMAGE_TOKEN == QWEN_PLACEHOLDER == "<image>"
