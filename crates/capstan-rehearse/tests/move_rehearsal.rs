//! A table's move between services (`capstan plan-move public.users --to
//! users`), rehearsed with the real chirpy binaries on Postgres: the
//! monolith's chirpy 2.0.0 (service `monolith`, the old name `public.users`)
//! and chirpy 2.0.0 as the `users` service (`CHIRPY_USERS_TABLE=users.users`,
//! service `users`), from `examples/chirpy/move/`.
//!
//! The example is copied to a scratch directory first, with the monolith's
//! first two migrations taken from `examples/chirpy/migrations` (the ones
//! chirpy 2.0.0 embeds) and checked to be the same files, so the example
//! keeps running by hand. Postgres comes from `CAPSTAN_TEST_PG`.

use std::path::{Path, PathBuf};

use capstan_rehearse::{rehearse, Backend, Config, Options, Outcome, Report};
use capstan_testkit::chirpy::bin_dir;
use capstan_testkit::pg_admin_url;

fn example_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/move")
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), &target).unwrap();
        }
    }
}

/// The example in a scratch directory, after `edit` changed it (the
/// directories' `capstan.sum` are rewritten), with its commands pointing at
/// the chirpy binaries of this build.
fn example(edit: impl FnOnce(&Path)) -> Config {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let root = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "move-rehearsal-{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&root);
    // The example and the smoke file it shares with chirpy's rehearsal.
    let dir = root.join("move");
    copy_tree(&example_dir(), &dir);
    std::fs::create_dir_all(root.join("rehearse")).unwrap();
    std::fs::copy(
        example_dir().join("../rehearse/smoke.toml"),
        root.join("rehearse/smoke.toml"),
    )
    .unwrap();
    let chirpy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/migrations");
    for name in [
        "0001_create_users_and_chirps.sql",
        "0002_add_users_handle.sql",
    ] {
        let want = std::fs::read_to_string(chirpy.join(name)).unwrap();
        let have = std::fs::read_to_string(dir.join("migrations").join(name)).unwrap();
        assert_eq!(
            have, want,
            "examples/chirpy/move/migrations/{name} must be chirpy's (chirpy 2.0.0 embeds it)"
        );
    }
    edit(&dir);
    for d in ["migrations", "services/users/migrations"] {
        capstan_migrate::rehash(&dir.join(d)).unwrap();
    }
    let mut config = Config::load(&dir.join("rehearse.toml")).unwrap_or_else(|e| panic!("{e}"));
    for r in &mut config.releases {
        r.command[0] = bin_dir().join(&r.command[0]).display().to_string();
    }
    config
}

async fn run(config: &Config, options: Options) -> Report {
    let report = rehearse(config, &options)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    eprintln!("{}", report.to_text());
    report
}

const OLD: &str = "monolith-2.0.0";
const NEW: &str = "users-1.0.0";

