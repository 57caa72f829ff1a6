"""One ``python -m mung.compare`` call: settle the setup (tiny world or the user's data), list the units, run those
not done yet, then write the tables, the JSON and the charts from every finished unit."""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Optional

from ..backbones import by_name
from .. import redaction
from ..files import read_records, write_json, write_text
from . import chart, report, tables
from .plan import Budget, methods_of, plans_of
from .recipes import ComparisonRecipes
from .runner import Context, balanced_subset, run_units
from .setup import Setup, check_or_store, tiny_setup
from .lr_search import SEARCH_SEED, choose, parse_grids, tiny_grids
from .units import base_unit, efficiency_unit, finished_results, method_unit


def find_repo(given: Optional[str]) -> Path:
    """The repository whose scripts/ hold the recipes: --repo, else the one this package lives in, else the cwd."""
    candidates = [Path(given)] if given else [Path(__file__).resolve().parents[3], Path.cwd()]
    for candidate in candidates:
        if (candidate / "scripts" / "v1_5").is_dir() and (candidate / "scripts" / "qwen").is_dir():
            return candidate.resolve()
    raise FileNotFoundError(f"no MuNG repository (with scripts/v1_5 and scripts/qwen) at {', '.join(map(str, candidates))}; "
                            "run from the repository or pass --repo.")


def comparison_of(name: str) -> ComparisonRecipes:
    backbone = by_name(name)
    spec = getattr(backbone, "comparison", None)
    if spec is None:
        raise ValueError(f"backbone {name!r} declares no comparison recipes (Backbone.comparison); it cannot be "
                         "compared yet.")
    return spec


def make_setup(args: argparse.Namespace, spec: ComparisonRecipes, budget: Budget, out: Path) -> tuple[Setup, Optional[dict]]:
    if args.train_data:
        if not args.start:
            raise ValueError("--train-data needs --start: the checkpoint every method starts from.")
        if bool(args.eval_questions) != bool(args.eval_answers):
            raise ValueError("give --eval-questions and --eval-answers together (or neither: train only).")
        grids = None
        if args.lr_search:
            if not (args.val_questions and args.val_answers and args.lr_grid):
                raise ValueError("--lr-search on your data needs --val-questions, --val-answers and an --lr-grid "
                                 "TUNING=R1,R2,... for each kind of tuning the plan trains.")
            grids = grids_of(args, spec)
        setup = Setup(backbone=args.backbone, profile="real", budget=budget, start=args.start,
                      start_projector=args.start_projector, world=None, train_data=args.train_data,
                      image_folder=args.image_folder, eval_questions=args.eval_questions,
                      eval_answers=args.eval_answers, learning_rates=None, generator_lr=None,
                      val_questions=args.val_questions if grids else None,
                      val_answers=args.val_answers if grids else None, lr_grids=grids)
        return setup, None
    import tiny_world

    world = Path(args.world).resolve() if args.world else out / "world"
    manifest = tiny_world.load_manifest(str(world)) if args.world else tiny_world.build(str(world), verbose=True)
    grids = grids_of(args, spec) if args.lr_search else None
    return tiny_setup(args.backbone, spec, manifest, str(world), budget, args.start, args.split, grids), manifest


def grids_of(args: argparse.Namespace, spec: ComparisonRecipes) -> dict[str, tuple[float, ...]]:
    """The grids a search would use: the tiny world's defaults (or the backbone's) under --lr-grid; on your own
    data --lr-grid only."""
    if not args.lr_search:
        return {}
    return parse_grids(args.lr_grid, None if args.train_data else tiny_grids(spec.tiny.lr_grids))


def plan_units(out: Path, setup: Setup, plans: tuple[str, ...], methods: list, seeds: list[int],
               chosen: Optional[dict[str, float]] = None) -> list:
    """Every unit of the comparison. A learning-rate search (``setup.lr_grids``) plans it in two phases: without
    ``chosen``, the search units (every rate of each method's grid, seed 0); with ``chosen`` (method -> rate),
    the other seeds at the chosen rates, and the efficiency measurement."""
    units = [] if setup.start else [base_unit(out)]
    search = setup.lr_grids is not None
    for method in methods:
        if not method.trains:
            units.append(method_unit(out, method.name, seeds[0], trains=False))
        elif not search:
            units += [method_unit(out, method.name, seed) for seed in seeds]
        elif chosen is None:
            units += [method_unit(out, method.name, SEARCH_SEED, lr=lr) for lr in setup.lr_grids[method.tuning]]
        else:
            units += [method_unit(out, method.name, seed, lr=chosen[method.name]) for seed in seeds
                      if seed != SEARCH_SEED]
    if "efficiency" in plans and setup.profile == "tiny" and (not search or chosen is not None):
        units.append(efficiency_unit(out))
    return units


def chosen_rates(out: Path, methods: list) -> dict[str, float]:
    """method -> the rate of its best search run on the validation split (see lr_search.choose)."""
    results = finished_results(out)
    chosen = {}
    for method in methods:
        if method.trains:
            best = choose([r for r in results if r.get("method") == method.name and r.get("search")
                           and r.get("seed") == SEARCH_SEED])
            if best is None:
                raise ValueError(f"no finished search run of {method.name} under {out / 'units'}.")
            chosen[method.name] = best["learning_rate"]
    return chosen


