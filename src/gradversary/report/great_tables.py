"""The GREAT bench tables: pure renders of a suite's results JSON.

``great_defense`` (Table 1 of GREAT and the strong attacks, the paper-ordering verdicts and the
gradient-masking checks), ``great_mtl`` (Table 4) and ``great_distill`` (Table 3), registered in
:data:`~gradversary.report.tables.TABLES` beside the adaptation tables. The suites' stages
(robustness evaluation, step timing, plots) are in :mod:`gradversary.bench.great`.
"""

from __future__ import annotations

import statistics
from pathlib import Path

from ..analysis.robustness import COLUMNS, RobustnessSettings
from ..config_files import read_config_file
from .markdown import fmt_mean_std, markdown_table, mean_std
from .tables import TABLES

__all__ = ["ORDER_MARGIN", "defense_table", "distill_table", "mtl_table", "ordering", "sparse_verdict"]

# "far above" / "weak": the margin, in accuracy points, used by the paper-ordering verdicts
ORDER_MARGIN = 10.0
_MTL = {"class_err": ("class % error", 1), "colour_rmse": ("colour", 3), "edge_rmse": ("edge", 3),
        "autoencoder_rmse": ("autoencoder", 3)}


def _cell(runs: list[dict], eps: str, col: str, expected: int = 0) -> tuple[str, float | None]:
    """Mean ± std of one column over the runs; "(n=k)" when fewer than ``expected`` seeds ran."""
    vals = [100 * t[col] for r in runs if col in (t := r["robustness"]["tables"][eps])]
    if not vals:
        return "–", None
    return fmt_mean_std(vals, 1) + (f" (n={len(vals)})" if len(vals) < expected else ""), mean_std(vals)[0]


def ordering(means: dict[str, dict], methods: dict[str, str], labels: dict[str, str]) -> list[str]:
    """Whether the paper's Table 1 ordering holds at one eps: GRE(AT+CE) and GREACE far above
    the baseline under FGSM and iFGSM, GREAT alone weak against iFGSM; and whether the honest
    columns (PGD strong, worst case) agree. One sentence per claim, each with its figures."""
    by_method = {}
    for row, name in methods.items():
        if means.get(row):  # a method's first row with figures (the unnormalised one, or the
            by_method.setdefault(name, row)  # bounded GREACE where eq. 6 diverged) stands for it
    if "erm" not in by_method:
        return []
    b, out = means[by_method["erm"]], []
    for name in ("great_greace", "greace"):
        if (row := by_method.get(name)) is None:
            continue
        m = means[row]
        gaps = {c: m[c] - b[c] for c in ("fgsm", "ifgsm") if m.get(c) is not None and b.get(c) is not None}
        if len(gaps) < 2:
            continue
        holds = all(g >= ORDER_MARGIN for g in gaps.values())
        honest = {c: m[c] - b[c] for c in ("pgd_strong", "worst_case") if m.get(c) is not None and b.get(c) is not None}
        text = (f"{labels[row]} far above the baseline under FGSM and iFGSM (by at least "
                f"{ORDER_MARGIN:g} points): **{'holds' if holds else 'does not hold'}** "
                f"(FGSM {gaps['fgsm']:+.1f}, iFGSM {gaps['ifgsm']:+.1f} points)")
        if honest:
            agree = all(g >= ORDER_MARGIN for g in honest.values()) == holds
            text += ("; the honest columns " + ("agree" if agree else "**disagree**") + " ("
                     + ", ".join(f"{COLUMNS[c]} {g:+.1f}" for c, g in honest.items()) + ")")
        out.append(text + ".")
    row = by_method.get("great")
    if row is not None and means[row].get("ifgsm") is not None and b.get("ifgsm") is not None:
        gap = means[row]["ifgsm"] - b["ifgsm"]
        out.append(f"GREAT alone weak against iFGSM (less than {ORDER_MARGIN:g} points above the "
                   f"baseline): **{'holds' if gap < ORDER_MARGIN else 'does not hold'}** (iFGSM {gap:+.1f} points).")
    return out


