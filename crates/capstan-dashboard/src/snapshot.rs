//! The snapshot every page renders: SLO status (from
//! [`capstan_slo::status`], the function behind `capstan slo status`),
//! chart points drawn from the same counts, the deploy log, rollouts, and the
//! database's migrations, fleet and archive of every service found there. A
//! background task rebuilds it;
//! requests only read the last one, so a page never waits on a source.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use capstan_migrate::{ArchiveEntry, Entry, InstanceRow, DEFAULT_SERVICE};
use capstan_rollout::controller::store::StateStore;
use capstan_rollout::controller::State as RolloutState;
use capstan_slo::math::{self, Method, MINUTE_MS};
use capstan_slo::spec::{Budgeting, Slo};
use capstan_slo::{Deploy, DeployLog, Loaded, Prometheus, Settings, SpanCounts, StatusReport};

/// Points on the SLI and burn-down charts of one objective.
pub const CHART_POINTS: i64 = 120;

/// Where the dashboard reads from.
#[derive(Debug, Clone)]
pub struct Sources {
    /// SLO files, event store, Prometheus, database (as `capstan slo` reads them).
    pub settings: Settings,
    /// The rollout controller's state file.
    pub rollout_state: PathBuf,
    /// The migration directory compared with the history of the `default`
    /// service, or of the one service `capstan.toml` declares when that
    /// service names no `dir` (a declared service's `dir` is its own).
    pub migrations_dir: PathBuf,
}

impl Sources {
    /// The migration directory of the database service `name`: a declared
    /// service's `dir` (relative to `capstan.toml`), else
    /// [`Sources::migrations_dir`] for `default` or the only declared
    /// service; `None` for a service only the database knows (its history
    /// is shown as it is).
    pub fn dir_of(&self, name: &str) -> Option<PathBuf> {
        let services = &self.settings.services;
        if let Ok(s) = services.get(name) {
            if let Some(d) = &s.dir {
                let base = self
                    .settings
                    .config
                    .parent()
                    .filter(|p| !p.as_os_str().is_empty());
                return Some(base.map_or_else(|| d.clone(), |b| b.join(d)));
            }
            if services.iter().count() == 1 {
                return Some(self.migrations_dir.clone());
            }
            return None;
        }
        (name == DEFAULT_SERVICE && services.is_empty()).then(|| self.migrations_dir.clone())
    }
}

/// One service's rows of capstan's tables in the database.
#[derive(Debug, Clone)]
pub struct ServiceRows {
    /// The service (`default` for a project that declares none).
    pub name: String,
    /// Its migrations compared with its directory ([`Sources::dir_of`]);
    /// without one, its history as recorded.
    pub migrations: Partial<Vec<Entry>>,
    /// Its fleet registry.
    pub fleet: Partial<Vec<InstanceRow>>,
    /// Its archive entries.
    pub archive: Partial<Vec<ArchiveEntry>>,
}

/// What a page about the SLO service `name` shows of the database.
pub struct RowsFor<'a> {
    /// The database service's rows.
    pub rows: &'a ServiceRows,
    /// The fleet rows of `name` only: the database has no service of that
    /// name, so these are the `default` service's rows, whose instances
    /// are told apart by their application name.
    pub by_app: Option<&'a str>,
}

impl RowsFor<'_> {
    /// The fleet instances that belong to the page's service.
    pub fn instances(&self) -> impl Iterator<Item = &InstanceRow> {
        let by_app = self.by_app;
        self.rows
            .fleet
            .iter()
            .flatten()
            .filter(move |r| by_app.is_none_or(|a| r.instance.app == a))
    }
}

/// One point of an objective's charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ChartPoint {
    /// End of the bucket, unix ms.
    pub t_ms: i64,
    /// The SLI within the bucket (`None`: no events).
    pub sli: Option<f64>,
    /// Budget remaining, evaluated over the period up to `t_ms`.
    pub remaining: f64,
}

/// An objective's chart: the period and its points.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Chart {
    /// Start of the period, unix ms.
    pub start_ms: i64,
    /// The evaluation time, unix ms.
    pub now_ms: i64,
    /// Points, oldest first.
    pub points: Vec<ChartPoint>,
}

