//! chirpy split into two services in one Postgres database
//! (`examples/chirpy/split`): `users` owns the schema `users`, `chirps` owns
//! `chirps` and references `users.users` through a foreign key. Each deploys
//! on its own: its own history, fleet and contract gate, in one database.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use capstan_testkit::{assert_code, psql, stderr, stdout, TestDb};
use serde_json::Value;

/// A copy of the split example and a fresh Postgres database.
struct Split {
    dir: tempfile::TempDir,
    db: TestDb,
}

impl Split {
    fn new() -> Split {
        let dir = tempfile::tempdir().expect("tempdir");
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/split");
        copy_dir(&example, dir.path());
        let split = Split {
            dir,
            db: TestDb::new("split"),
        };
        for service in ["users", "chirps"] {
            let out = split.run(service, &["migrate", "hash"]);
            assert!(out.status.success(), "hash {service}: {}", stderr(&out));
        }
        split
    }

    /// `capstan ARGS --service SERVICE --database URL`, run where
    /// capstan.toml is.
    fn command(&self, service: &str, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
        c.args(args)
            .arg("--service")
            .arg(service)
            .arg("--database")
            .arg(&self.db.url)
            .current_dir(self.dir.path())
            .env_remove("DATABASE_URL")
            .env_remove("CAPSTAN_SERVICE")
            .env("USER", "tester");
        c
    }

    fn run(&self, service: &str, args: &[&str]) -> Output {
        self.command(service, args).output().expect("run capstan")
    }

    fn add(&self, service: &str, file: &str, text: &str) {
        std::fs::write(self.dir.path().join(service).join(file), text).expect("write migration");
        let out = self.run(service, &["migrate", "hash"]);
        assert!(out.status.success(), "hash {service}: {}", stderr(&out));
    }

    /// `(version, state)` of the service's migrations, and the service the
    /// status names.
    fn status(&self, service: &str) -> (String, Vec<(u64, String)>) {
        let out = self.run(service, &["migrate", "status", "--json"]);
        assert!(out.status.success(), "status {service}: {}", stderr(&out));
        let v: Value = serde_json::from_slice(&out.stdout).expect("status JSON");
        let states = v["migrations"]
            .as_array()
            .expect("migrations")
            .iter()
            .map(|m| {
                (
                    m["version"].as_u64().expect("version"),
                    m["state"].as_str().expect("state").to_string(),
                )
            })
            .collect();
        (
            v["service"].as_str().unwrap_or_default().to_string(),
            states,
        )
    }
}

