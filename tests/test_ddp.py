"""Two gloo ranks must reproduce one process on the global batch, double backprop included."""

import _ddp_helpers as H
import pytest
import torch

from gradversary.engine.distributed import spawn_ranks, wrap_ddp


def _two_ranks(reduction, tmp_path):
    spawn_ranks(H.rank_main, 2, reduction, str(tmp_path))
    return [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2)]


def _gap(a, b):
    return max(float((a[k] - b[k]).abs().max()) for k in a)


# fast AT draws its start as PGD-AT does (uniform_like with the shard; the unit test below checks
# the rows): its two-rank run is in the slow suite
@pytest.mark.parametrize("reduction", ["sum", "mean", "great_greace", "augment", "pgd_at",
                                       pytest.param("fast_at", marks=pytest.mark.slow)])
def test_two_gloo_ranks_match_single_process_only_with_sum_reduced_input_gradient(tmp_path, reduction):
    _, single = H.final_params(reduction, str(tmp_path / "single"))
    r0, r1 = _two_ranks(reduction, tmp_path)
    assert _gap(r0, r1) == 0.0  # the ranks stay in sync
    if reduction == "great_greace":  # the auxiliary network is compared too
        assert any(k.startswith("aux.") for k in r0)
    gap = _gap(single, r0)
    if reduction != "mean":  # double backprop, GRE(AT+CE) with its auxiliary network, augmentation,
        # random starts
        assert gap <= 1e-6, f"DDP differs from one process by {gap:.2e}"
    else:
        # the trap: the mean-reduced input gradient scales with the local batch size
        assert gap > 1e-4, "mean-reduced input gradient unexpectedly matched"


def test_static_graph_is_refused():
    with pytest.raises(ValueError, match="static_graph"):
        wrap_ddp(torch.nn.Linear(2, 2), static_graph=True)


def test_each_rank_keeps_its_rows_of_the_global_batch_noise():
    from gradversary.attacks.base import uniform_like
    from gradversary.functional.distill import random_directions

    def gen():
        return torch.Generator().manual_seed(3)

    whole = uniform_like(torch.zeros(12, 2), -1.0, 1.0, gen())
    parts = [uniform_like(torch.zeros(4, 2), -1.0, 1.0, gen(), (r, 3)) for r in range(3)]
    assert torch.equal(torch.cat(parts), whole)
    assert not torch.equal(parts[0], parts[1])  # the ranks' starts differ
    dirs = random_directions(torch.zeros(8, 5), 3, gen())
    assert torch.equal(torch.cat([random_directions(torch.zeros(4, 5), 3, gen(), (r, 2)) for r in range(2)]), dirs)
    with pytest.raises(ValueError, match="rank"):
        uniform_like(torch.zeros(4, 2), 0.0, 1.0, None, (2, 2))


def test_ddp_with_batchnorm_is_flagged_as_not_the_single_process_run():
    from gradversary.engine.trainer import shard_batchnorm_note

    bn = torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3), torch.nn.BatchNorm2d(2))
    assert "BatchNorm normalises each rank's 64 examples, not the global batch of 128" in shard_batchnorm_note(bn, 2, 128)
    assert shard_batchnorm_note(bn, 1, 128) is None
    assert shard_batchnorm_note(torch.nn.Linear(2, 2), 2, 128) is None
