"""``python -m mung.compare``: every method of the paper's tables (full fine-tuning, LoRA, DoRA, MuNG, MuNG+LoRA,
LoRA r128, NEFTune on full FT and on LoRA, the generator ablations) trained with one budget on one split and evaluated the same way, over seeds;
the tables as Markdown + JSON and PNG charts.

plan.py (the methods and plans as data) · recipes.py (what a backbone declares: ``Backbone.comparison``) ·
setup.py (what a run is on, checked on resume) · units.py (done-markers) · commands.py (recipe, eval and benchmark
commands) · runner.py (running units, progress) · session.py (one call) · lr_search.py (``--lr-search``: grids, the
choice on validation) · stats.py (95% t-intervals, paired differences) · report.py / tables.py / chart.py (output).
"""
