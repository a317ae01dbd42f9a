"""Per-phase wall-clock timing of benchmark steps: the Python side of `temporal bench`'s
`train_phases_ms` / `infer_phases_ms` (temporal/src/step.rs, `Phases`).

What it does: `Phases` adds up the seconds a step spends between named laps (gather, forward,
loss, backward, update; inference: gather, forward, outputs) over the timed steps and reports
the mean milliseconds per step, with the same names and boundaries as the Rust side, so that
scripts/bench_temporal_table.py can set the two beside each other. On the CPU PyTorch runs each
operation before returning, so a phase's time is its own.

What it does not: time anything by itself, or synchronise a GPU.
"""
import time


class Phases:
    """Seconds per named phase, added up over steps."""

    def __init__(self):
        self.seconds = {}
        self.steps = 0
        self._t = None

    def start(self, at=None):
        """Starts the clock of a step (or of a part of it), now or at the perf_counter `at`."""
        self._t = time.perf_counter() if at is None else at

    def lap(self, name):
        """Adds the seconds since the last start or lap to `name`."""
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self._t
        self._t = now

    def add(self, name, seconds):
        """Adds `seconds` to `name`."""
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def step_done(self):
        """Counts one finished step."""
        self.steps += 1

    def mean_ms(self):
        """Milliseconds per step of each phase (2 decimals), by name."""
        n = max(self.steps, 1)
        return {k: round(v * 1000.0 / n, 2) for k, v in sorted(self.seconds.items())}
