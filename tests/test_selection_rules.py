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
