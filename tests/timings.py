"""Seconds per test from a pytest log run with `--durations=0`, as tests/timings.csv (node id, seconds).

conftest.py reads that file: a test of 2 s or more is marked `slow` (make test-fast leaves it out), and
the files are handed to the pytest-xdist workers heaviest first, so that two workers end together.
Regenerate after a full run: `.venv/bin/python -m pytest -n auto --dist loadfile --durations=0 > log;
.venv/bin/python tests/timings.py log > tests/timings.csv`.
"""

import csv
import re
import sys
from collections import Counter

seconds: Counter = Counter()
for line in open(sys.argv[1], encoding="utf-8"):
    found = re.match(r"([0-9.]+)s (?:call|setup|teardown)\s+(\S+)", line)
    if found:
        seconds[found.group(2)] += float(found.group(1))
out = csv.writer(sys.stdout, lineterminator="\n")
out.writerow(["test", "seconds"])
out.writerows([node, f"{total:.2f}"] for node, total in sorted(seconds.items()))
