"""Evaluation, both backbones, against lost results and silent wrong answers (issue 12, items 3, 8, 9, 10, 11):

- the answers file is written at the end (a crash leaves the previous one whole), an interrupted run is resumed from
  ``<answers-file>.partial`` without asking answered questions again, and the answers never go over the questions;
- a question that cannot be answered (unreadable image, ``<image>`` that does not match its images) is skipped,
  counted and reported, with a record saying why; ``--on_bad_sample raise`` stops naming it;
- a question too long for the context is shortened to fit, and its record says so;
- sampled noise is each question's own: chunked, reordered and batched runs draw the same noise for it;
- bad question files are named with file, line and field before any model loads.
"""

import json
import logging
import os
from pathlib import Path

import pytest
import torch
from PIL import Image

from mung.answering import answer_questions
from mung.eval import model_vqa_loader, model_vqa_mmbench
from mung.eval.questions import questions_from_jsonl
from mung.generation import GenerationSettings
from mung.loading import LoadOptions, load
from qwen_builders import build_tiny_qwen
from test_eval_inference import build_tiny_llava

GREEDY = GenerationSettings(temperature=0, max_new_tokens=4)


@pytest.fixture(scope="module", params=["llava", "qwen"])
def checkpoint(request, tiny_world, tmp_path_factory):
    folder = tmp_path_factory.mktemp(request.param) / f"tiny-{request.param}"
    if request.param == "llava":
        return build_tiny_llava(tiny_world, folder, inference_mode="sample")
    return build_tiny_qwen(tiny_world, folder)


@pytest.fixture(scope="module")
def loaded(checkpoint):
    return load(checkpoint, options=LoadOptions(device="cpu"), noise_mode="sample")


@pytest.fixture(scope="module")
def question_file(tiny_world, tmp_path_factory):
    """Seven tiny-world questions and one text-only question."""
    rows = [json.loads(line) for line in open(tiny_world["eval_questions"])][:7]
    rows.append({"question_id": "text-only", "text": "What colour is the sky?"})
    path = tmp_path_factory.mktemp("questions") / "questions.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def questions_of(question_file, tiny_world):
    return questions_from_jsonl(question_file, tiny_world["image_folder"])


def read_records(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines()]


class CountingGenerate:
    """Wraps the loaded backbone's ``generate``: counts the questions asked and fails on call ``fail_at``
    (1-based)."""

    def __init__(self, monkeypatch, backbone, fail_at=None):
        self.asked, self.calls, self.fail_at = 0, 0, fail_at
        original = type(backbone).generate

        def generate(this, loaded, batch, **kwargs):
            self.calls += 1
            if self.calls == self.fail_at:
                raise RuntimeError("simulated crash (out of memory)")
            self.asked += batch["input_ids"].shape[0]
            return original(this, loaded, batch, **kwargs)

        monkeypatch.setattr(type(backbone), "generate", generate)


# --- item 3: the answers file -----------------------------------------------------------------------------------------
def test_a_crash_keeps_the_previous_answers_and_the_rerun_asks_only_the_rest(loaded, question_file, tiny_world,
                                                                             tmp_path, monkeypatch):
    questions = questions_of(question_file, tiny_world)
    answers = tmp_path / "answers.jsonl"
    complete = answer_questions(questions, loaded, GREEDY, str(answers), batch_size=3, seed=1)
    before = answers.read_bytes()
    CountingGenerate(monkeypatch, loaded.backbone, fail_at=2)
    with pytest.raises(RuntimeError, match="simulated crash"):
        answer_questions(questions, loaded, GREEDY, str(answers), batch_size=3, seed=1)
    assert answers.read_bytes() == before  # the previous complete answers are untouched
    assert Path(str(answers) + ".partial").is_file()
    monkeypatch.undo()
    rerun = CountingGenerate(monkeypatch, loaded.backbone)
    resumed = answer_questions(questions, loaded, GREEDY, str(answers), batch_size=3, seed=1)
    assert rerun.asked == len(questions) - 3  # the first batch of three came from the partial file
    assert [r["question_id"] for r in resumed] == [q.question_id for q in questions]
    assert [r["text"] for r in resumed] == [r["text"] for r in complete]
    assert read_records(answers) == resumed and not Path(str(answers) + ".partial").exists()


