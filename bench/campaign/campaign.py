#!/usr/bin/env python3
"""The reliability campaign (see README.md): concurrent runners and kill -9
rounds on a set mixing transactional and no-transaction migrations, on
Postgres, PgBouncer in session mode, and SQLite. Prints, per scenario, the
runs, the runners' exit codes and every violation of capstan's promises."""

import collections
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

BIN = os.environ["CAPSTAN_BIN"]
PG = os.environ["CAMPAIGN_PG_URL"]  # superuser URL of a throwaway server
BOUNCER_PORT = os.environ.get("CAMPAIGN_BOUNCER_PORT")
RUNNERS = int(os.environ.get("CAMPAIGN_RUNNERS", "20"))
ROUNDS = int(os.environ.get("CAMPAIGN_ROUNDS", "5"))
KILL_ROUNDS = int(os.environ.get("CAMPAIGN_KILL_ROUNDS", str(ROUNDS)))
SEED = int(os.environ.get("CAMPAIGN_SEED", "20261202"))
WAIT = 120  # seconds any runner may take before it counts as hung

rng = random.Random(SEED)
NO_TX = "-- capstan:no-transaction\n-- capstan:up\n"


def psql(url, sql, check=True):
    out = subprocess.run(
        ["psql", url, "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", sql],
        capture_output=True, text=True,
    )
    if check and out.returncode != 0:
        raise RuntimeError(f"psql: {sql}: {out.stderr}")
    return out.stdout.strip()


def db_url(name, port=None):
    base, _ = PG.rsplit("/", 1)
    if port:
        at = base.rsplit("@", 1)
        user = at[0] if len(at) == 2 else "postgres://postgres"
        base = f"{user}@127.0.0.1:{port}"
    return f"{base}/{name}"


class Target:
    """A fresh database: Postgres (direct or through the pool) or SQLite."""

    def __init__(self, kind, tag):
        self.kind = kind
        self.dir = tempfile.mkdtemp(prefix=f"campaign-{tag}-")
        os.mkdir(os.path.join(self.dir, "migrations"))
        if kind == "sqlite":
            self.path = os.path.join(self.dir, "app.db")
            self.url = f"sqlite://{self.path}"
            self.direct = self.url
        else:
            self.name = f"campaign_{tag}_{os.getpid()}"
            psql(PG, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)")
            psql(PG, f"CREATE DATABASE {self.name}")
            self.direct = db_url(self.name)
            self.url = db_url(self.name, BOUNCER_PORT) if kind == "pgbouncer" else self.direct

    @property
    def dialect(self):
        return "sqlite" if self.kind == "sqlite" else "postgres"

    def query(self, sql):
        if self.dialect == "postgres":
            return psql(self.direct, sql)
        conn = sqlite3.connect(self.path, timeout=30)
        try:
            rows = conn.execute(sql).fetchall()
        finally:
            conn.close()
        return "\n".join("|".join("" if v is None else str(v) for v in r) for r in rows)

    def write(self, name, text):
        with open(os.path.join(self.dir, "migrations", name), "w") as f:
            f.write(text)

    def cmd(self, *args, url=None):
        return [BIN, *args, "--database", url or self.url, "--dir", os.path.join(self.dir, "migrations")]

    def run(self, *args, url=None):
        return subprocess.run(self.cmd(*args, url=url), capture_output=True, text=True, cwd=self.dir, timeout=WAIT)

    def history(self):
        table = "capstan.migrations" if self.dialect == "postgres" else "capstan_migrations"
        exists = (
            self.query("SELECT to_regclass('capstan.migrations') IS NOT NULL") == "t"
            if self.dialect == "postgres"
            else self.query("SELECT count(*) FROM sqlite_master WHERE name = 'capstan_migrations'") == "1"
        )
        if not exists:
            return []
        rows = self.query(f"SELECT version, state, no_transaction FROM {table} ORDER BY version")
        out = []
        for line in rows.splitlines():
            v, state, nt = line.split("|")
            out.append((int(v), state, nt in ("t", "1")))
        return out

    def ups(self):
        table = "capstan.log" if self.dialect == "postgres" else "capstan_log"
        rows = self.query(f"SELECT version, count(*) FROM {table} WHERE action = 'up' GROUP BY version")
        return {int(v): int(n) for v, n in (l.split("|") for l in rows.splitlines())}

    def drop(self):
        if self.dialect == "postgres":
            psql(PG, f"DROP DATABASE IF EXISTS {self.name} WITH (FORCE)", check=False)
        subprocess.run(["rm", "-rf", self.dir])


# ---------------------------------------------------------------------------
# Concurrent runners.

