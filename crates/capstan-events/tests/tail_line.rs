//! What `events tail` prints of an event whose text came from a sender (span
//! attributes, a path, a status message): one line, with nothing in it a
//! terminal would act on.

mod common;

use capstan_events::cli::event_line;
use capstan_events::Event;
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
