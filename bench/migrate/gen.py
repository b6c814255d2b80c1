#!/usr/bin/env python3
"""Generate a migration set for the migration benchmark, in three forms.

    gen.py --count 500 --out DIR            the realistic mix (creates, alters,
                                            inserts of 100 rows, indexes)
    gen.py --count 5000 --small --out DIR   small migrations, for `status`

Writes, from one list of (up, down) SQL pairs, so every tool runs the same SQL:

    DIR/capstan/NNNN_name.sql    `-- capstan:up` / `-- capstan:down` sections
    DIR/dbmate/YYYYMMDDHHMMSS_name.sql
                                 `-- migrate:up` / `-- migrate:down` sections
    DIR/psql/NNNN_name.sql       the up SQL only (what follows `-- capstan:up`)
    DIR/psql/all.sql             one psql script: each file above wrapped in
                                 BEGIN; ... \\n;\\nCOMMIT; (the apply limit)
    DIR/check.sql, DIR/expected  a query fingerprinting the resulting schema and
                                 data, and the answer it must give

Deterministic: the same arguments give the same files. Standard library only.
"""

import argparse
import datetime
import os
import random
import shutil

NOUNS = [
    "accounts", "orders", "invoices", "payments", "customers", "products",
    "shipments", "events", "sessions", "devices", "tickets", "comments",
    "projects", "tasks", "teams", "subscriptions", "refunds", "audits",
]
WORDS = ["alpha", "bravo", "delta", "echo", "kilo", "lima", "oscar", "sierra"]
COLUMN_KINDS = [
    ("text", ""),
    ("integer", " DEFAULT 0"),
    ("boolean", " NOT NULL DEFAULT false"),
    ("timestamptz", ""),
    ("numeric(12,2)", ""),
    ("jsonb", ""),
]


class Table:
    def __init__(self, name):
        self.name = name
        self.columns = ["id", "name", "amount", "created_at"]
        self.indexed = set()
        self.rows = 0
        self.batches = 0


def realistic(count, rng):
    """(name, up, down) triples: a mix like a real project's history."""
    tables = []
    out = []
    serial = 0
    for _ in range(count):
        if not tables:
            kind = "create"
        else:
            kind = rng.choices(
                ["create", "add_column", "insert", "index"], weights=[20, 25, 35, 20]
            )[0]
        if kind == "index":
            table = rng.choice(tables)
            candidates = [c for c in table.columns if c != "id" and c not in table.indexed]
            if not candidates:
                kind = "insert"
        if kind == "create":
            serial += 1
            t = Table(f"{rng.choice(NOUNS)}_{serial}")
            tables.append(t)
            up = (
                f"CREATE TABLE {t.name} (\n"
                "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
                "    name text NOT NULL,\n"
                "    amount integer NOT NULL DEFAULT 0,\n"
                "    created_at timestamptz NOT NULL DEFAULT now()\n"
                ");\n"
                f"COMMENT ON TABLE {t.name} IS 'generated for the migration benchmark';\n"
            )
            down = f"DROP TABLE {t.name};\n"
            out.append((f"create_{t.name}", up, down))
        elif kind == "add_column":
            t = rng.choice(tables)
            sql_type, extra = rng.choice(COLUMN_KINDS)
            column = f"{rng.choice(WORDS)}_{len(t.columns)}"
            t.columns.append(column)
            up = f"ALTER TABLE {t.name} ADD COLUMN {column} {sql_type}{extra};\n"
            down = f"ALTER TABLE {t.name} DROP COLUMN {column};\n"
            out.append((f"add_{column}_to_{t.name}", up, down))
        elif kind == "insert":
            t = rng.choice(tables)
            t.batches += 1
            batch = f"batch {t.batches}"
            values = ",\n".join(
                f"    ('{batch} row {r} {rng.choice(WORDS)}', {rng.randint(0, 100000)})"
                for r in range(1, 101)
            )
            up = f"INSERT INTO {t.name} (name, amount) VALUES\n{values};\n"
            down = f"DELETE FROM {t.name} WHERE name LIKE '{batch} row %';\n"
            t.rows += 100
            out.append((f"seed_{t.name}_{t.batches}", up, down))
        else:  # index
            t = table
            column = rng.choice(candidates)
            t.indexed.add(column)
            index = f"{t.name}_{column}_idx"
            up = f"CREATE INDEX {index} ON {t.name} ({column});\n"
            down = f"DROP INDEX {index};\n"
            out.append((f"index_{t.name}_{column}", up, down))
    return out, tables


