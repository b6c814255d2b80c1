//! `capstan events tail|query|compare|serve`: the clap arguments and `run`.
//!
//! Exit codes: 0 success; 2 usage (clap); 3 bad input (an expression, a
//! calculation list, a time), nothing read or changed; 4 the store cannot be opened
//! or read, or the listener cannot be bound.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::{Args, Subcommand};

use crate::expr::fmt_num;
use crate::{
    otlp_router, Calc, Comparison, Error, Event, Expr, ExprError, Field, Query, QueryResult,
    Retention, Store,
};

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: bad input (expression, calculation list, time); nothing was read or changed.
pub const EXIT_BAD_INPUT: i32 = 3;
/// Exit code: the store cannot be opened or read, or the listener cannot be bound.
pub const EXIT_STORE: i32 = 4;

/// `capstan events`: read the wide events the proxy (or an OTLP exporter) recorded.
#[derive(Debug, Clone, Args)]
pub struct EventsArgs {
    /// The event store (SQLite).
    #[arg(
        long,
        global = true,
        default_value = "capstan-events.db",
        env = "CAPSTAN_EVENTS_STORE",
        value_name = "PATH"
    )]
    pub store: PathBuf,
    /// What to do.
    #[command(subcommand)]
    pub command: EventsCommand,
}

/// The `capstan events` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum EventsCommand {
    /// Print new events as they are stored, until Ctrl-C or --limit.
    Tail(TailArgs),
    /// Filter, group and calculate over raw events in a time range.
    Query(QueryArgs),
    /// Rank every field by how differently it is distributed in two sets of events.
    Compare(CompareArgs),
    /// Receive OTLP/HTTP traces (`POST /v1/traces`) and store server and root spans as events.
    Serve(ServeArgs),
}

/// The time range of a query: `--since` (default 1h) or `--from`/`--to`.
#[derive(Debug, Clone, Args)]
pub struct TimeRange {
    /// Events of the last DURATION (e.g. 15m, 1h, 7d).
    #[arg(long, value_name = "DURATION", conflicts_with = "from")]
    pub since: Option<String>,
    /// Events from TIME (RFC 3339, e.g. 2026-12-01T10:00:00Z, or unix ms).
    #[arg(long, value_name = "TIME")]
    pub from: Option<String>,
    /// Events before TIME (RFC 3339 or unix ms; default now).
    #[arg(long, value_name = "TIME")]
    pub to: Option<String>,
}

/// `capstan events tail`.
#[derive(Debug, Clone, Args)]
pub struct TailArgs {
    /// Only events matching this expression.
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Stop after this many events.
    #[arg(long)]
    pub limit: Option<u64>,
    /// How often to look for new events.
    #[arg(long, default_value = "250ms", value_parser = parse_duration)]
    pub interval: Duration,
    /// One JSON object per line.
    #[arg(long)]
    pub json: bool,
}

/// `capstan events query`.
#[derive(Debug, Clone, Args)]
pub struct QueryArgs {
    /// Only events matching this expression.
    #[arg(long = "where", value_name = "EXPR")]
    pub filter: Option<String>,
    /// Fields to group by (comma-separated or repeated).
    #[arg(long, value_delimiter = ',', value_name = "FIELD")]
    pub group_by: Vec<String>,
    /// Calculations: count, error_rate, p50(f), p90(f), p95(f), p99(f), avg(f), min(f), max(f), sum(f).
    #[arg(long, default_value = "count", value_name = "LIST")]
    pub calc: String,
    /// Time range.
    #[command(flatten)]
    pub range: TimeRange,
    /// Print JSON (see docs/events.md).
    #[arg(long)]
    pub json: bool,
}

/// `capstan events compare`.
#[derive(Debug, Clone, Args)]
pub struct CompareArgs {
    /// Set A.
    #[arg(long, value_name = "EXPR")]
    pub a: String,
    /// Set B (default: every event not in A).
    #[arg(long, value_name = "EXPR")]
    pub b: Option<String>,
    /// Show this many fields (all with --json).
    #[arg(long, default_value_t = 15)]
    pub top: usize,
    /// Time range.
    #[command(flatten)]
    pub range: TimeRange,
    /// Print JSON (see docs/events.md).
    #[arg(long)]
    pub json: bool,
}

