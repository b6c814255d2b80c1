use super::plan::copy_of;
use super::restore::plan_restore;
use super::*;
use crate::driver::sql::{fill, restore_statements};
use crate::driver::{ColumnInfo, Identity, NewEntry, Scope, TableInfo};

/// The statements of [`plan_restore`]'s steps, as the driver writes them.
fn restore_plan(
    dialect: Dialect,
    entry: &ArchiveEntry,
    current: Option<&TableInfo>,
    cast: &BTreeMap<String, String>,
) -> Result<(Vec<String>, RestoreReport), String> {
    let (steps, report) = plan_restore(dialect, entry, current)?;
    Ok((restore_statements(dialect, entry, &steps, cast), report))
}

fn entry(scope: &str, kind: &str, columns: Vec<ColumnInfo>, key: &[&str]) -> ArchiveEntry {
    ArchiveEntry {
        id: 1,
        version: 3,
        migration: "drop_name".into(),
        direction: Direction::Up,
        line: Some(7),
        statement: "ALTER TABLE users DROP COLUMN name".into(),
        kind: Kind::parse(kind).unwrap(),
        scope: Scope::parse(scope).unwrap(),
        table_schema: "public".into(),
        table_name: "users".into(),
        columns,
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        archive_table: Some("capstan_archive.a1_users_name".into()),
        row_count: 3,
        size_bytes: 100,
        archived_at: String::new(),
        archived_by: String::new(),
        binary_version: String::new(),
        restored_at: None,
        restored_by: None,
        age_secs: 0.0,
        stored_table: "a1_users_name".into(),
    }
}

fn col(name: &str, ty: &str) -> ColumnInfo {
    ColumnInfo {
        name: name.into(),
        ty: ty.into(),
        not_null: false,
        stored_as: None,
    }
}

fn table(columns: Vec<ColumnInfo>, key: &[&str]) -> TableInfo {
    TableInfo {
        schema: "public".into(),
        name: "users".into(),
        columns,
        primary_key: key.iter().map(|k| k.to_string()).collect(),
        generated: Vec::new(),
    }
}

#[test]
fn a_dropped_column_is_re_added_and_refilled_by_key() {
    let e = entry("columns", "drop-column", vec![col("name", "text")], &["id"]);
    let now = table(vec![col("id", "bigint")], &["id"]);
    let (sql, report) = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap();
    assert_eq!(report.columns_added, vec!["name"]);
    assert_eq!(
        sql,
        vec![
            r#"ALTER TABLE "public"."users" ADD COLUMN "name" text"#,
            r#"UPDATE "public"."users" AS t SET "name" = a."name" FROM capstan_archive."a1_users_name" AS a WHERE t."id" = a."id""#,
        ]
    );
}

#[test]
fn a_changed_primary_key_refuses() {
    let e = entry("columns", "drop-column", vec![col("name", "text")], &["id"]);
    let now = table(vec![col("id", "bigint"), col("uuid", "uuid")], &["uuid"]);
    let err = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap_err();
    assert!(
        err.contains("primary key of users is (uuid) now but was (id)"),
        "{err}"
    );
}

#[test]
fn a_retyped_column_refuses_until_its_type_is_back() {
    let e = entry(
        "columns",
        "alter-type",
        vec![col("age", "numeric(10,2)")],
        &["id"],
    );
    let now = table(vec![col("id", "bigint"), col("age", "integer")], &["id"]);
    let err = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap_err();
    assert!(err.contains("users.age is integer now"), "{err}");
}

#[test]
fn a_dropped_table_is_re_created_with_its_key() {
    let e = entry(
        "rows",
        "drop-table",
        vec![col("id", "INTEGER"), col("name", "TEXT")],
        &["id"],
    );
    let (sql, report) = restore_plan(Dialect::Sqlite, &e, None, &BTreeMap::new()).unwrap();
    assert!(report.table_created);
    assert_eq!(
        sql[0],
        r#"CREATE TABLE "users" ("id" INTEGER, "name" TEXT, PRIMARY KEY ("id"))"#
    );
}

#[test]
fn truncated_rows_go_back_where_their_key_is_free() {
    let e = entry(
        "rows",
        "truncate",
        vec![col("id", "bigint"), col("name", "text")],
        &["id"],
    );
    let now = table(vec![col("id", "bigint"), col("name", "text")], &["id"]);
    let (sql, _) = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap();
    assert!(
        sql[0].ends_with(
            r#"WHERE NOT EXISTS (SELECT 1 FROM "public"."users" AS x WHERE x."id" = a."id")"#
        ),
        "{}",
        sql[0]
    );
}

#[test]
fn identity_keys_are_overridden_and_generated_columns_left_to_the_table() {
    let e = entry(
        "rows",
        "truncate",
        vec![col("id", "bigint"), col("name", "text"), col("up", "text")],
        &["id"],
    );
    let mut now = table(
        vec![col("id", "bigint"), col("name", "text"), col("up", "text")],
        &["id"],
    );
    now.generated = vec!["up".into()];
    let (sql, _) = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap();
    assert!(
        sql[0].starts_with(
            r#"INSERT INTO "public"."users" ("id", "name") OVERRIDING SYSTEM VALUE SELECT a."id", a."name" FROM"#
        ),
        "{}",
        sql[0]
    );
}

