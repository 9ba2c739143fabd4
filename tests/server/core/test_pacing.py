"""Refusal pacing on a clock of our own: the answers are fixed by construction."""

import pytest

from server.core.pacing import RefusalPacer


def test_a_burst_is_answered_at_once_then_refusals_take_turns():
    pacer = RefusalPacer(refusals_per_s=10, max_waiting_bytes=1 << 20, burst_s=0.2)
    waits = [pacer.delay_s(100, deadline=None, now=5.0) for _ in range(6)]
    assert waits[:3] == [0.0, 0.0, 0.0]  # 0.2 s of tolerance: the first three at once
    assert waits[3:] == pytest.approx([0.1, 0.2, 0.3])


def test_a_quiet_spell_restores_the_burst_but_no_more():
    pacer = RefusalPacer(refusals_per_s=10, max_waiting_bytes=1 << 20, burst_s=0.2)
    for _ in range(10):
        pacer.delay_s(100, None, now=0.0)
    assert [pacer.delay_s(100, None, now=100.0) for _ in range(4)] == pytest.approx([0.0, 0.0, 0.0, 0.1])


def test_a_refusal_never_waits_past_the_deadline():
    pacer = RefusalPacer(refusals_per_s=1, max_waiting_bytes=1 << 20, burst_s=0.0)  # a tolerance of one turn
    assert [pacer.delay_s(100, deadline=10.5, now=10.0) for _ in range(2)] == [0.0, 0.0]
    assert pacer.delay_s(100, deadline=10.5, now=10.0) == pytest.approx(0.45)  # its turn is 1 s away
    assert pacer.delay_s(100, deadline=10.01, now=10.0) == 0.0


def test_waiting_bytes_are_capped():
    pacer = RefusalPacer(refusals_per_s=1, max_waiting_bytes=1000, burst_s=0.0)
    assert [pacer.delay_s(10, None, now=0.0) for _ in range(2)] == [0.0, 0.0]
    pacer.waiting_bytes = 900
    assert pacer.delay_s(200, None, now=0.0) == 0.0  # would hold 1100 bytes: answered at once
    assert pacer.delay_s(50, None, now=0.0) == pytest.approx(1.0)  # the turn was not taken by the one above


def test_zero_means_no_pacing():
    pacer = RefusalPacer(refusals_per_s=0, max_waiting_bytes=0)
    assert all(pacer.delay_s(10, None, now=0.0) == 0.0 for _ in range(100))
