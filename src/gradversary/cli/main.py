"""The ``gradversary`` command line: thin wiring over the engine, registries and reports."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

from ..bench.recipes import RECIPES
from ..errors import GradversaryError

__all__ = ["main", "build_parser"]


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", default=None,
                   help="dataset folder (default: $GRADVERSARY_DATA_ROOT, else ../shared/data)")
    p.add_argument("--no-progress", action="store_true", help="hide progress bars")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradversary",
        description="Learning with reversed gradients: DANN and GREAT.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("run", help="run a named recipe: the method beside its baseline, over seeds")
    p.add_argument("recipe", choices=RECIPES.names(), help="recipe name")
    p.add_argument("--seeds", type=int, default=3, help="number of seeds (0..N-1)")
    p.add_argument("--out-dir", default="runs", help="parent folder of the run directories")
    p.add_argument("--results", default=None,
                   help="also write a Markdown results file here (e.g. docs/results/moons.md)")
    p.add_argument("overrides", nargs="*", metavar="key=value",
                   help="config overrides applied to both methods, e.g. train.steps=500")
    p.add_argument("--force", action="store_true",
                   help="train again over run directories that already hold runs (deleting them)")
    _add_common(p)

    p = sub.add_parser("train", help="train from a YAML config")
    p.add_argument("config", help="YAML config file")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="overrides, e.g. optim.lr=0.01")
    p.add_argument("--run-dir", default=None, help="run directory (default: <out_dir>/<name>)")
    p.add_argument("--resume", action="store_true", help="continue from the run's last checkpoint")
    p.add_argument("--force", action="store_true",
                   help="start afresh even if the run directory holds a run (deleting it)")
    _add_common(p)

    p = sub.add_parser("eval", help="evaluate a run directory's last checkpoint")
    p.add_argument("run_dir", help="a run directory made by train or run")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--data-root", default=None, help="dataset folder")
    p.add_argument("--bn-stats", choices=["running", "target"], default=None,
                   help="BatchNorm statistics to evaluate with (default: the run's train.bn_stats); "
                        "target: re-estimated on the unlabelled target inputs (AdaBN)")

    p = sub.add_parser("bench", help="run a benchmark suite (configs/bench/<suite>.yaml) and "
                                     "write docs/results/; `bench list` shows the suites")
    suites = p.add_subparsers(dest="suite", required=True, metavar="SUITE")
    suites.add_parser("list", help="list the benchmark suites")
    for name, summary in _bench_suites().items():
        _add_bench_suite(suites.add_parser(name, help=summary), name)

    p = sub.add_parser("attack", help="robustness of a trained run: GREAT's Table 1, PGD, APGD-CE/T, "
                                      "Square, transfer, worst case and gradient-masking checks")
    p.add_argument("run_dir", help="a run directory made by train, run or bench")
    p.add_argument("--eps", type=_float_list, default=None,
                   help="L-inf radii, comma-separated (default 0.1,0.2,0.3; 0.1,0.3 with --quick)")
    p.add_argument("--n", type=int, default=None, help="test images (default 1000; 200 with --quick)")
    p.add_argument("--split", default=None, choices=["target_test", "source_test"],
                   help="evaluation split (default target_test if the run has it)")
    p.add_argument("--transfer-from", default=None, metavar="RUN_DIR",
                   help="source run of the transfer attack (e.g. an independently trained ERM run)")
    p.add_argument("--quick", action="store_true",
                   help="small attack budgets (few PGD and APGD steps, 3 APGD-T targets, 100 Square "
                        "queries): a CPU first look")
    p.add_argument("--seed", type=int, default=0, help="seed of the subsample, targets and starts")
    p.add_argument("--data-root", default=None, help="dataset folder")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar over the attacks")

    p = sub.add_parser("shift", help="proxy A-distance between two samples (a shift monitor)")
    p.add_argument("a", help="FILE.npz or NAME[(opt=value,...)]:PART, e.g. digits:source")
    p.add_argument("b", help="the same for the second sample, e.g. digits:target")
    p.add_argument("--key", default=None, help="array name inside .npz files")
    p.add_argument("--features", default=None, metavar="RUN_DIR",
                   help="measure in the feature space of this run's trained model")
    p.add_argument("--max", type=int, default=5000, help="examples per sample (subsampled)")
    p.add_argument("--classifier", choices=["linear", "mlp"], default="linear",
                   help="domain classifier: linear (the paper's PAD) or a small MLP")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_common(p)

    p = sub.add_parser("analyze", help="PAD and t-SNE of trained runs' features (source vs target)")
    p.add_argument("run_dirs", nargs="+", help="run directories, e.g. source-only then DANN")
    p.add_argument("--out", default=None, help="output folder (default: the first run's)")
    p.add_argument("--max-points", type=int, default=1000, help="test points per domain")
    p.add_argument("--embedding", choices=["tsne", "pca"], default="tsne")
    p.add_argument("--data-root", default=None, help="dataset folder")

    p = sub.add_parser("validators", help="rank the label-free validators on finished runs "
                                          "(weighted Spearman, regret, leave-one-task-out default)")
    p.add_argument("run_dirs", nargs="*", help="run directories, or folders holding them")
    p.add_argument("--records", action="append", default=None,
                   help="a folder of bench run records (JSON), e.g. docs/results/digits_runs; repeatable")
    p.add_argument("--exclude", action="append", default=[],
                   help="leave out runs and records whose path matches this glob, e.g. '*pooled_*'; repeatable")
    p.add_argument("--out", default="docs/results/validators.md",
                   help="the Markdown report (a .json and a .png are written beside it)")
    p.add_argument("--note", default="", help="how the runs were made, quoted in the report")

    p = sub.add_parser("select", help="choose a setting without target labels: rank the evaluations "
                                      "of several runs together by label-free validators")
    p.add_argument("run_dirs", nargs="+", help="run directories (finished or not), one per setting")
    p.add_argument("--criterion", default=None,
                   help="a validator or a rank mean of several, joined by + (default: the default "
                        "validators of docs/results/validators.md)")
    p.add_argument("--top", type=int, default=10, help="evaluations to list (default 10)")

    sub.add_parser("list", help="list registered methods, models, datasets, schedules and recipes")
    return parser


def _float_list(text: str) -> list[float]:
    """``0.1,0.2`` -> [0.1, 0.2]."""
    try:
        vals = [float(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected numbers like 0.1,0.3; got {text!r}") from None
    if not vals or any(not 0 <= v <= 1 for v in vals):
        raise argparse.ArgumentTypeError(f"expected eps in [0, 1] like 0.1,0.3; got {text!r}")
    return vals


def _seed_list(text: str) -> list[int]:
    """``3`` -> [0, 1, 2]; ``0,2`` -> [0, 2]."""
    try:
        seeds = ([int(t) for t in text.split(",") if t.strip()] if "," in text
                 else list(range(int(text))))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or a list like 0,2; got {text!r}") from None
    if not seeds:
        raise argparse.ArgumentTypeError("no seeds: give N >= 1, or a list like 0, or 0,2")
    return seeds


def _cmd_list(args) -> int:
    from ..attacks import ATTACKS
    from ..data import DATASETS
    from ..methods import METHODS
    from ..models import MODELS
    from ..schedules import SCHEDULES
    from ..selection.validators import VALIDATORS

    for title, reg in [("methods", METHODS), ("models", MODELS), ("datasets", DATASETS),
                       ("schedules", SCHEDULES), ("attacks", ATTACKS), ("recipes", RECIPES),
                       ("validators", VALIDATORS)]:
        print(f"{title}:")
        for e in reg.entries():
            print(f"  {e.name:<16} {e.summary}")
    return 0


def _cmd_train(args) -> int:
    from ..engine import Trainer, load_config
    from ..engine.distributed import shutdown_distributed

    cfg = load_config(args.config, args.overrides)
    if args.no_progress:
        cfg.train.progress = False
    run_dir = args.run_dir
    if args.resume and run_dir is None:
        run_dir = str(Path(cfg.out_dir) / cfg.run_name)
    trainer = Trainer(cfg, run_dir=run_dir, data_root=args.data_root)
    try:
        summary = trainer.fit(resume=args.resume, force=args.force)
    finally:
        shutdown_distributed()
    if trainer.main:
        print(f"run directory: {trainer.run_dir}")
        _print_metrics(summary["final"])
    return 0


def _cmd_eval(args) -> int:
    from ..engine import Trainer

    trainer = Trainer.from_run_dir(args.run_dir, args.data_root)
    if args.bn_stats:
        trainer.cfg.train.bn_stats = args.bn_stats
    metrics = trainer.evaluate()
    if args.json:
        print(json.dumps({"step": trainer.step, **metrics}, indent=2))
    else:
        print(f"{args.run_dir} at step {trainer.step}:")
        _print_metrics(metrics)
    return 0


def _print_metrics(metrics: dict) -> None:
    for k, v in metrics.items():
        print(f"  {k:<20} {v:.4f}")


def _cmd_run(args) -> int:
    from ..bench.compare import run_comparison

    t0 = time.perf_counter()
    result = run_comparison(
        RECIPES.create(args.recipe), seeds=list(range(args.seeds)), out_dir=args.out_dir,
        overrides=args.overrides, data_root=args.data_root, progress=not args.no_progress,
        force=args.force,
    )
    print(result.table)
    print(f"report: {result.report}")
    if args.results:
        cmd = "gradversary " + " ".join(sys.argv[1:]) if sys.argv[1:] else "gradversary run"
        path = result.write_results(args.results, command=cmd, wall_time=time.perf_counter() - t0)
        print(f"results: {path}")
    return 0


def _command_line() -> str:
    """The command as typed, for results files."""
    return "gradversary " + " ".join(sys.argv[1:])


def _bench_suites() -> dict[str, str]:
    from ..bench.runner import list_suites

    try:
        return list_suites()
    except GradversaryError:
        return {}


def _add_bench_suite(p: argparse.ArgumentParser, name: str) -> None:
    """The options every suite has, then the suite's own (from its spec)."""
    from ..bench.runner import load_suite

    p.add_argument("--jobs", type=int, default=None,
                   help="processes of one thread each for the runs, grid searches and evaluations "
                        "(default: one per CPU core)")
    p.add_argument("--nproc", type=int, default=1,
                   help="DDP ranks (local processes) per training run: N ranks take one process's "
                        "steps on the global batch in about 1/N of the time; the runs then train "
                        "one after another (default 1)")
    p.add_argument("--quick", action="store_true", help="reduced size, for a first look (minutes)")
    p.add_argument("--seeds", type=_seed_list, default=None,
                   help="N (seeds 0..N-1) or a list with commas: 0,2 or just 1, (default: the "
                        "suite's; 0 with --quick)")
    p.add_argument("--only", default=None, help="glob on row names, e.g. 'amazon_*' or mnist_mnistm")
    p.add_argument("--report-only", action="store_true",
                   help="train nothing; tabulate the finished runs and records (missing seeds show n)")
    p.add_argument("--status", action="store_true",
                   help="train nothing, write nothing: where each run stands (finished, the step "
                        "an unfinished one reached, its last evaluation, its attacks)")
    p.add_argument("--no-records", action="store_true",
                   help="keep no run records beside the results (<results stem>_runs/), and take "
                        "no run from them")
    p.add_argument("--out-dir", default=None, help="where runs are kept (and reused); default "
                                                    "runs/bench/<results stem>")
    p.add_argument("--results", default=None, help="results file (default docs/results/<stem>.md, "
                                                    "or <stem>_quick.md with --quick)")
    p.add_argument("--config-dir", default=None, help="folder the suite's config paths are under "
                                                      "(default configs)")
    _add_common(p)
    for opt, o in load_suite(name).options.items():
        p.add_argument("--" + opt.replace("_", "-"), default=o.get("default"),
                       choices=o.get("choices"), help=o.get("help", ""))