fn copy_dir(from: &Path, to: &Path) {
    for entry in std::fs::read_dir(from).expect("read example") {
        let entry = entry.expect("entry");
        let target: PathBuf = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            std::fs::create_dir_all(&target).expect("mkdir");
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn applied(n: u64) -> Vec<(u64, String)> {
    (1..=n).map(|v| (v, "applied".to_string())).collect()
}

#[test]
fn two_services_deploy_independently_in_one_database() {
    let s = Split::new();
    let out = s.run("users", &["migrate", "up"]);
    assert!(out.status.success(), "users up: {}", stderr(&out));
    let out = s.run("chirps", &["migrate", "up"]);
    assert!(out.status.success(), "chirps up: {}", stderr(&out));
    // The foreign key into users.users is a finding of the linter, naming
    // both services.
    let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
        .args(["lint", "--service", "chirps", "--format", "json"])
        .current_dir(s.dir.path())
        .output()
        .expect("run lint");
    let said = stdout(&out);
    assert!(
        said.contains("cross-service-reference") && said.contains("users.users"),
        "{said}{}",
        stderr(&out)
    );

    // Both start at 0001: two histories side by side, keyed by service.
    assert_eq!(s.status("users"), ("users".to_string(), applied(2)));
    assert_eq!(s.status("chirps"), ("chirps".to_string(), applied(2)));
    assert_eq!(
        psql(
            &s.db.url,
            "SELECT service, count(*) FROM capstan.migrations GROUP BY service ORDER BY service"
        )
        .trim(),
        "chirps|2\nusers|2"
    );
    // The foreign key really crosses the boundary.
    psql(
        &s.db.url,
        "INSERT INTO users.users (id, name, handle) VALUES (1, 'ann', 'ann')",
    );
    psql(
        &s.db.url,
        "INSERT INTO chirps.chirps (id, user_id, body) VALUES (1, 1, 'hi')",
    );

    // An instance of users 2.0.0 is live; it lacks the contract that drops
    // users.name, so that contract waits on it...
    let out = s.run(
        "users",
        &[
            "fleet",
            "join",
            "--app",
            "users",
            "--version",
            "2.0.0",
            "--json",
        ],
    );
    assert!(out.status.success(), "fleet join: {}", stderr(&out));
    let joined: Value = serde_json::from_slice(&out.stdout).expect("join JSON");
    assert_eq!(joined["service"], "users", "{}", stdout(&out));
    let users_instance = joined["instance"]["instance_id"]
        .as_str()
        .expect("instance id")
        .to_string();
    s.add(
        "users",
        "0003_drop_users_name.sql",
        "-- capstan:phase contract\n-- capstan:up\nUPDATE users.users SET handle = name WHERE handle IS NULL;\nALTER TABLE users.users DROP COLUMN name;\n-- capstan:down\nALTER TABLE users.users ADD COLUMN name text;\nUPDATE users.users SET name = handle;\n",
    );
    let out = s.run("users", &["migrate", "up"]);
    assert_code(&out, 6);
    let said = format!("{}{}", stdout(&out), stderr(&out));
    assert!(said.contains(&users_instance), "{said}");
    assert_eq!(s.status("users").1[2], (3, "pending".to_string()));

    // ...while the contract of chirps waits only on the chirps fleet, which
    // is empty: the users instance does not hold it back.
    s.add(
        "chirps",
        "0003_drop_chirps_posted_at.sql",
        "-- capstan:phase contract\n-- capstan:up\nALTER TABLE chirps.chirps DROP COLUMN posted_at;\n-- capstan:down\nALTER TABLE chirps.chirps ADD COLUMN posted_at timestamptz;\n",
    );
    let out = s.run("chirps", &["migrate", "up"]);
    assert!(out.status.success(), "chirps contract: {}", stderr(&out));
    assert_eq!(s.status("chirps").1, applied(3));

    // Each fleet shows its own instances.
    let fleet = |service: &str| -> Value {
        let out = s.run(service, &["fleet", "--json"]);
        assert!(out.status.success(), "fleet {service}: {}", stderr(&out));
        serde_json::from_slice(&out.stdout).expect("fleet JSON")
    };
    assert!(fleet("users").to_string().contains(&users_instance));
    assert!(!fleet("chirps").to_string().contains(&users_instance));

    // Once the old users instance leaves, its contract runs.
    let out = s.run("users", &["fleet", "leave", &users_instance]);
    assert!(out.status.success(), "fleet leave: {}", stderr(&out));
    let out = s.run("users", &["migrate", "up"]);
    assert!(out.status.success(), "users contract: {}", stderr(&out));
    assert_eq!(s.status("users").1, applied(3));
}

#[test]
fn a_service_capstan_toml_does_not_declare_is_refused() {
    let s = Split::new();
    let out = s.run("billing", &["migrate", "up"]);
    assert_code(&out, 3);
    let err = stderr(&out);
    assert!(
        err.contains("billing") && err.contains("users") && err.contains("chirps"),
        "{err}"
    );
    assert_eq!(
        psql(
            &s.db.url,
            "SELECT count(*) FROM pg_namespace WHERE nspname IN ('capstan', 'users', 'chirps')"
        )
        .trim(),
        "0"
    );
}

#[test]
fn a_chirps_migration_that_alters_users_is_refused_and_deps_names_the_coupling() {
    let s = Split::new();
    for service in ["users", "chirps"] {
        let out = s.run(service, &["migrate", "up"]);
        assert!(out.status.success(), "{service} up: {}", stderr(&out));
    }
    s.add(
        "chirps",
        "0003_add_users_karma.sql",
        "-- capstan:up\nALTER TABLE users.users ADD COLUMN karma int;\n-- capstan:down\nALTER TABLE users.users DROP COLUMN karma;\n",
    );
    for flags in [
        &["migrate", "up"][..],
        &["migrate", "up", "--unsafe-ok"][..],
    ] {
        let out = s.run("chirps", flags);
        assert_code(&out, 9);
        let said = format!("{}{}", stdout(&out), stderr(&out));
        assert!(
            said.contains("service-boundary") && said.contains("users"),
            "{said}"
        );
    }
    assert_eq!(s.status("chirps").1[2], (3, "pending".to_string()));
    assert_eq!(
        psql(
            &s.db.url,
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = 'users' AND column_name = 'karma'"
        )
        .trim(),
        "0"
    );

    // The live catalog's map: chirps depends on users through the foreign key.
    let out = s.run("chirps", &["deps", "--format", "json"]);
    assert!(out.status.success(), "deps: {}", stderr(&out));
    let deps: Value = serde_json::from_slice(&out.stdout).expect("deps JSON");
    let fk = deps["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .find(|e| e["kind"] == "foreign-key" && e["source"] == "catalog")
        .unwrap_or_else(|| panic!("no catalog foreign key in {deps}"));
    assert_eq!(fk["from"]["service"], "chirps", "{fk}");
    assert_eq!(fk["to"]["object"], "users.users", "{fk}");
    assert_eq!(fk["to"]["service"], "users", "{fk}");
    assert_eq!(
        fk["declared"], true,
        "chirps declares depends_on users: {fk}"
    );
}
