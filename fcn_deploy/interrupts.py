"""Stop signals as KeyboardInterrupt: long work stops the same way on Ctrl-C and SIGTERM, and knows which came."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


@contextlib.contextmanager
def signals_interrupt(*signums: int) -> Iterator[list[str]]:
    """Within the block each of ``signums`` raises KeyboardInterrupt; the yielded list gets their names as they come.

    Handlers can only be set on the main thread; elsewhere the block runs with the process's handlers unchanged.
    A signal the process was told to ignore (``nohup``, a supervisor) stays ignored.
    """
    received: list[str] = []
    if threading.current_thread() is not threading.main_thread():
        yield received
        return

    def interrupt(signum: int, frame: object) -> None:
        received.append(signal.Signals(signum).name)
        raise KeyboardInterrupt

    previous = {signum: signal.signal(signum, interrupt) for signum in signums
                if signal.getsignal(signum) is not signal.SIG_IGN}
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