def compare(args: argparse.Namespace, budget: Budget) -> dict[str, Any]:
    began, load_before = time.perf_counter(), os.getloadavg()[0]
    spec, repo, out = comparison_of(args.backbone), find_repo(args.repo), Path(args.out).resolve()
    plans = plans_of(args.plan)
    methods = methods_of(plans, args.methods.split(",") if args.methods else None)
    missing = sorted({m.tuning for m in methods if m.trains} - set(grids_of(args, spec)))
    if args.lr_search and missing:
        raise ValueError(f"--lr-search: no learning-rate grid for {', '.join(missing)}; add --lr-grid TUNING=R1,R2,...")
    if args.seeds < 1:
        raise ValueError(f"--seeds must be at least 1, got {args.seeds}.")
    seeds = list(range(args.seeds))
    out.mkdir(parents=True, exist_ok=True)
    setup, manifest = make_setup(args, spec, budget, out)
    check_or_store(out, setup)
    ctx = Context(spec=spec, setup=setup, repo=repo, out=out, manifest=manifest)
    if setup.eval_questions:
        ctx.questions, ctx.truth = balanced_subset(setup.eval_questions, setup.eval_answers,
                                                   budget.eval_per_family, out / "eval")
    if setup.val_questions:
        ctx.val_questions, ctx.val_truth = balanced_subset(setup.val_questions, setup.val_answers,
                                                           budget.eval_per_family, out / "val")
    ctx.families = sorted({row["family"] for row in read_records(ctx.truth)}) if ctx.truth else []
    units = plan_units(out, setup, plans, methods, seeds)
    print(f"[compare] {args.backbone}, plan {args.plan}: {len(units)} units into {out}"
          + (" (the learning-rate search; the other seeds follow at the chosen rates)" if setup.lr_grids else ""),
          flush=True)
    run_units(units, ctx, {m.name: m for m in methods})
    chosen = None
    if setup.lr_grids is not None:
        chosen = chosen_rates(out, methods)
        print("[compare] rates chosen on the validation split: "
              + ", ".join(f"{name} {lr:g}" for name, lr in chosen.items()), flush=True)
        run_units(plan_units(out, setup, plans, methods, seeds, chosen), ctx, {m.name: m for m in methods})
    context = {"command": command_line(), "machine": machine(), "load_average": [load_before, os.getloadavg()[0]],
               "wall_seconds_this_call": time.perf_counter() - began, "setup": setup.to_dict()}
    return write_outputs(out, ctx, plans, [m.name for m in methods], seeds, manifest, context, chosen)


def write_outputs(out: Path, ctx: Context, plans: tuple[str, ...], methods: list[str], seeds: list[int],
                  manifest: Optional[dict], context: dict, chosen: Optional[dict[str, float]] = None
                  ) -> dict[str, Any]:
    chance = (manifest or {}).get("chance", {})
    truth = read_records(ctx.truth) if ctx.truth else []
    efficiency = efficiency_unit(out)
    benchmark = efficiency.result() if efficiency.is_done() else None
    base = base_unit(out)
    base_result = base.result() if base.is_done() else None
    built = report.build_report(finished_results(out), plans, methods, seeds, report.baselines(truth, chance),
                                benchmark, chosen, base_result, white_baselines(base.folder, manifest, base_result))
    built.update(context)
    markdown = tables.render(built)
    write_json(out / "results.json", built, indent=2)
    write_text(out / "tables.md", f"`{context['command']}` on {context['machine']}\n\n" + markdown)
    charts = []
    for plan in ("main", "ablation"):
        if plan in built["tables"]:
            where = f", {ctx.setup.split} split" if ctx.setup.profile == "tiny" else ""
            title = f"{ctx.setup.backbone}{where}: {tables.TITLES[plan]}"
            path = chart.draw(built["tables"][plan], built["families"], built["baselines"], title, out / f"{plan}.png")
            charts.append(str(path) if path else None)
    print("\n" + markdown, flush=True)
    if charts and not any(charts) and not chart.have_matplotlib():
        print("[compare] no charts: matplotlib is not installed (pip install -e .[compare])", flush=True)
    print(f"[compare] tables: {out / 'tables.md'}; numbers: {out / 'results.json'}; charts: "
          f"{', '.join(c for c in charts if c) or 'none'}; wall time of this call "
          f"{context['wall_seconds_this_call'] / 60:.1f} min", flush=True)
    return built


def white_baselines(base_folder: Path, manifest: Optional[dict], base_result: Optional[dict]
                    ) -> Optional[dict[str, dict[str, float]]]:
    """Chance and most common answer of the white-background questions the stage-1 base answered (the file
    ``runner.run_base`` cut, or the world's whole eval split): the bars of its own table, not the test split's."""
    if not manifest or not base_result or "white_eval" not in base_result:
        return None
    cut = base_folder / "white_eval" / "eval_answers.jsonl"
    rows = read_records(str(cut) if cut.is_file() else manifest["eval_answers"])
    return report.baselines(rows, manifest.get("chance", {}))


def list_checkpoints(out: Path) -> int:
    rows = [r for r in finished_results(out) if r.get("checkpoint")]
    if not rows:
        print(f"[compare] no finished runs under {out / 'units'}", file=sys.stderr)
        return 1
    for r in rows:
        print("\t".join([r["method"], str(r["seed"]), r["checkpoint"], r.get("model_base") or ""]))
    return 0


def command_line() -> str:
    """This comparison's command as its records show it (secrets hidden: ``redaction.command_line``)."""
    return redaction.command_line(["python", "-m", "mung.compare", *sys.argv[1:]])


def machine() -> str:
    import torch

    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{platform.machine()}, {os.cpu_count()} cores, {device}; torch {torch.__version__}; "
            f"Python {platform.python_version()}")
