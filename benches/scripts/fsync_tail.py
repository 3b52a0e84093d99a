#!/usr/bin/env python3
"""fdatasync latency of log-like appends on this machine's disk: with the
log's zero-fill of 1 MiB steps ahead of the write position (what
server/storage/src/wal does today), against a file zero-filled and synced
in full beforehand, alone and with another thread zero-filling (and
syncing) a spare file at the same pace, one step per step appended (what a
background filler of the next segment would do). Shows what the steps
cost the tail of a durable write, and whether moving them off the writer
would help.

    python3 benches/scripts/fsync_tail.py [runs=3] [appends=3000] [bytes=5200]

STEP=<bytes> sets the zero-fill step (default 1 MiB, the log's).

5200 bytes is about one group commit of 20 sets of 100-byte values. Each
run writes a scratch file in the data directory's filesystem (DIR, default
the repository's target/) and removes it. Prints the median over the runs
of each percentile, in µs.
"""
import os
import statistics
import sys
import threading
import time

STEP = int(os.environ.get("STEP", 1 << 20))
ZEROS = b"\0" * (64 * 1024)


def zero_fill(fd, start, end):
    for offset in range(start, end, len(ZEROS)):
        os.pwrite(fd, ZEROS[: min(len(ZEROS), end - offset)], offset)


def fill_spare(path, appended, stop):
    """Zero-fills and syncs `path` 1 MiB at a time, keeping pace with
    `appended[0]` bytes appended by the foreground."""
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    try:
        filled = 0
        while not stop.is_set():
            if filled <= appended[0]:
                zero_fill(fd, filled, filled + STEP)
                os.fdatasync(fd)
                filled += STEP
            else:
                stop.wait(0.001)
    finally:
        os.close(fd)
        os.unlink(path)


def run(mode, appends, size, path):
    fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
    stop = threading.Event()
    appended = [0]
    filler = None
    try:
        allocated = 0
        if mode != "steps":
            allocated = appends * size + STEP
            zero_fill(fd, 0, allocated)
            os.fsync(fd)
        if mode == "background":
            filler = threading.Thread(target=fill_spare, args=(path + ".spare", appended, stop))
            filler.start()
        frame = b"x" * size
        latencies = []
        for i in range(appends):
            end = (i + 1) * size
            if end > allocated:
                zero_fill(fd, allocated, end + STEP)
                allocated = end + STEP
            os.pwrite(fd, frame, i * size)
            started = time.perf_counter()
            os.fdatasync(fd)
            latencies.append(time.perf_counter() - started)
            appended[0] = end
    finally:
        stop.set()
        if filler is not None:
            filler.join()
        os.close(fd)
        os.unlink(path)
    latencies.sort()
    return [latencies[int(len(latencies) * q)] * 1e6 for q in (0.5, 0.9, 0.99, 0.999)]


def main():
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    appends = int(sys.argv[2]) if len(sys.argv) > 2 else 3000
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 5200
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "target")
    directory = os.environ.get("DIR", root)
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, "fsync-tail.scratch")
    modes = {
        "steps": f"zero-filled in {STEP >> 10} KiB steps" + (" (the log today)" if STEP == 1 << 20 else ""),
        "prezeroed": "zero-filled in full beforehand",
        "background": "zero-filled beforehand, a spare filled meanwhile",
    }
    results = {mode: [] for mode in modes}
    for _ in range(runs):
        for mode in modes:
            results[mode].append(run(mode, appends, size, path))
    print(f"fdatasync after a {size}-byte append, {appends} appends, medians of {runs} runs (µs)")
    print("| file | p50 | p90 | p99 | p99.9 |")
    print("| --- | --- | --- | --- | --- |")
    for mode, name in modes.items():
        medians = [statistics.median(column) for column in zip(*results[mode])]
        print(f"| {name} | " + " | ".join(f"{m:.0f}" for m in medians) + " |")


if __name__ == "__main__":
    main()
