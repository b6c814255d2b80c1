//! Several services in one database, through the real binary: capstan.toml
//! declares them, `--service` (or `CAPSTAN_SERVICE`) picks one and its
//! migration directory, each keeps its own history, a name capstan.toml does
//! not declare is refused, and a service whose ownership overlaps another
//! project's registered service is refused before anything runs.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use capstan_testkit::backends;
use common::{assert_code, stderr, stdout, Backend, Project};

const API_1: &str = "-- capstan:up\nCREATE TABLE api_users (id bigint PRIMARY KEY);\n-- capstan:down\nDROP TABLE api_users;\n";
const BILLING_1: &str = "-- capstan:up\nCREATE TABLE invoices (id bigint PRIMARY KEY);\n-- capstan:down\nDROP TABLE invoices;\n";

const TWO_SERVICES: &str = r#"[[service]]
name = "api"
dir = "api"
owns = ["public.api_users"]

[[service]]
name = "billing"
dir = "billing"
owns = ["public.invoices"]
"#;

/// `capstan ARGS` in `dir` against the project's database, without `--dir`
/// (the service's directory applies).
fn run_in(p: &Project, dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_capstan"));
    c.args(args)
        .arg("--database")
        .arg(&p.url)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .env_remove("CAPSTAN_SERVICE")
        .env("USER", "tester");
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("run capstan")
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(out)))
}

/// A project directory with capstan.toml `toml` and one migration per
/// `(dir, file, text)`, each directory's sum written.
fn project_dir(
    p: &Project,
    name: &str,
    toml: &str,
    files: &[(&str, &str, &str)],
) -> std::path::PathBuf {
    let root = p.dir.path().join(name);
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("capstan.toml"), toml).unwrap();
    for (dir, file, text) in files {
        std::fs::create_dir_all(root.join(dir)).unwrap();
        std::fs::write(root.join(dir).join(file), text).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_capstan"))
            .args(["migrate", "hash", "--dir", dir])
            .current_dir(&root)
            .output()
            .unwrap();
        assert_code(&out, 0);
    }
    root
}

fn history_rows(p: &Project) -> i64 {
    p.count(&format!("SELECT count(*) FROM {}", p.history_table()))
}

