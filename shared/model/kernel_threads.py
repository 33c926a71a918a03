"""Threads of the native kernels, kept apart from torch's own.

The event-driven convolutions split their images over Python threads (the kernels'
ctypes calls release the GIL). torch's OpenMP workers spin for a while after each
parallel operation before they sleep, so with both on the same cores the kernels' threads
wait for cores that spinning workers hold: on 2 cores a decode of the bundled SNN took
181 ms with torch at 2 threads against 210 ms at 1 (docs/RESULTS.md). Inside
:func:`native_threading` torch runs its own operations on one thread, where no worker
spins, and the kernels split their work over the threads torch was set to, or over
those a process gave them (:func:`set_kernel_threads`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from contextvars import ContextVar

import torch

_kernel_threads: ContextVar[int | None] = ContextVar("kernel_threads", default=None)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` workers (the kernels' ctypes calls release the GIL)."""
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="spikes")


def kernel_threads() -> int:
    """How many threads the native kernels split their work over: as set by
    :func:`set_kernel_threads`, else those torch was set to outside
    :func:`native_threading`, else torch's current count."""
    return _kernel_threads.get() or torch.get_num_threads()


def set_kernel_threads(threads: int) -> None:
    """Give the native kernels ``threads`` threads from now on in this thread's context,
    whatever torch's count. Idle kernel threads sleep rather than spin, so a process may
    give them more cores than torch (a link process: all of them, docs/RESULTS.md)."""
    _kernel_threads.set(threads)


@contextmanager
def native_threading() -> Iterator[None]:
    """Run the enclosed pass with torch's operations on one thread and the native
    kernels on :func:`kernel_threads` threads; restores torch's count afterwards.

    torch's thread count is global to the process: other threads that run torch
    operations meanwhile get one thread too.
    """
    before = torch.get_num_threads()
    token = _kernel_threads.set(kernel_threads())
    torch.set_num_threads(1)
    try:
        yield
    finally:
        _kernel_threads.reset(token)
        torch.set_num_threads(before)


def split_over_threads(
    run: Callable[[int, int], int], items: int, grain: int = 1
) -> int:
    """``run(i0, i1)`` over ``range(items)`` cut into contiguous ranges, one per kernel
    thread and each of at least ``grain`` items (fewer threads where there are too few
    items), on a pool where there is more than one; the sum of what the calls return."""
    threads = max(1, min(kernel_threads(), items // grain))
    if threads == 1:
        return run(0, items)
    bounds = [items * i // threads for i in range(threads + 1)]
    return sum(_pool(threads).map(lambda b: run(*b), zip(bounds[:-1], bounds[1:])))
