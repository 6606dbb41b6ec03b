"""Handing freed heap memory back: glibc's malloc_trim where it exists, nothing elsewhere."""

from __future__ import annotations

import pytest

from fcn_deploy import heap

pytestmark = pytest.mark.runtime  # runs in the runtime install (no PyTorch) too


class FakeLibc:
    def __init__(self) -> None:
        self.calls: list[int] = []

    def malloc_trim(self, pad: int) -> int:
        self.calls.append(pad)
        return 1


def test_freed_heap_is_trimmed_with_glibc(monkeypatch):
    libc = FakeLibc()
    monkeypatch.setattr(heap.sys, "platform", "linux")
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: libc)
    heap.return_freed_heap()
    assert libc.calls == [0]


@pytest.mark.parametrize("platform, libc", [("linux", object()), ("darwin", FakeLibc())])
def test_nothing_happens_without_glibc(monkeypatch, platform, libc):
    monkeypatch.setattr(heap.sys, "platform", platform)
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: libc)
    heap.return_freed_heap()  # a C library without malloc_trim (musl), or another system: no error, no call
    assert getattr(libc, "calls", []) == []
