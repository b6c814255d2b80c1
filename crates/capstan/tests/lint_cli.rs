//! `capstan lint` finds migrations like the other commands (`--dir`,
//! capstan.toml's `migrations_dir`), lints only what changed since a git ref
//! with `--changed-since`, and links SARIF rules to their documents.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::{assert_code, stderr, stdout};

const USERS: &str = "-- capstan:up\nCREATE TABLE users (id bigint PRIMARY KEY, email text);\n-- capstan:down\nDROP TABLE users;\n";
const INDEX: &str = "-- capstan:up\nCREATE INDEX users_email ON users (email);\n-- capstan:down\nDROP INDEX users_email;\n";
const NOT_NULL: &str = "-- capstan:up\nALTER TABLE users ALTER COLUMN email SET NOT NULL;\n-- capstan:down\nALTER TABLE users ALTER COLUMN email DROP NOT NULL;\n";

fn capstan(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(args)
        .current_dir(dir)
        .env_remove("CAPSTAN_LINT_RULES_URL")
        .env("CAPSTAN_LINT_CACHE", "off")
        .output()
        .expect("run capstan")
}

fn git(dir: &Path, args: &[&str]) {
    let out = Command::new("git")
        .args(["-c", "user.name=t", "-c", "user.email=t@example.com"])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git");
    assert!(out.status.success(), "git {args:?}: {}", stderr(&out));
}

fn rules_of(out: &Output) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("lint json");
    v["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            format!(
                "{}:{}",
                f["file"].as_str().unwrap(),
                f["rule"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn lint_finds_the_directory_like_the_other_commands() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir_all(root.join("db/migrations")).unwrap();
    std::fs::write(root.join("db/migrations/0001_users.sql"), USERS).unwrap();
    std::fs::write(root.join("db/migrations/0002_index.sql"), INDEX).unwrap();

    // No ./migrations and no config: a clear usage error.
    let out = capstan(root, &["lint"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("--dir"), "{}", stderr(&out));

    let out = capstan(
        root,
        &["lint", "--dir", "db/migrations", "--format", "json"],
    );
    assert_code(&out, 1);
    assert!(rules_of(&out)
        .iter()
        .any(|r| r.ends_with("0002_index.sql:require-concurrent-index-creation")));

    std::fs::write(
        root.join("capstan.toml"),
        "migrations_dir = \"db/migrations\"\n",
    )
    .unwrap();
    let out = capstan(root, &["lint", "--format", "json"]);
    assert_code(&out, 1);
    assert!(
        rules_of(&out)
            .iter()
            .any(|r| r.starts_with("db/migrations/0002_index.sql:")),
        "{}",
        stdout(&out)
    );
}

#[test]
fn changed_since_lints_only_what_a_branch_touches_and_replays_the_rest() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir(root.join("migrations")).unwrap();
    git(root, &["init", "-q", "-b", "main"]);
    std::fs::write(root.join("migrations/0001_users.sql"), USERS).unwrap();
    std::fs::write(root.join("migrations/0002_index.sql"), INDEX).unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "base"]);
    git(root, &["checkout", "-q", "-b", "feature"]);
    // The branch adds 0003 (committed) and 0004 (not yet committed).
    std::fs::write(root.join("migrations/0003_not_null.sql"), NOT_NULL).unwrap();
    git(root, &["add", "."]);
    git(root, &["commit", "-q", "-m", "feature"]);
    std::fs::write(
        root.join("migrations/0004_index_again.sql"),
        INDEX.replace("users_email", "users_email2"),
    )
    .unwrap();

    let all = rules_of(&capstan(root, &["lint", "--format", "json"]));
    assert!(all.iter().any(|r| r.contains("0002_index.sql")), "{all:?}");

    let out = capstan(
        root,
        &["lint", "--changed-since", "main", "--format", "json"],
    );
    let changed = rules_of(&out);
    assert!(
        !changed.iter().any(|r| r.contains("0002_index.sql")),
        "{changed:?}"
    );
    // 0003 is linted against the replayed schema (users.email exists).
    assert!(
        changed
            .iter()
            .any(|r| r.contains("0003_not_null.sql:setting-not-null")),
        "{changed:?}"
    );
    assert!(
        changed
            .iter()
            .any(|r| r.contains("0004_index_again.sql:require-concurrent-index-creation")),
        "{changed:?}"
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["files"], 2, "{v}");

    // Nothing changed since HEAD's tree but the untracked 0004.
    let out = capstan(
        root,
        &["lint", "--changed-since", "HEAD", "--format", "json"],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["summary"]["files"], 1, "{v}");

    let out = capstan(root, &["lint", "--changed-since", "no-such-branch"]);
    assert_code(&out, 2);
    assert!(stderr(&out).contains("no-such-branch"), "{}", stderr(&out));
}