def test_a_partial_file_of_another_run_is_refused_naming_what_differs(loaded, question_file, tiny_world, tmp_path,
                                                                      monkeypatch):
    questions = questions_of(question_file, tiny_world)
    answers = tmp_path / "answers.jsonl"
    CountingGenerate(monkeypatch, loaded.backbone, fail_at=2)
    with pytest.raises(RuntimeError):
        answer_questions(questions, loaded, GREEDY, str(answers), batch_size=3, seed=1)
    monkeypatch.undo()
    with pytest.raises(ValueError, match=r"answers\.jsonl\.partial holds the answers of another run \(seed: 1 there, "
                                         r"2 now\).*--no-resume"):
        answer_questions(questions, loaded, GREEDY, str(answers), batch_size=3, seed=2)
    records = answer_questions(questions, loaded, GREEDY, str(answers), batch_size=3, seed=2, resume=False)
    assert len(records) == len(questions) and all(r["metadata"]["seed"] == 2 for r in records)


@pytest.mark.parametrize("how", ["same path", "symlink", "hardlink"])
def test_answers_file_over_the_question_file_is_refused_before_loading(question_file, tmp_path, how):
    target = tmp_path / "answers.jsonl"
    if how == "same path":
        target = Path(question_file)
    elif how == "symlink":
        target.symlink_to(question_file)
    else:
        os.link(question_file, target)
    before = Path(question_file).read_bytes()
    with pytest.raises(ValueError, match=r"--answers-file .* is the same file as --question-file .*: writing it would "
                                         r"destroy what is read from it\. Pass another --answers-file\."):
        model_vqa_loader.main(["--model-path", str(tmp_path / "never-loaded"), "--question-file", question_file,
                               "--answers-file", str(target)])
    assert Path(question_file).read_bytes() == before


def write_questions(folder: Path, rows) -> str:
    path = folder / "q.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)


def test_an_unreadable_image_is_a_counted_reported_skip(loaded, tiny_world, tmp_path, caplog):
    (tmp_path / "broken.png").write_bytes(b"not a picture")
    good = json.loads(open(tiny_world["eval_questions"]).readline())
    rows = [good, {"question_id": "bad", "image": str(tmp_path / "broken.png"), "text": "Colour?"},
            {"question_id": "after", "image": good["image"], "text": "Shape?"}]
    path = write_questions(tmp_path, rows)
    with caplog.at_level(logging.WARNING):
        records = answer_questions(questions_of(path, tiny_world), loaded, GREEDY, str(tmp_path / "a.jsonl"),
                                   batch_size=2)
    assert [r["question_id"] for r in records] == [good["question_id"], "bad", "after"]
    skipped = records[1]["metadata"]["skipped"]
    assert records[1]["text"] == "" and "broken.png cannot be decoded" in skipped
    assert "skipped" not in records[0]["metadata"] and "skipped" not in records[2]["metadata"]
    assert f"Skipping question 'bad' ({path}:2): " in caplog.text
    assert "Skipped 1 of 3 questions (1 unreadable image)" in caplog.text
    with pytest.raises(ValueError, match=rf"question 'bad' \({path}:2\): .*broken\.png cannot be decoded.*"
                                         "--on_bad_sample skip"):
        answer_questions(questions_of(path, tiny_world), loaded, GREEDY, str(tmp_path / "b.jsonl"),
                         on_bad_sample="raise")


def test_an_evaluation_whose_every_question_was_skipped_fails(loaded, tiny_world, tmp_path):
    rows = [{"question_id": i, "image": str(tmp_path / "gone.png"), "text": "Colour?"} for i in range(2)]
    with pytest.raises(ValueError, match=r"Every question \(2\) was skipped \(2 missing image\)"):
        answer_questions(questions_of(write_questions(tmp_path, rows), tiny_world), loaded, GREEDY,
                         str(tmp_path / "a.jsonl"))
    assert not (tmp_path / "a.jsonl").exists()


