//! Rehearsals of the real chirpy binaries, on SQLite and Postgres, and of the
//! broken variants kept under `examples/chirpy/rehearse/`.
//!
//! The chirpy binaries belong to another package, so `CARGO_BIN_EXE_…` does
//! not name them: the tests look for them in the target directory the tests
//! themselves were built in (found from the test executable's path,
//! `<target>/debug/deps/…`), build them there when they are missing or older
//! than the sources (`capstan_testkit::chirpy::bin_dir`), then point each
//! release's command at `<target>/debug/chirpy-vN`.
//!
//! Postgres tests read the server from `CAPSTAN_TEST_PG` (the test script
//! starts one) and fail when it is unset; rehearse creates and drops its own
//! databases there.

use std::path::{Path, PathBuf};
use std::time::Duration;

use capstan_rehearse::{rehearse, Backend, Config, Flags, Migrations, Options, Outcome, Report};

use capstan_testkit::chirpy::bin_dir;
use capstan_testkit::pg_admin_url as admin_url;

fn fixture(rel: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/chirpy/rehearse")
        .join(rel);
    let mut config = Config::load(&path).unwrap_or_else(|e| panic!("{e}"));
    for r in &mut config.releases {
        r.command[0] = bin_dir().join(&r.command[0]).display().to_string();
        if let Migrations::Dir(dir) = &r.migrations {
            r.migrations = Migrations::Dir(materialize(dir));
        }
    }
    config
}

/// A fixture's migration directory as chirpy's migrations are now: the
/// fixture's own files (those marked "rehearsal fixture") with the current
/// copy of every other file from `examples/chirpy/migrations`, and a fresh
/// `capstan.sum`. So the fixtures keep testing their one broken migration
/// when chirpy's others change.
fn materialize(dir: &Path) -> PathBuf {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let chirpy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/migrations");
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "rehearse-fixture-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".sql") {
            continue;
        }
        let own = std::fs::read_to_string(e.path()).unwrap();
        let text = if own.contains("rehearsal fixture") {
            own
        } else {
            std::fs::read_to_string(chirpy.join(&name)).unwrap_or_else(|e| {
                panic!("{}: no such chirpy migration: {e}", name.to_string_lossy())
            })
        };
        std::fs::write(out.join(&name), text).unwrap();
    }
    capstan_migrate::rehash(&out).unwrap();
    out
}

fn postgres() -> Backend {
    Backend::Postgres(admin_url())
}

/// Where a test that runs on every backend makes its scratch databases.
fn scratch_on(b: capstan_testkit::Backend) -> Backend {
    match b {
        capstan_testkit::Backend::Postgres => postgres(),
        capstan_testkit::Backend::Sqlite => Backend::Sqlite,
    }
}

async fn run(config: &Config, options: Options) -> Report {
    let report = rehearse(config, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", report.to_text());
    report
}

/// `(step, cell number, binary)` → outcome.
fn cell<'a>(r: &'a Report, step: usize, number: u8, binary: &str) -> &'a Outcome {
    let s = &r.steps[step];
    &s.cells
        .iter()
        .find(|c| c.number == number && c.binary == binary)
        .unwrap_or_else(|| {
            panic!(
                "no cell {number} for {binary} in step {}:\n{}",
                step + 1,
                r.to_text()
            )
        })
        .outcome
}

