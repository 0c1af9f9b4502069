#!/usr/bin/env python3
"""fdatasync latency of the two writes a ledger batch could wait on, on this machine's disk.

    scripts/fsync_latency.py DIR MODE LOAD SECONDS
      MODE  log: 8 KiB appended to a preallocated file (a segment file's batch)
            wal: 64 KiB overwritten in a 32 MiB ring (a SQLite WAL commit of ~16 pages)
      LOAD  load: meanwhile a second thread writes 10 MiB of scattered 4 KiB pages into a
                  512 MiB file and fsyncs it every 250 ms (a WAL checkpoint's copy)
            none: nothing else

Prints the count and p50/p99/p99.9/max in ms. Used for issue 25's question whether a segment
file (one write and one fdatasync per batch) would shorten the wait an answer has before it is
sent; docs/performance.md has the readings. The files it writes stay in DIR.
"""
import os
import random
import sys
import threading
import time


def main():
    directory, mode, load, seconds = sys.argv[1], sys.argv[2], sys.argv[3] == "load", float(sys.argv[4])
    size = {"log": 8 * 1024, "wal": 64 * 1024}[mode]
    cap = 256 << 20
    fd = os.open(os.path.join(directory, f"{mode}.dat"), os.O_RDWR | os.O_CREAT, 0o644)
    # Written through once, so later writes change no metadata (an fdatasync then flushes data only).
    if os.fstat(fd).st_size < cap:
        chunk = b"\0" * (1 << 20)
        for i in range(cap >> 20):
            os.pwrite(fd, chunk, i << 20)
        os.fsync(fd)
    stop = threading.Event()

    def checkpointer():
        db = os.open(os.path.join(directory, "db.dat"), os.O_RDWR | os.O_CREAT, 0o644)
        if os.fstat(db).st_size < 512 << 20:
            os.ftruncate(db, 512 << 20)
        page = os.urandom(4096)
        while not stop.wait(0.25):
            for _ in range(2560):
                os.pwrite(db, page, random.randrange(0, (512 << 20) >> 12) << 12)
            os.fsync(db)

    if load:
        threading.Thread(target=checkpointer, daemon=True).start()
    data = os.urandom(size)
    offset, waits = 0, []
    end = time.time() + seconds
    while time.time() < end:
        if mode == "wal" and offset + size > 32 << 20:
            offset = 0
        os.pwrite(fd, data, offset)
        offset = (offset + size) % (cap - size)
        started = time.perf_counter()
        os.fdatasync(fd)
        waits.append((time.perf_counter() - started) * 1e3)
    stop.set()
    waits.sort()
    n = len(waits)

    def q(p):
        return waits[min(n - 1, int(p * n))]

    print(f"{mode:4} {'load' if load else 'none':4} n={n:6} p50={q(.5):6.2f} p99={q(.99):6.2f} "
          f"p99.9={q(.999):6.2f} max={waits[-1]:6.1f} ms")


if __name__ == "__main__":
    main()
