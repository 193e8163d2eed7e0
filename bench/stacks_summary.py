"""Where a process's time went, from py-spy's collapsed stacks (`py-spy record -f raw`,
as bench_relay_cpu.py --py-spy writes them): the functions with the most samples
on the stack (inclusive) and on top of it (self), and the relay routes' share.

    .venv/bin/python bench/stacks_summary.py stacks.txt [--top 40] [--match relay]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_IDLE = ("select (selectors.py", "_worker (concurrent/futures/thread.py", "wait (threading.py",
         "acquire (<built-in>")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("file")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--match", default="", help="only frames whose text contains this")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    lines = Path(args.file).read_text(encoding="utf-8").splitlines()
    for line in lines:
        stack, _, count = line.rstrip("\n").rpartition(" ")
        if not stack:
            continue
        frames = [re.sub(r":\d+\)$", ")", f) for f in stack.split(";")]
        if any(i in frames[-1] for i in _IDLE):
            continue  # a thread waiting, not working
        n = int(count)
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    print(f"{total} busy samples")
    for title, table in (("inclusive", inclusive), ("self", own)):
        print(f"\n{title}:")
        shown = 0
        for frame, n in table.most_common():
            if args.match in frame:
                print(f"  {n / total * 100:5.1f}%  {frame}")
                shown += 1
                if shown >= args.top:
                    break
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