fn failure(o: &Outcome) -> &capstan_rehearse::Failure {
    match o {
        Outcome::Fail(f) => f,
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// The full path passes: every cell passes except the expected refusal of
/// 1.0.0 after 3.0.0's contract; 2.0.0 has no contract migration.
fn assert_chirpy_passes(r: &Report) {
    assert!(r.ok, "{}", r.to_text());
    assert_eq!(r.steps.len(), 2);
    for step in 0..2 {
        let old = ["1.0.0", "2.0.0"][step];
        for (n, b) in [(1, old), (2, old), (4, old), (6, old)] {
            assert!(
                matches!(cell(r, step, n, b), Outcome::Pass { .. }),
                "step {} cell {n}: {:?}",
                step + 1,
                cell(r, step, n, b)
            );
        }
    }
    assert!(matches!(cell(r, 0, 3, "2.0.0"), Outcome::Pass { .. }));
    assert!(matches!(cell(r, 0, 5, "2.0.0"), Outcome::Skipped { .. }));
    // 3.0.0 embeds the contract migration: it passes on the expanded schema
    // when the gate lets a binary run before its own pending contract
    // migrations, and otherwise is held back until cell 5 (expected).
    match cell(r, 1, 3, "3.0.0") {
        Outcome::Pass { .. } => {}
        Outcome::ExpectedRefusal { message } => {
            assert!(
                message.contains("needs 0003_drop_users_name first"),
                "{message}"
            )
        }
        other => panic!("3.0.0 before the contract: {other:?}"),
    }
    assert!(matches!(cell(r, 1, 5, "3.0.0"), Outcome::Pass { .. }));
    match cell(r, 1, 5, "2.0.0") {
        Outcome::ExpectedRefusal { message } => {
            assert!(
                message.contains("refusing to start") && message.contains("0003_drop_users_name"),
                "{message}"
            )
        }
        other => panic!("2.0.0 after the contract: {other:?}"),
    }
    let text = r.to_text();
    assert!(text.contains("refused by the gate (expected)"), "{text}");
    let md = r.to_markdown();
    assert!(
        md.contains("| 5 | contract applied: old binary refused | `2.0.0` |"),
        "{md}"
    );
    let json: serde_json::Value = serde_json::from_str(&r.to_json()).unwrap();
    assert_eq!(json["ok"], true);
    assert_eq!(
        json["steps"][1]["cells"][5]["outcome"]["result"],
        "expected-refusal"
    );
    assert!(r.timings.startup_ms > 0 && r.timings.smoke_ms > 0 && r.timings.migrations_ms > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirpy_v1_v2_v3_passes_on_sqlite_with_the_expected_refusal() {
    let r = run(&fixture("rehearse.toml"), Options::new(Backend::Sqlite)).await;
    assert_eq!(r.backend, "sqlite");
    assert_chirpy_passes(&r);
}

/// `--release 1.0.0=chirpy-v1 … --smoke smoke.toml --env …` is the plan of
/// chirpy's rehearse.toml, and rehearses the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_plan_given_as_flags_is_the_files_and_passes() {
    let file = fixture("rehearse.toml");
    let flags = Flags {
        releases: (1..=3)
            .map(|v| {
                format!(
                    "{v}.0.0='{}'",
                    bin_dir().join(format!("chirpy-v{v}")).display()
                )
            })
            .collect(),
        smoke: Some(file.base_dir.join("smoke.toml")),
        env: [
            "CHIRPY_ADDR=127.0.0.1:${PORT}",
            "CHIRPY_DRAIN=0s",
            "CHIRPY_FLEET_HEARTBEAT=1s",
            "CHIRPY_DB_CHECK_INTERVAL=100ms",
        ]
        .map(String::from)
        .to_vec(),
        ready_timeout: Some("30s".into()),
        ..Flags::default()
    };
    let config = Config::from_flags(&flags).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(config.ready_timeout, file.ready_timeout);
    assert_eq!(config.releases.len(), file.releases.len());
    for (a, b) in config.releases.iter().zip(&file.releases) {
        assert_eq!(
            (
                &a.name,
                &a.command,
                &a.env,
                &a.ready,
                &a.migrations,
                &a.port
            ),
            (
                &b.name,
                &b.command,
                &b.env,
                &b.ready,
                &b.migrations,
                &b.port
            )
        );
    }
    let r = run(&config, Options::new(Backend::Sqlite)).await;
    assert_chirpy_passes(&r);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chirpy_v1_v2_v3_passes_on_postgres_under_load() {
    let mut options = Options::new(postgres());
    options.load = true;
    let r = run(&fixture("rehearse.toml"), options).await;
    assert_eq!(r.backend, "postgres");
    assert_chirpy_passes(&r);
    // Requests flowed through every cell where a binary served, without errors.
    for step in &r.steps {
        for c in &step.cells {
            let l = c.load.as_ref().expect("load stats with --load");
            assert_eq!(l.errors, 0, "cell {} {}: {l:?}", c.number, c.title);
            if matches!(c.number, 1..=4) {
                assert!(l.requests > 0, "cell {} {}: {l:?}", c.number, c.title);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expand_migration_that_drops_name_fails_the_old_binary_in_cell_2() {
    let r = run(
        &fixture("broken-expand/rehearse.toml"),
        Options::new(Backend::Sqlite),
    )
    .await;
    assert!(!r.ok);
    assert!(matches!(cell(&r, 0, 1, "1.0.0"), Outcome::Pass { .. }));
    let f = failure(cell(&r, 0, 2, "1.0.0"));
    assert!(
        f.summary.contains("create a user") && f.summary.contains("status 500"),
        "{}",
        f.summary
    );
    assert!(f.output.contains("name"), "{}", f.output);
    // The new code itself is fine on its schema.
    assert!(matches!(
        cell(&r, 0, 3, "2.0.0-broken"),
        Outcome::Pass { .. }
    ));
    assert!(failure(cell(&r, 0, 4, "1.0.0"))
        .summary
        .contains("status 500"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_release_that_stops_writing_name_is_caught_when_the_old_binary_reads_its_rows_in_cell_4()
{
    let r = run(
        &fixture("stops-writing-name/rehearse.toml"),
        Options::new(Backend::Sqlite),
    )
    .await;
    assert!(!r.ok);
    for n in [1, 2] {
        assert!(matches!(cell(&r, 0, n, "1.0.0"), Outcome::Pass { .. }));
    }
    assert!(matches!(
        cell(&r, 0, 3, "2.0.0-no-name"),
        Outcome::Pass { .. }
    ));
    let f = failure(cell(&r, 0, 4, "1.0.0"));
    assert!(
        f.summary
            .contains("field `0.author` is \"\", expected \"smoke 2.0.0-no-name-c3\"")
            && f.summary
                .contains("reading what 2.0.0-no-name in cell 3 wrote"),
        "{}",
        f.summary
    );
    assert_eq!(r.failures(), 1, "{}", r.to_text());
}

async fn a_contract_whose_down_does_not_restore_name_fails_in_cell_6(b: capstan_testkit::Backend) {
    let backend = scratch_on(b);
    let r = run(
        &fixture("down-not-restoring/rehearse.toml"),
        Options::new(backend),
    )
    .await;
    assert!(!r.ok);
    assert!(matches!(
        cell(&r, 0, 5, "2.0.0"),
        Outcome::ExpectedRefusal { .. }
    ));
    let f = failure(cell(&r, 0, 6, "2.0.0"));
    assert!(
        f.summary.contains("create a user") && f.summary.contains("status 500"),
        "{}",
        f.summary
    );
    assert!(f.output.contains("name"), "{}", f.output);
    assert_eq!(r.failures(), 1, "{}", r.to_text());
}
capstan_testkit::backends!(async a_contract_whose_down_does_not_restore_name_fails_in_cell_6);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_index_built_without_concurrently_on_a_big_table_is_a_stall_in_cell_2() {
    let mut options = Options::new(postgres());
    options.load = true;
    // The index on 400,000 rows holds requests for ~200 ms on a quiet
    // machine (a limit of 300 ms failed this test half the time); the other
    // cells' stalls stay around 10 ms.
    options.max_stall = Duration::from_millis(100);
    let r = run(
        &fixture("index-without-concurrently/rehearse.toml"),
        options,
    )
    .await;
    let c2 = r.steps[0].cells.iter().find(|c| c.number == 2).unwrap();
    let load = c2.load.as_ref().unwrap();
    assert!(load.stall_ms >= 100.0, "{load:?}");
    assert_eq!(load.stall_during, vec!["0002_index_users_name".to_string()]);
    let f = failure(&c2.outcome);
    assert!(
        f.summary.contains("stalled") && f.summary.contains("0002_index_users_name"),
        "{}",
        f.summary
    );
    // The stall is the migration's: every other cell's is smaller.
    for c in &r.steps[0].cells {
        if let Some(l) = &c.load {
            if c.number != 2 {
                assert!(
                    l.stall_ms < load.stall_ms,
                    "cell {}: {l:?} vs {load:?}",
                    c.number
                );
            }
        }
    }
}

/// Fails if a scratch database made by this test process with `prefix` is
/// still on the server.
async fn assert_no_scratch_left(prefix: &str) {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let left = client
        .query(
            "SELECT datname FROM pg_database WHERE datname LIKE $1",
            &[&format!("{prefix}_{}_%", std::process::id())],
        )
        .await
        .unwrap();
    assert!(left.is_empty(), "scratch databases left: {left:?}");
}

/// The `chirpy-v*` processes whose parent is this test process and whose
/// environment names a database called `tag…`: `(name, pid)`.
fn chirpy_children(tag: &str) -> Vec<(String, String)> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) else {
            continue;
        };
        // pid (comm) state ppid …
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let comm = &stat[stat.find('(').unwrap_or(0) + 1..close];
        let fields: Vec<&str> = stat[close + 1..].split_whitespace().collect();
        if comm.starts_with("chirpy-v")
            && fields.get(1) == Some(&me.as_str())
            && fields.first() != Some(&"Z")
            && String::from_utf8_lossy(&std::fs::read(e.path().join("environ")).unwrap_or_default())
                .contains(tag)
        {
            found.push((
                comm.to_string(),
                e.file_name().to_string_lossy().into_owned(),
            ));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rehearsal_leaves_no_process_and_no_database() {
    let config = fixture("rehearse.toml");
    let mut options = Options::new(postgres());
    options.scratch_prefix = "capstan_rehearse_cut".into();
    // Stop it mid-step, the way Ctrl-C does: the future is dropped as soon as
    // a binary runs.
    let serving = || {
        chirpy_children("capstan_rehearse_cut_")
            .iter()
            .any(|(_, pid)| {
                // A server has no arguments; `chirpy-vN migrate …` has some.
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .is_ok_and(|c| c.split(|b| *b == 0).filter(|a| !a.is_empty()).count() == 1)
            })
    };
    let running = async {
        while !serving() {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    };
    tokio::select! {
        r = rehearse(&config, &options) => panic!("the rehearsal finished before it could be interrupted: {:?}", r.map(|r| r.ok)),
        () = running => {}
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        chirpy_children("capstan_rehearse_cut_"),
        Vec::<(String, String)>::new()
    );
    assert_no_scratch_left("capstan_rehearse_cut").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_finished_rehearsal_has_stopped_every_binary_and_dropped_every_database() {
    // Each step's binaries stop, and its database is dropped, in the
    // background; rehearse returns only once all of that is done.
    let mut options = Options::new(postgres());
    options.scratch_prefix = "capstan_rehearse_done".into();
    let r = run(&fixture("rehearse.toml"), options).await;
    assert_chirpy_passes(&r);
    assert_eq!(
        chirpy_children("capstan_rehearse_done_"),
        Vec::<(String, String)>::new()
    );
    assert_no_scratch_left("capstan_rehearse_done").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_writes_json_and_exits_by_the_contract() {
    use capstan_rehearse::cli::{run as cli_run, Format, RehearseArgs};
    let dir = tempfile::tempdir().unwrap();
    // A typo in rehearse.toml: exit 3, naming the key.
    let bad = dir.path().join("rehearse.toml");
    std::fs::write(&bad, "smoke_test = \"x\"\n").unwrap();
    let args = |config: PathBuf, output: PathBuf| RehearseArgs {
        config,
        plan: Flags::default(),
        database: Some("sqlite".into()),
        load: false,
        load_workers: 4,
        max_stall: "1s".into(),
        step: None,
        format: Format::Json,
        output: Some(output),
    };
    assert_eq!(cli_run(args(bad, dir.path().join("out.json"))).await, 3);

    // The broken down section: exit 1 and a JSON report naming cell 6.
    let mut text = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/chirpy/rehearse/down-not-restoring/rehearse.toml"),
    )
    .unwrap();
    for v in ["chirpy-v2", "chirpy-v3"] {
        text = text.replace(
            &format!("\"{v}\""),
            &format!("{:?}", bin_dir().join(v).display().to_string()),
        );
    }
    let fixture_dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/chirpy/rehearse/down-not-restoring");
    text = text
        .replace(
            "\"../smoke.toml\"",
            &format!(
                "{:?}",
                fixture_dir.join("../smoke.toml").display().to_string()
            ),
        )
        .replace(
            "migrations = \"migrations\"",
            &format!(
                "migrations = {:?}",
                materialize(&fixture_dir.join("migrations"))
                    .display()
                    .to_string()
            ),
        );
    let config = dir.path().join("down.toml");
    std::fs::write(&config, text).unwrap();
    let out = dir.path().join("report.json");
    assert_eq!(cli_run(args(config, out.clone())).await, 1);
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert_eq!(json["format_version"], 1);
    assert_eq!(json["ok"], false);
    let cells = json["steps"][0]["cells"].as_array().unwrap();
    let failed: Vec<u64> = cells
        .iter()
        .filter(|c| c["outcome"]["result"] == "fail")
        .map(|c| c["number"].as_u64().unwrap())
        .collect();
    assert_eq!(failed, vec![6]);
}