# --- item 11: <image> typed into a question, bad question files ----------------------------------------------------
def test_image_tags_in_question_texts(loaded, tiny_world, tmp_path):
    """One tag for the question's one image places it (both backbones); more tags than images, or a tag without an
    image, skip that question with a message naming it, the field and what to do."""
    image = json.loads(open(tiny_world["eval_questions"]).readline())["image"]
    rows = [{"question_id": "placed", "image": image, "text": "Look: <image>\nWhat colour is it?"},
            {"question_id": "two", "image": image, "text": "<image> and <image>: which?"},
            {"question_id": "none", "text": "What is an <image> tag?"}]
    records = answer_questions(questions_of(write_questions(tmp_path, rows), tiny_world), loaded, GREEDY,
                               str(tmp_path / "a.jsonl"), batch_size=3)
    assert "skipped" not in records[0]["metadata"]
    assert "its 'text' holds 2 <image> for 1 image(s)" in records[1]["metadata"]["skipped"]
    assert "holds 1 <image> for 0 image(s); <image> marks where" in records[2]["metadata"]["skipped"]


@pytest.mark.parametrize("row, said", [
    ({"question_id": 1, "text": None}, r":2: question 1 has a null 'text'; give the question's text as a string"),
    ({"question_id": 1}, r":2: question 1 has no 'text'"),
    ({"text": "What?"}, r":2: the question has no 'question_id'; give every question an id"),
    ({"question_id": [1], "text": "What?"}, r":2: the question has a list as 'question_id'"),
    ({"question_id": 1, "text": "Hi", "image": 3}, r":2: question 1: 'image' must be a path"),
])
def test_a_bad_question_record_is_named_before_any_model_loads(tmp_path, row, said):
    path = write_questions(tmp_path, [{"question_id": 0, "text": "fine"}, row])
    with pytest.raises(ValueError, match=rf"^{path}{said}"):
        model_vqa_loader.main(["--model-path", str(tmp_path / "never-loaded"), "--question-file", path])