/// Something a source could not tell, shown on the page instead of its data.
pub type Partial<T> = Result<T, String>;

/// Everything the pages show, as of one moment.
#[derive(Debug, Clone)]
pub struct Snapshot {
    /// Increases with every rebuild (0: none yet).
    pub generation: u64,
    /// When it was taken, unix ms (whole seconds, so `slo status --at` with the
    /// RFC 3339 time the page shows reproduces it exactly).
    pub at_ms: i64,
    /// How long the rebuild took.
    pub took: Duration,
    /// SLO status, or why it is missing.
    pub status: Option<Partial<StatusReport>>,
    /// Charts by (SLO name, objective index).
    pub charts: BTreeMap<(String, usize), Chart>,
    /// The deploy log over the last 31 days, oldest first.
    pub deploys: Partial<Vec<Deploy>>,
    /// Rollouts by service.
    pub rollouts: Partial<Vec<RolloutState>>,
    /// Every service's migrations (applied, pending, …), fleet and archive
    /// entries, by name; `None` without a database.
    pub services: Option<Partial<Vec<ServiceRows>>>,
    /// The database, password replaced.
    pub database: Option<String>,
    /// Releases that served each service in the last 15 minutes, with their
    /// event counts (from the event store).
    pub releases: BTreeMap<String, Vec<(String, u64)>>,
}

impl Default for Snapshot {
    fn default() -> Snapshot {
        Snapshot {
            generation: 0,
            at_ms: 0,
            took: Duration::ZERO,
            status: None,
            charts: BTreeMap::new(),
            deploys: Ok(Vec::new()),
            rollouts: Ok(Vec::new()),
            services: None,
            database: None,
            releases: BTreeMap::new(),
        }
    }
}

impl Snapshot {
    fn unreadable(&mut self, why: String) {
        self.services = Some(Err(why));
    }

    /// The database rows a page about the SLO service `name` shows: the
    /// database service of that name, else (a project whose one service
    /// is `default`) the `default` service's, its fleet told apart by
    /// application name. `None` without a database, when it could not be
    /// read, or when it has neither.
    pub fn rows_for<'a>(&'a self, name: &'a str) -> Option<RowsFor<'a>> {
        let list = self.services.as_ref()?.as_ref().ok()?;
        if let Some(rows) = list.iter().find(|r| r.name == name) {
            return Some(RowsFor { rows, by_app: None });
        }
        list.iter()
            .find(|r| r.name == DEFAULT_SERVICE)
            .map(|rows| RowsFor {
                rows,
                by_app: Some(name),
            })
    }
}

/// The chart's buckets of `slo` at `now_ms`: the period's start and the
/// bucket length (the last bucket ends at `now_ms`).
pub fn chart_buckets(slo: &Slo, now_ms: i64) -> (i64, i64) {
    let period = math::period(&slo.window, now_ms);
    let span = (now_ms - period.start_ms).max(MINUTE_MS);
    (period.start_ms, (span / CHART_POINTS).max(MINUTE_MS))
}

/// Draws an objective's charts from the counts `slo status` evaluated.
pub fn chart(loaded: &Loaded, method: Method, target: f64, slo: &Slo, now_ms: i64) -> Chart {
    let period = math::period(&slo.window, now_ms);
    let (_, step) = chart_buckets(slo, now_ms);
    let mut points = Vec::with_capacity(CHART_POINTS as usize + 1);
    let mut a = period.start_ms;
    while a < now_ms {
        let b = (a + step).min(now_ms);
        let bucket = method.measure(loaded, a, b);
        let so_far = method.measure(loaded, period.start_ms, b);
        points.push(ChartPoint {
            t_ms: b,
            sli: bucket.error_ratio().map(|e| 1.0 - e),
            remaining: math::budget(so_far.error_ratio(), target, None).remaining,
        });
        a = b;
    }
    Chart {
        start_ms: period.start_ms,
        now_ms,
        points,
    }
}

