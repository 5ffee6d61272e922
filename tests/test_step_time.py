import pytest
import torch

from gradversary.analysis.step_time import interleaved_step_times


class _Clock:
    """A fake ``time.perf_counter`` that only the fake steps move: the measured times are exact
    whatever the machine's load."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


CLOCK = _Clock()


@pytest.fixture(autouse=True)
def _fake_clock(monkeypatch):
    import gradversary.analysis.step_time as st

    monkeypatch.setattr(st.time, "perf_counter", CLOCK)


class _Fake:
    """A trainer whose step takes ``cost`` seconds of the fake clock (the first ``extra`` on
    its warm-up step) and records the batches it got."""

    def __init__(self, cost: float, warmup: float = 0.0):
        self.cost, self.warmup, self.seen, self.drawn = cost, warmup, [], 0

    def _next_batch(self):
        self.drawn += 1
        return ("own", self.drawn)

    def train_step(self, batch):
        self.seen.append(batch)
        CLOCK.now += self.cost + (self.warmup if len(self.seen) == 1 else 0.0)


def test_interleaved_step_times_orders_costs_and_steps_in_turn():
    fast, slow = _Fake(0.002, warmup=5.0), _Fake(0.012)
    threads = torch.get_num_threads()
    med = interleaved_step_times({"fast": fast, "slow": slow}, steps=4, batch="B", threads=1)
    assert torch.get_num_threads() == threads
    assert set(med) == {"fast", "slow"}
    # medians of the timed steps only: the slow warm-up step is left out
    assert med["slow"] == pytest.approx(0.012) and med["fast"] == pytest.approx(0.002)
    assert fast.seen == ["B"] * 5 and slow.seen == ["B"] * 5 and fast.drawn == 0  # warm-up + 4


def test_interleaved_step_times_draws_own_batches_and_rejects_nothing_to_time():
    t = _Fake(0.0)
    interleaved_step_times({"t": t}, steps=2)
    assert t.seen == [("own", 1), ("own", 2), ("own", 3)]
    with pytest.raises(ValueError, match="at least one"):
        interleaved_step_times({"t": t}, steps=0)
    with pytest.raises(ValueError, match="at least one"):
        interleaved_step_times({}, steps=3)
