"""benchmarks.real_width at toy shapes: it announces its duration, writes the table to --out only, and each row's
ratios follow from its own measured times."""

import pytest

from benchmarks import real_width

TOY = real_width.RealShape("toy", "LlamaConfig", 64, 128, 10, 4, 2, 16, 12, "toy")


def test_writes_the_table_to_out_only(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(real_width, "REAL", {"toy": TOY})
    monkeypatch.setattr(real_width, "START_METHOD", None)  # in this process: spawning would re-import torch twice
    out = tmp_path / "times.md"
    monkeypatch.chdir(tmp_path)
    text = real_width.main(["--out", str(out), "--backbones", "toy", "--repeats", "1", "--layers", "1",
                            "--text-tokens", "4", "--no-compile"])
    assert out.read_text() == text and sorted(p.name for p in tmp_path.iterdir()) == ["times.md"]
    assert capsys.readouterr().out.startswith("Expect about ")
    prefill_row = next(line for line in text.splitlines() if line.startswith("| toy (toy)"))
    cells = [c.strip() for c in prefill_row.strip("|").split("|")]
    generator_s, per_layer_s, depth = float(cells[5]), float(cells[6]), int(cells[7])
    ttft = float(cells[8].strip("*"))
    assert depth == 10
    assert ttft - 1 == pytest.approx(generator_s / (per_layer_s * depth), rel=0.02)  # cells of 3 significant digits


def test_refuses_an_unknown_backbone_before_measuring(tmp_path, capsys):
    with pytest.raises(SystemExit):
        real_width.main(["--out", str(tmp_path / "t.md"), "--backbones", "nope"])
    assert "--backbones: unknown ['nope']" in capsys.readouterr().err
    assert not (tmp_path / "t.md").exists()
