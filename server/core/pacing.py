"""Refusal pacing: under a retry storm, a refused caller hears "no" at its turn, not at once.

Saying no costs the server a few tenths of a millisecond of its event loop per call (the gRPC
machinery, the access log, the metrics). Clients that retry a refusal at once, ignoring the pushback
hint, turn that into a loop as fast as the server can refuse: on a small machine the event loop then
takes half of the core the model runs on, and goodput halves (issue 10). Cheaper refusals do not
help: the clients only retry faster. Bounding the *rate* of refusals does: each refusal takes a turn
from a token bucket, and a call that finds the bucket empty waits for its turn (a timer, no CPU)
before it is answered. A client that retries at once is then slowed to the pace the server can
afford, as if it had honoured the hint; polite clients are barely affected, since they come back at
the hinted time.

Waiting refusals hold their request in memory, so the bytes waiting are capped: beyond the cap a
refusal is answered at once (the storm then costs CPU again, never memory). A refusal never waits
past its caller's deadline.
"""

from __future__ import annotations

import time


class RefusalPacer:
    """A token bucket in its GCRA form: `_turn` is the theoretical time of the next refusal."""

    def __init__(self, refusals_per_s: float, max_waiting_bytes: int, burst_s: float = 0.1) -> None:
        self.refusals_per_s = refusals_per_s
        self.max_waiting_bytes = max_waiting_bytes
        self.interval_s = 1.0 / refusals_per_s if refusals_per_s > 0 else 0.0
        self.tolerance_s = max(burst_s, self.interval_s)
        """How far ahead of its turn a refusal may be answered: the burst after a quiet spell."""
        self._turn = 0.0
        self.waiting_bytes = 0
        """Bytes of the requests whose refusal is waiting now (kept by the caller of `delay_s`)."""

    def delay_s(self, request_bytes: int, deadline: float | None, now: float | None = None) -> float:
        """How long this refusal waits before it is answered (0 = at once); takes its turn."""
        if self.refusals_per_s <= 0:
            return 0.0
        now = time.monotonic() if now is None else now
        turn = max(self._turn, now)
        wait = turn - self.tolerance_s - now
        if wait > 0 and self.waiting_bytes + request_bytes > self.max_waiting_bytes:
            return 0.0  # memory first: answered at once, without taking a turn
        self._turn = turn + self.interval_s
        if deadline is not None:
            wait = min(wait, deadline - now - 0.05)  # heard before the caller gives up
        return max(0.0, wait)
