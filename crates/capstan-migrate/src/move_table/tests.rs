use std::path::Path;

use super::*;

const TOML: &str = r#"
[[service]]
name = "monolith"
dir = "migrations"
owns = ["public"]

[[service]]
name = "billing"
dir = "services/billing/migrations"
owns = ["billing"]

[[service]]
name = "users"
dir = "services/users/migrations"
owns = ["users", "legacy.users_legacy"]

[[service]]
name = "nodir"
owns = ["nodir"]

[[service]]
name = "noschema"
dir = "x"
owns = ["public2.t"]
"#;

fn services() -> Services {
    Services::parse(TOML, Path::new("/p/capstan.toml")).unwrap()
}

fn request<'a>(table: &'a str, to: &'a str) -> MoveRequest<'a> {
    MoveRequest {
        table,
        to,
        schema: None,
        config: Path::new("/p/capstan.toml"),
    }
}

fn moved(table: &str, to: &str) -> MovePlan {
    let s = services();
    let r = resolve(&s, &request(table, to)).unwrap();
    plan(&r, 3, 8)
}

/// A file as the engine reads it.
fn parsed(f: &PlannedFile) -> source::Migration {
    source::parse_migration(&f.path, f.text.as_bytes()).expect("a valid migration file")
}

/// A section of a file as the engine reads it.
fn section(f: &PlannedFile, up: bool) -> String {
    let m = parsed(f);
    if up {
        m.up.sql
    } else {
        m.down.expect("a down section").sql
    }
}

#[test]
fn three_files_numbered_in_each_directory_with_their_phases() {
    let p = moved("public.invoices", "billing");
    assert_eq!(
        (p.source.as_str(), p.target.as_str()),
        ("monolith", "billing")
    );
    let files: Vec<_> = p
        .files
        .iter()
        .map(|f| {
            (
                f.step.number(),
                f.service.as_str(),
                f.path.to_str().unwrap(),
                f.phase,
            )
        })
        .collect();
    assert_eq!(
        files,
        vec![
            (
                1,
                "billing",
                "/p/services/billing/migrations/0003_create_schema_billing.sql",
                Phase::Expand
            ),
            (
                2,
                "monolith",
                "/p/migrations/0008_move_invoices_to_billing.sql",
                Phase::Expand
            ),
            (
                4,
                "monolith",
                "/p/migrations/0009_drop_old_name_of_invoices.sql",
                Phase::Contract
            ),
        ]
    );
    for f in &p.files {
        let m = parsed(f);
        assert_eq!((m.version, m.phase), (f.version, f.phase), "{}", f.text);
        assert!(!m.no_transaction);
    }
}

#[test]
fn each_step_moves_and_its_down_section_moves_back() {
    let p = moved("invoices", "billing");
    let [one, two, four] = &p.files[..] else {
        panic!()
    };
    assert!(section(one, true).contains("CREATE SCHEMA IF NOT EXISTS billing;"));
    assert!(section(one, false).contains("DROP SCHEMA IF EXISTS billing;"));
    let up = section(two, true);
    let at = |s: &str, what: &str| s.find(what).unwrap_or_else(|| panic!("{what} not in {s}"));
    assert!(
        at(&up, "ALTER TABLE public.invoices SET SCHEMA billing;")
            < at(
                &up,
                "CREATE VIEW public.invoices AS SELECT * FROM billing.invoices;"
            )
    );
    assert!(up.contains("GRANT %s ON public.invoices TO %s%s"));
    assert!(up.contains("GRANT USAGE ON SCHEMA %s TO %s', 'billing'"));
    let down = section(two, false);
    assert!(
        at(&down, "DROP VIEW public.invoices;")
            < at(&down, "ALTER TABLE billing.invoices SET SCHEMA public;")
    );
    assert_eq!(section(four, true).trim(), "DROP VIEW public.invoices;");
    let down = section(four, false);
    assert!(down.contains("CREATE VIEW public.invoices AS SELECT * FROM billing.invoices;"));
    assert!(down.contains("GRANT %s ON public.invoices"));
    assert!(!down.contains("USAGE"));
}

#[test]
fn names_are_quoted_where_sql_needs_it() {
    let s = services();
    let mut req = request("public.\"Order Items\"", "billing");
    req.schema = Some("billing");
    let p = plan(&resolve(&s, &req).unwrap(), 1, 1);
    let up = section(&p.files[1], true);
    assert!(
        up.contains("ALTER TABLE public.\"Order Items\" SET SCHEMA billing;"),
        "{up}"
    );
    assert!(p.files[1]
        .path
        .ends_with("0001_move_order_items_to_billing.sql"));
    assert_eq!(ident("user"), "\"user\"");
    assert_eq!(qualified("a", "it's"), "a.\"it's\"");
}