fn services_from_capstan_toml(b: Backend) {
    let p = Project::new(b);
    let root = project_dir(
        &p,
        "shop",
        TWO_SERVICES,
        &[
            ("api", "0001_api_users.sql", API_1),
            ("billing", "0001_invoices.sql", BILLING_1),
        ],
    );

    // Several declared and none named: refused, nothing touched.
    let out = run_in(&p, &root, &["migrate", "up"], &[]);
    assert_code(&out, 3);
    assert!(stderr(&out).contains("--service"), "{}", stderr(&out));
    // A name capstan.toml does not declare: refused, nothing touched.
    let out = run_in(
        &p,
        &root,
        &["migrate", "up", "--service", "nope", "--json"],
        &[],
    );
    assert_code(&out, 3);
    let err = json(&out);
    assert_eq!(err["error"]["kind"], "unknown-service", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("`nope`") && message.contains("`api`, `billing`"),
        "{message}"
    );
    assert!(!p.has_table("api_users") && !p.has_table("invoices"));

    // Each service runs its own directory; both number from 0001.
    assert_code(
        &run_in(&p, &root, &["migrate", "up", "--service", "api"], &[]),
        0,
    );
    assert_code(
        &run_in(
            &p,
            &root,
            &["migrate", "up"],
            &[("CAPSTAN_SERVICE", "billing")],
        ),
        0,
    );
    assert!(p.has_table("api_users") && p.has_table("invoices"));
    assert_eq!(history_rows(&p), 2);

    for (service, name) in [("api", "api_users"), ("billing", "invoices")] {
        let out = run_in(
            &p,
            &root,
            &["migrate", "status", "--json", "--service", service],
            &[],
        );
        assert_code(&out, 0);
        let s = json(&out);
        assert_eq!(s["service"], service, "{s}");
        let migrations = s["migrations"].as_array().unwrap();
        assert_eq!(migrations.len(), 1, "{s}");
        assert_eq!(migrations[0]["name"], name, "{s}");
        assert_eq!(migrations[0]["state"], "applied", "{s}");
        let text = stdout(&run_in(
            &p,
            &root,
            &["migrate", "status", "--service", service],
            &[],
        ));
        assert!(text.starts_with(&format!("service: {service}\n")), "{text}");
    }
    // Each service's fleet is its own.
    let out = run_in(
        &p,
        &root,
        &[
            "fleet",
            "join",
            "--app",
            "api",
            "--version",
            "1",
            "--address",
            "10.0.0.1:80",
            "--service",
            "api",
        ],
        &[],
    );
    assert_code(&out, 0);
    let api_fleet = json(&run_in(
        &p,
        &root,
        &["fleet", "--json", "--service", "api"],
        &[],
    ));
    assert_eq!(api_fleet["service"], "api");
    assert_eq!(
        api_fleet["instances"].as_array().unwrap().len(),
        1,
        "{api_fleet}"
    );
    assert_eq!(
        api_fleet["instances"][0]["address"], "10.0.0.1:80",
        "{api_fleet}"
    );
    let billing_fleet = json(&run_in(
        &p,
        &root,
        &["fleet", "--json", "--service", "billing"],
        &[],
    ));
    assert!(
        billing_fleet["instances"].as_array().unwrap().is_empty(),
        "{billing_fleet}"
    );
    // Without --service, an --app that names a declared service chooses it;
    // another application name chooses nothing.
    let out = run_in(
        &p,
        &root,
        &["fleet", "join", "--app", "billing", "--version", "2"],
        &[],
    );
    assert_code(&out, 0);
    let billing_fleet = json(&run_in(
        &p,
        &root,
        &["fleet", "--json", "--service", "billing"],
        &[],
    ));
    assert_eq!(billing_fleet["instances"][0]["app"], "billing");
    let gate = json(&run_in(&p, &root, &["gate", "--json", "--app", "api"], &[]));
    assert_eq!(gate["service"], "api", "{gate}");
    let out = run_in(
        &p,
        &root,
        &["fleet", "join", "--app", "billing-worker", "--version", "2"],
        &[],
    );
    assert_code(&out, 3);
    for service in ["api", "billing"] {
        let fleet = json(&run_in(
            &p,
            &root,
            &["fleet", "--json", "--service", service],
            &[],
        ));
        assert_eq!(fleet["instances"].as_array().unwrap().len(), 1, "{fleet}");
    }
}

