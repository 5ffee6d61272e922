import math

import pytest

from gradversary.selection import DEFAULT_VALIDATORS, choose_by_validators

# snd ranks 1..4 -> (0, 1/3, 2/3, 1); source_val -> (1, 1/3, 2/3, 0); mean (1/2, 1/3, 2/3, 1/2)
HISTORY = [{"step": 0},  # evaluated before the validators were on: not a candidate
           {"step": 1, "score_snd": 0.1, "score_source_val": 0.9},
           {"step": 2, "score_snd": 0.5, "score_source_val": 0.5},
           {"step": 3, "score_snd": 0.8, "score_source_val": 0.8},
           {"step": 4, "score_snd": 0.9, "score_source_val": 0.1}]


def test_rank_mean_of_validators_picks_the_compromise_neither_alone_picks():
    assert choose_by_validators(HISTORY, "snd+source_val")["step"] == 3
    assert choose_by_validators(HISTORY, "snd")["step"] == 4
    assert choose_by_validators(HISTORY, "source_val")["step"] == 1


def test_ties_take_the_first_and_non_finite_scores_rank_lowest():
    hist = [{"step": 1, "score_a": 0.2}, {"step": 2, "score_a": math.nan}, {"step": 3, "score_a": 0.2}]
    assert choose_by_validators(hist, "a")["step"] == 1
    assert choose_by_validators([{"step": 1, "score_a": math.nan}, {"step": 2, "score_a": -5.0}], "a")["step"] == 2


def test_missing_scores_or_empty_criterion_raise():
    with pytest.raises(ValueError, match="score_ent"):
        choose_by_validators(HISTORY, "snd+ent")
    with pytest.raises(ValueError, match="empty"):
        choose_by_validators(HISTORY, "")


def test_last_scores_the_step_as_in_the_ranking():
    # source_val ranks (1, 1/3, 2/3, 0), the step (0, 1/3, 2/3, 1): mean (1/2, 1/3, 2/3, 1/2)
    assert choose_by_validators(HISTORY, "source_val+last")["step"] == 3
    assert choose_by_validators(HISTORY, "last")["step"] == 4


def test_the_default_is_the_rankings_choice():
    """DEFAULT_VALIDATORS is the criterion docs/results/validators.md chose (its JSON twin)."""
    import json
    from pathlib import Path

    res = json.loads((Path(__file__).resolve().parents[1] / "docs" / "results" / "validators.json").read_text())
    assert DEFAULT_VALIDATORS == res["ranking"]["default"]


def test_rank_across_runs_pools_evaluations_with_last_as_the_share_of_each_schedule():
    from gradversary.selection.rules import rank_across_runs

    x = [{"step": 1, "score_a": 0.5}, {"step": 2, "score_a": 0.1}]      # total 2: shares 0.5, 1
    y = [{"step": 5, "score_a": 0.05}, {"step": 10, "score_a": 0.9}]    # total 10: shares 0.5, 1
    ranked = rank_across_runs({"x": (x, 2), "y": (y, 10)}, "a+last")
    # a's ranks over the pool, (r - 1) / 3: x1 2/3, x2 1/3, y1 0, y2 1; the shares tie in pairs:
    # 1/6 for 0.5, 5/6 for 1. Means: x1 5/12, x2 7/12, y1 1/12, y2 11/12 (with the raw step as
    # `last`, y's steps 5 and 10 would outrank both of x's)
    assert [(h["run"], h["step"]) for h in ranked] == [("y", 10), ("x", 2), ("x", 1), ("y", 5)]
    assert [h["combined"] for h in ranked] == pytest.approx([11 / 12, 7 / 12, 5 / 12, 1 / 12])
    assert ranked[0]["share"] == 1.0
    # one validator alone: its raw score, unaffected by the runs' lengths
    assert [h["score_a"] for h in rank_across_runs({"x": (x, 2), "y": (y, 10)}, "a")] == [0.9, 0.5, 0.1, 0.05]
    with pytest.raises(ValueError, match="total steps"):
        rank_across_runs({"x": (x, 0)}, "a")
    with pytest.raises(ValueError, match="score_b"):
        rank_across_runs({"x": (x, 2)}, "b+last")


def test_select_command_ranks_run_directories_without_reading_target_labels(tmp_path, capsys):
    import json

    from gradversary.cli.main import main

    for name, scores in (("short", [0.2, 0.6]), ("long", [0.4, 0.5, 0.3])):
        d = tmp_path / name
        d.mkdir()
        n = len(scores)
        rows = []
        for i, a in enumerate(scores, 1):
            rows.append({"kind": "train", "step": 10 * i, "p": i / (n + (name == "long"))})
            rows.append({"kind": "eval", "step": 10 * i, "score_a": a, "target_test_acc": 1.0 - a})
        (d / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert main(["select", str(tmp_path / "short"), str(tmp_path / "long"), "--criterion", "a"]) == 0
    out = capsys.readouterr().out
    assert f"chosen: {tmp_path / 'short'} at step 20" in out and "target_test_acc" not in out
    assert main(["select", str(tmp_path / "nothing")]) == 2