#[test]
fn advice_names_the_config_edits() {
    let p = moved("legacy.users_legacy", "billing");
    assert_eq!(p.source, "users");
    assert_eq!(
        p.config_advice,
        vec!["after step 4, remove \"legacy.users_legacy\" from the `owns` of service `users` (until then it names the view)"]
    );
    let s = services();
    let mut req = request("public.invoices", "billing");
    req.schema = Some("ledger");
    let p = plan(&resolve(&s, &req).unwrap(), 1, 1);
    assert_eq!(
        p.config_advice,
        vec!["add \"ledger\" to the `owns` of service `billing`"]
    );
}

#[test]
fn bad_requests_are_refused_with_the_reason() {
    let s = services();
    let err = |table: &str, to: &str, schema: Option<&str>| {
        let mut req = request(table, to);
        req.schema = schema;
        resolve(&s, &req).unwrap_err().to_string()
    };
    assert!(err("nowhere.t", "billing", None).contains("nowhere.t is owned by no service"));
    assert!(err("billing.t", "billing", None).contains("owned by service `billing` already"));
    assert!(err("public.t", "nope", None).contains("no service named `nope`"));
    assert!(err("public.t", "nodir", None)
        .contains("service `nodir` has no `dir` in /p/capstan.toml (line 18)"));
    assert!(err("public.t", "noschema", None).contains("owns no schema to move public.t into"));
    assert!(err("public.t", "billing", Some("users")).contains("owned by service `users`"));
    assert!(err("public.t", "billing", Some("public")).contains("is in it already"));
    assert!(err("a.b.c", "billing", None).contains("table `a.b.c`"));
    let nodir = err("nodir.t", "billing", None);
    assert!(nodir.contains("service `nodir` has no `dir`"), "{nodir}");
}

#[test]
fn next_version_counts_every_migration_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(next_version(&dir.path().join("missing")).unwrap(), 1);
    std::fs::write(dir.path().join("0001_a.sql"), "-- capstan:up\nSELECT 1;\n").unwrap();
    std::fs::write(dir.path().join("0004_b.sql"), "").unwrap();
    std::fs::write(dir.path().join("notes.txt"), "").unwrap();
    assert_eq!(next_version(dir.path()).unwrap(), 5);
}

#[test]
fn write_adds_every_file_to_its_sum_or_nothing() {
    let root = tempfile::tempdir().unwrap();
    let config = root.path().join("capstan.toml");
    let s = Services::parse(TOML, &config).unwrap();
    let req = MoveRequest {
        config: &config,
        ..request("public.invoices", "billing")
    };
    let r = resolve(&s, &req).unwrap();
    let p = plan(
        &r,
        next_version(&r.target_dir).unwrap(),
        next_version(&r.source_dir).unwrap(),
    );
    let written = write(&p).unwrap();
    assert_eq!(written.len(), 3);
    for dir in [&r.source_dir, &r.target_dir] {
        sum::verify(dir, &source::read_dir_files(dir).unwrap()).unwrap();
    }
    // A second plan takes the next numbers; the same plan again writes nothing.
    let again = plan(
        &r,
        next_version(&r.target_dir).unwrap(),
        next_version(&r.source_dir).unwrap(),
    );
    assert_eq!(again.files[1].version, 3);
    let err = write(&p).unwrap_err().to_string();
    assert!(err.contains("already exists"), "{err}");
    assert_eq!(std::fs::read_dir(&r.source_dir).unwrap().count(), 3);
}

fn facts() -> MoveFacts {
    MoveFacts {
        kind: "r".into(),
        ..MoveFacts::default()
    }
}

#[test]
fn the_catalog_refuses_what_a_view_cannot_stand_for() {
    let p = moved("public.invoices", "billing");
    let refused = |f: MoveFacts| judge(&p, &f).unwrap_err().to_string();
    assert!(refused(MoveFacts {
        kind: "p".into(),
        ..facts()
    })
    .contains("partitioned"));
    assert!(refused(MoveFacts {
        kind: "v".into(),
        ..facts()
    })
    .contains("is a view"));
    assert!(refused(MoveFacts {
        children: vec!["public.c".into()],
        ..facts()
    })
    .contains("public.c"));
    assert!(refused(MoveFacts {
        is_child: true,
        ..facts()
    })
    .contains("move its parent"));
    assert!(refused(MoveFacts {
        new_name_taken: true,
        ..facts()
    })
    .contains("billing.invoices exists already"));
    let ok = judge(
        &p,
        &MoveFacts {
            views: vec!["totals".into()],
            functions: vec!["bump(integer)".into()],
            foreign_keys: vec!["lines".into()],
            row_security: true,
            ..facts()
        },
    )
    .unwrap();
    assert_eq!(ok.notes.len(), 2);
    assert!(ok
        .warnings
        .iter()
        .any(|w| w.contains("function bump(integer)")));
    assert!(ok.warnings.iter().any(|w| w.contains("row-level security")));
}