/// `capstan events serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    /// Address to listen on (OTLP/HTTP's usual port is 4318).
    #[arg(long, default_value = "127.0.0.1:4318", value_name = "ADDR")]
    pub listen: String,
    /// Events the queue to the store holds before a request is refused with 503.
    #[arg(long, default_value_t = 65_536)]
    pub queue: usize,
    /// Delete raw events older than this.
    #[arg(long, default_value = "7d", value_parser = parse_duration, value_name = "DURATION")]
    pub keep_raw: Duration,
    /// Delete rollup minutes older than this.
    #[arg(long, default_value = "400d", value_parser = parse_duration, value_name = "DURATION")]
    pub keep_rollups: Duration,
    /// Delete the oldest raw events, then the oldest rollup minutes, while the store holds more than this many MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_size_mib: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{e} (write e.g. 250ms or 1s)"))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Unix ms of `s`: unix ms, RFC 3339 with its offset (`Z`, `+02:00`)
/// honoured, or a date and time without one, taken as UTC.
fn parse_time(flag: &str, s: &str) -> Result<i64, String> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(s) {
        return Ok(t.timestamp_millis());
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f"]
        .iter()
        .find_map(|f| chrono::NaiveDateTime::parse_from_str(s, f).ok())
        .map(|t| t.and_utc().timestamp_millis())
        .ok_or_else(|| {
            format!(
                "--{flag} {s:?}: not a time (write RFC 3339, e.g. 2026-12-01T10:00:00Z or \
                 2026-12-01T12:00:00+02:00, a date and time without an offset for UTC, or unix ms)"
            )
        })
}

impl TimeRange {
    /// The range as `[from_ms, to_ms)` at `now_ms`.
    pub fn resolve(&self, now_ms: i64) -> Result<(i64, i64), String> {
        let to = match &self.to {
            Some(t) => parse_time("to", t)?,
            None => now_ms + 1,
        };
        let from = match (&self.from, &self.since) {
            (Some(f), _) => parse_time("from", f)?,
            (None, Some(s)) => {
                let d = humantime::parse_duration(s)
                    .map_err(|e| format!("--since {s:?}: {e} (write e.g. 15m, 1h or 7d)"))?;
                // Longer than i64 milliseconds reach (292 million years) is "all time".
                let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
                if ms == 0 {
                    return Err(format!(
                        "--since {s:?}: the range would be empty; give at least 1ms (e.g. 15m, 1h or 7d)"
                    ));
                }
                to.saturating_sub(ms)
            }
            (None, None) => to - 3_600_000,
        };
        if from >= to {
            return Err("--from must be before --to".into());
        }
        Ok((from, to))
    }
}

enum Failure {
    BadInput(String),
    Store(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Store(e.to_string())
    }
}

fn expr(flag: &str, s: &str) -> Result<Expr, Failure> {
    Expr::parse(s).map_err(|e| bad_expr(flag, e))
}

fn bad_expr(flag: &str, e: ExprError) -> Failure {
    Failure::BadInput(format!("--{flag}: {e}"))
}

fn open_existing(path: &Path) -> Result<Store, Failure> {
    if !path.exists() {
        return Err(Failure::Store(format!(
            "no event store at {} (give --store PATH, or record events first)",
            path.display()
        )));
    }
    Ok(Store::open(path)?)
}

/// Runs `capstan events` and returns the exit code.
pub async fn run(args: EventsArgs) -> i32 {
    let res = match args.command {
        EventsCommand::Tail(t) => tail(&args.store, t).await,
        EventsCommand::Query(q) => query(&args.store, q),
        EventsCommand::Compare(c) => compare(&args.store, c),
        EventsCommand::Serve(s) => serve(&args.store, s).await,
    };
    match res {
        Ok(()) => EXIT_OK,
        Err(Failure::BadInput(m)) => {
            eprintln!("error: {m}");
            EXIT_BAD_INPUT
        }
        Err(Failure::Store(m)) => {
            eprintln!("error: {m}");
            EXIT_STORE
        }
    }
}