def _cmd_bench(args) -> int:
    from ..bench.runner import list_suites, load_suite, run_suite, suite_status

    if args.suite == "list":
        suites = list_suites()
        width = max(map(len, suites), default=0)
        for name, summary in suites.items():
            print(f"  {name:<{width}}  {summary}")
        return 0
    if args.jobs is not None and args.jobs < 1:
        raise GradversaryError(f"--jobs must be at least 1, got {args.jobs}")
    if args.nproc < 1:
        raise GradversaryError(f"--nproc must be at least 1, got {args.nproc}")
    suite = load_suite(args.suite)
    if args.config_dir:
        suite.config_dir = args.config_dir
    options = {k: getattr(args, k) for k in suite.options}
    if args.status:
        try:
            rows = suite_status(suite, args.seeds, args.quick, options, args.only, args.out_dir,
                                args.results, records=not args.no_records)
        except ValueError as e:
            raise GradversaryError(str(e)) from None
        from ..report.markdown import markdown_table

        print(markdown_table(["row", "cell", "seed", "state", "last evaluation", "attacks"], rows))
        done = sum(r[3].startswith("finished") for r in rows)
        print(f"\n{done} of {len(rows)} runs finished.")
        return 0
    try:
        path = run_suite(suite, args.seeds, args.quick, options,
                         args.only, args.out_dir, args.results, records=not args.no_records,
                         data_root=args.data_root, jobs_n=args.jobs or os.cpu_count() or 1, nproc=args.nproc,
                         progress=not args.no_progress, report_only=args.report_only,
                         command=_command_line())
    except ValueError as e:
        raise GradversaryError(str(e)) from None
    print(Path(path).read_text())
    return 0


