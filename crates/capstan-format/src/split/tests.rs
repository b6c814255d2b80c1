use super::*;

fn texts(sql: &str, d: Dialect) -> Vec<String> {
    split(sql, d)
        .unwrap()
        .iter()
        .map(|s| sql[s.range.clone()].to_string())
        .collect()
}

#[test]
fn splits_simple_statements_and_drops_empty_ones() {
    let sql = "CREATE TABLE a (id int);\n\n;-- only a comment\nINSERT INTO a VALUES (1)";
    assert_eq!(
        texts(sql, Dialect::Postgres),
        vec!["CREATE TABLE a (id int)", "INSERT INTO a VALUES (1)"]
    );
}

#[test]
fn semicolons_inside_quotes_and_comments_do_not_split() {
    let sql = "SELECT 'a;b', \"c;d\", E'x\\';y' /* ; /* nested ; */ */ ; SELECT 2 -- ;\n;";
    let t = texts(sql, Dialect::Postgres);
    assert_eq!(t.len(), 2, "{t:?}");
    assert!(t[0].starts_with("SELECT 'a;b'"));
}

#[test]
fn dollar_quoted_function_bodies_stay_whole() {
    let sql = "CREATE FUNCTION f() RETURNS int AS $body$ BEGIN RETURN 1; END; $body$ LANGUAGE plpgsql;\nSELECT 1;";
    let t = texts(sql, Dialect::Postgres);
    assert_eq!(t.len(), 2);
    assert!(t[0].ends_with("plpgsql"));
}

#[test]
fn begin_atomic_bodies_stay_whole() {
    let sql = "CREATE FUNCTION f(a int) RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT CASE WHEN a > 0 THEN 1 ELSE 0 END; SELECT 2; END;\nSELECT 3;";
    let t = texts(sql, Dialect::Postgres);
    assert_eq!(t.len(), 2, "{t:?}");
}

#[test]
fn sqlite_trigger_bodies_stay_whole() {
    let sql = "CREATE TRIGGER t AFTER INSERT ON a BEGIN UPDATE b SET n = n + 1; DELETE FROM c; END;\nSELECT 1;";
    let t = texts(sql, Dialect::Sqlite);
    assert_eq!(t.len(), 2, "{t:?}");
    // A transaction's BEGIN is no body.
    assert_eq!(texts("BEGIN; SELECT 1; COMMIT;", Dialect::Sqlite).len(), 3);
}

#[test]
fn reports_lines_columns_and_keywords() {
    let sql = "\n  create table a (id int);\nselect 1;";
    let s = split(sql, Dialect::Postgres).unwrap();
    assert_eq!(
        (s[0].line_offset, s[0].column, s[0].keyword.as_str()),
        (1, 3, "CREATE")
    );
    assert_eq!((s[1].line_offset, s[1].column), (2, 1));
}

#[test]
fn unterminated_string_is_an_error_with_its_line() {
    let e = split("SELECT 1;\nSELECT 'oops;\n", Dialect::Postgres).unwrap_err();
    assert_eq!(e.what, "string literal");
    assert_eq!(e.line_offset, 1);
    let e = split("SELECT 1;\n\n/* open", Dialect::Sqlite).unwrap_err();
    assert_eq!((e.what, e.line_offset), ("block comment", 2));
}

#[test]
fn positional_parameters_and_identifiers_with_dollars_are_not_quotes() {
    let t = texts("SELECT a$b, $1 FROM t; SELECT 2;", Dialect::Postgres);
    assert_eq!(t.len(), 2);
}

#[test]
fn pieces_keep_trivia_and_semicolons_and_never_fail() {
    let sql = "SELECT 'a;b', E'it\\'s;', \"we;ird\" FROM t; -- c;\n/* x; /* y; */ */ SELECT $$;$$, $f$ ; $f$, $1;\nCREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; SELECT CASE WHEN true THEN 2 END; END;\nSELECT 3";
    let p = pieces(sql);
    assert_eq!(p.len(), 4, "{p:#?}");
    assert_eq!(p.concat(), sql);
    assert!(p[1].starts_with(" -- c;\n/*"));
    assert!(p[0].ends_with(';'));
    // A trailing comment is no piece; an open quote runs to the end.
    assert_eq!(pieces("SELECT 1; -- done\n"), vec!["SELECT 1;"]);
    assert_eq!(
        pieces("SELECT 1; SELECT 'x;"),
        vec!["SELECT 1;", " SELECT 'x;"]
    );
}

#[test]
fn words_skip_strings_comments_and_dollar_quotes() {
    assert_eq!(
        words("select 'a b' , \"c d\", $x$ e $x$, $1 -- f\n/* g /* h */ */ i"),
        vec!["SELECT", "I"]
    );
}
