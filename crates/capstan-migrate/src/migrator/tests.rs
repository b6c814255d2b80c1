use super::*;
use crate::source::parse_migration;
use std::path::Path;

fn set(n: u64) -> MigrationSet {
    MigrationSet::new(
        (1..=n)
            .map(|v| {
                parse_migration(
                    Path::new(&format!("{v:04}_m{v}.sql")),
                    format!("-- capstan:up\nSELECT {v};").as_bytes(),
                )
                .unwrap()
            })
            .collect(),
    )
    .unwrap()
}

fn row(m: &Migration, state: &str) -> AppliedRow {
    AppliedRow {
        version: m.version,
        name: m.name.clone(),
        checksum: m.checksum.clone(),
        up_checksum: Some(m.up_checksum.clone()),
        down_checksum: m.down_checksum.clone(),
        phase: Phase::Expand,
        state: crate::driver::RowState::parse(state).unwrap(),
        applied_at: String::new(),
        applied_by: String::new(),
        binary_version: String::new(),
        duration_ms: 0,
        no_transaction: false,
        error: None,
    }
}

#[test]
fn compare_classifies_every_state() {
    let s = set(4);
    let ms = s.migrations();
    let mut drifted = row(&ms[1], "applied");
    drifted.up_checksum = Some("x".into());
    let mut ahead = row(&ms[0], "applied");
    ahead.version = 9;
    let history = vec![row(&ms[0], "applied"), drifted, row(&ms[2], "dirty"), ahead];
    let states: Vec<(u64, State)> = compare(&s, &history)
        .iter()
        .map(|e| (e.version, e.state))
        .collect();
    assert_eq!(
        states,
        vec![
            (1, State::Applied),
            (2, State::Drifted),
            (3, State::Dirty),
            (4, State::Pending),
            (9, State::Ahead)
        ]
    );
}

#[test]
fn another_name_with_another_up_section_is_a_collision_and_old_rows_compare_whole_files() {
    let s = set(2);
    let ms = s.migrations();
    let mut other = row(&ms[1], "applied");
    other.name = "theirs".into();
    other.up_checksum = Some("x".into());
    assert_eq!(classify(&ms[1], &other), State::Collision);
    // Renamed, same up section: the same migration.
    other.up_checksum = Some(ms[1].up_checksum.clone());
    assert_eq!(classify(&ms[1], &other), State::Applied);
    // A row an older capstan wrote: the whole file decides.
    let mut old = row(&ms[0], "applied");
    old.up_checksum = None;
    old.down_checksum = None;
    assert_eq!(classify(&ms[0], &old), State::Applied);
    old.checksum = "x".into();
    assert_eq!(classify(&ms[0], &old), State::Drifted);
    let e = compare(&s, &[old, row(&ms[1], "applied")]);
    match check_clean(&e) {
        Err(Error::Drift(d)) => assert!(d[0].contains("older capstan"), "{d:?}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn pending_refuses_out_of_order_and_holds_back_contract() {
    let s = set(3);
    let m = Migrator::new(s.clone());
    let history = vec![row(&s.migrations()[2], "applied")];
    assert!(matches!(
        m.pending(&history, &UpOptions::default()),
        Err(Error::OutOfOrder { .. })
    ));
    let todo = m
        .pending(
            &[],
            &UpOptions {
                to: Some(2),
                ..UpOptions::default()
            },
        )
        .unwrap();
    assert_eq!(todo.len(), 2);
}
