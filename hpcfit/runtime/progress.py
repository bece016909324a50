"""Progress of a run on rank 0: units done / total, rate and ETA.

On a terminal it redraws one status line; in a batch job (stderr not a terminal, e.g. a SLURM log) it writes a
plain log line every ``interval`` seconds, plus one at the end, so logs stay readable.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import TextIO


def format_duration(seconds: float) -> str:
    """h:mm:ss for a number of seconds."""
    if seconds != seconds or seconds == float("inf"):
        return "?"
    seconds = int(round(seconds))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class Progress:
    """Thread-safe progress counter that reports itself."""

    def __init__(self, total: int, unit: str = "items", *, mode: str = "auto", interval: float = 30.0,
                 label: str = "hpcfit", stream: TextIO | None = None, enabled: bool = True):
        self.total = max(int(total), 0)
        self.unit = unit
        self.stream = stream or sys.stderr
        if mode == "auto":
            mode = "bar" if getattr(self.stream, "isatty", lambda: False)() else "log"
        self.mode = mode if enabled else "none"
        self.interval = interval if self.mode == "log" else 0.2
        self.label = label
        self.done = 0
        self.start = time.monotonic()
        self._last = self.start
        self._lock = threading.Lock()

    def advance(self, n: int) -> None:
        with self._lock:
            self.done += int(n)
            now = time.monotonic()
            if self.mode != "none" and now - self._last >= self.interval and self.done < self.total:
                self._last = now
                self._emit(now, final=False)

    def finish(self, stopped: bool = False) -> None:
        with self._lock:
            if self.mode != "none":
                self._emit(time.monotonic(), final=True, stopped=stopped)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def _emit(self, now: float, final: bool, stopped: bool = False) -> None:
        elapsed = now - self.start
        rate = self.done / elapsed if elapsed > 0 else 0.0
        remaining = (self.total - self.done) / rate if rate > 0 else float("inf")
        frac = self.done / self.total if self.total else 1.0
        counts = f"{self.done:,}/{self.total:,} {self.unit} ({100 * frac:5.1f}%)"
        speed = f"{rate:,.0f} {self.unit}/s" if rate >= 10 else f"{rate:.2f} {self.unit}/s"
        if self.mode == "bar":
            width = 30
            filled = int(width * frac)
            bar = "#" * filled + "-" * (width - filled)
            tail = (f"{'stopped' if stopped else 'elapsed'} {format_duration(elapsed)}" if final
                    else f"ETA {format_duration(remaining)}")
            self.stream.write(f"\r{self.label} [{bar}] {counts} {speed} {tail}" + ("\n" if final else ""))
        else:
            tail = (f"{'stopped after' if stopped else 'done in'} {format_duration(elapsed)}" if final
                    else f"elapsed {format_duration(elapsed)}, ETA {format_duration(remaining)}")
            self.stream.write(f"{self.label}: {counts}, {speed}, {tail}\n")
        self.stream.flush()