/// Rebuilds the snapshot at `now_ms` (whole seconds).
pub async fn build(sources: &Sources, generation: u64, now_ms: i64) -> Snapshot {
    let started = std::time::Instant::now();
    let mut charts = BTreeMap::new();
    let mut from_prometheus: Vec<Slo> = Vec::new();
    let status = {
        let mut inspect = |slo: &Slo, loaded: &Loaded| {
            // Prometheus answered only the spans the math asks for: the
            // chart's buckets are asked for below.
            if matches!(loaded, Loaded::Spans(_)) {
                from_prometheus.push(slo.clone());
                return;
            }
            for (i, o) in slo.objectives.iter().enumerate() {
                charts.insert(
                    (slo.name.clone(), i),
                    chart(loaded, Method::of(slo.budgeting, o), o.target, slo, now_ms),
                );
            }
        };
        capstan_slo::status(&sources.settings, None, now_ms, &mut inspect)
            .await
            .map_err(|e| e.to_string())
    };
    if status.is_ok() {
        prometheus_charts(sources, &from_prometheus, now_ms, &mut charts).await;
    }
    let store = sources.settings.store.clone();
    let deploys = match DeployLog::open_existing(&store) {
        Ok(Some(log)) => log
            .list(None, now_ms - 31 * 1440 * MINUTE_MS, i64::MAX)
            .map_err(|e| e.to_string()),
        Ok(None) => Ok(Vec::new()),
        Err(e) => Err(e.to_string()),
    };
    let rollouts = if sources.rollout_state.exists() {
        StateStore::open(&sources.rollout_state)
            .and_then(|s| s.all())
            .map_err(|e| e.to_string())
    } else {
        Ok(Vec::new())
    };
    let releases = tokio::task::spawn_blocking(move || recent_releases(&store, now_ms))
        .await
        .unwrap_or_default();
    let mut snap = Snapshot {
        generation,
        at_ms: now_ms,
        took: Duration::ZERO,
        status: Some(status),
        charts,
        deploys,
        rollouts,
        releases,
        ..Snapshot::default()
    };
    if let Some(url) = &sources.settings.database {
        read_database(url, sources, &mut snap).await;
    }
    snap.took = started.elapsed();
    snap
}

/// Charts of Prometheus-sourced SLOs (occurrences budgeting; the timeslice
/// methods need per-slice counts Prometheus is not asked for): each bucket's
/// counts from one range query per expression, the burn-down from their
/// running sums. A Prometheus that fails now only costs the chart (the
/// status above has its numbers).
async fn prometheus_charts(
    sources: &Sources,
    slos: &[Slo],
    now_ms: i64,
    charts: &mut BTreeMap<(String, usize), Chart>,
) {
    let Some(url) = &sources.settings.prometheus else {
        return;
    };
    let Ok(prom) = Prometheus::new(url, sources.settings.timeout) else {
        return;
    };
    for slo in slos {
        if slo.budgeting != Budgeting::Occurrences {
            continue;
        }
        let (start, step) = chart_buckets(slo, now_ms);
        let buckets = match prom.buckets(slo, start, step, now_ms).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("chart of SLO {}: {e}", slo.name);
                continue;
            }
        };
        let mut spans = SpanCounts::default();
        let mut so_far = math::Counts::default();
        for (from, to, c) in buckets {
            spans.insert(from, to, c);
            so_far.bad += c.bad;
            so_far.total += c.total;
            spans.insert(start, to, so_far);
        }
        let loaded = Loaded::Spans(spans);
        for (i, o) in slo.objectives.iter().enumerate() {
            charts.insert(
                (slo.name.clone(), i),
                chart(&loaded, Method::Occurrences, o.target, slo, now_ms),
            );
        }
    }
}