fn query(store: &Path, a: QueryArgs) -> Result<(), Failure> {
    let filter = match &a.filter {
        Some(s) => expr("where", s)?,
        None => Expr::all(),
    };
    let calcs = Calc::parse_list(&a.calc).map_err(|e| bad_expr("calc", e))?;
    let group_by: Vec<Field> = a
        .group_by
        .iter()
        .map(|s| s.trim())
        .filter(|s| !s.is_empty())
        .map(|s| {
            Field::from_user_name(s).map_err(|m| Failure::BadInput(format!("--group-by: {m}")))
        })
        .collect::<Result<_, _>>()?;
    let (from_ms, to_ms) = a.range.resolve(now_ms()).map_err(Failure::BadInput)?;
    let store = open_existing(store)?;
    let res = store.query(&Query {
        filter,
        group_by,
        calcs,
        from_ms,
        to_ms,
    })?;
    let mut out = std::io::stdout().lock();
    if a.json {
        let _ = writeln!(out, "{}", query_json(&res, from_ms, to_ms));
    } else {
        let _ = write!(out, "{}", query_table(&res));
    }
    Ok(())
}

/// The JSON document `events query --json` prints.
pub fn query_json(res: &QueryResult, from_ms: i64, to_ms: i64) -> serde_json::Value {
    let rows: Vec<serde_json::Value> = res
        .rows
        .iter()
        .map(|r| {
            let group: serde_json::Map<String, serde_json::Value> = res
                .group_by
                .iter()
                .zip(&r.group)
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect();
            let values: serde_json::Map<String, serde_json::Value> = res
                .calcs
                .iter()
                .zip(&r.values)
                .map(|(k, v)| (k.clone(), serde_json::json!(v)))
                .collect();
            serde_json::json!({ "group": group, "values": values })
        })
        .collect();
    serde_json::json!({
        "from_ms": from_ms,
        "to_ms": to_ms,
        "group_by": res.group_by,
        "calcs": res.calcs,
        "rows": rows,
    })
}

fn fmt_value(v: Option<f64>) -> String {
    match v {
        None => "-".into(),
        Some(x) if x.fract() == 0.0 && x.abs() < 1e15 => fmt_num(x),
        Some(x) => format!("{x:.3}"),
    }
}

fn table(header: Vec<String>, rows: Vec<Vec<String>>, right_from: usize) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i > 0 {
                s.push_str("  ");
            }
            let pad = widths[i] - c.chars().count();
            if i >= right_from {
                s.push_str(&" ".repeat(pad));
                s.push_str(c);
            } else {
                s.push_str(c);
                if i + 1 < cells.len() {
                    s.push_str(&" ".repeat(pad));
                }
            }
        }
        s.push('\n');
        s
    };
    let mut out = line(&header);
    for r in &rows {
        out.push_str(&line(r));
    }
    out
}

/// The text table `events query` prints.
pub fn query_table(res: &QueryResult) -> String {
    let header: Vec<String> = res.group_by.iter().chain(&res.calcs).cloned().collect();
    let rows = res
        .rows
        .iter()
        .map(|r| {
            r.group
                .iter()
                .map(|g| match g.as_deref() {
                    None => "(none)".to_string(),
                    Some("") => "\"\"".to_string(),
                    // Values come from requests (paths, fields): one table
                    // line each, nothing that reaches the terminal raw.
                    Some(v) => escaped(v).into_owned(),
                })
                .chain(r.values.iter().map(|v| fmt_value(*v)))
                .collect()
        })
        .collect();
    if res.rows.is_empty() {
        return "no matching events\n".into();
    }
    table(header, rows, res.group_by.len())
}

