"""Wall time of two training runs under each thread policy, on an idle machine and with one core busy.

    python benchmarks/threads.py [--repeats 3] [--results docs/results/threads.md]

Runs, each as a fresh ``gradversary train`` process (so the time includes start-up, as a user
sees it):

- the moons demo: ``configs/moons/dann.yaml train.steps=500``;
- a short digits run: ``configs/dann/mnist_usps.yaml train.steps=200 train.eval_every=0``
  (the DANN MNIST network, batch 128, evaluated once at the end).

Policies: ``default`` (``train.threads=null``: PyTorch's one thread per core), ``threads=1``,
``auto`` (the default, :mod:`gradversary.engine.threads`), and ``passive``
(``train.threads=null`` with ``OMP_WAIT_POLICY=PASSIVE``: OpenMP workers sleep instead of
spinning while they wait). Load: ``idle`` (nothing started by this script) and ``busy``
(this script runs one single-threaded busy loop for the whole cell). ``OMP_NUM_THREADS`` is
removed from the children's environment so that ``default`` is PyTorch's own default.

The policies are run in turn within each repeat, so drift in the machine's background load
affects all alike; the median over repeats is reported with the 1-minute load average seen
before each run. "Idle" means only that this script adds no load: on a shared machine other
processes run too, and the load column says how many.

The script writes ``--results`` itself (with the commit and the command); never edit it by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gradversary.engine.threads import available_cpus, cgroup_cpu_limit  # noqa: E402

WORKLOADS = {
    "moons": ["configs/moons/dann.yaml", "train.steps=500"],
    "digits": ["configs/dann/mnist_usps.yaml", "train.steps=200", "train.eval_every=0"],
}
POLICIES = {
    "default": (["train.threads=null"], {}),
    "threads=1": (["train.threads=1"], {}),
    "auto": (["train.threads=auto"], {}),
    "passive": (["train.threads=null"], {"OMP_WAIT_POLICY": "PASSIVE"}),
}


def _env(extra: dict) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY")}
    env["PYTHONPATH"] = str(ROOT / "src") + os.pathsep + env.get("PYTHONPATH", "")
    env.update(extra)
    return env


def run_once(workload: str, policy: str, data_root: str, tmp: Path, timeout: float) -> dict:
    """One ``gradversary train`` process: wall time, the children's CPU time, the load before
    (stopped after ``timeout`` seconds, which is then recorded as a lower bound)."""
    overrides, extra = POLICIES[policy]
    run_dir = tmp / f"{workload}-{policy}"
    shutil.rmtree(run_dir, ignore_errors=True)
    cmd = [sys.executable, "-m", "gradversary.cli.main", "train", *WORKLOADS[workload], *overrides,
           "train.progress=false", "--run-dir", str(run_dir), "--data-root", data_root]
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=ROOT, env=_env(extra), capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:  # the child is killed: a lower bound on its wall time
        return {"wall": timeout, "cpu": float("nan"), "load": load, "threads": None, "timeout": True}
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr}")
    summary = json.loads((run_dir / "summary.json").read_text())
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {"wall": wall, "cpu": cpu, "load": load, "threads": summary.get("threads"), "timeout": False}


def _wall(rec: dict) -> str:
    return f">{rec['wall']:.0f}" if rec["timeout"] else f"{rec['wall']:.2f}"


def busy_loop() -> subprocess.Popen:
    """A single-threaded process that keeps one core busy until killed."""
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def measure(repeats: int, data_root: str, workloads, policies, timeout: float) -> dict:
    results: dict = {}
    with tempfile.TemporaryDirectory(prefix="gradversary-threads-") as tmp:
        for workload in workloads:
            for load in ("idle", "busy"):
                hog = busy_loop() if load == "busy" else None
                try:
                    if hog is not None:
                        time.sleep(1.0)
                    for r in range(repeats):
                        for policy in policies:
                            rec = run_once(workload, policy, data_root, Path(tmp), timeout)
                            results.setdefault((workload, load, policy), []).append(rec)
                            print(f"{workload:<7} {load:<5} {policy:<10} repeat {r}: {_wall(rec)} s wall, "
                                  f"{rec['cpu']:7.2f} s CPU, {rec['threads']} thread(s), load {rec['load']:.2f}",
                                  flush=True)
                finally:
                    if hog is not None:
                        hog.kill()
                        hog.wait()
    return results


def _commit() -> str:
    def git(*a):
        return subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + (" (with uncommitted changes)" if git("status", "--porcelain", "--", "src", "benchmarks") else "")


def render(results: dict, repeats: int, command: str, started: str, seconds: float, commit: str) -> str:
    import torch

    lines = [
        "# Thread policies on a shared machine",
        "",
        f"Written by `{command}` (commit {commit}, started {started}, {seconds / 60:.1f} min).",
        f"torch {torch.__version__}, {platform.machine()}, {os.cpu_count()} logical CPUs, "
        f"{available_cpus()} available to this process (affinity {len(os.sched_getaffinity(0))}, "
        f"cgroup quota {cgroup_cpu_limit() or 'none'}).",
        "",
        "Wall time of one `gradversary train` process (start-up included), median over "
        f"{repeats} repeat(s), the policies interleaved within each repeat; CPU is the process's "
        "user + system time (spinning OpenMP workers show here); load is the 1-minute load "
        "average before each run (median); `>T`: stopped after T seconds. **idle**: this script adds no load, but the machine is "
        "shared with other engineers, so it is only approximately idle (see the load). **busy**: "
        "one single-threaded busy loop runs alongside.",
        "",
        "| run | load | policy | threads | wall s (median) | wall s (all) | CPU s | load avg |",
        "|---|---|---|---:|---:|---|---:|---:|",
    ]
    for (workload, load, policy), recs in results.items():
        walls = [r["wall"] for r in recs]
        med = statistics.median(walls)
        capped = any(r["timeout"] for r in recs) and med >= min(r["wall"] for r in recs if r["timeout"])
        threads = next((r["threads"] for r in recs if r["threads"] is not None), "?")
        lines.append(
            f"| {workload} | {load} | {policy} | {threads} | {'>' if capped else ''}{med:.2f} | "
            f"{', '.join(_wall(r) for r in recs)} | {statistics.median(r['cpu'] for r in recs):.1f} | "
            f"{statistics.median(r['load'] for r in recs):.2f} |")
    lines += ["", "Runs:", ""]
    lines += [f"- {w}: `gradversary train {' '.join(WORKLOADS[w])} train.progress=false`" for w in WORKLOADS]
    lines += [f"- {p}: overrides `{' '.join(o)}`" + (f", environment `{e}`" if e else "")
              for p, (o, e) in POLICIES.items()]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--only", nargs="*", choices=list(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--policies", nargs="*", choices=list(POLICIES), default=list(POLICIES))
    ap.add_argument("--timeout", type=float, default=300.0,
                    help="stop a run after this many seconds and record it as '>timeout'")
    ap.add_argument("--results", default=None, help="write the Markdown table here (e.g. docs/results/threads.md)")
    args = ap.parse_args(argv)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    commit, t0 = _commit(), time.perf_counter()
    results = measure(args.repeats, args.data_root, args.only, args.policies, args.timeout)
    command = "python benchmarks/threads.py " + " ".join(argv if argv is not None else sys.argv[1:])
    text = render(results, args.repeats, command.strip(), started, time.perf_counter() - t0, commit)
    print(text)
    if args.results:
        Path(args.results).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
