"""Progress of a long step (generate, score, redteam): a bar on a terminal, plain log lines
elsewhere (CI logs, nohup), and a word on how long the whole step will take once its first
batch is done."""

from __future__ import annotations

import os
import threading
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

INTERVAL_ENV = "FLAMES_PROGRESS_INTERVAL"
"""Seconds between two progress lines when the output is not a terminal (default 10)."""
DEFAULT_INTERVAL = 10.0
INTERVAL_BOUNDS = (1.0, 3600.0)


def log_interval() -> float:
    """The seconds between two progress lines: FLAMES_PROGRESS_INTERVAL, kept within 1 s and an
    hour; the default where it is unset or not a number."""
    try:
        seconds = float(os.environ.get(INTERVAL_ENV, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL
    if seconds != seconds:  # NaN
        return DEFAULT_INTERVAL
    return min(max(seconds, INTERVAL_BOUNDS[0]), INTERVAL_BOUNDS[1])


def duration(seconds: float) -> str:
    """A duration for people: 42s, 3m05s, 2h07m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class Tracker:
    """Counts a step's finished units (answers, verdicts, attacks) and shows how far it is.

    On a terminal: a progress bar. Otherwise: a line every few seconds (`log_interval`) with
    done/total, the rate and the time left, and one when the step ends. Either way, once the
    first `first_batch` units are done, one line says how long the whole step should take.
    Counts named in `fields` (errors, successes ...; a mapping gives their first values) are
    shown as `field_format` says. A step resumed with `done` units done already counts its
    rate from there.
    """

    def __init__(
        self,
        label: str,
        total: int,
        *,
        enabled: bool = True,
        unit: str = "answers",
        first_batch: int | None = None,
        fields: tuple[str, ...] | dict[str, Any] = (),
        field_format: str = "{value} {name}",
        done: int = 0,
        console: Console | None = None,
        interval: float | None = None,
    ) -> None:
        self.label, self.total, self.unit = label, total, unit
        self.enabled = enabled and total > 0
        self.first_batch = first_batch
        self.fields = dict(fields) if isinstance(fields, dict) else dict.fromkeys(fields, 0)
        self.field_format = field_format
        self.done = self._initial = done
        self.console = console or Console(stderr=True, emoji=False, highlight=False)
        self.interval = interval if interval is not None else log_interval()
        shown = Console()  # what decides: is the output read live (a terminal, a notebook)?
        self.lines = not (shown.is_terminal or shown.is_jupyter)
        self._started = time.monotonic()
        self._announced = False
        self._bar: Progress | None = None
        self._task: Any = None
        self._ticker: threading.Thread | None = None
        self._stop = threading.Event()

    def __enter__(self) -> Tracker:
        self._started = time.monotonic()
        if not self.enabled:
            return self
        if self.lines:
            self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
            self._ticker.start()
        else:
            shown = " ".join(
                self.field_format.format(name=name, value=f"{{task.fields[{name}]}}") + ","
                for name in self.fields
            )
            self._bar = Progress(
                TextColumn(f"[bold]{self.label}[/]"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn(shown.rstrip(",")),
                TimeRemainingColumn(),
            )
            self._bar.__enter__()
            self._task = self._bar.add_task(
                self.label, total=self.total, completed=self.done, **self.fields
            )
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join()
            if kind is None:
                self._say(self._line(finished=True))
        if self._bar is not None:
            self._bar.__exit__(kind, error, trace)

    def advance(self, n: int = 1, **counts: int | str) -> None:
        """`n` more units are done; `counts` are the new values of the shown fields."""
        self.done += n
        self.fields.update(counts)
        if self._bar is not None:
            self._bar.update(self._task, advance=n, **counts)
        if (
            self.enabled
            and not self._announced
            and self.first_batch
            and self.done - self._initial >= min(self.first_batch, self.total - self._initial)
            and self.done < self.total
        ):
            self._announced = True
            elapsed = time.monotonic() - self._started
            left = elapsed / (self.done - self._initial) * (self.total - self.done)
            self._say(
                f"{self.label}: the first {self.done - self._initial} {self.unit} took "
                f"{duration(elapsed)}; "
                f"all {self.total} should take about {duration(elapsed + left)} "
                f"({duration(left)} more)"
            )

    def _say(self, line: str) -> None:
        """One line, above the bar while there is one (soft-wrapped: a log keeps it whole)."""
        console = self._bar.console if self._bar is not None else self.console
        console.print(line, soft_wrap=True)

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            self._say(self._line())

    def _line(self, finished: bool = False) -> str:
        elapsed = time.monotonic() - self._started
        counts = "".join(
            ", " + self.field_format.format(name=name, value=value)
            for name, value in self.fields.items()
        )
        share = f"{self.done}/{self.total} {self.unit} ({self.done / self.total:.0%}){counts}"
        if finished:
            return f"{self.label}: {share} in {duration(elapsed)}"
        if self.done == self._initial:
            return f"{self.label}: {share}, {duration(elapsed)} so far; time left not known yet"
        rate = (self.done - self._initial) / elapsed if elapsed > 0 else 0.0
        left = (self.total - self.done) / rate if rate else 0.0
        speed = f"{rate:.2f}/s" if rate >= 0.1 else f"{rate * 60:.2f}/min"
        return f"{self.label}: {share}, {speed}, about {duration(left)} left"