def _verdicts(runs: list[dict]) -> dict[str, tuple[str, list[str]]]:
    """check name -> (aggregated verdict over seeds and eps, reasons of the failures)."""
    seen: dict[str, dict] = {}
    for r in runs:
        for eps, checks in r["robustness"]["checks"].items():
            for c in checks:  # a check that does not depend on eps counts once a seed
                seen.setdefault(c["name"], {}).setdefault(
                    (r["seed"], c["reason"]), (c["passed"], f"seed {r['seed']}, eps {float(eps):g}: {c['reason']}"))
    agg = {}
    for name, items in seen.items():
        fails = [why for ok, why in items.values() if ok is False]
        measured = [ok for ok, _ in items.values() if ok is not None]
        agg[name] = ((f"FAIL {len(fails)}/{len(measured)}", fails) if fails else
                     ("pass", []) if measured else ("skip", []))
    return agg


def _diverged(rs: list[dict]) -> str:
    """ "diverged at step N" (or the steps of several seeds) of a row whose runs all diverged."""
    steps = [r["diverged"]["step"] for r in rs]
    return f"diverged at step{'s' if len(steps) > 1 else ''} " + ", ".join(f"{s:,}" for s in steps)


def _figure(v) -> str:
    return "" if v is None else f"{v:g}" if isinstance(v, (int, float)) else str(v)


def _reference(rows: dict, notes: dict) -> list[str]:
    """The rows' reference figures (``paper`` of the spec), as published, in one table."""
    refs = {k: d["paper"] for k, d in rows.items() if d.get("paper")}
    if not refs:
        return []
    keys = sorted(dict.fromkeys(c for p in refs.values() for c in p), key=lambda c: c == "source")
    return ["### Reference figures", "", *([notes["reference"], ""] if notes.get("reference") else []),
            markdown_table(["method", *keys], [[rows[k]["title"], *(_figure(p.get(c)) for c in keys)]
                                               for k, p in refs.items()])]


#: the method families compared by :func:`standing`, in the order of its sentence
FAMILIES = {"GREAT's family": ("great", "greace", "great_greace"), "PGD-AT": ("pgd_at",),
            "fast AT": ("fast_at",), "FGSM 50/50": ("adversarial_training",), "the baseline": ("erm",)}


def standing(means: dict[str, dict], methods: dict[str, str], labels: dict[str, str]) -> str:
    """Where GREAT's family stands against the adversarial-training baselines at one eps: the
    best row of each family by its worst case (the honest figure), with its clean accuracy."""
    parts = []
    for family, names in FAMILIES.items():
        rows = [r for r, m in methods.items() if m in names and (means.get(r) or {}).get("worst_case") is not None]
        if rows:
            best = max(rows, key=lambda r: means[r]["worst_case"])
            clean = means[best].get("clean")
            parts.append(f"{family} {means[best]['worst_case']:.1f}"
                         + ("" if len(names) == 1 and len(rows) == 1 else f" ({labels[best]})")
                         + ("" if clean is None else f", clean {clean:.1f}"))
    if len(parts) < 2 or not parts[0].startswith("GREAT's family"):
        return ""
    return ("Worst case over every attack, the best row of each family (clean accuracy beside): "
            + "; ".join(parts) + ".")


