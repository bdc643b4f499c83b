"""Summarise a py-spy collapsed-stack file (`py-spy record --format raw --threads --nolineno`): samples per thread,
then the functions with the most samples of their own (self) and in total (inclusive), per thread.

    .venv/bin/python -m bench.profile PROFILE.txt [--top 25] [--thread loop|writer|all]
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_THREAD = re.compile(r"^(?:process \d+:\"[^\"]*\";)?thread \((0x[0-9A-Fa-f]+)(?:, \"?([^\")]*)\"?)?\)$")


def _frame_name(frame: str) -> str:
    # "function (module/path.py)" -> "module/path.py:function"
    match = re.match(r"^(.*) \((.*)\)$", frame)
    return f"{match.group(2)}:{match.group(1)}" if match else frame


def summarise(text: str, top: int) -> str:
    per_thread: dict[str, Counter[str]] = {}
    inclusive: dict[str, Counter[str]] = {}
    totals: Counter[str] = Counter()
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = stack.split(";")
        thread = "main"
        if frames and frames[0].startswith("process "):
            frames = frames[1:]
        if frames and frames[0].startswith("thread ("):
            thread = _thread_label(frames[0])
            frames = frames[1:]
        if not frames:
            continue
        totals[thread] += count
        names = [_frame_name(f) for f in frames]
        per_thread.setdefault(thread, Counter())[names[-1]] += count
        seen = set()
        for name in names:
            if name not in seen:
                seen.add(name)
                inclusive.setdefault(thread, Counter())[name] += count
    all_samples = sum(totals.values()) or 1
    lines = [f"{all_samples} samples"]
    for thread, samples in totals.most_common():
        lines.append(f"\n== thread {thread}: {samples} samples ({samples / all_samples:.0%} of all)")
        lines.append("  self:")
        for name, count in per_thread[thread].most_common(top):
            lines.append(f"    {count / samples:6.1%}  {name}")
        lines.append("  inclusive:")
        for name, count in inclusive[thread].most_common(top):
            lines.append(f"    {count / samples:6.1%}  {name}")
    return "\n".join(lines)


def _thread_label(frame: str) -> str:
    inner = frame[len("thread (") : -1]
    name = inner.split(",", 1)[1].strip().strip('"') if "," in inner else inner
    return name or inner


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    args = parser.parse_args()
    print(summarise(args.profile.read_text(), args.top))


if __name__ == "__main__":
    main()
