"""Stop signals raise KeyboardInterrupt inside the block, are named, and the previous handlers come back."""

from __future__ import annotations

import signal
import threading

import pytest

from fcn_deploy.interrupts import signals_interrupt

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


def test_a_signal_interrupts_is_named_and_the_handler_is_restored(own_process) -> None:
    if own_process:  # it signals its own process
        return
    before = signal.getsignal(signal.SIGUSR1)
    with pytest.raises(KeyboardInterrupt), signals_interrupt(signal.SIGUSR1) as received:
        signal.raise_signal(signal.SIGUSR1)
    assert received == ["SIGUSR1"]
    assert signal.getsignal(signal.SIGUSR1) == before


def test_off_the_main_thread_nothing_is_installed() -> None:
    seen = []

    def body() -> None:
        with signals_interrupt(signal.SIGUSR2) as received:
            seen.append((received, signal.getsignal(signal.SIGUSR2)))

    worker = threading.Thread(target=body)
    worker.start()
    worker.join()
    assert seen == [([], signal.getsignal(signal.SIGUSR2))]


def test_an_ignored_signal_stays_ignored():
    previous = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        with signals_interrupt(signal.SIGUSR2):
            assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
        assert signal.getsignal(signal.SIGUSR2) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGUSR2, previous)