#[derive(Debug, PartialEq)]
enum Want {
    Pass,
    Refused,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_step_of_the_move_and_its_rollback_passes_with_both_binaries_under_load() {
    let config = example(|_| {});
    let mut options = Options::new(Backend::Postgres(pg_admin_url()));
    options.load = true;
    options.scratch_prefix = "capstan_rehearse_move".into();
    let r = run(&config, options).await;
    assert!(r.ok, "{}", r.to_text());
    assert_eq!(r.releases, [OLD, NEW]);
    assert_eq!(r.steps.len(), 1);
    let cells = &r.steps[0].cells;
    let want = [
        (1, OLD, Want::Pass, vec![]),
        (2, OLD, Want::Pass, vec!["users: 0001_create_schema_users"]),
        (
            3,
            OLD,
            Want::Pass,
            vec!["monolith: 0003_move_users_to_users"],
        ),
        (4, NEW, Want::Pass, vec![]),
        (4, OLD, Want::Pass, vec![]),
        (
            5,
            NEW,
            Want::Pass,
            vec!["monolith: 0004_drop_old_name_of_users"],
        ),
        (5, OLD, Want::Refused, vec![]),
        (
            6,
            OLD,
            Want::Pass,
            vec!["monolith: 0004_drop_old_name_of_users"],
        ),
        (6, NEW, Want::Pass, vec![]),
        (
            7,
            OLD,
            Want::Pass,
            vec!["monolith: 0003_move_users_to_users"],
        ),
        (8, OLD, Want::Pass, vec!["users: 0001_create_schema_users"]),
    ];
    let got: Vec<(u8, &str, &Outcome, Vec<&str>)> = cells
        .iter()
        .map(|c| {
            let m = c.migrations.iter().map(String::as_str).collect();
            (c.number, c.binary.as_str(), &c.outcome, m)
        })
        .collect();
    assert_eq!(got.len(), want.len(), "{}", r.to_text());
    for ((n, b, outcome, m), (wn, wb, w, wm)) in got.iter().zip(&want) {
        assert_eq!((*n, *b, m), (*wn, *wb, wm), "{}", r.to_text());
        match (outcome, w) {
            (Outcome::Pass { note: None }, Want::Pass) => {}
            (Outcome::ExpectedRefusal { message }, Want::Refused) => assert!(
                message.contains("refusing to start")
                    && message.contains("0004_drop_old_name_of_users"),
                "{message}"
            ),
            (other, w) => panic!("cell {n} ({b}): {other:?}, wanted {w:?}"),
        }
    }
    // Traffic flowed through every cell that had a binary serving, to
    // whichever binaries served, and none of it failed.
    for c in cells {
        let l = c.load.as_ref().expect("load stats with --load");
        assert_eq!(l.errors, 0, "cell {} ({}): {l:?}", c.number, c.title);
        if c.outcome.is_failure() {
            panic!("{}", r.to_text());
        }
    }
    let served: usize = cells
        .iter()
        .map(|c| c.load.as_ref().unwrap().requests)
        .sum();
    assert!(served > 100, "{served} requests in the whole move");
    let text = r.to_text();
    assert!(
        text.contains("step 3: new binary starts beside the old"),
        "{text}"
    );
}

/// The contract (DROP VIEW of the old name) marked expand: rehearse applies
/// it with step 2 while the old binary still uses the name, and the old
/// binary's smoke test fails in that cell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contract_applied_while_the_old_binary_needs_the_name_fails_naming_the_cell() {
    let config = example(|dir| {
        let f = dir.join("migrations/0004_drop_old_name_of_users.sql");
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(text.starts_with("-- capstan:phase contract\n"), "{text}");
        let broken = text.replacen("-- capstan:phase contract", "-- capstan:phase expand", 1);
        std::fs::write(&f, broken).unwrap();
    });
    let mut options = Options::new(Backend::Postgres(pg_admin_url()));
    options.scratch_prefix = "capstan_rehearse_move_broken".into();
    let r = run(&config, options).await;
    assert!(!r.ok);
    let c3 = &r.steps[0].cells[2];
    assert_eq!((c3.number, c3.binary.as_str()), (3, OLD));
    assert_eq!(
        c3.migrations,
        [
            "monolith: 0003_move_users_to_users",
            "monolith: 0004_drop_old_name_of_users"
        ]
    );
    let Outcome::Fail(f) = &c3.outcome else {
        panic!("cell 3: {:?}", c3.outcome)
    };
    assert!(f.summary.contains("create a user"), "{}", f.summary);
    let text = r.to_text();
    assert!(
        text.contains(&format!(
            "FAIL step 1 ({OLD} → {NEW}), cell 3 (step 2 (source, expand) applied: old binary serves, binary {OLD}"
        )),
        "{text}"
    );
    // The new binary, on the new name, is not what broke.
    let c4 = &r.steps[0].cells[3];
    assert_eq!((c4.number, c4.binary.as_str()), (4, NEW));
    assert!(matches!(c4.outcome, Outcome::Pass { .. }), "{text}");
    assert!(r.failures() >= 1);
}

#[tokio::test]
async fn a_move_needs_postgres() {
    let config = example(|_| {});
    let err = rehearse(&config, &Options::new(Backend::Sqlite))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("rehearse.toml") && err.contains("[move] needs Postgres"),
        "{err}"
    );
}