fn compare(store: &Path, c: CompareArgs) -> Result<(), Failure> {
    let a = expr("a", &c.a)?;
    let b = match &c.b {
        Some(s) => Some(expr("b", s)?),
        None => None,
    };
    let (from_ms, to_ms) = c.range.resolve(now_ms()).map_err(Failure::BadInput)?;
    let store = open_existing(store)?;
    let cmp = store.compare(&a, b.as_ref(), from_ms, to_ms)?;
    let mut out = std::io::stdout().lock();
    if c.json {
        let doc = serde_json::json!({
            "from_ms": from_ms,
            "to_ms": to_ms,
            "a": a.source(),
            "b": b.as_ref().map(Expr::source),
            "a_count": cmp.a_count,
            "b_count": cmp.b_count,
            "fields": cmp.fields,
        });
        let _ = writeln!(out, "{doc}");
    } else {
        let b_src = c.b.clone().unwrap_or_else(|| format!("not ({})", c.a));
        let _ = write!(out, "{}", compare_text(&cmp, &c.a, &b_src, c.top));
    }
    Ok(())
}

/// The text `events compare` prints.
pub fn compare_text(cmp: &Comparison, a: &str, b: &str, top: usize) -> String {
    let mut out = format!(
        "A: {} events  ({a})\nB: {} events  ({b})\n\n",
        cmp.a_count, cmp.b_count
    );
    let shares = |v: &[crate::Share]| {
        v.iter()
            .take(3)
            .map(|s| {
                let v = if s.value.is_empty() {
                    "\"\"".into()
                } else {
                    escaped(&s.value)
                };
                format!("{v} {}", percent(s.share))
            })
            .collect::<Vec<_>>()
            .join(", ")
    };
    // A numeric field shows its percentiles: its score compares exact
    // values, which buckets of a few bounds can hide.
    let side = |top: &[crate::Share], q: Option<crate::Quantiles>| match q {
        Some(q) => q.to_string(),
        None => shares(top),
    };
    let rows = cmp
        .fields
        .iter()
        .take(top)
        .map(|f| {
            vec![
                escaped(&f.field).into_owned(),
                format!("{:.2}", f.score),
                side(&f.a_top, f.a_quantiles),
                side(&f.b_top, f.b_quantiles),
            ]
        })
        .collect();
    out.push_str(&table(
        vec!["field".into(), "score".into(), "in A".into(), "in B".into()],
        rows,
        usize::MAX,
    ));
    out
}

/// A share as a whole percent, without rounding a rare value to "0%".
fn percent(share: f64) -> String {
    let p = (share * 100.0).round();
    if share > 0.0 && p == 0.0 {
        "<1%".into()
    } else {
        format!("{p:.0}%")
    }
}

/// One event as `tail` prints it in text: one line, whatever its values
/// hold (see [`escaped`]).
pub fn event_line(e: &Event) -> String {
    let t = UNIX_EPOCH + Duration::from_millis(e.time_ms.max(0) as u64);
    let mut s = format!(
        "{} {} {} {} {} {}ms release={}",
        humantime::format_rfc3339_millis(t),
        escaped(&e.service),
        escaped(&e.method),
        escaped(&e.path),
        e.status,
        fmt_num((e.duration_ms * 10.0).round() / 10.0),
        escaped(&e.release)
    );
    if !e.cohort.is_empty() {
        s.push_str(&format!(" cohort={}", escaped(&e.cohort)));
    }
    if let Some(err) = &e.error {
        s.push_str(&format!(" error={}", escaped(err)));
    }
    for (k, v) in &e.fields {
        s.push_str(&format!(" {}={}", escaped(k), escaped(v)));
    }
    s
}