def concurrent_set(t):
    pg = t.dialect == "postgres"
    fill = ("INSERT INTO items SELECT g, 0 FROM generate_series(1, 5000) g;" if pg else
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 5000) INSERT INTO items SELECT x, 0 FROM c;")
    pause = "SELECT pg_sleep(0.05);\n" if pg else ""
    conc = "CONCURRENTLY " if pg else ""
    t.write("0001_create.sql", "-- capstan:up\nCREATE TABLE counter (v integer NOT NULL);\n"
            f"CREATE TABLE items (id integer PRIMARY KEY, v integer NOT NULL);\n{fill}\nINSERT INTO counter VALUES (1);\n")
    t.write("0002_count.sql", f"-- capstan:up\nINSERT INTO counter VALUES (2);\n{pause}")
    t.write("0003_index.sql", f"{NO_TX}CREATE INDEX {conc}items_v_idx ON items (v);\nINSERT INTO counter VALUES (3);\n")
    t.write("0004_backfill.sql", f"{NO_TX}UPDATE items SET v = v + 1;\nINSERT INTO counter VALUES (4);\n{pause}")
    t.write("0005_count.sql", "-- capstan:up\nINSERT INTO counter VALUES (5);\n")
    t.write("0006_backfill_again.sql", f"{NO_TX}UPDATE items SET v = v + 10;\n"
            f"CREATE UNIQUE INDEX {conc}items_id_v_idx ON items (id, v);\nINSERT INTO counter VALUES (6);\n")
    t.write("0007_count.sql", f"-- capstan:up\nINSERT INTO counter VALUES (7);\n{pause}")
    out = t.run("migrate", "hash")
    assert out.returncode == 0, out.stderr
    return 7


