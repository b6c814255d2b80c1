#!/usr/bin/env python3
"""Generates the lint benchmark inputs.

  gen.py dir  OUT N      N migration files (creates, alters, inserts of 100 rows, indexes)
  gen.py big  OUT.sql N  one file of N statements of the same mix
"""
import os
import sys


def statements(i):
    """The statements of migration i: a mix like BENCHMARKS.md's migration corpus."""
    t = f"t{i}"
    kind = i % 4
    if kind == 0:
        return [
            f"CREATE TABLE {t} (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, name text NOT NULL, "
            f"email text, score integer, created_at timestamptz NOT NULL DEFAULT now())"
        ]
    base = f"t{i - kind}"
    if kind == 1:
        return [
            f"ALTER TABLE {base} ADD COLUMN note_{i} text",
            f"ALTER TABLE {base} ALTER COLUMN score SET DEFAULT 0",
        ]
    if kind == 2:
        rows = ", ".join(f"('name {i}-{r}', 'u{r}@example.com', {r})" for r in range(100))
        return [f"INSERT INTO {base} (name, email, score) VALUES {rows}"]
    return [f"CREATE INDEX CONCURRENTLY IF NOT EXISTS {base}_email_{i} ON {base} (email)"]


def main():
    mode, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    if mode == "dir":
        os.makedirs(out, exist_ok=True)
        for i in range(n):
            stmts = statements(i)
            header = "-- capstan:no-transaction\n" if i % 4 == 3 else ""
            with open(os.path.join(out, f"{i + 1:04d}_step_{i}.sql"), "w") as f:
                f.write(header + "-- capstan:up\n" + ";\n".join(stmts) + ";\n")
    else:
        with open(out, "w") as f:
            count, i = 0, 0
            while count < n:
                for s in statements(i):
                    if count < n:
                        f.write(s + ";\n")
                        count += 1
                i += 1


main()