#[test]
fn rows_without_a_key_are_not_restored_twice() {
    let mut e = entry("rows", "delete", vec![col("line", "text")], &[]);
    let now = table(vec![col("line", "text")], &[]);
    assert!(restore_plan(Dialect::Sqlite, &e, Some(&now), &BTreeMap::new()).is_ok());
    e.restored_at = Some("2024-01-01T00:00:00Z".into());
    let err = restore_plan(Dialect::Sqlite, &e, Some(&now), &BTreeMap::new()).unwrap_err();
    assert!(err.contains("restored already"), "{err}");
}

#[test]
fn a_whole_restore_refuses_when_a_column_came_since() {
    let e = entry(
        "rows",
        "drop-column",
        vec![col("line", "text"), col("level", "int")],
        &[],
    );
    let now = table(vec![col("line", "text"), col("source", "text")], &[]);
    let err = restore_plan(Dialect::Postgres, &e, Some(&now), &BTreeMap::new()).unwrap_err();
    assert!(err.contains("users.source came since"), "{err}");
}

#[test]
fn columns_match_without_case_when_only_case_differs() {
    let t = table(vec![col("id", "INTEGER"), col("Name", "TEXT")], &["id"]);
    assert_eq!(t.column("name").map(|c| c.name.as_str()), Some("Name"));
    let both = table(vec![col("name", "TEXT"), col("Name", "TEXT")], &[]);
    assert_eq!(both.column("NAME"), None);
    assert_eq!(both.column("Name").map(|c| c.name.as_str()), Some("Name"));
}

fn destruction(kind: Kind, columns: &[&str]) -> Destruction {
    Destruction {
        statement: 0,
        kind,
        schema: None,
        table: "users".into(),
        columns: columns.iter().map(|c| c.to_string()).collect(),
        cascade: false,
    }
}

#[test]
fn the_model_follows_earlier_drops_of_the_same_section() {
    let info = table(
        vec![
            col("id", "bigint"),
            col("name", "text"),
            col("d", "timestamp"),
        ],
        &["id"],
    );
    let m = model(vec![
        (destruction(Kind::DropColumn, &["id"]), Some(info.clone())),
        (destruction(Kind::AlterType, &["d"]), Some(info.clone())),
        (destruction(Kind::DropTable, &[]), Some(info.clone())),
        (destruction(Kind::Truncate, &[]), Some(info.clone())),
    ]);
    assert_eq!(m[0].1.as_ref(), Some(&info));
    let keyless = m[1].1.as_ref().expect("the table is still there");
    assert!(
        keyless.primary_key.is_empty(),
        "the key went with its column"
    );
    let names: Vec<&str> = keyless.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["name", "d"]);
    let copy = copy_of(&m[1].0, keyless).unwrap();
    assert_eq!(copy.scope.as_str(), "rows");
    assert_eq!(copy.select, ["name", "d"]);
    assert!(m[2].1.is_some());
    assert_eq!(m[3].1, None, "nothing is left after the drop");
}

#[test]
fn a_placeholder_inside_a_value_is_not_expanded() {
    let identity = Identity {
        applied_by: "a@b".into(),
        binary_version: "x 1".into(),
    };
    let e = NewEntry {
        id: 7,
        version: 2,
        migration: "n",
        direction: Direction::Up,
        line: 3,
        statement: "UPDATE t SET a = '@ID@ @X@'",
        kind: Kind::Update,
        max_bytes: None,
        identity: &identity,
    };
    assert_eq!(
        fill(
            &e,
            "@TEXT@ @ID@ @X@ @BY@ a@b",
            vec![("@X@", "x@ID@".into())]
        ),
        "'UPDATE t SET a = ''@ID@ @X@''' 7 x@ID@ 'a@b' a@b"
    );
}

#[test]
fn sizes_parse_with_units() {
    assert_eq!(parse_size("1GiB").unwrap(), 1 << 30);
    assert_eq!(parse_size("500 MB").unwrap(), 500_000_000);
    assert_eq!(parse_size("1048576").unwrap(), 1 << 20);
    assert!(parse_size("lots").is_err());
    assert!(parse_size("5 parsecs").is_err());
}

#[test]
fn no_archive_names_the_table_or_a_column() {
    let d = Destruction {
        statement: 0,
        kind: Kind::DropColumn,
        schema: None,
        table: "users".into(),
        columns: vec!["name".into()],
        cascade: false,
    };
    assert!(d.named_by("users.name"));
    assert!(d.named_by("users"));
    assert!(d.named_by("public.users.name"));
    assert!(!d.named_by("users.email"));
    assert!(!d.named_by("chirps"));
}