#[test]
fn sarif_links_rules_to_their_documents_never_to_a_placeholder() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir(root.join("migrations")).unwrap();
    std::fs::write(root.join("migrations/0001_users.sql"), USERS).unwrap();
    std::fs::write(root.join("migrations/0002_index.sql"), INDEX).unwrap();
    let out = capstan(root, &["lint", "--format", "sarif"]);
    assert!(
        !stdout(&out).contains("example.invalid"),
        "{}",
        stdout(&out)
    );

    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["lint", "--format", "sarif"])
        .current_dir(root)
        .env(
            "CAPSTAN_LINT_RULES_URL",
            "https://git.example.com/capstan/blob/main/docs/rules",
        )
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let driver = &v["runs"][0]["tool"]["driver"];
    let rule = driver["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "require-concurrent-index-creation")
        .unwrap();
    assert_eq!(
        rule["helpUri"],
        "https://git.example.com/capstan/blob/main/docs/rules/require-concurrent-index-creation.md"
    );
    // Every linked document exists in the repository.
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/rules");
    for r in driver["rules"].as_array().unwrap() {
        let name = r["helpUri"].as_str().unwrap().rsplit('/').next().unwrap();
        assert!(docs.join(name).is_file(), "docs/rules/{name} is missing");
    }
}

#[test]
fn the_parse_cache_gives_the_same_findings_and_a_bad_cache_is_only_a_miss() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    std::fs::create_dir(root.join("migrations")).unwrap();
    std::fs::write(root.join("migrations/0001_users.sql"), USERS).unwrap();
    std::fs::write(root.join("migrations/0002_index.sql"), INDEX).unwrap();
    std::fs::write(root.join("migrations/0003_not_null.sql"), NOT_NULL).unwrap();
    let cache = root.join("cache");
    let lint = |extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["lint", "--format", "json"])
            .args(extra)
            .current_dir(root)
            .env("CAPSTAN_LINT_CACHE", &cache)
            .output()
            .unwrap()
    };
    let no_cache = lint(&["--no-cache"]);
    assert!(!cache.exists(), "--no-cache writes nothing");
    let cold = lint(&[]);
    let file = cache.join("lint-parse.bin");
    assert!(file.is_file(), "the first run fills the cache");
    let warm = lint(&[]);
    assert_eq!(stdout(&cold), stdout(&no_cache));
    assert_eq!(stdout(&warm), stdout(&cold));
    assert_code(&warm, 1);

    // A corrupt cache: the same findings, and the cache is rewritten.
    let mut bytes = std::fs::read(&file).unwrap();
    let n = bytes.len();
    for b in &mut bytes[n / 2..] {
        *b = 0xff;
    }
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(stdout(&lint(&[])), stdout(&cold));
    std::fs::write(&file, b"not a cache").unwrap();
    assert_eq!(stdout(&lint(&[])), stdout(&cold));
    // An edited file is parsed again, not read from the cache.
    std::fs::write(
        root.join("migrations/0002_index.sql"),
        INDEX
            .replace("CREATE INDEX", "CREATE INDEX CONCURRENTLY")
            .replace("-- capstan:up", "-- capstan:no-transaction\n-- capstan:up"),
    )
    .unwrap();
    let edited = stdout(&lint(&[]));
    assert!(
        !edited.contains("require-concurrent-index-creation"),
        "{edited}"
    );
}