def small(count):
    """(name, up, down) triples: a table every tenth migration, columns between."""
    tables = []
    out = []
    for i in range(count):
        if i % 10 == 0:
            t = Table(f"s_{i // 10 + 1}")
            t.columns = ["id"]
            tables.append(t)
            out.append((f"create_{t.name}", f"CREATE TABLE {t.name} (id integer PRIMARY KEY);\n",
                        f"DROP TABLE {t.name};\n"))
        else:
            t = tables[-1]
            column = f"c_{len(t.columns)}"
            t.columns.append(column)
            out.append((f"add_{column}_to_{t.name}",
                        f"ALTER TABLE {t.name} ADD COLUMN {column} integer;\n",
                        f"ALTER TABLE {t.name} DROP COLUMN {column};\n"))
    return out, tables


def fingerprint_sql(tables):
    exclude = "'schema_migrations'"
    rows = " + ".join(f"(SELECT count(*) FROM {t.name})" for t in tables) or "0"
    return (
        "SELECT concat_ws('/',\n"
        "  (SELECT count(*) FROM pg_tables WHERE schemaname = 'public'"
        f" AND tablename <> {exclude}),\n"
        "  (SELECT count(*) FROM information_schema.columns WHERE table_schema = 'public'"
        f" AND table_name <> {exclude}),\n"
        "  (SELECT count(*) FROM pg_indexes WHERE schemaname = 'public'"
        f" AND tablename <> {exclude}),\n"
        f"  {rows});\n"
    )


def expected(tables):
    columns = sum(len(t.columns) for t in tables)
    indexes = sum(1 + len(t.indexed) for t in tables)  # primary key + created
    rows = sum(t.rows for t in tables)
    return f"{len(tables)}/{columns}/{indexes}/{rows}\n"


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seed", type=int, default=2)
    args = ap.parse_args()

    if args.small:
        migrations, tables = small(args.count)
    else:
        migrations, tables = realistic(args.count, random.Random(args.seed))

    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    for sub in ("capstan", "dbmate", "psql"):
        os.makedirs(os.path.join(args.out, sub))

    start = datetime.datetime(2025, 1, 1)
    width = max(4, len(str(args.count)))
    driver = []
    for i, (name, up, down) in enumerate(migrations, start=1):
        version = f"{i:0{width}d}"
        stamp = (start + datetime.timedelta(minutes=i)).strftime("%Y%m%d%H%M%S")
        write(os.path.join(args.out, "capstan", f"{version}_{name}.sql"),
              f"-- capstan:up\n{up}-- capstan:down\n{down}")
        write(os.path.join(args.out, "dbmate", f"{stamp}_{name}.sql"),
              f"-- migrate:up\n{up}\n-- migrate:down\n{down}")
        write(os.path.join(args.out, "psql", f"{version}_{name}.sql"), up)
        driver.append(f"BEGIN;\n\\ir {version}_{name}.sql\n;\nCOMMIT;\n")
    write(os.path.join(args.out, "psql", "all.sql"), "".join(driver))
    write(os.path.join(args.out, "check.sql"), fingerprint_sql(tables))
    write(os.path.join(args.out, "expected"), expected(tables))
    kinds = {}
    for name, _, _ in migrations:
        kind = name.split("_", 1)[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    summary = ", ".join(f"{v} {k}" for k, v in sorted(kinds.items()))
    print(f"generated {len(migrations)} migrations in {args.out} ({summary})")


if __name__ == "__main__":
    main()
