"""LLaVA's command names for the shared evaluation code in ``mung.eval`` (any backbone).

Each module here is a thin face: ``python -m llava_noise.eval.<name>`` runs ``python -m mung.eval.<name>`` (and
``run_llava`` runs ``mung.eval.run_query``), so LLaVA's commands and ``scripts/v1_5/eval/*.sh`` keep working. The
answering entry points (``model_vqa*``), the benchmark scorers and converters (``eval_*``, ``convert_*``,
``summarize_llavabench``) and their helpers (``vqa_normalize``, ``xlsx``, ``mmbench_tsv``) live in ``mung.eval``.
"""
