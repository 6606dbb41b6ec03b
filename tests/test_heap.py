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


class LibcWithoutTrim:
    """A C library without malloc_trim (musl): nothing to call, and nothing may fail."""


def test_a_c_library_without_malloc_trim_is_left_alone(monkeypatch):
    opened: list[object] = []
    monkeypatch.setattr(heap.sys, "platform", "linux")
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: opened.append(name) or LibcWithoutTrim())
    heap.return_freed_heap()  # no AttributeError
    assert opened == [None]  # the process's own C library was asked


def test_other_systems_do_not_open_a_c_library(monkeypatch):
    libc = FakeLibc()
    opened: list[object] = []
    monkeypatch.setattr(heap.sys, "platform", "darwin")
    monkeypatch.setattr(heap.ctypes, "CDLL", lambda name: opened.append(name) or libc)
    heap.return_freed_heap()
    assert opened == [] and libc.calls == []
