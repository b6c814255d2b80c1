//! The expression language that selects events (see `docs/events.md`).
//!
//! Hand-written recursive descent: the grammar is a dozen rules, and owning the
//! lexer is what lets every error point at the exact column with a caret, which a
//! parser-combinator crate would make us rebuild anyway.
//!
//! ```text
//! expr    := and ("or" and)*
//! and     := unary ("and" unary)*
//! unary   := "not" unary | primary
//! primary := "(" expr ")" | "exists" "(" field ")"
//!          | field op literal | field ["not"] "in" "(" literal ("," literal)* ")"
//! op      := "=" | "!=" | "<" | "<=" | ">" | ">=" | "~"
//! literal := number | "string" | 'string'
//! ```

mod parse;

use std::fmt;

use crate::event::{Event, Value};

/// A parsed expression such as `status >= 500 and release = "2.0.0"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    src: String,
    pub(crate) node: Node,
}

/// An expression that could not be parsed, with the 1-based column it went wrong at.
///
/// Its `Display` is three lines: the message with the column, the expression, and a
/// caret under the column.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub struct ExprError {
    /// 1-based character offset into the expression.
    pub column: usize,
    /// What was wrong.
    pub message: String,
    /// The expression text.
    pub source_text: String,
}

impl fmt::Display for ExprError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "bad expression at column {}: {}",
            self.column, self.message
        )?;
        writeln!(f, "  {}", self.source_text)?;
        write!(f, "  {}^", " ".repeat(self.column.saturating_sub(1)))
    }
}

/// A field an expression can name: an event column, a mirror comparison part, or a
/// key of the event's `fields`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Field {
    /// A column of the event.
    Column(Column),
    /// A key of [`Event::fields`].
    Custom(String),
}

/// The event columns an expression can name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[allow(missing_docs)]
pub enum Column {
    TimeMs,
    Service,
    Method,
    Route,
    Path,
    Status,
    DurationMs,
    UpstreamMs,
    BytesIn,
    BytesOut,
    Release,
    Instance,
    Cohort,
    User,
    TraceId,
    Error,
    MirrorStatusClassEqual,
    MirrorBodyHashEqual,
    MirrorShadowStatus,
    MirrorShadowMs,
}

impl Column {
    /// Every column, in the order the docs list them.
    pub const ALL: [Column; 20] = [
        Column::TimeMs,
        Column::Service,
        Column::Method,
        Column::Route,
        Column::Path,
        Column::Status,
        Column::DurationMs,
        Column::UpstreamMs,
        Column::BytesIn,
        Column::BytesOut,
        Column::Release,
        Column::Instance,
        Column::Cohort,
        Column::User,
        Column::TraceId,
        Column::Error,
        Column::MirrorStatusClassEqual,
        Column::MirrorBodyHashEqual,
        Column::MirrorShadowStatus,
        Column::MirrorShadowMs,
    ];

    /// The name expressions use.
    pub fn name(self) -> &'static str {
        match self {
            Column::TimeMs => "time_ms",
            Column::Service => "service",
            Column::Method => "method",
            Column::Route => "route",
            Column::Path => "path",
            Column::Status => "status",
            Column::DurationMs => "duration_ms",
            Column::UpstreamMs => "upstream_ms",
            Column::BytesIn => "bytes_in",
            Column::BytesOut => "bytes_out",
            Column::Release => "release",
            Column::Instance => "instance",
            Column::Cohort => "cohort",
            Column::User => "user",
            Column::TraceId => "trace_id",
            Column::Error => "error",
            Column::MirrorStatusClassEqual => "mirror.status_class_equal",
            Column::MirrorBodyHashEqual => "mirror.body_hash_equal",
            Column::MirrorShadowStatus => "mirror.shadow_status",
            Column::MirrorShadowMs => "mirror.shadow_ms",
        }
    }

    /// Whether the column holds numbers (compared numerically).
    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            Column::TimeMs
                | Column::Status
                | Column::DurationMs
                | Column::UpstreamMs
                | Column::BytesIn
                | Column::BytesOut
                | Column::MirrorShadowStatus
                | Column::MirrorShadowMs
        )
    }
}

impl Field {
    /// Resolves a name: a column, `fields.KEY`, or any other name as a `fields` key.
    pub fn from_name(name: &str) -> Field {
        if let Some(c) = Column::ALL.iter().find(|c| c.name() == name) {
            return Field::Column(*c);
        }
        match name.strip_prefix("fields.") {
            Some(key) => Field::Custom(key.to_string()),
            None => Field::Custom(name.to_string()),
        }
    }

