"""Where a profiled worker spent its time: sums ``py-spy record --format raw`` output.

    BENCH_PROFILE=/tmp/prof python bench/targets.py --only fleet --repeat 1
    python bench/profile_top.py /tmp/prof/fleet-agent.txt [--top 25] [--match aiops]

Prints each function's inclusive share of the samples (a function counted once per stack),
the biggest first; ``--match`` keeps only the functions whose name or file contains the text.
"""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--match", default="")
    args = parser.parse_args()
    inclusive: Counter[str] = Counter()
    own: Counter[str] = Counter()
    total = 0
    for line in args.profile.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].rsplit("/", 1)[-1] + ")"
            for f in stack.split(";")
        ]
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    print(f"{total} samples")
    shown = 0
    for frame, n in inclusive.most_common():
        if args.match and args.match not in frame:
            continue
        print(f"{100 * n / total:5.1f}%  (own {100 * own[frame] / total:4.1f}%)  {frame}")
        shown += 1
        if shown >= args.top:
            break


if __name__ == "__main__":
    main()
