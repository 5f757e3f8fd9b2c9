"""SecretMasker: building it for N secrets, and masking a log line, against the plain way.

Every log record, status document, history row and output line passes through the tree's
``SecretMasker``. It masks each secret in every form it can reach a line in (as written,
shell-quoted, repr, JSON, HTML, URL, hex, base64...), a few dozen forms a secret, matched
as one trie-shaped pattern (``supervision._secrets._alternatives``).

Baseline, in the same process: the same forms as one plain alternation, longest first (what
the masker compiled before), built once, and ``re.sub`` with it; for the build, that
alternation compiled once against the masker's whole build (its forms, the trie, two patterns).

Lines: an ordinary log line with no secret in it (what nearly every line is), and the same
line with one of the secrets in it.

    python bench/masker.py [--secrets 1,5,20,100,1000] [--lines 5000]
"""

from __future__ import annotations

import argparse
import functools
import re
import secrets
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import machine

from supervision._secrets import SecretMasker, _leak_forms

LINE = (
    "2026-12-07T17:10:00.123+00:00 INFO web: GET /api/items?id=42 200 OK in 3.2 ms from "
    "127.0.0.1, user agent curl/8.5.0"
)


def _per_line(mask: object, line: str, lines: int) -> float:
    """Microseconds a line, the median of 5 runs of ``lines`` lines."""
    runs = []
    for _ in range(5):
        start = time.perf_counter()
        for _ in range(lines):
            mask(line)  # type: ignore[operator]
        runs.append((time.perf_counter() - start) / lines * 1e6)
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--secrets", default="1,5,20,100,1000")
    parser.add_argument("--lines", type=int, default=5000)
    args = parser.parse_args()
    print(machine())
    print(
        f"{'secrets':>7} {'forms':>6} | {'build ms':>9} {'plain ms':>9} | "
        f"{'no secret us':>13} {'plain us':>9} {'ratio':>6} | "
        f"{'a secret us':>12} {'plain us':>9} {'ratio':>6}"
    )
    for count in (int(n) for n in args.secrets.split(",")):
        values = [secrets.token_urlsafe(24) for _ in range(count)]
        values.append('it\'s a "quoted" pässwörd/&<x>')  # one whose escapes all differ
        start = time.perf_counter()
        masker = SecretMasker(values)
        build = (time.perf_counter() - start) * 1000
        forms: set[str] = set()
        for value in values:
            plain, encoded = _leak_forms(value)
            forms |= {form for form in plain | encoded if len(form) >= SecretMasker.MIN_LENGTH}
        start = time.perf_counter()
        flat = re.compile("|".join(map(re.escape, sorted(forms, key=lambda f: (-len(f), f)))))
        flat_build = (time.perf_counter() - start) * 1000
        lines = max(200, args.lines // max(1, count // 20))
        with_secret = f"{LINE} token={values[0]}"
        plain_mask = functools.partial(flat.sub, "***")
        none_ours = _per_line(masker.mask, LINE, lines)
        none_flat = _per_line(plain_mask, LINE, lines)
        one_ours = _per_line(masker.mask, with_secret, lines)
        one_flat = _per_line(plain_mask, with_secret, lines)
        assert "***" in masker.mask(with_secret)
        print(
            f"{count:>7} {len(forms):>6} | {build:>9.1f} {flat_build:>9.1f} | "
            f"{none_ours:>13.2f} {none_flat:>9.2f} {none_ours / none_flat:>5.2f}x | "
            f"{one_ours:>12.2f} {one_flat:>9.2f} {one_ours / one_flat:>5.2f}x"
        )


if __name__ == "__main__":
    main()