@TABLES.register("great_defense")
def defense_table(data: dict, suite) -> list[str]:
    """One section a group: a table an eps, FGSM-overstatement and paper-ordering sentences,
    the runs stopped as diverged, reference figures, the gradient-masking checks and the
    figures."""
    lines = [suite.notes["intro"], ""]
    for gname, group in suite.groups.items():
        rows = {k: d for k, d in data["rows"].items() if d["group"] == gname}
        if not rows or gname not in data["stages"]["robustness"]:
            continue  # no row of the group was selected, or none has a run to show
        every = {k: [r for rs in d["runs"].values() for r in rs] for k, d in rows.items()}
        runs = {k: [r for r in rs if "robustness" in r] for k, rs in every.items()}
        diverged = {k: [r for r in rs if r.get("diverged")] for k, rs in every.items()}
        labels = {k: d["title"] for k, d in rows.items()}
        methods = {k: rs[0]["method"] for k, rs in every.items() if rs}
        stage = data["stages"]["robustness"][gname]
        cfgs = [f"`{suite.config_dir}/{c.config}`" for r in suite.rows if r.name in rows for c in r.cells.values()]
        lines += [f"## {group.title}", "", group.note, "", "- configs: " + ", ".join(cfgs),
                  f"- evaluation: {RobustnessSettings.from_saved(stage['settings']).describe()}", ""]
        evaluated = [r for rs in runs.values() for r in rs]
        first = (evaluated[0]["robustness"]["tables"] if evaluated
                 else {str(float(e)): {} for e in stage["settings"]["eps"]})
        n = max(len(v) for v in every.values())
        cols = [c for c in COLUMNS if any(c in r["robustness"]["tables"][e] for r in evaluated for e in first)]
        for eps in first:
            table, means = [], {}
            for k, rs in runs.items():
                if not rs and diverged[k]:
                    table.append([labels[k], _diverged(diverged[k]), *("–" for _ in cols[1:])])
                    means[k] = {}
                    continue
                cells = [_cell(rs, eps, c, n) for c in cols]
                means[k] = {c: m for c, (_, m) in zip(cols, cells)}
                table.append([labels[k], *(t for t, _ in cells)])
            lines += [f"### eps = {float(eps):g}", "", markdown_table(["method", *(COLUMNS[c] for c in cols)], table)]
            gaps = []
            for k, m in means.items():
                honest = min((m[c] for c in ("pgd", "pgd_strong", "pgd_dlr", "apgd_ce", "apgd_t", "square",
                                             "transfer", "worst_case") if m.get(c) is not None), default=None)
                if m.get("fgsm") is not None and honest is not None and m["fgsm"] - honest > 10:
                    gaps.append(f"{labels[k]} ({m['fgsm']:.1f} under FGSM, {honest:.1f} at worst)")
            if gaps:
                lines += [suite.notes["fgsm_gap"] + ": " + "; ".join(gaps) + ".", ""]
            if order := ordering(means, methods, labels):
                lines += ["The paper's ordering at this eps:", "", *(f"- {o}" for o in order), ""]
            if stand := standing(means, methods, labels):
                lines += [stand, ""]
        if any(diverged.values()):
            lines += [suite.notes.get("diverged", "Runs stopped by the divergence watch (no figures):"), "",
                      *(f"- {labels[k]}, seed {r['seed']}: diverged at step {r['diverged']['step']:,} "
                        f"({r['diverged']['reason']})" for k, rs in diverged.items() for r in rs), ""]
        lines += _reference(rows, suite.notes)
        lines += _cost(every, runs, labels)
        runs = {k: rs for k, rs in runs.items() if rs}
        if runs:
            lines += _checks(runs, methods, labels, suite.notes)
        if stage["plots"]:
            lines += ["### Figures", "", *(x for k, f in stage["plots"].items() for x in (f"![{k}]({f})", ""))]
    return lines


def _minutes(seconds: list[float]) -> str:
    return "–" if not seconds else f"{sum(seconds) / len(seconds) / 60:.1f}"


def _cost(every: dict, runs: dict, labels: dict) -> list[str]:
    """What a row costs to refill: a run's training and its attacks, in CPU-minutes (a run's wall
    time times the DDP ranks and threads it trained on; the attacks run on one thread)."""
    table = []
    for k, rs in every.items():
        train = [r["wall_time_s"] * int(r.get("world_size") or 1) * int(r.get("threads") or 1)
                 for r in rs if r.get("wall_time_s") and not r.get("diverged")]
        attack = [r["robustness"]["wall_time_s"] for r in runs[k] if r["robustness"].get("wall_time_s")]
        if train or attack:
            steps = sorted({r["steps"] for r in rs if r.get("steps") and not r.get("diverged")})
            table.append([labels[k], ", ".join(f"{s:,}" for s in steps) or "–", _minutes(train),
                          _minutes(attack), str(len(rs))])
    if not table:
        return []
    return ["### Cost", "",
            "CPU time of one run, mean over the seeds done: the training (its wall time times the "
            "DDP ranks and threads it ran on; PGD-AT may train on two ranks, `bench --nproc 2`) and "
            "the evaluation under every attack above (one thread). These machines ran other jobs "
            "beside it, so read it as an upper bound.", "",
            markdown_table(["method", "steps", "training (CPU-min)", "attacks (CPU-min)", "runs"], table), ""]


def _checks(runs: dict, methods: dict, labels: dict, notes: dict) -> list[str]:
    verdicts = {k: _verdicts(rs) for k, rs in runs.items()}
    names = list(dict.fromkeys(n for v in verdicts.values() for n in v))
    lines = ["### Gradient-masking checks", "", notes["checks"], "",
             markdown_table(["method", "zero-gradient share", *names],
                            [[labels[k], "%.1f%%" % (100 * max(r["robustness"]["zero_gradient_share"] for r in rs)),
                              *(verdicts[k].get(n, ("–", []))[0] for n in names)] for k, rs in runs.items()])]
    passing = [labels[k] for k in runs if not any(v.startswith("FAIL") for v, _ in verdicts[k].values())]
    failing = {k: f for k in runs if (f := [n for n, (v, _) in verdicts[k].items() if v.startswith("FAIL")])}
    text = "Methods that pass every measured check: " + (", ".join(passing) or "none") + ". "
    if failing:
        text += notes["masking"].format("; ".join(f"{labels[k]} ({', '.join(f)})" for k, f in failing.items()))
    else:
        text += "No method shows signs of gradient masking under these attacks."
    if great := [k for k in runs if methods[k] == "great"]:
        text += " " + notes["great_alone"] + " " + ("fails at least one check." if any(k in failing for k in great)
                                        else "passes every measured check.")
    lines += [text, ""]
    for k, f in failing.items():
        lines += [f"{labels[k]}:", "", *(f"- `{n}`: {why}" for n in f for why in verdicts[k][n][1][:3]), ""]
    return lines


