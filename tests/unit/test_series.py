"""Series thinning keeps what a person must see."""

from __future__ import annotations

from emulator.series import EnvelopeSampler, Series

NS = 1_000_000_000


def test_thinning_keeps_a_one_step_spike_and_the_final_value() -> None:
    series = Series()
    trees = [{"p": {"w": 50.0 + (713.0 if t == 1801 else 0.0)}, "soc": 0.9 - t * 1e-5} for t in range(7201)]
    sampler = EnvelopeSampler(series, 60 * NS, ["p.w"], trees[0])
    for t, tree in enumerate(trees):
        sampler.observe(t * NS, tree)
    sampler.flush(7200 * NS, trees[-1])
    w = series.get("p.w")
    assert w.max() == 763.0 and w.min() == 50.0
    assert len(series) < 7201 / 30  # thinned: about one row a minute, plus the spike's window
    spike_t = series.time()[w.argmax()]
    assert 1800 - 60 <= spike_t <= 1800 + 60
    assert series.time()[-1] == 7200 and series.get("soc")[-1] == trees[-1]["soc"]
    assert list(series.time()) == sorted(series.time())


def test_thinning_a_flat_signal_adds_no_rows() -> None:
    series = Series()
    sampler = EnvelopeSampler(series, 10 * NS, ["x"], {"x": 1.0})
    for t in range(101):
        sampler.observe(t * NS, {"x": 1.0})
    assert len(series) == 11