def _cmd_attack(args) -> int:
    from ..analysis.robustness import RobustnessSettings, attack_run

    given = {k: v for k, v in (("eps", args.eps), ("n", args.n)) if v is not None}
    if "n" in given:
        if given["n"] < 1:
            raise GradversaryError(f"--n must be >= 1, got {given['n']}")
        given["n_train"] = given["n"]
    given.update(split=args.split, seed=args.seed)
    settings = RobustnessSettings.quick(**given) if args.quick else RobustnessSettings(**given)
    if args.transfer_from and not Path(args.transfer_from, "config.yaml").is_file():
        raise GradversaryError(f"--transfer-from {args.transfer_from!r} is not a run directory")
    command = " ".join(["gradversary attack", args.run_dir,
                        *(["--eps", ",".join(f"{e:g}" for e in args.eps)] if args.eps else []),
                        *(["--n", str(args.n)] if args.n is not None else []),
                        *(["--split", args.split] if args.split else []),
                        *(["--transfer-from", args.transfer_from] if args.transfer_from else []),
                        *(["--quick"] if args.quick else []), "--seed", str(args.seed)])
    out = attack_run(args.run_dir, settings, args.data_root, args.transfer_from, command=command,
                     progress=not args.no_progress)
    text = Path(out["path"]).read_text()
    print(text.split("## Gradient-masking checks")[0].rstrip())
    print(f"\ngradient-masking checks (zero-gradient share {100 * out['zero_gradient_share']:.1f}%):")
    for eps, checks in out["checks"].items():
        print(f"eps {float(eps):g}:")
        for c in checks:
            print(f"  [{ {True: 'pass', False: 'FAIL', None: 'skip'}[c['passed']] }] "
                  f"{c['name']}: {c['reason']}")
    print(f"\nwritten: {out['path']} and robustness.json"
          + "".join(f", {f}" for f in out["plots"].values()))
    return 0


