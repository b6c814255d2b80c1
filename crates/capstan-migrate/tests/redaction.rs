//! A password never shows: random passwords (with every character URLs and
//! key=value strings treat specially) in random connection-string shapes,
//! through every message capstan builds from a connection string: the
//! redacted form, free-text redaction, `DatabaseUrl` (Display, Debug, parse
//! errors), `ConnSpec` (Debug, parse errors), `with_dbname` errors.

use capstan_migrate::{redact, redact_text, with_dbname, ConnSpec, DatabaseUrl};
use proptest::prelude::*;

/// Passwords: 8 to 24 characters, at least one of them special.
fn password() -> impl Strategy<Value = String> {
    let ch = prop_oneof![
        3 => proptest::char::range('a', 'z'),
        1 => proptest::char::range('A', 'Z'),
        1 => proptest::char::range('0', '9'),
        4 => proptest::sample::select(vec![
            '/', '?', '#', '@', ':', '%', '&', '=', '\'', '"', '\\', ' ', '+', ',', ';', '!', '$',
            '[', ']', '~', '*', 'é',
        ]),
    ];
    proptest::collection::vec(ch, 8..24)
        .prop_map(|v| v.into_iter().collect::<String>())
        .prop_filter("has a special character", |p| {
            p.chars().any(|c| !c.is_ascii_alphanumeric())
        })
}

fn hosts() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("db.internal".to_string()),
        Just("db.internal:6432".to_string()),
        Just("a:5432,b:5433".to_string()),
        Just("[::1]:5432".to_string()),
        Just("%2Fvar%2Frun%2Fpostgresql".to_string()),
        Just(String::new()),
    ]
}

fn query() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("?sslmode=require".to_string()),
        Just("?sslmode=verify-full&sslrootcert=/ca.pem&connect_timeout=3".to_string()),
        Just("?sslmode=sometimes".to_string()),
        Just("?connect_timeout=abc".to_string()),
        Just("?application_name=x@y&bogus=1".to_string()),
    ]
}

/// Every output that might carry the string.
fn outputs(s: &str) -> Vec<String> {
    let mut out = vec![
        redact(s),
        redact_text(&format!("error: cannot use {s} today")),
        redact_text(&format!("database_url = \"{s}\"")),
    ];
    match DatabaseUrl::parse(s) {
        Ok(u) => {
            out.push(u.to_string());
            out.push(format!("{u:?}"));
        }
        Err(e) => {
            out.push(e.to_string());
            out.push(format!("{e:?}"));
        }
    }
    let env = |_: &str| None;
    match ConnSpec::parse_with_env(s, &env) {
        Ok(spec) => {
            out.push(format!("{spec:?}"));
            out.push(spec.describe());
        }
        Err(e) => out.push(e.to_string()),
    }
    if let Err(e) = with_dbname(s, "other") {
        out.push(e.to_string());
    }
    out
}

fn assert_hidden(s: &str, pw: &str) -> Result<(), TestCaseError> {
    let encoded =
        percent_encoding::utf8_percent_encode(pw, percent_encoding::NON_ALPHANUMERIC).to_string();
    for o in outputs(s) {
        prop_assert!(
            !o.contains(pw) && !o.contains(&encoded),
            "password {pw:?} shows in {o:?} (from {s:?})"
        );
    }
    Ok(())
}

proptest! {
    // A fixed seed: every run checks the same 400 cases of each property, so
    // a shape no case has reached yet is added on purpose (as a regression
    // seed with its fix), never met at random by an unrelated change.
    #![proptest_config(ProptestConfig {
        cases: 400,
        rng_seed: proptest::test_runner::RngSeed::Fixed(0x6361_7073_7461_6e00),
        ..ProptestConfig::default()
    })]

    #[test]
    fn url_passwords_never_show(
        pw in password(),
        scheme in prop_oneof![Just("postgres"), Just("postgresql")],
        user in "[a-z][a-z0-9_]{0,8}",
        hosts in hosts(),
        db in prop_oneof![Just(""), Just("/app"), Just("/my%20db")],
        q in query(),
    ) {
        // Raw, as people paste generated passwords.
        assert_hidden(&format!("{scheme}://{user}:{pw}@{hosts}{db}{q}"), &pw)?;
        // Percent-encoded, as they should be.
        let enc = percent_encoding::utf8_percent_encode(&pw, percent_encoding::NON_ALPHANUMERIC);
        assert_hidden(&format!("{scheme}://{user}:{enc}@{hosts}{db}{q}"), &pw)?;
        // In the query.
        let sep = if q.is_empty() { '?' } else { '&' };
        assert_hidden(&format!("{scheme}://{user}@{hosts}{db}{q}{sep}password={enc}"), &pw)?;
    }

    #[test]
    fn key_value_passwords_never_show(
        pw in password(),
        host in prop_oneof![Just("db"), Just("/var/run/postgresql"), Just("a,b")],
        extra in prop_oneof![Just(""), Just(" sslmode=require"), Just(" sslmode=maybe"), Just(" connect_timeout=x"), Just(" bogus=1")],
        spaced in any::<bool>(),
        upper in any::<bool>(),
    ) {
        let key = if upper { "PASSWORD" } else { "password" };
        let eq = if spaced { " = " } else { "=" };
        let quoted = pw.replace('\\', "\\\\").replace('\'', "\\'");
        assert_hidden(&format!("host={host} {key}{eq}'{quoted}' dbname=app{extra}"), &pw)?;
        assert_hidden(&format!("{key}{eq}'{quoted}'{extra} host={host}"), &pw)?;
        if !pw.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\') {
            assert_hidden(&format!("host={host} {key}{eq}{pw} user=u{extra}"), &pw)?;
        }
    }

    #[test]
    fn typos_never_show_the_password(
        // In free text a string that is not a URL ends at white space, so
        // these passwords have none.
        pw in password().prop_filter("no @ or space", |p| !p.contains(['@', ' '])),
        scheme in prop_oneof![Just("postgres:/"), Just("postgres:"), Just("postgress://"), Just("mysql://"), Just("")],
    ) {
        // With no scheme before it, a password starting `//` makes the text
        // the URL `app://user@host` with a user name and no password at all:
        // nothing in it is secret.
        prop_assume!(!(scheme.is_empty() && pw.starts_with("//")));
        assert_hidden(&format!("{scheme}app:{pw}@db.internal/app"), &pw)?;
    }
}