def test_non_utf8_question_files_are_named_with_their_line(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_bytes(b'{"question_id": 0, "text": "fine"}\n{"question_id": 1, "text": "caf\xe9"}\n')
    with pytest.raises(ValueError, match=rf"^{path}:2: byte 0xe9 is not UTF-8; save the file as UTF-8\.$"):
        model_vqa_loader.main(["--model-path", str(tmp_path / "never"), "--question-file", str(path)])
    tsv = tmp_path / "mmb.tsv"
    tsv.write_bytes(b"index\tquestion\tA\tB\n1\tColour\xff?\tred\tblue\n")
    with pytest.raises(ValueError, match=rf"^{tsv}:2: byte 0xff is not UTF-8"):
        model_vqa_mmbench.main(["--model-path", str(tmp_path / "never"), "--question-file", str(tsv)])


def test_symlink_loops_are_named_as_loops(loaded, tiny_world, tmp_path):
    loop = tmp_path / "loop.png"
    loop.symlink_to(loop)
    rows = [{"question_id": "l", "image": str(loop), "text": "Colour?"}, {"question_id": "ok", "text": "Hi"}]
    records = answer_questions(questions_of(write_questions(tmp_path, rows), tiny_world), loaded, GREEDY,
                               str(tmp_path / "a.jsonl"))
    assert "loop.png is a symbolic link loop" in records[0]["metadata"]["skipped"]
    questions = tmp_path / "questions.jsonl"
    questions.symlink_to(questions)
    with pytest.raises(FileNotFoundError, match=r"questions\.jsonl is a symbolic link loop"):
        model_vqa_loader.main(["--model-path", str(tmp_path / "never"), "--question-file", str(questions)])
    with pytest.raises(FileNotFoundError, match=r"--model-path .*loop\.png is a symbolic link loop"):
        load(str(loop))


def test_an_image_over_the_pixel_limit_is_named_as_such(loaded, tiny_world, tmp_path, monkeypatch):
    Image.new("RGB", (64, 64), "red").save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 4096 pixels: over twice the limit
    rows = [{"question_id": "big", "image": str(tmp_path / "big.png"), "text": "Colour?"},
            {"question_id": "ok", "text": "Hi"}]
    records = answer_questions(questions_of(write_questions(tmp_path, rows), tiny_world), loaded, GREEDY,
                               str(tmp_path / "a.jsonl"))
    assert "big.png has more pixels than PIL allows" in records[0]["metadata"]["skipped"]
    assert "corrupt" not in records[0]["metadata"]["skipped"]


# --- item 9: questions longer than the context ----------------------------------------------------------------------
def test_a_question_longer_than_the_context_is_shortened_and_the_record_says_so(loaded, tiny_world, tmp_path,
                                                                               monkeypatch):
    image = json.loads(open(tiny_world["eval_questions"]).readline())["image"]
    long_text = "Describe every detail. " * 2200 + "Answer with one word."  # ~50,000 characters
    rows = [{"question_id": "long", "image": image, "text": long_text}, {"question_id": "short", "text": "Hi"}]
    lengths = []
    original = type(loaded.backbone).generate

    def measuring(backbone, loaded_model, batch, **kwargs):
        lengths.append(batch["input_ids"].shape[1])
        return original(backbone, loaded_model, batch, **kwargs)

    monkeypatch.setattr(type(loaded.backbone), "generate", measuring)
    records = answer_questions(questions_of(write_questions(tmp_path, rows), tiny_world), loaded, GREEDY,
                               str(tmp_path / "a.jsonl"))
    truncated = records[0]["metadata"]["truncated"]
    assert truncated["question_chars"] == len(long_text) and truncated["kept_chars"] < len(long_text)
    assert truncated["context_len"] == loaded.context_len and "truncated" not in records[1]["metadata"]
    tower = loaded.model.get_vision_tower() if hasattr(loaded.model, "get_vision_tower") else None
    image_extra = tower.num_patches - 1 if tower is not None else 0  # LLaVA: one id stands for the image's patches
    assert lengths[0] + image_extra + GREEDY.max_new_tokens <= loaded.context_len
    assert records[0]["prompt"] == long_text  # the record keeps the question as asked


# --- item 10: each question's own noise -----------------------------------------------------------------------------
def drawn_noise(loaded, questions, monkeypatch, **kwargs):
    """Question id → the noise the generator added to its image tokens, over one answering run."""
    generator = loaded.model.get_model().noise_generator if hasattr(loaded.model, "get_model") \
        else loaded.model.model.noise_generator
    rows = []
    handle = generator.register_forward_hook(lambda m, i, out: rows.extend(n.clone() for n in out.per_sample().noise))
    try:
        answer_questions(questions, loaded, GREEDY, kwargs.pop("answers"), **kwargs)
    finally:
        handle.remove()
    return dict(zip([q.question_id for q in questions], rows))


def test_sampled_noise_depends_on_the_question_not_its_place(loaded, question_file, tiny_world, tmp_path,
                                                             monkeypatch):
    questions = questions_of(question_file, tiny_world)
    single = drawn_noise(loaded, questions, monkeypatch, answers=str(tmp_path / "1.jsonl"), seed=5)
    batched = drawn_noise(loaded, questions, monkeypatch, answers=str(tmp_path / "3.jsonl"), seed=5, batch_size=3)
    chunked = {**drawn_noise(loaded, questions[:4], monkeypatch, answers=str(tmp_path / "c0.jsonl"), seed=5),
               **drawn_noise(loaded, questions[4:], monkeypatch, answers=str(tmp_path / "c1.jsonl"), seed=5)}
    reordered = drawn_noise(loaded, questions[::-1], monkeypatch, answers=str(tmp_path / "r.jsonl"), seed=5,
                            batch_size=2)
    other_seed = drawn_noise(loaded, questions, monkeypatch, answers=str(tmp_path / "s.jsonl"), seed=6)
    with_images = [q.question_id for q in questions if q.image is not None]
    for qid in with_images:
        for other in (batched, chunked, reordered):
            torch.testing.assert_close(other[qid], single[qid], atol=1e-5, rtol=1e-5)
        assert not torch.allclose(other_seed[qid], single[qid])
    answers = {r["question_id"]: r["text"] for r in read_records(tmp_path / "1.jsonl")}
    for name in ("3.jsonl", "r.jsonl"):
        assert {r["question_id"]: r["text"] for r in read_records(tmp_path / name)} == answers
    from mung.noise_seeds import question_seed

    assert question_seed(5, 1) != question_seed(5, "1") and question_seed(5, 1) == question_seed(5, 1)


@pytest.mark.parametrize("module, argv", [
    ("convert_gqa_for_eval", ["--src", "{a}", "--dst", "{link}"]),
    ("convert_mmvet_for_submission", ["--src", "{a}", "--dst", "{a}"]),
    ("eval_tiny_world", ["--answers-file", "{a}", "--truth-file", "{t}", "--output-file", "{link}"]),
    ("eval_pope", ["--annotation-dir", "{t}", "--question-file", "{t}", "--result-file", "{a}", "--output-file",
                   "{a}"]),
])
def test_scorers_and_converters_never_write_over_what_they_read(tmp_path, module, argv):
    """The class of --answers-file over --question-file: every output flag against the files it reads."""
    import importlib

    answers, truth, link = tmp_path / "answers.jsonl", tmp_path / "truth.jsonl", tmp_path / "link.json"
    answers.write_text(json.dumps({"question_id": 1, "text": "red"}) + "\n")
    truth.write_text(json.dumps({"question_id": 1, "answer": "red"}) + "\n")
    link.symlink_to(answers)
    before = answers.read_bytes()
    names = {"a": answers, "t": truth, "link": link}
    with pytest.raises(ValueError, match=r"is the same file as --\S+ .*: writing it would destroy what is read from it"):
        importlib.import_module(f"mung.eval.{module}").main([arg.format(**names) for arg in argv])
    assert answers.read_bytes() == before


# --- issue 19 §2/§3: one writer per answers file; the answers' partial file and lock are outputs too ----------------
def test_an_answers_file_whose_partial_file_is_the_question_file_is_refused(question_file, tmp_path):
    """``--question-file X.partial --answers-file X --no-resume`` used to delete the question file."""
    questions = tmp_path / "answers.jsonl.partial"
    questions.write_bytes(Path(question_file).read_bytes())
    for resume in ([], ["--no-resume"]):
        with pytest.raises(ValueError, match=r"--answers-file .*answers\.jsonl writes its partial answers .*\.partial, "
                                             r"which is the same file as --question-file"):
            model_vqa_loader.main(["--model-path", str(tmp_path / "never-loaded"), "--question-file", str(questions),
                                   "--answers-file", str(tmp_path / "answers.jsonl"), *resume])
        assert questions.read_bytes() == Path(question_file).read_bytes()


def test_answers_inside_the_model_folder_are_refused(question_file, tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    with pytest.raises(ValueError, match=r"--answers-file .* is inside --model-path .*Pass another --answers-file "
                                         r"outside"):
        model_vqa_loader.main(["--model-path", str(model), "--question-file", question_file,
                               "--answers-file", str(model / "answers.jsonl")])
    assert list(model.iterdir()) == []


def _hold_answers_lock(answers, ready, done):
    from mung.answer_files import answers_lock

    with answers_lock(str(answers)):
        ready.set()
        done.wait(timeout=60)


def test_a_second_evaluation_of_one_answers_file_stops_at_once_naming_the_first(question_file, tmp_path,
                                                                                monkeypatch):
    """The first evaluation (another process) holds ``<answers>.lock``; the second stops before reading questions or
    loading a model, naming the holder, and leaves the first's partial file alone."""
    import multiprocessing

    from mung.answer_files import AnswersFileBusy

    answers = tmp_path / "answers.jsonl"
    partial = tmp_path / "answers.jsonl.partial"
    partial.write_text('{"mung_partial_answers": {}}\n')
    monkeypatch.setattr("mung.eval.entry.load_from_args", lambda args: pytest.fail("the model was loaded"))
    context = multiprocessing.get_context("fork")
    ready, done = context.Event(), context.Event()
    first = context.Process(target=_hold_answers_lock, args=(answers, ready, done))
    first.start()
    try:
        assert ready.wait(timeout=60)
        with pytest.raises(AnswersFileBusy, match=rf"--answers-file {answers} is in use by another evaluation \(pid "
                                                  rf"{first.pid} "):
            model_vqa_loader.main(["--model-path", str(tmp_path / "m"), "--question-file", question_file,
                                   "--answers-file", str(answers)])
    finally:
        done.set()
        first.join(timeout=60)
    assert partial.read_text() == '{"mung_partial_answers": {}}\n'
    assert not (tmp_path / "answers.jsonl.lock").exists()  # the first released it
