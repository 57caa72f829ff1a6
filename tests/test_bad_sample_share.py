"""Skipped bad samples, both backbones (``mung.bad_samples``): a wrong ``--image_folder`` stops the run with a message
naming the folder and the counts; a few bad samples under ``--max_bad_sample_share`` are skipped, counted and
summarised once at the end; the per-sample warnings are rate-limited; DataLoader workers count into one tally."""

import json
import logging
import re

import pytest
from torch.utils.data import DataLoader
from transformers import AutoProcessor

from mung.bad_samples import BadSampleCause, BadSampleError, BadSamplePolicy, TooManyBadSamples
from qwen_noise.data import QwenSupervisedDataset
from tiny_runs import tiny_argv, train_in_process

BACKBONES = ("llava", "qwen")


def image_records(world, backbone, n):
    key = "llava_train_json" if backbone == "llava" else "qwen_train_json"
    records = json.loads(open(world[key]).read())
    with_image = [r for r in records if isinstance(r.get("image"), str)]
    assert len(with_image) >= n
    return with_image[:n]


def text_record(k):
    return {"id": f"text-{k}", "conversations": [{"from": "human", "value": f"Say the colour number {k}."},
                                                 {"from": "gpt", "value": "red"}]}


def run_training(backbone, world, data_path, image_folder, out, *extra):
    return train_in_process(backbone, tiny_argv(backbone, world, data_path, image_folder, out, *extra))


@pytest.mark.parametrize("backbone", BACKBONES)
def test_wrong_image_folder_stops_and_names_folder_and_counts(backbone, world, tmp_path):
    """60 image samples and 4 text-only ones, images looked up in a folder that does not exist: before, the run
    skipped the image samples one warning at a time and trained on the text ones."""
    data = tmp_path / "data.json"
    data.write_text(json.dumps(image_records(world, backbone, 60) + [text_record(k) for k in range(4)]))
    wrong = tmp_path / "no_such_images"
    out = tmp_path / "out"
    with pytest.raises(TooManyBadSamples) as caught:
        run_training(backbone, world, data, wrong, out, "--max_steps", "20", "--per_device_train_batch_size", "2")
    message = str(caught.value)
    found = re.search(r"Stopping: (\d+) of the (\d+) samples looked at so far were bad \(([\d.]+)%\), more than "
                      r"--max_bad_sample_share 0\.01 allows\. (\d+) of the (\d+) skipped samples have a missing image",
                      message)
    assert found, message
    bad, looked, percent, missing, bad_again = (float(x) for x in found.groups())
    # judged once 50 samples were looked at; every bad one is an image sample (60 at most); at most 4 text ones
    assert 50 <= looked <= 64 and bad == missing == bad_again and looked - 4 <= bad <= 60
    assert abs(percent - 100 * bad / looked) < 0.06
    assert f"--image_folder {wrong} (IMAGE_FOLDER in the recipes), which does not exist. Is --image_folder right?" in message
    assert not (out / "trainer_state.json").exists()  # no final save that looks like a finished run


@pytest.mark.parametrize("backbone", BACKBONES)
def test_few_bad_samples_under_the_share_train_and_are_summarised(backbone, world, tmp_path, caplog):
    """One missing image among 120 samples (0.83% < the default 1%): one epoch trains, the bad sample is counted
    in the logged metrics, and one summary line comes at the end."""
    records = image_records(world, backbone, 119)
    records.insert(37, dict(records[0], id="gone", image="train/does-not-exist.png"))
    data = tmp_path / "data.json"
    data.write_text(json.dumps(records))
    out = tmp_path / "out"
    with caplog.at_level(logging.WARNING, logger="mung.bad_samples"):
        run_training(backbone, world, data, world["image_folder"], out, "--max_steps", "15",
                     "--per_device_train_batch_size", "8")
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    assert [h["skipped_samples"] for h in history if "skipped_samples" in h][-1] == 1
    assert len([h for h in history if "loss" in h]) == 15
    lines = [r.getMessage() for r in caplog.records if r.name == "mung.bad_samples"]
    assert len(lines) == 2, lines  # the sample itself, then the end-of-training summary
    assert lines[0].startswith("Skipping bad sample (1 skipped so far): ") and "gone" in lines[0]
    assert lines[1].startswith("Bad samples: 1 of 120 samples looked at were skipped (0.8%): 1 missing image.")


