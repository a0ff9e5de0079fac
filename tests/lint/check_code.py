#!/usr/bin/env python3
"""Structural checks on the product code (api/, worker/, janitor/, common/).

1. No function is longer than 80 lines, counted from the line of its
   opening brace to the line of its closing brace (the project writes both
   at column 0, so the count needs no C parser).
2. The programs never touch libpq: no PQ* call, PGconn or PGresult, and no
   libpq-fe.h outside common/db*.c and common/store*.c (and migrations,
   which go through struct db).
3. None of the calls the project's style bans (unbounded or unchecked
   string and number functions).

Usage: check_code.py [SOURCE_DIR]   (default: the repository root)
Exits 1 and lists every violation when one is found.
"""

import os
import re
import sys

MAX_LINES = 80
DIRS = ("api", "worker", "janitor", "common")
LIBPQ = re.compile(r"\bPQ[a-zA-Z]+\s*\(|\bPGconn\b|\bPGresult\b|libpq-fe\.h")
BANNED = re.compile(r"\b(sprintf|vsprintf|strcpy|strcat|gets|atoi|atol|strtok)\s*\(")


def c_files(root):
    for d in DIRS:
        base = os.path.join(root, d)
        for name in sorted(os.listdir(base)):
            if name.endswith((".c", ".h")):
                yield os.path.join(d, name), os.path.join(base, name)


def long_functions(lines):
    """(name, first line, length) of each function over MAX_LINES."""
    out = []
    start = None
    name = "?"
    for i, line in enumerate(lines):
        if line.startswith("{") and start is None:
            start = i
            # The name: the last identifier before "(" in the lines above.
            for back in range(i - 1, max(i - 6, -1), -1):
                m = re.search(r"([A-Za-z_][A-Za-z0-9_]*)\s*\(", lines[back])
                if m:
                    name = m.group(1)
                    break
        elif line.startswith("}") and start is not None:
            length = i - start + 1
            if length > MAX_LINES:
                out.append((name, start + 1, length))
            start = None
    return out


def strip_comments(text):
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), "..", "..")
    problems = []
    for rel, path in c_files(root):
        with open(path, encoding="utf-8") as f:
            text = f.read()
        lines = text.split("\n")
        for name, first, length in long_functions(lines):
            problems.append("%s:%d: %s() is %d lines (at most %d)" % (rel, first, name, length, MAX_LINES))
        code = strip_comments(text).split("\n")
        may_use_libpq = rel.startswith(("common/db", "common/store"))
        for n, line in enumerate(code, 1):
            if not may_use_libpq and LIBPQ.search(line):
                problems.append("%s:%d: libpq outside common/db*.c and common/store*.c" % (rel, n))
            if BANNED.search(line):
                problems.append("%s:%d: banned call: %s" % (rel, n, BANNED.search(line).group(1)))
    for p in problems:
        print(p)
    print("check_code: %d file(s) checked, %d problem(s)" % (len(list(c_files(root))), len(problems)))
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
