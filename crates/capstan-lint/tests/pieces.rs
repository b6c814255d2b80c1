//! The statement splitter the linter reads large sections with
//! (`capstan_format::pieces`) agrees with the Postgres parser: every piece
//! parses, and it finds as many statements as the parser does.

use capstan_format::pieces as split;

#[test]
fn splits_at_top_level_semicolons_only() {
    let sql = "SELECT 'a;b', E'it\\'s;', \"we;ird\" FROM t; -- c;\n/* x; /* y; */ */ SELECT $$;$$, $f$ ; $f$, $1;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;\nSELECT 3";
    let pieces = split(sql);
    assert_eq!(pieces.len(), 4, "{pieces:#?}");
    for p in &pieces {
        assert!(pg_query::parse(p, 0).is_ok(), "{p}");
    }
}

#[test]
fn agrees_with_the_parser_on_the_corpus() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus");
    for entry in std::fs::read_dir(dir).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let ours: Vec<&str> = split(&text).into_iter().map(str::trim).collect();
        let theirs: Vec<&str> = pg_query::split_with_parser(&text)
            .unwrap()
            .into_iter()
            .map(str::trim)
            .collect();
        let ours: Vec<&str> = ours
            .iter()
            .map(|s| s.trim_end_matches(';').trim())
            .filter(|s| !s.is_empty())
            .collect();
        let theirs: Vec<&str> = theirs
            .iter()
            .map(|s| s.trim_end_matches(';').trim())
            .collect();
        assert_eq!(ours.len(), theirs.len(), "{text}");
    }
}