    /// Resolves a name as a user wrote it (`--where`, `--group-by`, a
    /// calculation's field): like [`Field::from_name`], but a bare name that
    /// is not a column yet looks like one mistyped ([`looks_mistyped`]:
    /// `Status`, `releas`, `stauts`, `duration`) is refused with the column
    /// it probably means, instead of silently naming a `fields` key no event
    /// has. `fields.KEY` still names any key.
    pub fn from_user_name(name: &str) -> Result<Field, String> {
        let field = Field::from_name(name);
        if matches!(field, Field::Custom(_)) && !name.starts_with("fields.") {
            if let Some(c) = mistyped_column(name) {
                return Err(format!(
                    "`{name}` is not a field; did you mean `{}`? (a key of `fields` is \
                     written `fields.{name}`)",
                    c.name()
                ));
            }
        }
        Ok(field)
    }

    /// The name as written in expressions and output: a `fields` key bare,
    /// unless bare it would name a column or be refused as one mistyped
    /// (then `fields.KEY`), so any name printed can be pasted back.
    pub fn name(&self) -> String {
        match self {
            Field::Column(c) => c.name().to_string(),
            Field::Custom(k) => {
                // A column's own name is "mistyped" too (equal but for case).
                if mistyped_column(k).is_some() {
                    format!("fields.{k}")
                } else {
                    k.clone()
                }
            }
        }
    }
}

/// The column `name` is probably a mistyping of, if any.
fn mistyped_column(name: &str) -> Option<Column> {
    Column::ALL
        .into_iter()
        .find(|c| looks_mistyped(name, c.name()))
}

/// Whether `name` is probably `column` mistyped, narrowly, since any other
/// name is a `fields` key and plausible keys (`users`, `errors`, `stats`,
/// `time`, `trace`, `bytes`, `patch`, `released`, `duration_us`) must stay
/// usable bare:
///
/// - the same but for case (`Status`, `RELEASE`);
/// - one edit (insert, delete, replace, swap) away, when both are at least
///   six characters long, unless the edit is a letter added at the end
///   (`routes`, `released`; not the last one doubled, `cohortt`) or is in
///   the unit after the last `_` (`duration_us`, `time_s`): `releas`,
///   `stauts`, `duraton_ms`, `trace-id`;
/// - a duration column without its unit (`duration`, `upstream`).
pub(crate) fn looks_mistyped(name: &str, column: &str) -> bool {
    // A letter added at the end, other than the last one doubled (`cohortt`).
    let extended = name
        .strip_prefix(column)
        .is_some_and(|rest| rest.len() == 1 && !column.ends_with(rest));
    let other_unit = matches!(
        (name.rsplit_once('_'), column.rsplit_once('_')),
        (Some((a, _)), Some((b, _))) if a == b
    );
    name.eq_ignore_ascii_case(column)
        || (name.len() >= 6
            && column.len() >= 6
            && !extended
            && !other_unit
            && strsim::osa_distance(name, column) == 1)
        || (column != "time_ms" && column.strip_suffix("_ms") == Some(name))
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Contains,
}