/// Text from an event made safe to print on a terminal: anyone who can send
/// spans to the receiver sets attribute values, paths and status messages,
/// and a newline in one would print a line of its own (a made-up event), an
/// escape sequence would reach the terminal. Control characters (C0, DEL,
/// C1), the line and paragraph separators and the bidirectional overrides and
/// isolates print as Rust escapes (`\n`, `\t`, `\r`, `\u{1b}`), and a
/// backslash as `\\`, so the escaped text reads back unambiguously; every
/// other character, printable Unicode included, is kept as it is.
pub fn escaped(s: &str) -> std::borrow::Cow<'_, str> {
    fn needs_escape(c: char) -> bool {
        c == '\\'
            || c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }
    if !s.chars().any(needs_escape) {
        return s.into();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if needs_escape(c) {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

async fn tail(store: &Path, t: TailArgs) -> Result<(), Failure> {
    let filter = match &t.filter {
        Some(s) => Some(expr("where", s)?),
        None => None,
    };
    let store = open_existing(store)?;
    follow(&store, filter.as_ref(), &t, &mut std::io::stdout()).await
}

/// Writes the events stored from now on that match `filter` to `out`, one a
/// line, until `--limit` of them are written, Ctrl-C, or `out` is closed.
async fn follow(
    store: &Store,
    filter: Option<&Expr>,
    t: &TailArgs,
    out: &mut impl std::io::Write,
) -> Result<(), Failure> {
    if t.limit == Some(0) {
        return Ok(());
    }
    let mut last = store.last_id()?;
    let mut shown = 0u64;
    let ctrl_c = tokio::signal::ctrl_c();
    tokio::pin!(ctrl_c);
    loop {
        let batch = store.events_after(last, 1000)?;
        let full = batch.len() == 1000;
        for se in batch {
            last = se.id;
            if filter.is_some_and(|f| !f.matches(&se.event)) {
                continue;
            }
            let line = if t.json {
                serde_json::to_string(&se.event).unwrap_or_default()
            } else {
                event_line(&se.event)
            };
            if writeln!(out, "{line}").is_err() {
                return Ok(()); // stdout closed (e.g. piped into head)
            }
            shown += 1;
            if t.limit.is_some_and(|l| shown >= l) {
                let _ = out.flush();
                return Ok(());
            }
        }
        let _ = out.flush();
        if full {
            continue;
        }
        tokio::select! {
            _ = &mut ctrl_c => return Ok(()),
            _ = tokio::time::sleep(t.interval) => {}
        }
    }
}

/// `d` in the largest whole unit of days, hours, minutes or seconds, as
/// the flags are written (`500d`, not humantime's years and months).
fn whole(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s % 86_400 == 0 => format!("{}d", s / 86_400),
        _ if s % 3_600 == 0 => format!("{}h", s / 3_600),
        _ if s % 60 == 0 => format!("{}m", s / 60),
        _ => format!("{s}s"),
    }
}

async fn serve(store: &Path, s: ServeArgs) -> Result<(), Failure> {
    // The store refuses it too; here the answer names the flags, as bad input.
    if s.keep_rollups < s.keep_raw {
        return Err(Failure::BadInput(format!(
            "--keep-rollups ({}) is shorter than --keep-raw ({}): the rollups must be kept at least as long as raw events",
            whole(s.keep_rollups),
            whole(s.keep_raw)
        )));
    }
    let store = Store::open_with(
        store,
        Retention {
            raw_max_age: s.keep_raw,
            max_bytes: s.max_size_mib.saturating_mul(1 << 20),
            rollup_max_age: s.keep_rollups,
        },
    )?;
    let listener = tokio::net::TcpListener::bind(&s.listen)
        .await
        .map_err(|e| Failure::Store(format!("cannot listen on {}: {e}", s.listen)))?;
    let addr = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| s.listen.clone());
    let (recorder, task) = store.clone().spawn_recorder(s.queue);
    eprintln!(
        "receiving OTLP/HTTP traces on http://{addr}/v1/traces into {}",
        store.path().display()
    );
    let app = otlp_router(recorder.clone());
    let shutdown = async {
        #[cfg(unix)]
        {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending().await } } => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    };
    let served = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await;
    // Nothing is dropped here: a batch that does not fit the queue is
    // answered 503 (retried) or 413, never accepted in part.
    let received = recorder.recorded();
    drop(recorder);
    let written = task.shutdown().await?;
    eprintln!(
        "stopped: {received} events received, {} written, {} not written (the store refused their batch)",
        written.stored, written.failed
    );
    served.map_err(|e| Failure::Store(format!("serving {addr}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Follows `store` with `--limit limit` while one event is stored 100 ms
    /// after it starts; what it printed.
    async fn follow_while_one_event_is_stored(store: &Store, limit: u64) -> String {
        let t = TailArgs {
            filter: None,
            limit: Some(limit),
            interval: Duration::from_millis(5),
            json: false,
        };
        let writer = store.clone();
        let insert = async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let e = Event {
                time_ms: now_ms(),
                service: "svc".into(),
                ..Event::default()
            };
            writer.insert_batch(&[e]).unwrap();
        };
        let mut out = Vec::new();
        let (res, ()) = tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(follow(store, None, &t, &mut out), insert)
        })
        .await
        .expect("tail did not stop at its limit");
        assert!(res.is_ok());
        String::from_utf8(out).unwrap()
    }

    fn since(s: &str) -> Result<(i64, i64), String> {
        TimeRange {
            since: Some(s.into()),
            from: None,
            to: None,
        }
        .resolve(1_790_000_000_000)
    }

    #[test]
    fn an_empty_since_is_refused_naming_since() {
        for s in ["0s", "0ms", "500us"] {
            let e = since(s).unwrap_err();
            assert!(e.starts_with("--since"), "{s}: {e}");
        }
        assert_eq!(since("1ms"), Ok((1_790_000_000_000, 1_790_000_000_001)));
    }

    /// An offset is honoured, with or without fractional seconds; a time
    /// without one is UTC.
    #[test]
    fn from_and_to_honour_the_offset_they_are_given() {
        let utc = parse_time("from", "2026-12-01T08:00:00Z").unwrap();
        for s in [
            "2026-12-01T10:00:00+02:00",
            "2026-12-01T10:00:00.000+02:00",
            "2026-12-01T03:00:00-05:00",
            "2026-12-01T08:00:00",
            "2026-12-01 08:00:00.000",
            "1796112000000",
        ] {
            assert_eq!(parse_time("from", s), Ok(utc), "{s}");
        }
        let e = parse_time("to", "yesterday").unwrap_err();
        assert!(e.starts_with("--to \"yesterday\": not a time"), "{e}");
    }

    #[test]
    fn a_huge_since_reaches_back_as_far_as_it_can_without_wrapping() {
        for s in ["1000000000y", "300000000y", "584000000000y"] {
            let (from, to) = since(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!(to, 1_790_000_000_001, "{s}");
            assert!(from < 0 && from < to, "{s}: {from}");
        }
        assert_eq!(
            since("584000000000y").unwrap().0,
            1_790_000_000_001 - i64::MAX
        );
    }

    #[tokio::test]
    async fn tail_with_limit_zero_prints_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("events.db")).unwrap();
        assert_eq!(follow_while_one_event_is_stored(&store, 0).await, "");
        let one = follow_while_one_event_is_stored(&store, 1).await;
        assert_eq!(one.lines().count(), 1, "{one}");
        assert!(one.contains(" svc "), "{one}");
    }

    #[test]
    fn quantiles_print_with_at_most_three_decimals() {
        let q = crate::Quantiles {
            p50: 13.0,
            p90: 1.0346,
            p99: 0.0004,
        };
        assert_eq!(q.to_string(), "p50 13, p90 1.035, p99 0");
    }

    #[test]
    fn a_rare_value_is_never_zero_percent() {
        assert_eq!(percent(0.0), "0%");
        assert_eq!(percent(0.001), "<1%");
        assert_eq!(percent(0.0049), "<1%");
        assert_eq!(percent(0.005), "1%");
        assert_eq!(percent(0.006), "1%");
        assert_eq!(percent(0.5), "50%");
        assert_eq!(percent(1.0), "100%");
    }
}
