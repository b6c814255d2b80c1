//! What `events tail` prints of an event whose text came from a sender (span
//! attributes, a path, a status message): one line, with nothing in it a
//! terminal would act on; and the same for the tables of `query` and
//! `compare`, whose cells are such values too.

mod common;

use capstan_events::cli::{compare_text, event_line, query_table};
use capstan_events::{Event, Expr, QueryResult, QueryRow};
use common::{temp_store, T0};

/// A value with a newline (a made-up second event) and an escape sequence
/// (a terminal's), in a `fields` key and value, the path, the error and the
/// service, stored and read back as `tail` reads it: one line, escaped.
#[test]
fn tail_prints_control_characters_escaped_on_one_line() {
    let (_dir, store) = temp_store();
    let fake = "\n2026-12-01T00:00:00.000Z chirpy GET /admin 200 1ms release=9";
    let mut e = Event {
        time_ms: T0,
        service: "chirpy\r".into(),
        method: "GET".into(),
        route: "/a".into(),
        path: format!("/a\u{1b}[2J{fake}").into(),
        status: 500,
        duration_ms: 1.0,
        release: "1.0.0".into(),
        error: Some("boom\u{1b}]0;owned\u{7}".into()),
        ..Event::default()
    };
    e.fields.insert(
        "exception.message".into(),
        format!("bad\u{1b}[31m red\u{9b}1m\u{7f} {fake}"),
    );
    e.fields
        .insert("k\ney".into(), "caf\u{e9} \u{202e}txt.exe \\n".into());
    store.insert_batch(&[e]).unwrap();

    let stored = store.events_after(0, 10).unwrap();
    assert_eq!(stored.len(), 1);
    let line = event_line(&stored[0].event);
    assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
    assert!(
        !line.chars().any(|c| c.is_control() || c == '\u{202e}'),
        "{line:?}"
    );
    assert_eq!(
        line,
        "2026-09-21T14:13:00.000Z chirpy\\r GET \
         /a\\u{1b}[2J\\n2026-12-01T00:00:00.000Z chirpy GET /admin 200 1ms release=9 \
         500 1ms release=1.0.0 error=boom\\u{1b}]0;owned\\u{7} \
         exception.message=bad\\u{1b}[31m red\\u{9b}1m\\u{7f} \
         \\n2026-12-01T00:00:00.000Z chirpy GET /admin 200 1ms release=9 \
         k\\ney=caf\u{e9} \\u{202e}txt.exe \\\\n"
    );
}

/// `query`'s and `compare`'s text tables escape the values they show: a
/// group or a top value with a newline or an escape sequence stays in its
/// cell.
#[test]
fn query_and_compare_tables_escape_their_values() {
    let evil = "x\u{1b}[2J\nfake row";
    let res = QueryResult {
        group_by: vec!["fields.plan".into()],
        calcs: vec!["count".into()],
        rows: vec![QueryRow {
            group: vec![Some(evil.into())],
            values: vec![Some(1.0)],
        }],
    };
    let table = query_table(&res);
    assert_eq!(table.lines().count(), 2, "{table:?}");
    assert!(table.contains("x\\u{1b}[2J\\nfake row"), "{table:?}");

    let (_dir, store) = temp_store();
    let mut events = Vec::new();
    for (i, status) in [500, 200].into_iter().enumerate() {
        let mut e = Event {
            time_ms: T0 + i as i64,
            service: "chirpy".into(),
            method: "GET".into(),
            route: "/a".into(),
            path: "/a".into(),
            status,
            duration_ms: 1.0,
            release: "1.0.0".into(),
            ..Event::default()
        };
        e.fields.insert(format!("k\u{1b}{i}"), evil.into());
        events.push(e);
    }
    store.insert_batch(&events).unwrap();
    let a = Expr::parse("status >= 500").unwrap();
    let cmp = store.compare(&a, None, T0, T0 + 10).unwrap();
    let text = compare_text(&cmp, "status >= 500", "the rest", 50);
    assert!(
        !text.chars().any(|c| c.is_control() && c != '\n'),
        "{text:?}"
    );
    assert!(text.contains("x\\u{1b}[2J\\nfake row"), "{text:?}");
    assert!(!text.contains("fake row\n"), "{text:?}");
}