/// A literal in an expression.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Lit {
    Num(f64),
    Str(String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node {
    Or(Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Not(Box<Node>),
    Cmp(Field, Op, Lit),
    In(Field, Vec<Lit>),
    Exists(Field),
}

impl Expr {
    /// Parses an expression.
    pub fn parse(s: &str) -> Result<Expr, ExprError> {
        parse::parse(s)
    }

    /// The expression that every event matches (used when no `--where` is given).
    pub fn all() -> Expr {
        Expr {
            src: String::new(),
            node: Node::Exists(Field::Column(Column::TimeMs)),
        }
    }

    /// The expression text as given.
    pub fn source(&self) -> &str {
        &self.src
    }

    /// Whether `event` matches.
    pub fn matches(&self, event: &Event) -> bool {
        eval(&self.node, &|f: &Field| event.value(f))
    }

    /// The negation of this expression (`not (...)`).
    pub fn negate(&self) -> Expr {
        Expr {
            src: format!("not ({})", self.src),
            node: Node::Not(Box::new(self.node.clone())),
        }
    }

    /// Every field the expression names.
    pub fn fields(&self) -> Vec<Field> {
        let mut out = Vec::new();
        collect_fields(&self.node, &mut out);
        out.sort();
        out.dedup();
        out
    }
}

fn collect_fields(n: &Node, out: &mut Vec<Field>) {
    match n {
        Node::Or(a, b) | Node::And(a, b) => {
            collect_fields(a, out);
            collect_fields(b, out);
        }
        Node::Not(a) => collect_fields(a, out),
        Node::Cmp(f, _, _) | Node::In(f, _) | Node::Exists(f) => out.push(f.clone()),
    }
}

/// Evaluates `n` with `get` giving each field's value.
pub(crate) fn eval<'a>(n: &Node, get: &dyn Fn(&Field) -> Value<'a>) -> bool {
    match n {
        Node::Or(a, b) => eval(a, get) || eval(b, get),
        Node::And(a, b) => eval(a, get) && eval(b, get),
        Node::Not(a) => !eval(a, get),
        Node::Exists(f) => !matches!(get(f), Value::Missing),
        Node::Cmp(f, op, lit) => compare(&get(f), *op, lit),
        Node::In(f, lits) => {
            let v = get(f);
            lits.iter().any(|l| compare(&v, Op::Eq, l))
        }
    }
}

/// `value OP literal`. A missing value makes every comparison false except `!=`,
/// which is always `not (=)`.
pub(crate) fn compare(v: &Value<'_>, op: Op, lit: &Lit) -> bool {
    if op == Op::Ne {
        return !compare(v, Op::Eq, lit);
    }
    let ord = match (v, lit) {
        (Value::Missing, _) => return false,
        (_, Lit::Str(s)) if op == Op::Contains => return v.as_text().contains(s.as_str()),
        (_, Lit::Num(n)) if op == Op::Contains => return v.as_text().contains(&fmt_num(*n)),
        (Value::Num(x), Lit::Num(y)) => x.partial_cmp(y),
        (Value::Str(s), Lit::Num(y)) => match crate::event::parse_num(s) {
            Some(x) => x.partial_cmp(y),
            None => return false,
        },
        (Value::Str(s), Lit::Str(t)) => Some((*s).cmp(t.as_str())),
        (Value::Num(x), Lit::Str(t)) => Some(fmt_num(*x).as_str().cmp(t.as_str())),
    };
    let Some(ord) = ord else { return false };
    use std::cmp::Ordering::*;
    match op {
        Op::Eq => ord == Equal,
        Op::Lt => ord == Less,
        Op::Le => ord != Greater,
        Op::Gt => ord == Greater,
        Op::Ge => ord != Less,
        Op::Ne | Op::Contains => unreachable!("handled above"),
    }
}

/// Formats a number the way fields print it: integers without a fraction.
pub(crate) fn fmt_num(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        let mut e = Event {
            status: 503,
            release: "2.0.0".into(),
            duration_ms: 120.5,
            route: "/api/chirps/{id}".into(),
            ..Event::default()
        };
        e.fields.insert("plan".into(), "pro".into());
        e.fields.insert("items".into(), "12".into());
        e
    }

    fn m(s: &str) -> bool {
        Expr::parse(s)
            .unwrap_or_else(|e| panic!("{e}"))
            .matches(&ev())
    }

    #[test]
    fn evaluates() {
        assert!(m(r#"status >= 500 and release = "2.0.0""#));
        assert!(!m(r#"status < 500 or release != "2.0.0""#));
        assert!(m(r#"plan = "pro" and fields.plan = 'pro'"#));
        assert!(m("items > 9 and items <= 12"));
        assert!(m(r#"route ~ "chirps" and not (route ~ "users")"#));
        assert!(m(
            r#"release in ("1.0.0", "2.0.0") and status not in (200, 204)"#
        ));
        assert!(m("exists(plan) and not exists(error) and not exists(nope)"));
        assert!(m(r#"error != "timeout""#));
        assert!(!m(r#"error = "timeout""#));
        assert!(m("duration_ms > 120 and duration_ms < 121"));
        assert!(m("status >= 500 AND NOT status = 200 Or status = 1"));
    }

    #[test]
    fn nan_and_infinity_in_fields_are_text_not_numbers() {
        for v in ["inf", "+inf", "infinity", "NaN", "-nan", "1e999"] {
            let mut e = ev();
            e.fields.insert("items".into(), v.into());
            let matches = |s: &str| Expr::parse(s).unwrap().matches(&e);
            assert!(!matches("items > 3"), "{v}");
            assert!(!matches("items < 3"), "{v}");
            assert!(!matches("items >= -1e300"), "{v}");
            assert!(matches(&format!("items = {v:?}")), "{v}");
        }
    }

    #[test]
    fn precedence_and_binds_tighter_than_or() {
        assert!(m("status = 503 or status = 1 and status = 2"));
        assert!(!m("(status = 503 or status = 1) and status = 2"));
    }

    fn err(s: &str) -> ExprError {
        Expr::parse(s).expect_err(s)
    }

    /// Nesting and size are bounded, so a hostile expression (the dashboard
    /// takes them from URLs) is an error at its column, not a stack
    /// overflow that aborts the process.
    #[test]
    fn deep_nesting_and_huge_expressions_are_refused_not_overflowed() {
        let depth = parse::MAX_NESTING;
        let ok = format!("{}status = 500{}", "(".repeat(depth), ")".repeat(depth));
        assert!(Expr::parse(&ok).is_ok());
        let ok = format!("{}status = 500", "not ".repeat(depth));
        assert!(Expr::parse(&ok).is_ok());

        // Deep enough to overflow a 2 MiB stack unbounded.
        let deep = format!("{}status = 500{}", "(".repeat(100_000), ")".repeat(100_000));
        let e = err(&deep);
        assert_eq!(e.column, depth + 1, "points at the first `(` too many");
        assert!(e.message.contains("nested more than 64"), "{}", e.message);
        let e = err(&format!("{}status = 500", "not ".repeat(100_000)));
        assert_eq!(e.column, depth * 4 + 1);

        let many = |n: usize| vec!["status = 500"; n].join(" and ");
        assert!(Expr::parse(&many(parse::MAX_CONDITIONS)).is_ok());
        let e = err(&many(100_000));
        assert_eq!(e.column, parse::MAX_CONDITIONS * 17 + 1);
        assert!(
            e.message.contains("more than 1000 conditions"),
            "{}",
            e.message
        );

        // Parsed in a thread with the stack of a tokio worker (2 MiB).
        let deep = format!("{}status = 500{}", "(".repeat(100_000), ")".repeat(100_000));
        let parsed = std::thread::Builder::new()
            .stack_size(2 * 1024 * 1024)
            .spawn(move || Expr::parse(&deep).is_err())
            .unwrap()
            .join()
            .unwrap();
        assert!(parsed);
    }

    #[test]
    fn errors_name_the_column() {
        let e = err("status >= and x");
        assert_eq!(e.column, 11);
        assert!(e.message.contains("expected a value"), "{e}");
        assert!(e.to_string().ends_with("\n            ^"), "{e}");
        assert_eq!(err(r#"release = "2.0"#).column, 11);
        assert_eq!(err("status = 500 status = 2").column, 14);
        assert_eq!(err("(status = 500").column, 1);
        assert_eq!(err(r#"status = "abc""#).column, 10);
        assert_eq!(err("release = v2").column, 11);
        assert_eq!(err("status # 2").column, 8);
        assert_eq!(err("status").column, 7);
        assert_eq!(err("").column, 1);
        assert_eq!(err("status in (1, 2").column, 16);
        assert_eq!(err("status ~ \"5\"").column, 8);
        assert_eq!(err("and = 1").column, 1);
    }

    #[test]
    fn a_mistyped_column_is_refused_with_the_column_it_resembles() {
        for (expr, col, meant) in [
            (r#"status >= 500 and releas = "2.0.0""#, 19, "release"),
            ("stauts = 500", 1, "status"),
            ("Status = 500", 1, "status"),
            ("not (duration > 300)", 6, "duration_ms"),
            ("upstream > 1", 1, "upstream_ms"),
            (r#"cohort = "internal" or cohortt = "x""#, 24, "cohort"),
            (r#"instnce = "a""#, 1, "instance"),
            ("trace-id = 1", 1, "trace_id"),
        ] {
            let e = err(expr);
            assert_eq!(e.column, col, "{e}");
            assert!(
                e.message.contains(&format!("did you mean `{meant}`")),
                "{e}"
            );
            assert!(e.message.contains("fields."), "{e}");
        }
        // Other names are `fields` keys, as are near-misses written out.
        for ok in [
            r#"plan = "pro""#,
            r#"fields.releas = "x""#,
            "items > 3",
            r#"fields.Status = "x""#,
            "users > 1 and errors > 0 and stats = 1 and time = 1 and trace = 1",
            "bytes = 1 and patch = 1 and used = 1 and routes = 1 and paths = 1",
            "instances > 1 and exists(mirror) and math = 1 and released = 1",
            "duration_us > 1 and upstream_ns > 1 and time_s > 1 and duration_s > 1",
        ] {
            Expr::parse(ok).unwrap_or_else(|e| panic!("{ok}: {e}"));
        }
        assert_eq!(
            Field::from_user_name("fields.releas"),
            Ok(Field::Custom("releas".into()))
        );
        assert_eq!(
            Field::from_user_name("route"),
            Ok(Field::Column(Column::Route))
        );
        assert!(Field::from_user_name("mehtod").is_err());
        // A key that bare would be refused prints in the form that is not.
        assert_eq!(Field::Custom("releas".into()).name(), "fields.releas");
        assert_eq!(Field::Custom("users".into()).name(), "users");
        assert_eq!(Field::Custom("status".into()).name(), "fields.status");
    }
}
