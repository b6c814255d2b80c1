//! The lexer and the recursive-descent parser of the grammar in the module
//! docs; every error carries the column it points at.

use super::{fmt_num, Column, Expr, ExprError, Field, Lit, Node, Op};

/// Parses `s` into an expression, or the error at its column.
pub(super) fn parse(s: &str) -> Result<Expr, ExprError> {
    let tokens = lex(s)?;
    let mut p = Parser {
        src: s,
        tokens,
        pos: 0,
        depth: 0,
        conditions: 0,
    };
    let node = p.or()?;
    if let Some(t) = p.peek() {
        return Err(p.err(
            t.col,
            format!(
                "unexpected {} after a complete expression (join conditions with `and` or `or`)",
                t.kind.describe()
            ),
        ));
    }
    Ok(Expr {
        src: s.to_string(),
        node,
    })
}

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Ident(String),
    Str(String),
    Num(f64),
    Op(Op),
    LParen,
    RParen,
    Comma,
}

impl Tok {
    fn describe(&self) -> String {
        match self {
            Tok::Ident(s) => format!("`{s}`"),
            Tok::Str(s) => format!("string \"{s}\""),
            Tok::Num(n) => format!("number {}", fmt_num(*n)),
            Tok::Op(op) => format!("`{}`", op_text(*op)),
            Tok::LParen => "`(`".into(),
            Tok::RParen => "`)`".into(),
            Tok::Comma => "`,`".into(),
        }
    }
}

fn op_text(op: Op) -> &'static str {
    match op {
        Op::Eq => "=",
        Op::Ne => "!=",
        Op::Lt => "<",
        Op::Le => "<=",
        Op::Gt => ">",
        Op::Ge => ">=",
        Op::Contains => "~",
    }
}

#[derive(Debug, Clone)]
struct Token {
    kind: Tok,
    /// 1-based character column.
    col: usize,
}

fn lex(src: &str) -> Result<Vec<Token>, ExprError> {
    let err = |col: usize, message: String| ExprError {
        column: col,
        message,
        source_text: src.to_string(),
    };
    let chars: Vec<char> = src.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let col = i + 1;
        if c.is_whitespace() {
            i += 1;
            continue;
        }
        let two: String = chars[i..(i + 2).min(chars.len())].iter().collect();
        let (kind, len) = match c {
            '(' => (Tok::LParen, 1),
            ')' => (Tok::RParen, 1),
            ',' => (Tok::Comma, 1),
            '~' => (Tok::Op(Op::Contains), 1),
            '=' if two == "==" => (Tok::Op(Op::Eq), 2),
            '=' => (Tok::Op(Op::Eq), 1),
            '!' if two == "!=" => (Tok::Op(Op::Ne), 2),
            '<' if two == "<=" => (Tok::Op(Op::Le), 2),
            '<' if two == "<>" => (Tok::Op(Op::Ne), 2),
            '<' => (Tok::Op(Op::Lt), 1),
            '>' if two == ">=" => (Tok::Op(Op::Ge), 2),
            '>' => (Tok::Op(Op::Gt), 1),
            '"' | '\'' => {
                let quote = c;
                let mut s = String::new();
                let mut j = i + 1;
                loop {
                    match chars.get(j) {
                        None => {
                            return Err(err(
                                col,
                                format!("string starting here has no closing {quote}"),
                            ))
                        }
                        Some('\\') => match chars.get(j + 1) {
                            Some(&e @ ('"' | '\'' | '\\')) => {
                                s.push(e);
                                j += 2;
                            }
                            Some('n') => {
                                s.push('\n');
                                j += 2;
                            }
                            Some('t') => {
                                s.push('\t');
                                j += 2;
                            }
                            _ => {
                                return Err(err(
                                    j + 1,
                                    "unknown escape (use \\\", \\', \\\\, \\n or \\t)".into(),
                                ))
                            }
                        },
                        Some(&ch) if ch == quote => break,
                        Some(&ch) => {
                            s.push(ch);
                            j += 1;
                        }
                    }
                }
                (Tok::Str(s), j + 1 - i)
            }
            c if c.is_ascii_digit()
                || (c == '-' || c == '.')
                    && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()) =>
            {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_ascii_alphanumeric()
                        || chars[j] == '.'
                        || ((chars[j] == '-' || chars[j] == '+')
                            && matches!(chars[j - 1], 'e' | 'E')))
                {
                    j += 1;
                }
                let text: String = chars[i..j].iter().collect();
                match text.parse::<f64>() {
                    Ok(n) if n.is_finite() => (Tok::Num(n), j - i),
                    _ => {
                        return Err(err(
                            col,
                            format!("`{text}` is not a number (quote text: \"{text}\")"),
                        ))
                    }
                }
            }
            c if c.is_alphabetic() || c == '_' => {
                let mut j = i + 1;
                while j < chars.len()
                    && (chars[j].is_alphanumeric() || matches!(chars[j], '_' | '.' | '-'))
                {
                    j += 1;
                }
                (Tok::Ident(chars[i..j].iter().collect()), j - i)
            }
            other => return Err(err(col, format!("unexpected character `{other}`"))),
        };
        out.push(Token { kind, col });
        i += len;
    }
    Ok(out)
}

