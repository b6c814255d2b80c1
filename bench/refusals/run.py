#!/usr/bin/env python3
"""Share of single-migration deploys that `capstan migrate up` refuses.

For each corpus (another tool's migration directory, converted with `capstan
migrate import`), on a fresh Postgres database: for k = 2..N, apply migrations
1..k-1, then ask `capstan migrate plan --to k` (the same pre-`up` lint as
`up`) whether deploying migration k alone is refused (exit 9). Each deploy is
asked of:

  before  the binary given as --before (built from the commit before the
          lint changes);
  after   the binary given as --after, as it runs by default: the live
          database's table sizes count (the corpus tables are empty, so every
          table is small);
  strict  the --after binary with `[lint] small_table_rows = 0`: no table is
          small, so only the removed false alarms make the difference.

Usage (from anywhere):
  run.py --before OLD_CAPSTAN --after NEW_CAPSTAN --database POSTGRES_URL \\
         [--stride N] [--show before|after|strict] [NAME=]TOOL:DIR ...

TOOL is diesel, sqlx, goose, dbmate or golang-migrate. --stride N asks every
Nth deploy only (the migrations in between are still applied one deploy at a
time). Nothing is written outside a temporary directory and the databases it
creates (refusals_bench_*), which it drops.
"""

import argparse
import collections
import json
import os
import re
import subprocess
import sys
import tempfile
import time


def run(cmd, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, **kw)


def db_url(base, name):
    # postgres://user:pw@host:port/db?params -> same with another db
    m = re.match(r"^(postgres(?:ql)?://[^/]*)/([^?]*)(\?.*)?$", base)
    if not m:
        sys.exit(f"--database: not a postgres:// URL with a database name")
    return f"{m.group(1)}/{name}{m.group(3) or ''}"


def psql(url, sql):
    out = run(["psql", url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql])
    if out.returncode != 0:
        sys.exit(f"psql failed: {out.stderr.strip()}")


def refused(binary, url, mdir, k, config, cwd):
    cmd = [binary, "migrate", "plan", "--json", "--to", str(k), "--database", url, "--dir", mdir]
    if config:
        cmd += ["--config", config]
    out = run(cmd, cwd=cwd)
    if out.returncode not in (0, 9):
        return None, [f"exit {out.returncode}: {out.stderr.strip()[:200]}"]
    rules = []
    try:
        doc = json.loads(out.stdout)
        for f in doc.get("lint", {}).get("findings", []):
            rules.append(f.get("rule", "?"))
    except ValueError:
        pass
    return out.returncode == 9, rules


def corpus(args, tool, src, index):
    name = os.path.basename(os.path.normpath(src)) or src
    with tempfile.TemporaryDirectory(prefix="refusals-") as tmp:
        mdir = os.path.join(tmp, "migrations")
        out = run([args.after, "migrate", "import", "--from", tool, src, "--dir", mdir], cwd=tmp)
        if out.returncode != 0:
            print(f"{src}: import failed: {out.stderr.strip()[:300]}")
            return None
        strict = os.path.join(tmp, "strict.toml")
        with open(strict, "w") as f:
            f.write("[lint]\nsmall_table_rows = 0\n")
        # Applying 1..k-1 is set-up, not measured: without the archive, which
        # only copies data the empty corpus tables do not hold.
        apply = os.path.join(tmp, "apply.toml")
        with open(apply, "w") as f:
            f.write("[archive]\nenabled = false\n")
        files = sorted(x for x in os.listdir(mdir) if x.endswith(".sql"))
        versions = [int(x.split("_", 1)[0]) for x in files]
        dbname = f"refusals_bench_{os.getpid()}_{index}"
        url = db_url(args.database, dbname)
        admin = args.database
        psql(admin, f"DROP DATABASE IF EXISTS {dbname}")
        psql(admin, f"CREATE DATABASE {dbname}")
        counts = collections.Counter()
        rules = {"before": collections.Counter(), "after": collections.Counter(), "strict": collections.Counter()}
        asked = 0
        stopped = None
        try:
            for i, v in enumerate(versions):
                verdicts = []
                if i >= 1 and (i % args.stride == 0):
                    for label, binary, config in (
                        ("before", args.before, None),
                        ("after", args.after, None),
                        ("strict", args.after, strict),
                    ):
                        r, why = refused(binary, url, mdir, v, config, tmp)
                        if r is None:
                            stopped = f"plan of {v} failed: {why[0]}"
                            break
                        verdicts.append((label, r, why))
                    if stopped:
                        break
                out = run([args.after, "migrate", "up", "--to", str(v), "--unsafe-ok", "-q",
                           "--config", apply, "--database", url, "--dir", mdir], cwd=tmp)
                if out.returncode != 0:
                    last = out.stderr.strip().splitlines()[-1][:200] if out.stderr.strip() else out.returncode
                    stopped = f"{files[i]} does not apply on this server: {last}"
                    break
                if verdicts:
                    asked += 1
                for label, r, why in verdicts:
                    if r:
                        counts[label] += 1
                        rules[label].update(set(why))
                        if args.show == label:
                            print(f"  {label} refuses {files[i]}: {', '.join(sorted(set(why)))}")
        finally:
            psql(admin, f"DROP DATABASE IF EXISTS {dbname}")
        return {
            "name": name,
            "tool": tool,
            "migrations": len(versions),
            "asked": asked,
            "counts": counts,
            "rules": rules,
            "stopped": stopped,
        }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--before", required=True)
    ap.add_argument("--after", required=True)
    ap.add_argument("--database", default=os.environ.get("CAPSTAN_TEST_PG"))
    ap.add_argument("--stride", type=int, default=1)
    ap.add_argument("--show", choices=["before", "after", "strict"], help="print each deploy this run refuses")
    ap.add_argument("corpora", nargs="+", metavar="TOOL:DIR")
    args = ap.parse_args()
    if not args.database:
        sys.exit("--database (or CAPSTAN_TEST_PG) is required")
    results = []
    for i, c in enumerate(args.corpora):
        label, eq, rest = c.partition("=")
        if not eq:
            label, rest = None, c
        tool, _, src = rest.partition(":")
        t0 = time.time()
        r = corpus(args, tool, os.path.abspath(src), i)
        if r is None:
            continue
        r["seconds"] = time.time() - t0
        r["name"] = label or r["name"]
        results.append(r)
        pct = lambda n: f"{100.0 * n / r['asked']:.1f} %" if r["asked"] else "-"
        print(f"{r['name']} ({tool}, {r['migrations']} migrations, {r['asked']} deploys asked, {r['seconds']:.0f} s)"
              + (f" — stopped: {r['stopped']}" if r["stopped"] else ""))
        for label in ("before", "after", "strict"):
            top = ", ".join(f"{k} {n}" for k, n in r["rules"][label].most_common(5))
            print(f"  {label:7} refused {r['counts'][label]:4} / {r['asked']:4} = {pct(r['counts'][label]):>7}   {top}")
        sys.stdout.flush()
    tot = sum(r["asked"] for r in results)
    if tot:
        print("all corpora:")
        b = sum(r["counts"]["before"] for r in results)
        for label in ("before", "after", "strict"):
            n = sum(r["counts"][label] for r in results)
            ratio = f"  ({n / b:.2f} × before)" if b and label != "before" else ""
            print(f"  {label:7} refused {n:4} / {tot:4} = {100.0 * n / tot:5.1f} %{ratio}")


if __name__ == "__main__":
    main()
