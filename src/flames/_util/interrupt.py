"""Ctrl-C and SIGTERM for the command line: both stop a command the same way, and its exit code
says which one it was (130 for Ctrl-C, 143 for SIGTERM, as shells report them).

Only the standard library is imported here: the entry point installs the handler before the
heavy imports, so that a signal in the first second is handled like one in the middle.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import sys
import threading
import time
from types import FrameType

INTERRUPTED = 130
"""Exit code after Ctrl-C (SIGINT)."""
TERMINATED = 143
"""Exit code after SIGTERM."""

THREAD_PREFIX = "flames-"
"""Name prefix of the worker threads flames starts (`flames._util.aio.in_thread`)."""

_received: list[int] = []
_program: list[bool] = []
"""Holds True once the `flames` program itself installed the handler (not a caller of
`flames.cli.main` in its own process): only then may an interrupted command end the process."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    """SIGTERM does what Ctrl-C does: whatever handles SIGINT now (Python's, which raises
    KeyboardInterrupt, or a running event loop's, which cancels its main task) handles it."""
    _received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signal.SIGINT, frame)
    else:
        raise KeyboardInterrupt


def _note(signum: int, frame: FrameType | None) -> None:
    _received.append(signum)


def defer() -> None:
    """From now until `resume`, Ctrl-C and SIGTERM are only noted. For the imports at start:
    an exception raised in the middle of one can break a compiled module's initialisation
    (pydantic-core's panics), where a signal noted is acted on a moment later."""
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, _note)


def resume(program: bool = False) -> bool:
    """Handle Ctrl-C and SIGTERM again (`install`); whether one came while they were deferred."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    install(program)
    return bool(_received)


def ending(code: object) -> None:
    """The command has ended with `code` (SystemExit's): a signal from now on, while the
    interpreter shuts down, ends the process at once with that code, with no traceback."""
    number = code if isinstance(code, int) else 0 if code is None else 1

    def end(signum: int, frame: FrameType | None) -> None:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(number)

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, end)


def install(program: bool = False) -> None:
    """Handle SIGTERM as Ctrl-C, from now on (main thread only); `program` when this process is
    the `flames` command itself."""
    signal.signal(signal.SIGTERM, _on_sigterm)
    if program:
        _program.append(True)


def exit_code() -> int:
    """The exit code of an interrupted command: 143 if SIGTERM stopped it, else 130."""
    return TERMINATED if signal.SIGTERM in _received else INTERRUPTED


def finish(code: int, grace: float = 0.5) -> None:
    """Exit with `code` after an interruption, without waiting on work that cannot stop.

    Further signals are ignored from here on: the command is already stopping, and one more
    Ctrl-C during the interpreter's shutdown would print a traceback. flames' worker threads
    get up to `grace` seconds in all to end. In the `flames` program, the process then ends at
    once, once the exit handlers have run and the output is flushed: neither a thread still
    busy (a model loading, a function of the user's) nor the slow teardown of the modules
    loaded (torch takes seconds) holds it up. Called from Python, it raises SystemExit.
    """
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    deadline = time.monotonic() + grace
    for thread in threading.enumerate():
        if thread.name.startswith(THREAD_PREFIX):
            thread.join(max(0.0, deadline - time.monotonic()))
    if not _program:
        raise SystemExit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(code)