def _cmd_shift(args) -> int:
    from ..analysis.shift import load_sample, measure_shift

    a = load_sample(args.a, args.data_root, args.key)
    b = load_sample(args.b, args.data_root, args.key)
    features = None
    if args.features:
        from ..engine import Trainer

        features = Trainer.from_run_dir(args.features, args.data_root).method.model.features
    r = measure_shift(a, b, features, args.max, args.seed, args.classifier)
    if args.json:
        print(json.dumps({"pad": r.pad, "error": r.error, "n_a": r.n_a, "n_b": r.n_b}))
    else:
        space = (f"features of {args.features}" if args.features else "inputs") + f", {args.classifier}"
        print(f"proxy A-distance ({space}): {r.pad:.3f}   "
              f"(domain classifier error {r.error:.3f}; n = {r.n_a} / {r.n_b}; "
              "0 = indistinguishable, 2 = fully separable)")
    return 0


def _cmd_analyze(args) -> int:
    from ..analysis.features import analyze_runs

    path = analyze_runs(args.run_dirs, args.out, args.data_root, args.max_points,
                        embedding=args.embedding, command=_command_line())
    print(Path(path).read_text())
    print(f"written: {path}")
    return 0


def _run_evaluations(run_dir: Path) -> tuple[list[dict], float]:
    """A run directory's evaluations (``metrics.jsonl``) and its schedule's total steps (the
    last logged step over its share of the schedule, so an unfinished run has one too)."""
    from ..io import read_metrics

    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise GradversaryError(f"{str(run_dir)!r} is not a run directory (no metrics.jsonl)")
    rows = read_metrics(path)
    train = [r for r in rows if r.get("kind") == "train" and r.get("p")]
    if not train:
        raise GradversaryError(f"run {str(run_dir)!r} has logged no training step yet")
    return [r for r in rows if r.get("kind") == "eval"], round(train[-1]["step"] / train[-1]["p"])