@pytest.fixture(scope="module")
def qwen_processor(world):
    return AutoProcessor.from_pretrained(world["qwen_model"])


def qwen_dataset(world, processor, tmp_path, records, **kwargs):
    path = tmp_path / "data.json"
    path.write_text(json.dumps(records))
    return QwenSupervisedDataset(path, processor, image_folder=world["image_folder"], model_max_length=256, **kwargs)


def test_per_sample_warnings_are_rate_limited(world, qwen_processor, tmp_path, caplog):
    """30 missing images among 60 samples, no stop: 5 warnings name a sample, the rest are only counted."""
    good = image_records(world, "qwen", 30)
    records = [r for k, g in enumerate(good) for r in (g, dict(g, id=f"bad-{k}", image=f"gone/{k}.png"))]
    ds = qwen_dataset(world, qwen_processor, tmp_path, records, max_bad_sample_share=1.0)
    with caplog.at_level(logging.WARNING, logger="mung.bad_samples"):
        for i in range(len(ds)):
            ds[i]
    lines = [r.getMessage() for r in caplog.records if r.name == "mung.bad_samples"]
    assert ds.skipped == 30
    assert len(lines) == 5, lines
    assert [line.split(":")[0] for line in lines] == [f"Skipping bad sample ({k} skipped so far)" for k in range(1, 5)] + [
        "Skipping bad sample (5 skipped so far; further ones get a summary line every 100)"]


def test_summary_line_every_n_bad_samples():
    policy = BadSamplePolicy(100, max_share=1.0, warn_first=2, summary_every=10)
    logger = logging.getLogger("mung.bad_samples")
    records = []
    handler = logging.Handler()
    handler.emit = records.append
    logger.addHandler(handler)
    try:
        for k in range(25):
            policy.record_good(2 * k)
            cause = BadSampleCause.TOO_LONG if k % 5 == 0 else BadSampleCause.FORMAT
            policy.record_bad(2 * k + 1, BadSampleError(f"sample {2 * k + 1} is bad", cause))
    finally:
        logger.removeHandler(handler)
    lines = [r.getMessage() for r in records]
    assert len(lines) == 4, lines  # 2 in full, then at 10 and 20 bad samples
    assert lines[2] == "Skipping bad samples: 10 of 20 samples looked at were skipped (50.0%): 8 bad format, 2 too long"
    assert lines[3] == "Skipping bad samples: 20 of 40 samples looked at were skipped (50.0%): 16 bad format, 4 too long"


def test_share_is_judged_only_after_enough_samples_and_bad_ones():
    """Under 5 bad samples no mid-run stop (one in the first 50 is 2% by chance); the end judges them all."""
    policy = BadSamplePolicy(1000, max_share=0.01)
    for k in range(60):
        policy.record_good(k)
    for k in range(60, 64):
        policy.record_bad(k, BadSampleError("format", BadSampleCause.FORMAT))  # 4 of 64: no stop yet
    with pytest.raises(TooManyBadSamples, match=r"5 of the 65 samples looked at so far were bad \(7\.7%\)"):
        policy.record_bad(64, BadSampleError("format", BadSampleCause.FORMAT))
    small = BadSamplePolicy(10, max_share=0.01)
    small.record_good(0)
    small.record_bad(1, BadSampleError("format"))
    with pytest.raises(TooManyBadSamples, match=r"1 of the 2 samples looked at in this run were bad \(50\.0%\).*"
                                                r"1 of the 1 skipped samples are malformed"):
        small.finish()


def test_dataloader_workers_count_into_one_tally(world, qwen_processor, tmp_path):
    """Two workers each meet bad samples; the main process sees them all (before: 0, each worker counted its own)."""
    good = image_records(world, "qwen", 8)
    records = [r for k, g in enumerate(good) for r in (g, dict(g, id=f"bad-{k}", image=f"gone/{k}.png"))]
    ds = qwen_dataset(world, qwen_processor, tmp_path, records, max_bad_sample_share=1.0)
    loader = DataLoader(ds, batch_size=2, num_workers=2, collate_fn=lambda items: [x["sample_id"] for x in items])
    ids = [sid for batch in loader for sid in batch]
    assert len(ids) == 16 and not any("bad-" in sid for sid in ids)
    assert ds.skipped == 8
    looked, by_cause = ds.bad_samples.counts()
    assert looked == 16 and by_cause[BadSampleCause.MISSING_IMAGE] == 8