@TABLES.register("great_mtl")
def mtl_table(data: dict, suite) -> list[str]:
    """Table 4's layout beside the paper's, GREAT against GradNorm, step times, figures."""
    rows = data["rows"]
    vals = {k: {c: [r["final"][f"test_{c}"] for rs in d["runs"].values() for r in rs] for c in _MTL}
            for k, d in rows.items()}
    head = ["method", *(h for h, _ in _MTL.values())]
    tol = suite.settings["verdict"]["tolerance"]
    lines = [suite.notes["intro"], "", "## Table 4 layout", "",
             markdown_table(head, [[d["title"], *(fmt_mean_std(vals[k][c], dg) for c, (_, dg) in _MTL.items())]
                                   for k, d in rows.items()]),
             "The paper's Table 4 (CIFAR-10, for reference):", "",
             markdown_table(head, [[d["title"], *(f"{d['paper'][c]:g}" for c in _MTL)] for d in rows.values()])]
    if "great_mtl" in vals and "gradnorm" in vals:
        cols = {}
        for c, (kind, t) in tol.items():
            g, n = mean_std(vals["great_mtl"][c])[0], mean_std(vals["gradnorm"][c])[0]
            cols[c] = "better" if g <= n else ("close" if g - n <= (t if kind == "abs" else t * n) else "worse")
        worse = [_MTL[c][0] for c, v in cols.items() if v == "worse"]
        detail = ", ".join(f"{_MTL[c][0]} {v}" for c, v in cols.items())
        verdict = (suite.notes["worse"].format(", ".join(worse), detail) if worse
                   else suite.notes["holds"].format(detail))
    else:
        verdict = "GREAT or GradNorm was not run: no verdict."
    close = ", ".join(f"{_MTL[c][0]} " + (f"{t:g} points" if k == "abs" else f"{100 * t:g}%") for c, (k, t) in tol.items())
    t = data["stages"].get("step_time", {}).get("seconds_per_step", {})
    base = t.get("equal")
    lines += [verdict + f" Close: within {close} of GradNorm's mean.", "", "## Step time", "", suite.notes["step_time"], "",
              markdown_table(["method", "ms / step", "ratio to Equal"],
                             [[rows[k]["title"], f"{1000 * v:.0f}", f"{v / base:.2f}" if base else "–"] for k, v in t.items()])]
    if "great_mtl" in t and base:
        lines += [f"GREAT-MTL / equal weighting step-time ratio: **{t['great_mtl'] / base:.2f}**.", ""]
    plots = data["stages"].get("mtl_plots", {})
    return lines + (["## Figures", "", *(f"![{k}]({v})\n" for k, v in plots.items())] if plots else [])