struct Parser<'a> {
    src: &'a str,
    tokens: Vec<Token>,
    pos: usize,
    /// `(` and `not` open around the token being parsed.
    depth: usize,
    /// Conditions parsed so far.
    conditions: usize,
}

/// The most `(` and `not` an expression may nest. Parsing, evaluating and
/// dropping an expression recurse once per level, and expressions come from
/// the dashboard's URLs too: without a bound, a long enough `((((…` would
/// overflow a thread's stack and abort the process.
pub(super) const MAX_NESTING: usize = 64;

/// The most conditions an expression may hold: `a and b and …` nests one
/// level per condition in the tree, which evaluation recurses through.
pub(super) const MAX_CONDITIONS: usize = 1000;

fn is_kw(t: &Tok, kw: &str) -> bool {
    matches!(t, Tok::Ident(s) if s.eq_ignore_ascii_case(kw))
}

const KEYWORDS: [&str; 5] = ["and", "or", "not", "in", "exists"];

impl Parser<'_> {
    fn err(&self, column: usize, message: String) -> ExprError {
        ExprError {
            column,
            message,
            source_text: self.src.to_string(),
        }
    }

    fn end_col(&self) -> usize {
        self.src.chars().count() + 1
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos)
    }

    fn next(&mut self) -> Option<Token> {
        let t = self.tokens.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn peek_kw(&self, kw: &str) -> bool {
        self.peek().is_some_and(|t| is_kw(&t.kind, kw))
    }

    fn expect(&mut self, want: Tok, what: &str) -> Result<(), ExprError> {
        match self.next() {
            Some(t) if t.kind == want => Ok(()),
            Some(t) => Err(self.err(
                t.col,
                format!("expected {what}, found {}", t.kind.describe()),
            )),
            None => Err(self.err(self.end_col(), format!("expected {what} at the end"))),
        }
    }

    fn or(&mut self) -> Result<Node, ExprError> {
        let mut left = self.and()?;
        while self.peek_kw("or") {
            self.pos += 1;
            let right = self.and()?;
            left = Node::Or(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn and(&mut self) -> Result<Node, ExprError> {
        let mut left = self.unary()?;
        while self.peek_kw("and") {
            self.pos += 1;
            let right = self.unary()?;
            left = Node::And(Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Node, ExprError> {
        if self.peek_kw("not") {
            let col = self.peek().map_or(0, |t| t.col);
            self.pos += 1;
            self.enter(col)?;
            let inner = self.unary()?;
            self.depth -= 1;
            return Ok(Node::Not(Box::new(inner)));
        }
        self.primary()
    }

    /// One level deeper, at the `(` or `not` at `col`; refused past
    /// [`MAX_NESTING`].
    fn enter(&mut self, col: usize) -> Result<(), ExprError> {
        self.depth += 1;
        if self.depth > MAX_NESTING {
            return Err(self.err(
                col,
                format!("nested more than {MAX_NESTING} levels deep (`(` and `not`)"),
            ));
        }
        Ok(())
    }

    fn field(&mut self) -> Result<Field, ExprError> {
        match self.next() {
            Some(Token {
                kind: Tok::Ident(name),
                col,
            }) => {
                if KEYWORDS.iter().any(|k| name.eq_ignore_ascii_case(k)) {
                    return Err(self.err(
                        col,
                        format!("expected a field name, found keyword `{name}`"),
                    ));
                }
                if name == "fields" || name.ends_with('.') {
                    return Err(self.err(col, format!("`{name}` needs a key, e.g. fields.plan")));
                }
                Field::from_user_name(&name).map_err(|m| self.err(col, m))
            }
            Some(t) => Err(self.err(
                t.col,
                format!("expected a field name, found {}", t.kind.describe()),
            )),
            None => Err(self.err(self.end_col(), "expected a field name at the end".into())),
        }
    }

    fn literal(&mut self, field: &Field) -> Result<Lit, ExprError> {
        match self.next() {
            Some(Token {
                kind: Tok::Num(n), ..
            }) => Ok(Lit::Num(n)),
            Some(Token {
                kind: Tok::Str(s),
                col,
            }) => {
                if let Field::Column(c) = field {
                    if c.is_numeric() {
                        return match s.trim().parse::<f64>() {
                            Ok(n) if n.is_finite() => Ok(Lit::Num(n)),
                            _ => {
                                Err(self
                                    .err(col, format!("{} is a number; \"{s}\" is not", c.name())))
                            }
                        };
                    }
                }
                Ok(Lit::Str(s))
            }
            Some(Token {
                kind: Tok::Ident(w),
                ..
            }) if matches!(field, Field::Column(c) if matches!(c, Column::MirrorStatusClassEqual | Column::MirrorBodyHashEqual))
                && (w == "true" || w == "false") =>
            {
                Ok(Lit::Str(w))
            }
            Some(Token {
                kind: Tok::Ident(w),
                col,
            }) => Err(self.err(
                col,
                format!("expected a value, found `{w}` (quote strings: \"{w}\")"),
            )),
            Some(t) => Err(self.err(
                t.col,
                format!("expected a value, found {}", t.kind.describe()),
            )),
            None => Err(self.err(self.end_col(), "expected a value at the end".into())),
        }
    }

    fn primary(&mut self) -> Result<Node, ExprError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.err(self.end_col(), "expected a condition at the end".into()));
        };
        if !matches!(t.kind, Tok::LParen) {
            self.conditions += 1;
            if self.conditions > MAX_CONDITIONS {
                return Err(self.err(
                    t.col,
                    format!("more than {MAX_CONDITIONS} conditions in one expression"),
                ));
            }
        }
        match &t.kind {
            Tok::LParen => {
                self.pos += 1;
                self.enter(t.col)?;
                let inner = self.or()?;
                self.depth -= 1;
                match self.next() {
                    Some(Token {
                        kind: Tok::RParen, ..
                    }) => Ok(inner),
                    Some(x) => Err(self.err(
                        x.col,
                        format!(
                            "expected `)` to close the `(` at column {}, found {}",
                            t.col,
                            x.kind.describe()
                        ),
                    )),
                    None => Err(self.err(t.col, "this `(` is never closed".into())),
                }
            }
            Tok::Ident(w)
                if w.eq_ignore_ascii_case("exists")
                    && self
                        .tokens
                        .get(self.pos + 1)
                        .is_some_and(|n| n.kind == Tok::LParen) =>
            {
                self.pos += 2;
                let f = self.field()?;
                self.expect(Tok::RParen, "`)` after the field of exists(...)")?;
                Ok(Node::Exists(f))
            }
            Tok::Ident(_) => {
                let field = self.field()?;
                let negated_in = self.peek_kw("not")
                    && self
                        .tokens
                        .get(self.pos + 1)
                        .is_some_and(|n| is_kw(&n.kind, "in"));
                if negated_in {
                    self.pos += 1;
                }
                if self.peek_kw("in") {
                    self.pos += 1;
                    self.expect(Tok::LParen, "`(` after `in`")?;
                    let mut lits = vec![self.literal(&field)?];
                    loop {
                        match self.next() {
                            Some(Token {
                                kind: Tok::Comma, ..
                            }) => lits.push(self.literal(&field)?),
                            Some(Token {
                                kind: Tok::RParen, ..
                            }) => break,
                            Some(x) => {
                                return Err(self.err(
                                    x.col,
                                    format!(
                                        "expected `,` or `)` in the `in` list, found {}",
                                        x.kind.describe()
                                    ),
                                ))
                            }
                            None => {
                                return Err(self.err(
                                    self.end_col(),
                                    "the `in` list is never closed with `)`".into(),
                                ))
                            }
                        }
                    }
                    let node = Node::In(field, lits);
                    return Ok(if negated_in {
                        Node::Not(Box::new(node))
                    } else {
                        node
                    });
                }
                match self.next() {
                    Some(Token {
                        kind: Tok::Op(op),
                        col,
                    }) => {
                        let lit = self.literal(&field)?;
                        if op == Op::Contains {
                            if let Field::Column(c) = &field {
                                if c.is_numeric() {
                                    return Err(self.err(
                                        col,
                                        format!(
                                            "`~` (contains) needs text; {} is a number",
                                            c.name()
                                        ),
                                    ));
                                }
                            }
                        }
                        Ok(Node::Cmp(field, op, lit))
                    }
                    Some(x) => Err(self.err(
                        x.col,
                        format!(
                            "expected an operator (= != < <= > >= ~ in) after `{}`, found {}",
                            field.name(),
                            x.kind.describe()
                        ),
                    )),
                    None => Err(self.err(
                        self.end_col(),
                        format!(
                            "expected an operator (= != < <= > >= ~ in) after `{}`",
                            field.name()
                        ),
                    )),
                }
            }
            other => Err(self.err(
                t.col,
                format!(
                    "expected a condition such as `status >= 500`, found {}",
                    other.describe()
                ),
            )),
        }
    }
}
