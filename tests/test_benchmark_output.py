"""Where a benchmark's results go: printed only by default (the tracked docs/benchmarks.md is left alone), to the
file named by --out (replaced whole), into docs/benchmarks.md only with --update-doc; a bad --out is refused before
anything is measured; a long benchmark says how long it will take before it starts.

The runs are ``benchmarks.vlm_ttft`` on one family it does not time (the real-shape FLOP count only: seconds), with
``benchmarks.report.DOC`` pointed at a copy of the page."""

import sys
from pathlib import Path

import pytest

from benchmarks import report, training_step, vlm_ttft

FAMILY = "qwen2_5_vl"  # counted at real shapes, not timed (no tiny_world family of that name)


@pytest.fixture
def doc(tmp_path, monkeypatch) -> Path:
    page = tmp_path / "docs" / "benchmarks.md"
    page.parent.mkdir()
    page.write_text("# Benchmarks\n\n<!-- vlm_ttft_cpu_small:start -->\nold figures\n<!-- vlm_ttft_cpu_small:end -->\n")
    monkeypatch.setattr(report, "DOC", page)
    return page


def run_vlm_ttft(monkeypatch, tiny_world, *flags: str) -> None:
    world = str(Path(tiny_world["image_folder"]).parent)
    monkeypatch.setattr(sys, "argv", ["vlm_ttft.py", "--world", world, "--families", FAMILY, "--repeats", "1", *flags])
    vlm_ttft.main()


def test_by_default_the_results_are_printed_and_no_file_changes(doc, monkeypatch, tiny_world, capsys, tmp_path):
    before = doc.read_bytes()
    files_before = sorted(tmp_path.rglob("*"))
    run_vlm_ttft(monkeypatch, tiny_world)
    assert f"| {FAMILY} |" in capsys.readouterr().out
    assert doc.read_bytes() == before
    assert sorted(tmp_path.rglob("*")) == files_before


def test_out_writes_the_table_with_its_command_to_the_named_file(doc, monkeypatch, tiny_world, tmp_path):
    out = tmp_path / "mine.md"
    out.write_text("an earlier run\n")
    before = doc.read_bytes()
    run_vlm_ttft(monkeypatch, tiny_world, "--out", str(out))
    text = out.read_text()
    assert "an earlier run" not in text
    assert text.startswith(f"`python -m benchmarks.vlm_ttft --world ") and f"--out {out}` on " in text
    assert f"| {FAMILY} |" in text and "## MuNG on transformers VLMs" in text
    assert doc.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".mine.md")] == []  # no temporary left


def test_update_doc_rewrites_the_benchmarks_section_only(doc, monkeypatch, tiny_world):
    run_vlm_ttft(monkeypatch, tiny_world, "--update-doc")
    text = doc.read_text()
    assert text.startswith("# Benchmarks\n\n<!-- vlm_ttft_cpu_small:start -->\n`python -m benchmarks.vlm_ttft ")
    assert "old figures" not in text and f"| {FAMILY} |" in text
    assert text.count("<!-- vlm_ttft_cpu_small:start -->") == 1


@pytest.mark.parametrize("target, message", [
    ("doc", "is the tracked results page; pass --update-doc"),
    ("folder", "is a folder; name a file"),
    ("missing/x.md", "does not exist"),
])
def test_a_bad_out_is_refused_before_anything_is_measured(target, message, doc, monkeypatch, tiny_world, tmp_path,
                                                          capsys):
    out = {"doc": str(doc), "folder": str(tmp_path)}.get(target, str(tmp_path / target))
    monkeypatch.setattr(vlm_ttft, "real_shape_ratio", lambda *a: pytest.fail("measured despite a bad --out"))
    with pytest.raises(SystemExit) as stop:
        run_vlm_ttft(monkeypatch, tiny_world, "--out", out)
    assert stop.value.code == 2 and message in capsys.readouterr().err


def test_the_old_no_write_flag_is_accepted_and_writes_nothing(doc, monkeypatch, tiny_world):
    before = doc.read_bytes()
    run_vlm_ttft(monkeypatch, tiny_world, "--no-write")
    assert doc.read_bytes() == before


def test_a_long_benchmark_says_how_long_before_it_starts(monkeypatch, capsys):
    """training_step, both backbones, tiny preset, defaults: 2 x 5 contenders x ((20 + 3 + 5) steps x 0.3 s + 10 s)
    = 184 s, announced as about 3 min before the first measurement."""
    def stop(*args, **kwargs):
        raise RuntimeError("measurement started")

    monkeypatch.setattr(training_step, "measure", stop)
    monkeypatch.setattr(sys, "argv", ["training_step.py", "--device", "cpu"])
    with pytest.raises(RuntimeError, match="measurement started"):
        training_step.main()
    assert "2 backbone(s) x 5 contenders: about 3 min (" in capsys.readouterr().out
