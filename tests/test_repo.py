"""The repository's promises: CI runs the README's test command; configs match recipes."""

import re
from pathlib import Path

import pytest
import yaml

from gradversary.bench.recipes import RECIPES
from gradversary.engine import load_config, resolve_config

ROOT = Path(__file__).resolve().parents[1]


def _readme_commands():
    text = (ROOT / "README.md").read_text()
    return re.findall(r"```bash\n# \d\. [^\n]*\n([^\n]+)\n```", text)


def test_ci_runs_exactly_the_readme_test_command():
    cmds = _readme_commands()
    assert len(cmds) == 2, cmds
    assert "pytest" in cmds[1] and "gradversary run dann" in cmds[0]
    ci = [ln.strip() for ln in (ROOT / ".ci" / "run").read_text().splitlines()
          if ln.strip() and not ln.lstrip().startswith("#")]
    assert cmds[1] in ci


def test_moons_yaml_configs_match_the_recipe():
    recipe = RECIPES.get("dann").factory()
    for label, fname in [("source-only", "erm.yaml"), ("DANN", "dann.yaml")]:
        from_yaml = resolve_config(yaml.safe_load((ROOT / "configs" / "moons" / fname).read_text()))
        from_recipe = resolve_config(recipe.configs[label], [f"{k}=0" for k in recipe.seed_keys])
        assert from_yaml.to_dict() == from_recipe.to_dict(), fname


def test_every_config_file_resolves():
    for path in sorted((ROOT / "configs").rglob("*.yaml")):
        if path.parent.name != "bench":  # suite specs: tests/test_bench.py
            load_config(path)


def test_every_benchmark_script_imports():
    """Each script under benchmarks/ imports what it needs (a module move once broke one)."""
    import ast
    import importlib

    for path in sorted((ROOT / "benchmarks").glob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gradversary"):
                mod = importlib.import_module(node.module)
                missing = [a.name for a in node.names if not hasattr(mod, a.name)
                           and importlib.util.find_spec(f"{node.module}.{a.name}") is None]
                assert not missing, f"{path.name}: {node.module} has no {missing}"


@pytest.mark.parametrize("script,args,table", [
    ("digits_step_time.py", ["--steps", "1", "--threads", "1"], "| recipe | ours (ms / step) |"),
    ("great_step_time.py", ["--steps", "1", "--skip", "pgd_at"], "| method | ms / step | x ERM |"),
    ("great_step_time.py", ["--steps", "1", "--network", "resnet_cifar10", "--skip",
                            "pgd_at,adversarial_training,fast_at,greace,greace_prob,great_greace,great_greace_prob"],
     "| GREAT | "),
    ("step_time.py", ["--suite", "dann", "--repeats", "1", "--steps", "1", "--threads", "1"],
     "| network | ERM (ms / step) |")])
def test_step_time_benchmarks_run_and_write_their_results_file(script, args, table, tmp_path):
    """The step-time benchmarks run end to end on one timed round (they read the configs the
    suites use, so a config change that breaks them shows here) and write a results file with
    the command that made it and the targets' verdicts."""
    import subprocess
    import sys

    out_file = tmp_path / "r.md"
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), *args, "--out", str(out_file)],
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "x ERM" in out.stdout or "DANN/ERM" in out.stdout
    text = out_file.read_text()
    assert f"- command: `python benchmarks/{script} " in text and "- commit: `" in text
    assert table in text and ("met" in text or "missed" in text) and "Load average" in text