/// Releases seen per service in the 15 minutes before `now_ms`.
fn recent_releases(store: &std::path::Path, now_ms: i64) -> BTreeMap<String, Vec<(String, u64)>> {
    let mut out: BTreeMap<String, Vec<(String, u64)>> = BTreeMap::new();
    if !store.exists() {
        return out;
    }
    let Ok(s) = capstan_events::Store::open(store) else {
        return out;
    };
    let Ok(rows) = s.rollups(None, now_ms - 15 * MINUTE_MS, now_ms + 1) else {
        return out;
    };
    let mut by: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in rows {
        *by.entry((r.service, r.release)).or_default() += r.count;
    }
    for ((svc, rel), n) in by {
        out.entry(svc).or_default().push((rel, n));
    }
    out
}

/// Migrations, fleet and archive. Every message goes through `redact_text`:
/// a connection string never reaches the page with its password.
async fn read_database(url: &str, sources: &Sources, snap: &mut Snapshot) {
    use capstan_migrate::redact_text;
    let url = match capstan_migrate::DatabaseUrl::parse(url) {
        Ok(u) => u,
        Err(e) => {
            snap.unreadable(redact_text(&e.to_string()));
            return;
        }
    };
    snap.database = Some(url.to_string());
    // The sources' timeout (10 s by default) bounds the connect, then the reads.
    let bound = sources.settings.timeout;
    let no_answer = format!("the database did not answer within {bound:?}");
    let connect =
        tokio::time::timeout(bound, capstan_migrate::Database::connect_read_only(&url)).await;
    let mut db = match connect {
        Ok(Ok(db)) => db,
        Ok(Err(e)) => {
            snap.unreadable(redact_text(&e.to_string()));
            return;
        }
        Err(_) => {
            snap.unreadable(no_answer);
            return;
        }
    };
    // The reads are bounded as the connect is: a server that accepted the
    // connection and then stops answering leaves the panel unreadable, not
    // the snapshot task stuck.
    match tokio::time::timeout(bound, read_services(&mut db, sources)).await {
        Ok(Ok(list)) => snap.services = Some(Ok(list)),
        Ok(Err(e)) => snap.unreadable(redact_text(&e.to_string())),
        Err(_) => snap.unreadable(no_answer),
    }
}

/// The services found in the database, the declared ones (their pending
/// migrations show before their first deploy), and `default` when nothing
/// is declared, each with its rows.
async fn read_services(
    db: &mut capstan_migrate::Database,
    sources: &Sources,
) -> Result<Vec<ServiceRows>, capstan_migrate::Error> {
    let found = db.services_in_use().await?;
    let mut names: std::collections::BTreeSet<String> = found.into_iter().collect();
    names.extend(sources.settings.services.names());
    if sources.settings.services.is_empty() {
        names.insert(DEFAULT_SERVICE.to_string());
    }
    let mut list = Vec::new();
    for name in names {
        db.driver().set_service(&name);
        list.push(read_service(db, sources, name).await);
    }
    Ok(list)
}

/// One service's migrations, fleet and archive, errors redacted.
async fn read_service(
    db: &mut capstan_migrate::Database,
    sources: &Sources,
    name: String,
) -> ServiceRows {
    use capstan_migrate::redact_text;
    let history = db.history().await.map_err(|e| redact_text(&e.to_string()));
    let dir = sources.dir_of(&name);
    let migrations = history.and_then(|h| {
        let set = match &dir {
            Some(dir) => capstan_migrate::MigrationSet::from_dir_unchecked(dir)
                .map_err(|e| format!("{}: {e}", dir.display()))?,
            None => capstan_migrate::MigrationSet::default(),
        };
        let mut entries = capstan_migrate::compare(&set, &h);
        if dir.is_none() {
            // No directory to compare with: what ran is applied, not ahead.
            for e in entries
                .iter_mut()
                .filter(|e| e.state == capstan_migrate::State::Ahead)
            {
                e.state = capstan_migrate::State::Applied;
            }
        }
        Ok(entries)
    });
    let fleet = db
        .driver()
        .fleet_list()
        .await
        .map_err(|e| redact_text(&e.to_string()));
    let archive = capstan_migrate::archive_entries(db.driver())
        .await
        .map_err(|e| redact_text(&e.to_string()));
    ServiceRows {
        name,
        migrations,
        fleet,
        archive,
    }
}
