"""A SQLite store's memory and WAL stay bounded however many threads read and write.

A service worker answers reads on a thread pool of up to 40 threads; a
connection per thread (each with its own page cache) grew a worker from 65
to 150 MB. Steady reads kept every passive checkpoint from finishing, and
the WAL grew past 100 MB.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from allotment.governor import Governor
from allotment.store.sqlite import _READERS, _Checkpointer

SUBJECT = {"tenant": "acme", "user": "ann"}
CAP = {"id": "cap", "tenant": "acme", "meter": "tokens", "window": "day", "limit": 10**12}


def open_connections(path: Path) -> int:
    """Connections this process has open on the database file (one descriptor each)."""
    fds = Path("/proc/self/fd")
    count = 0
    for fd in fds.iterdir():
        try:
            count += os.readlink(fd) == str(path)
        except OSError:
            pass  # closed meanwhile
    return count


def read_together(gov: Governor, path: Path, threads: int = 40) -> int:
    """Read on ``threads`` threads alive at once, as in a busy thread pool; the most
    connections open on the database file meanwhile."""
    barrier = threading.Barrier(threads + 1)
    answers: list[int] = []

    def read() -> None:
        answers.append(gov.status(SUBJECT)[0].used)
        answers.append(len(gov.events()))
        barrier.wait()
        barrier.wait()

    pool = [threading.Thread(target=read) for _ in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    most = open_connections(path)
    barrier.wait()
    for thread in pool:
        thread.join()
    assert sorted(set(answers)) == [1, 5]
    return most


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_many_reading_threads_share_a_few_connections(tmp_path: Path) -> None:
    path = tmp_path / "r.db"
    gov = Governor(f"sqlite:///{path}")
    gov.create_budget(CAP)
    gov.record("p", SUBJECT, "openai", "gpt-4o", {"input_tokens": 5})
    bound = _READERS + 2  # the readers, the writer and the background checkpointer
    assert read_together(gov, path) <= bound
    assert open_connections(path) <= bound
    # A second pool of threads after the first died: nothing was left behind.
    assert read_together(gov, path) <= bound
    assert open_connections(path) <= bound
    gov.close()
    assert open_connections(path) == 0


@pytest.mark.slow
def test_the_wal_stays_bounded_under_steady_reads_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    gov = Governor(f"sqlite:///{path}")
    gov.create_budget(CAP)
    store: Any = gov.store
    store._checkpointer.stop()
    limit = 2 * 1024 * 1024  # small, so a few seconds of writes cross it many times
    checkpointer = store._checkpointer = _Checkpointer(
        str(path), store._write_lock, store._file_lock, interval=0.05, limit=limit
    )
    writing = threading.Event()
    writing.set()
    largest = 0

    def write(worker: int) -> None:
        for i in range(1500):  # some 60 MB of WAL frames in all: ~20 KB a transaction
            gov.record(f"w{worker}-{i}", {**SUBJECT, "user": f"u{i % 50}"}, "openai", "gpt-4o",
                       {"input_tokens": 5})  # fmt: skip

    def read() -> None:  # always some snapshot open: a passive checkpoint never ends the WAL
        while writing.is_set():
            gov.status(SUBJECT)

    def watch() -> None:
        nonlocal largest
        while writing.is_set():
            largest = max(largest, wal_size(path))
            writing.wait(0.005)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(2)]
    others = [threading.Thread(target=read) for _ in range(3)] + [threading.Thread(target=watch)]
    for thread in writers + others:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    for thread in others:
        thread.join()
    assert gov.status(SUBJECT)[0].used == 2 * 1500 * 5
    # Without the truncation the WAL reached 60 MB, all that was written. With it, the
    # limit plus what the writers add between two checks: 9-11 MiB on an idle machine,
    # 24 MiB once on a loaded one (the checkpointer's thread waits for the GIL).
    assert largest < 32 * 1024 * 1024, f"the WAL reached {largest / 2**20:.1f} MiB"
    assert checkpointer.failures == 0
    deadline = time.monotonic() + 5
    while wal_size(path) > limit and time.monotonic() < deadline:
        time.sleep(0.02)  # once writes pause, it is soon back under the limit
    assert wal_size(path) <= limit
    gov.close()


def wal_size(path: Path) -> int:
    try:
        return os.stat(f"{path}-wal").st_size
    except FileNotFoundError:
        return 0