def concurrent_round(kind, rnd, codes, violations):
    t = Target(kind, f"c{rnd}")
    try:
        n = concurrent_set(t)
        procs = [subprocess.Popen(t.cmd("migrate", "up"), cwd=t.dir, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for _ in range(RUNNERS)]
        deadline = time.time() + WAIT
        for p in procs:
            try:
                _, err = p.communicate(timeout=max(1, deadline - time.time()))
                codes[p.returncode] += 1
                if p.returncode != 0:
                    violations.append(f"round {rnd}: a runner exited {p.returncode}: {err.strip().splitlines()[-1] if err.strip() else ''}")
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
                codes["hung"] += 1
                violations.append(f"round {rnd}: a runner hung for over {WAIT}s")
        counts = t.query("SELECT v, count(*) FROM counter GROUP BY v ORDER BY v")
        per = {int(v): int(c) for v, c in (l.split("|") for l in counts.splitlines())}
        for v in range(1, n + 1):
            if per.get(v, 0) != 1:
                violations.append(f"round {rnd}: migration {v} ran {per.get(v, 0)} times")
        values = t.query("SELECT v, count(*) FROM items GROUP BY v")
        if values != "11|5000":
            violations.append(f"round {rnd}: backfills ran a wrong number of times (items: {values.replace(chr(10), ', ')})")
        dirty = [v for v, s, _ in t.history() if s != "applied"]
        if dirty:
            violations.append(f"round {rnd}: left dirty: {dirty}")
        ups = t.ups()
        if any(ups.get(v, 0) != 1 for v in range(1, n + 1)):
            violations.append(f"round {rnd}: log records ups {ups}")
        if t.dialect == "postgres":
            invalid = t.query("SELECT count(*) FROM pg_index WHERE NOT indisvalid")
            if invalid != "0":
                violations.append(f"round {rnd}: {invalid} invalid index(es) left")
            locks = t.query(f"SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database "
                            f"WHERE l.locktype = 'advisory' AND d.datname = '{t.name}'")
            if locks != "0":
                violations.append(f"round {rnd}: {locks} advisory lock(s) left behind")
        return RUNNERS
    finally:
        t.drop()


# ---------------------------------------------------------------------------
# kill -9.

KILL_SET = 40


def kill_set(t):
    pg = t.dialect == "postgres"
    for v in range(1, KILL_SET + 1):
        no_tx = v % 4 == 0
        if pg:
            body = (f"CREATE TABLE IF NOT EXISTS t_{v} (id integer PRIMARY KEY, v text);\n"
                    f"INSERT INTO t_{v} SELECT g, 'row ' || g FROM generate_series(1, {100 * v}) g ON CONFLICT DO NOTHING;\n"
                    "SELECT pg_sleep(0.03);\n"
                    f"INSERT INTO t_{v} VALUES (0, 'last') ON CONFLICT DO NOTHING;\n")
        else:
            body = (f"CREATE TABLE IF NOT EXISTS t_{v} (id integer PRIMARY KEY, v text);\n"
                    f"WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < {3000 * v})\n"
                    f"INSERT OR IGNORE INTO t_{v} SELECT x, 'row ' || x FROM c;\n"
                    f"INSERT OR IGNORE INTO t_{v} VALUES (0, 'last');\n")
        t.write(f"{v:04}_t_{v}.sql", (NO_TX if no_tx else "-- capstan:up\n") + body)
    out = t.run("migrate", "hash")
    assert out.returncode == 0, out.stderr


def expected_rows(t, v):
    return (100 if t.dialect == "postgres" else 3000) * v + 1


def table_rows(t, v):
    if t.dialect == "postgres":
        if t.query(f"SELECT to_regclass('public.t_{v}') IS NOT NULL") != "t":
            return None
    elif t.query(f"SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 't_{v}'") != "1":
        return None
    return int(t.query(f"SELECT count(*) FROM t_{v}"))


def kill_rounds(kind, codes, violations):
    t = Target(kind, "k")
    runs = 0
    try:
        kill_set(t)
        for rnd in range(1, KILL_ROUNDS + 1):
            p = subprocess.Popen(t.cmd("migrate", "up"), cwd=t.dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(rng.uniform(0.05, 1.2))
            runs += 1
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)
                p.wait()
                codes["killed"] += 1
            else:
                codes[p.returncode] += 1
                if p.returncode != 0:
                    violations.append(f"kill round {rnd}: the runner exited {p.returncode} before the kill")
            if t.dialect == "postgres":
                end = time.time() + 30
                while time.time() < end and t.query(
                        f"SELECT count(*) FROM pg_stat_activity WHERE datname = '{t.name}' AND application_name = 'capstan'") != "0":
                    time.sleep(0.02)
            hist = t.history()
            versions = [v for v, _, _ in hist]
            if versions != list(range(1, len(versions) + 1)):
                violations.append(f"kill round {rnd}: history is not a prefix: {versions}")
            recorded = set(versions)
            for v, state, no_tx in hist:
                if state == "dirty" and not no_tx:
                    violations.append(f"kill round {rnd}: transactional migration {v} is dirty")
                if state == "applied" and table_rows(t, v) != expected_rows(t, v):
                    violations.append(f"kill round {rnd}: applied migration {v} has {table_rows(t, v)} rows")
            for v in range(1, KILL_SET + 1):
                if v not in recorded and v % 4 != 0 and table_rows(t, v) is not None:
                    violations.append(f"kill round {rnd}: transactional migration {v} is half-applied (table without history row)")
            status = t.run("migrate", "status", "--json")
            if '"in-progress"' in status.stdout:
                violations.append(f"kill round {rnd}: a dead runner's migration shows in progress")
            for v, state, _ in hist:
                if state == "dirty":
                    out = t.run("migrate", "repair", "--mark-rolled-back", str(v))
                    if out.returncode != 0:
                        violations.append(f"kill round {rnd}: repair failed: {out.stderr.strip()}")
        bounded = "--runner-lock-timeout" in subprocess.run(
            [BIN, "migrate", "up", "--help"], capture_output=True, text=True).stdout
        final = t.run("migrate", "up", *(["--runner-lock-timeout", "30s"] if bounded else []))
        runs += 1
        codes[final.returncode] += 1
        if final.returncode != 0:
            violations.append(f"final up exited {final.returncode}: {final.stderr.strip()}")
        for v in range(1, KILL_SET + 1):
            if table_rows(t, v) != expected_rows(t, v):
                violations.append(f"after the final up, t_{v} has {table_rows(t, v)} rows")
        ups = t.ups()
        if any(ups.get(v, 0) != 1 for v in range(1, KILL_SET + 1)):
            violations.append(f"after the final up, the log records ups {dict(ups)}")
        if any(s != "applied" for _, s, _ in t.history()):
            violations.append("after the final up, something is dirty")
        return runs
    finally:
        t.drop()


def main():
    kinds = ["postgres", "sqlite"] + (["pgbouncer"] if BOUNCER_PORT else [])
    only = os.environ.get("CAMPAIGN_ONLY")
    if only:
        kinds = [k for k in kinds if k in only.split(",")]
    print(f"capstan: {subprocess.run([BIN, '--version'], capture_output=True, text=True).stdout.strip()}")
    print(f"{RUNNERS} runners x {ROUNDS} rounds per backend; {KILL_ROUNDS} kill -9 rounds per backend; seed {SEED}\n")
    header = f"{'scenario':<28} {'runs':>5} {'violations':>10}  exit codes"
    print(header)
    print("-" * len(header))
    total = 0
    details = []
    for kind in kinds:
        for scenario in ("concurrent", "kill -9"):
            if scenario == "kill -9" and kind == "pgbouncer":
                continue
            codes = collections.Counter()
            violations = []
            if scenario == "concurrent":
                runs = sum(concurrent_round(kind, r, codes, violations) for r in range(1, ROUNDS + 1))
            else:
                runs = kill_rounds(kind, codes, violations)
            total += len(violations)
            shown = ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=lambda kv: str(kv[0])))
            print(f"{kind + ' ' + scenario:<28} {runs:>5} {len(violations):>10}  {shown}", flush=True)
            details += [f"  {kind} {scenario}: {v}" for v in violations]
    print()
    if details:
        print("violations:")
        seen = collections.Counter(details)
        for d, n in seen.items():
            print(d + (f" (x{n})" if n > 1 else ""))
    print(f"total violations: {total}")
    sys.exit(1 if total else 0)


if __name__ == "__main__":
    main()