@TABLES.register("great_distill")
def distill_table(data: dict, suite) -> list[str]:
    """Table 3's layout (rows ``<method>_<regime>``): methods by regime beside the paper's,
    each run's change over its last evaluation interval (is the budget converged?), the
    verdict on the sparse regime, step times."""
    rows, notes = data["rows"], suite.notes
    regimes = {g: grp.title for g, grp in suite.groups.items() if g != "teacher"}
    methods = {r.vars["method"]: r for r in suite.rows if r.group == next(iter(regimes))}
    runs = {(m, g): [x for rs in rows.get(f"{m}_{g}", {"runs": {}})["runs"].values() for x in rs]
            for m in methods for g in regimes}
    acc = {k: [100 * x["final"]["source_test_acc"] for x in v if "source_test_acc" in x.get("final", {})]
           for k, v in runs.items()}
    drift = {k: [d for x in v if (d := last_interval_change(x)) is not None] for k, v in runs.items()}
    table = []
    for m, r in methods.items():
        per_step = [x["wall_time_s"] / x["steps"] for g in regimes for x in runs[m, g] if x.get("steps")]
        table.append([r.title, *(fmt_mean_std(acc[m, g], 2) if acc[m, g] else "n/a" for g in regimes),
                      *(f"{statistics.fmean(drift[m, g]):+.2f}" if drift[m, g] else "–" for g in regimes),
                      " / ".join(f"{r.paper[g]:.2f}" for g in regimes),
                      f"{statistics.median(per_step):.3f}" if per_step else "n/a"])
    teacher = next(r for r in suite.rows if r.name == "teacher")
    model = read_config_file(Path(suite.config_dir) / teacher.cells["teacher"].config)["model"]
    extra = ", ".join(f"{k} {model[k]}" for k in ("widths", "blocks") if k in model)
    t_runs = rows.get("teacher", {}).get("runs", {}).get("teacher", [])
    t_acc = (f"{100 * t_runs[0]['final']['source_test_acc']:.2f}%"
             if t_runs and "source_test_acc" in t_runs[0].get("final", {}) else "(not yet trained)")
    lines = [notes["intro"].format(teacher=f"`{model['name']}`" + (f" ({extra})" if extra else ""), acc=t_acc), "",
             "Test accuracy (%) at the last step, mean ± std over seeds.", "",
             markdown_table(["method", *regimes.values(), *(f"{t}: last interval" for t in regimes.values()),
                             "paper (CIFAR-10): dense / sparse", "s / step (runs)"], table),
             *([notes["converged"], ""] if "converged" in notes else []),
             sparse_verdict({m: acc[m, "sparse"] for m in methods}, {m: r.title for m, r in methods.items()}), ""]
    if t := data["stages"].get("step_time"):
        sps = {k.removesuffix("_dense"): v for k, v in t["seconds_per_step"].items()}
        lines += ["## Step time", "", notes["step_time"].format(steps=t["steps"], batch=t["batch_size"]), "",
                  markdown_table(["method", "s / step", "× ERM"], [[methods[m].title, f"{sps[m]:.3f}",
                                                                    f"{sps[m] / sps['erm']:.1f}"] for m in methods]),
                  notes["step_ratio"].format(sps["great_distill"] / sps["kd"]), ""]
    return lines


def last_interval_change(summary: dict, key: str = "source_test_acc") -> float | None:
    """A run's test accuracy at its last evaluation minus the one an evaluation interval
    earlier (the first evaluation's step), in points, from the summary's per-evaluation
    ``history``. The final evaluation often comes a few steps after the last periodic one
    (2,370 steps evaluated every 469: 2,345 and 2,370), so it is compared with the latest
    evaluation at or before ``last step - interval`` (1,876), not with the one just before it.
    ``None`` without two evaluations that carry ``key`` (records made before the history kept
    it)."""
    pts = [(h["step"], h[key]) for h in summary.get("history", []) if key in h]
    if len(pts) < 2:
        return None
    last_step, last = pts[-1]
    earlier = [v for s, v in pts[:-1] if s <= last_step - pts[0][0]] or [pts[-2][1]]
    return 100 * (last - earlier[-1])


def sparse_verdict(sparse: dict[str, list[float]], labels: dict[str, str]) -> str:
    """Whether GREAT has the best mean sparse accuracy, and by how much against the noise."""
    means = {m: mean_std(v) for m, v in sparse.items() if v}
    if "great_distill" not in means or len(means) < 2:
        return "The claim cannot be checked: sparse runs are missing."
    other = max((m for m in means if m != "great_distill"), key=lambda m: means[m][0])
    g, o = means["great_distill"], means[other]
    gap, noise = g[0] - o[0], max(g[1], o[1])
    if min(len(sparse[m]) for m in ("great_distill", other)) < 2:
        return (f"**With one seed the paper's claim nominally {'holds' if gap > 0 else 'does not hold'}** "
                f"(GREAT {gap:+.2f} points against {labels[other]} in the sparse regime); one seed measures no spread.")
    if gap > 0:
        strength = ("larger than" if gap > noise else "within") + " the seed-to-seed spread"
        return (f"**The paper's claim holds at this scale**: GREAT has the best mean sparse accuracy, "
                f"{gap:.2f} points above {labels[other]} ({strength}, std up to {noise:.2f}).")
    return (f"**The paper's claim does not hold at this scale**: in the sparse regime {labels[other]} "
            f"is ahead of GREAT by {-gap:.2f} points (std up to {noise:.2f}).")