def _cmd_select(args) -> int:
    from ..report.markdown import markdown_table
    from ..selection import DEFAULT_VALIDATORS
    from ..selection.rules import rank_across_runs

    criterion = args.criterion or DEFAULT_VALIDATORS
    names = [str(d) for d in args.run_dirs]
    if len(set(names)) != len(names):
        raise GradversaryError("select: a run directory is named twice")
    try:
        ranked = rank_across_runs({n: _run_evaluations(Path(n)) for n in names}, criterion)
    except ValueError as e:
        raise GradversaryError(f"select: {e}") from None
    parts = [n for n in criterion.split("+") if n != "last"]
    print(f"Evaluations of {len(names)} runs ranked together by {criterion} (label-free; `last` is "
          "the share of the run's own schedule). Target labels are not read.\n")
    print(markdown_table(["rank", "run", "step", "share", *parts, "combined"],
                         [[str(i + 1), h["run"], f"{h['step']:,}", f"{h['share']:.2f}",
                           *(f"{h[f'score_{n}']:.4g}" for n in parts), f"{h['combined']:.3f}"]
                          for i, h in enumerate(ranked[:args.top])]))
    best = {}
    for i, h in enumerate(ranked):
        best.setdefault(h["run"], i + 1)
    print("\nbest rank of each run: " + ", ".join(f"{n} {best.get(n, '-')}" for n in names))
    print(f"chosen: {ranked[0]['run']} at step {ranked[0]['step']:,}")
    return 0


def _cmd_validators(args) -> int:
    from ..report.validators import write_validators_report

    if not args.run_dirs and not args.records:
        print("gradversary: error: validators: give run directories, --records DIR, or both", file=sys.stderr)
        return 2
    try:
        path = write_validators_report(args.run_dirs, args.out, args.records, _command_line(),
                                       note=args.note, exclude=args.exclude)
    except (FileNotFoundError, ValueError) as e:
        print(f"gradversary: error: {e}", file=sys.stderr)
        return 2
    print(f"written: {path}")
    return 0


COMMANDS = {"list": _cmd_list, "train": _cmd_train, "eval": _cmd_eval, "run": _cmd_run,
            "bench": _cmd_bench, "shift": _cmd_shift, "analyze": _cmd_analyze,
            "attack": _cmd_attack, "validators": _cmd_validators, "select": _cmd_select}


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    # key=value overrides may also come after options ("run dann --seeds 2 train.steps=9")
    bad = [e for e in extra if e.startswith("-") or "=" not in e]
    if bad or (extra and not hasattr(args, "overrides")):
        parser.error(f"unrecognized arguments: {' '.join(bad or extra)}")
    if extra:
        args.overrides = list(args.overrides) + extra
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS[args.command](args)
    except GradversaryError as e:
        print(f"gradversary: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("gradversary: interrupted; resume with `gradversary train CONFIG --resume`", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