/// Another project (its own capstan.toml) whose service claims a table a
/// registered service owns is refused before anything runs.
fn an_overlapping_service_is_refused(b: Backend) {
    let p = Project::new(b);
    let shop = project_dir(
        &p,
        "shop",
        TWO_SERVICES,
        &[
            ("api", "0001_api_users.sql", API_1),
            ("billing", "0001_invoices.sql", BILLING_1),
        ],
    );
    assert_code(
        &run_in(&p, &shop, &["migrate", "up", "--service", "billing"], &[]),
        0,
    );
    let reports = project_dir(
        &p,
        "reports",
        "[service]\nname = \"reports\"\ndir = \"migrations\"\nowns = [\"public\"]\n",
        &[(
            "migrations",
            "0001_report.sql",
            "-- capstan:up\nCREATE TABLE report (id bigint);\n",
        )],
    );
    let out = run_in(&p, &reports, &["migrate", "up", "--json"], &[]);
    assert_code(&out, 3);
    let err = json(&out);
    assert_eq!(err["error"]["kind"], "service-overlap", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    for says in ["`reports`", "`public`", "`billing`", "`public.invoices`"] {
        assert!(message.contains(says), "{says}: {message}");
    }
    assert!(!p.has_table("report"), "{b:?}: nothing ran");
    assert_eq!(history_rows(&p), 1);
    // The service that is registered keeps working.
    assert_code(
        &run_in(&p, &shop, &["migrate", "up", "--service", "billing"], &[]),
        0,
    );
}

/// With no service declared, `--service NAME` is a service of its own (an
/// embedded application naming itself), and the default one is untouched.
fn a_service_named_without_capstan_toml(b: Backend) {
    let p = Project::new(b);
    p.add("0001_api_users.sql", API_1);
    assert_code(&p.capstan(&["migrate", "up", "--service", "worker"]), 0);
    let s = json(&p.capstan(&["migrate", "status", "--json"]));
    assert_eq!(s["service"], "default");
    assert_eq!(s["migrations"][0]["state"], "pending", "{s}");
    let s = json(&p.capstan(&["migrate", "status", "--json", "--service", "worker"]));
    assert_eq!(s["migrations"][0]["state"], "applied", "{s}");
    let out = p.capstan(&["migrate", "status", "--service", "Not Valid", "--json"]);
    assert_code(&out, 3);
    assert_eq!(json(&out)["error"]["kind"], "unknown-service");
}

/// The names in the registry of services, sorted, comma-separated.
fn registry_names(p: &Project) -> String {
    p.query(match p.history_table() {
        "capstan.migrations" => {
            "SELECT coalesce(string_agg(name, ',' ORDER BY name), '') FROM capstan.services"
        }
        _ => "SELECT coalesce(group_concat(name, ','), '') FROM (SELECT name FROM capstan_services ORDER BY name)",
    })
}

/// `migrate baseline` and `migrate down` register the service too, and
/// refuse an overlap as `up` does: exit 3, kind service-overlap, nothing
/// written.
fn baseline_and_down_register_and_refuse_an_overlap(b: Backend) {
    let p = Project::new(b);
    let shop = project_dir(
        &p,
        "shop",
        TWO_SERVICES,
        &[
            ("api", "0001_api_users.sql", API_1),
            ("billing", "0001_invoices.sql", BILLING_1),
        ],
    );
    // reports runs first, owning only its own table.
    let reports = project_dir(
        &p,
        "reports",
        "[service]\nname = \"reports\"\ndir = \"migrations\"\nowns = [\"public.report\"]\n",
        &[(
            "migrations",
            "0001_report.sql",
            "-- capstan:up\nCREATE TABLE report (id bigint);\n-- capstan:down\nDROP TABLE report;\n",
        )],
    );
    assert_code(&run_in(&p, &reports, &["migrate", "up"], &[]), 0);
    // A baseline registers billing (no up ever ran for it).
    assert_code(
        &run_in(
            &p,
            &shop,
            &["migrate", "baseline", "1", "--service", "billing"],
            &[],
        ),
        0,
    );
    assert_eq!(registry_names(&p), "billing,reports");
    assert_eq!(history_rows(&p), 2);

    // reports' capstan.toml now claims all of `public`, billing's table too:
    // neither a baseline of another service of it nor a down runs.
    std::fs::write(
        reports.join("capstan.toml"),
        "[service]\nname = \"reports\"\ndir = \"migrations\"\nowns = [\"public\"]\n",
    )
    .unwrap();
    let out = run_in(&p, &reports, &["migrate", "down", "--json"], &[]);
    assert_code(&out, 3);
    let err = json(&out);
    assert_eq!(err["error"]["kind"], "service-overlap", "{err}");
    let message = err["error"]["message"].as_str().unwrap();
    for says in ["`reports`", "`public`", "`billing`", "`public.invoices`"] {
        assert!(message.contains(says), "{says}: {message}");
    }
    assert!(p.has_table("report"), "{b:?}: down ran nothing");
    assert_eq!(history_rows(&p), 2);

    let other = project_dir(
        &p,
        "other",
        "[service]\nname = \"other\"\ndir = \"migrations\"\nowns = [\"public.invoices\"]\n",
        &[("migrations", "0001_invoices.sql", BILLING_1)],
    );
    let out = run_in(&p, &other, &["migrate", "baseline", "1", "--json"], &[]);
    assert_code(&out, 3);
    assert_eq!(json(&out)["error"]["kind"], "service-overlap");
    assert_eq!(history_rows(&p), 2, "the refused baseline recorded nothing");
    assert_eq!(registry_names(&p), "billing,reports");

    // With ownership given back, reports' down runs (and re-registers it).
    std::fs::write(
        reports.join("capstan.toml"),
        "[service]\nname = \"reports\"\ndir = \"migrations\"\nowns = [\"public.report\"]\n",
    )
    .unwrap();
    assert_code(&run_in(&p, &reports, &["migrate", "down"], &[]), 0);
    assert!(!p.has_table("report"));
    assert_eq!(history_rows(&p), 1);
}

backends!(
    services_from_capstan_toml,
    an_overlapping_service_is_refused,
    a_service_named_without_capstan_toml,
    baseline_and_down_register_and_refuse_an_overlap
);
