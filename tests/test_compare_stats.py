"""The comparison's statistics against hand computations: the t quantile against printed tables, each cell's
95% t-interval, the one-run binomial interval, paired differences on the same seeds, and "learnt" only when a
family's interval lies above its bar."""

import math

import pytest

from mung.compare import report, stats, tables

T_975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 9: 2.2622, 30: 2.0423}  # printed t tables


@pytest.mark.parametrize("df, expected", sorted(T_975.items()))
def test_t_quantile_matches_the_printed_tables(df, expected):
    assert stats.t_quantile(0.975, df) == pytest.approx(expected, abs=2e-4)


def test_a_cells_interval_is_the_t_interval_over_seeds():
    cell = stats.interval([0.5, 0.6, 0.7])
    half = 4.3027 * 0.1 / math.sqrt(3)  # t(0.975, 2) * s / sqrt(n), s = 0.1
    assert cell["mean"] == pytest.approx(0.6) and cell["half"] == pytest.approx(half, rel=1e-4)
    assert (cell["low"], cell["high"]) == pytest.approx((0.6 - half, 0.6 + half), rel=1e-4)


def test_one_run_gets_the_binomial_interval_of_its_questions():
    cell = stats.interval([0.8], questions=60)
    assert cell["std"] is None
    # Wilson's score interval by hand: z^2/q = 3.8415/60 = 0.064024; centre (0.8 + 0.032012) / 1.064024 = 0.781953;
    # half 1.96 / 1.064024 * sqrt(0.16/60 + 3.8415/14400) = 0.099767.
    assert (cell["low"], cell["high"]) == (pytest.approx(0.682186, abs=2e-5), pytest.approx(0.881720, abs=2e-5))
    assert cell["half"] == pytest.approx(0.099767, abs=2e-5)
    assert stats.interval([0.8])["half"] is None
    # All right: not a point at 100% (the normal approximation's), the lower end 1 / (1 + z^2/q) = 0.93985.
    full = stats.interval([1.0], questions=60)
    assert full["high"] == 1.0 and full["low"] == pytest.approx(60 / (60 + 1.959964 ** 2), abs=1e-6)


def test_paired_difference_uses_only_the_seeds_both_ran():
    a = {0: 0.5, 1: 0.6, 2: 0.7, 3: 0.9}
    b = {0: 0.4, 1: 0.6, 2: 0.5}
    diff = stats.paired_difference(a, b)  # 0.1, 0.0, 0.2: mean 0.1, s 0.1
    assert diff["seeds"] == [0, 1, 2]
    assert diff["mean"] == pytest.approx(0.1)
    assert diff["half"] == pytest.approx(4.3027 * 0.1 / math.sqrt(3), rel=1e-4)


def run(method, seed, colour, shape):
    return {"method": method, "seed": seed, "learning_rate": 1e-3,
            "eval": {"scores": {"per_family": {"colour": colour, "shape": shape}, "overall": (colour + shape) / 2,
                                "n_per_family": {"colour": 10, "shape": 10}, "n": 20}}}


BASE = {"colour": {"chance": 1 / 6, "majority": 0.3, "n": 10}, "shape": {"chance": 1 / 3, "majority": 0.4, "n": 10}}
RESULTS = [run("LoRA r32", s, c, sh) for s, c, sh in ((0, 0.9, 0.4), (1, 0.8, 0.5), (2, 0.85, 0.3))]
RESULTS += [run("MuNG+LoRA r32", s, c, sh) for s, c, sh in ((0, 0.95, 0.4), (1, 0.9, 0.6), (2, 0.95, 0.5))]


def test_the_report_pairs_mung_lora_with_lora_on_the_same_seeds():
    built = report.build_report(RESULTS, ("main",), ["LoRA r32", "MuNG+LoRA r32"], [0, 1, 2], BASE, None)
    (pair,) = built["paired"]
    assert (pair["a"], pair["b"]) == ("MuNG+LoRA r32", "LoRA r32")
    # colour differences 0.05, 0.10, 0.10: mean 0.0833, s = 0.02887
    assert pair["colour"]["mean"] == pytest.approx(0.25 / 3)
    assert pair["colour"]["half"] == pytest.approx(4.3027 * 0.028868 / math.sqrt(3), rel=1e-3)
    assert pair["colour"]["low"] > 0
    # overall differences (mean of the two families): 0.675 - 0.65, 0.75 - 0.65, 0.725 - 0.575
    assert pair["overall"]["mean"] == pytest.approx(0.275 / 3)
    assert "| MuNG+LoRA r32 − LoRA r32 | +8.3 ± 7.2 |" in tables.render(built)


def test_learned_noise_is_paired_with_random_noise_and_each_ablation_with_the_papers_generator():
    neftune = [run("NEFTune+LoRA r32", s, c, sh) for s, c, sh in ((0, 0.9, 0.5), (1, 0.9, 0.5), (2, 0.8, 0.5))]
    gauss = [run("Gaussian noise", s, c, sh) for s, c, sh in ((0, 1.0, 0.4), (1, 0.9, 0.6), (2, 0.95, 0.6))]
    methods = ["LoRA r32", "MuNG+LoRA r32", "NEFTune+LoRA r32", "Gaussian noise"]
    built = report.build_report(RESULTS + neftune + gauss, ("main", "ablation"), methods, [0, 1, 2], BASE, None)
    pairs = {(p["a"], p["b"]): p for p in built["paired"]}
    learned_vs_random = pairs[("MuNG+LoRA r32", "NEFTune+LoRA r32")]
    # overall: MuNG+LoRA 0.675, 0.75, 0.725; NEFTune+LoRA 0.7, 0.7, 0.65 -> differences -0.025, 0.05, 0.075
    assert learned_vs_random["overall"]["mean"] == pytest.approx(0.1 / 3)
    # Gaussian noise - MuNG+LoRA on colour: 0.05, 0.0, 0.0
    assert pairs[("Gaussian noise", "MuNG+LoRA r32")]["colour"]["mean"] == pytest.approx(0.05 / 3)
    assert ("MLP generator", "MuNG+LoRA r32") not in pairs  # not run: no row


def test_a_family_is_learnt_only_when_its_interval_clears_the_bar():
    built = report.build_report(RESULTS, ("main",), ["LoRA r32", "MuNG+LoRA r32"], [0, 1, 2], BASE, None)
    # colour: LoRA 0.85 ± 4.3027 * 0.05 / sqrt(3) = 0.124 -> low 0.726 > 0.3: learnt, and MuNG+LoRA too
    assert built["learned"]["colour"]["by"] == ["LoRA r32", "MuNG+LoRA r32"]
    # shape: LoRA 0.4 ± 0.248 and MuNG+LoRA 0.5 ± 0.248: neither interval clears the most common answer's 0.4
    assert built["learned"]["shape"]["learned"] is False


def test_three_equal_seeds_at_the_bar_are_not_above_it():
    cell = stats.interval([0.4, 0.4, 0.4])  # a zero-width interval whose float mean is 0.4000000000000001
    assert cell["half"] == 0 and not stats.above(cell, 0.4)
    assert stats.above(stats.interval([0.45, 0.45, 0.45]), 0.4)


def test_pairs_are_only_of_methods_the_call_asked_for():
    built = report.build_report(RESULTS, ("main",), ["MuNG+LoRA r32"], [0, 1, 2], BASE, None, chosen={})
    assert built["paired"] == []  # LoRA r32's runs are in the folder, but this call did not ask for it
