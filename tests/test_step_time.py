import time

import pytest
import torch

from gradversary.analysis.step_time import interleaved_step_times


class _Fake:
    """A trainer whose step sleeps ``cost`` seconds and records the batches it got."""

    def __init__(self, cost: float):
        self.cost, self.seen, self.drawn = cost, [], 0

    def _next_batch(self):
        self.drawn += 1
        return ("own", self.drawn)

    def train_step(self, batch):
        self.seen.append(batch)
        time.sleep(self.cost)


def test_interleaved_step_times_orders_costs_and_steps_in_turn():
    fast, slow = _Fake(0.002), _Fake(0.012)
    threads = torch.get_num_threads()
    med = interleaved_step_times({"fast": fast, "slow": slow}, steps=4, batch="B", threads=1)
    assert torch.get_num_threads() == threads
    assert set(med) == {"fast", "slow"}
    assert med["slow"] > 2.5 * med["fast"] and med["fast"] >= 0.002
    assert fast.seen == ["B"] * 5 and slow.seen == ["B"] * 5 and fast.drawn == 0  # warm-up + 4


def test_interleaved_step_times_draws_own_batches_and_rejects_nothing_to_time():
    t = _Fake(0.0)
    interleaved_step_times({"t": t}, steps=2)
    assert t.seen == [("own", 1), ("own", 2), ("own", 3)]
    with pytest.raises(ValueError, match="at least one"):
        interleaved_step_times({"t": t}, steps=0)
    with pytest.raises(ValueError, match="at least one"):
        interleaved_step_times({}, steps=3)
