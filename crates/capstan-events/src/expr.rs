//! The expression language that selects events.

/// A parsed expression such as `status >= 500 and release = "2.0.0"`.
#[derive(Debug, Clone, PartialEq)]
pub struct Expr {
    src: String,
}

/// An expression that could not be parsed, with the 1-based column it went wrong at.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("expression, column {column}: {message}")]
pub struct ExprError {
    /// 1-based character offset into the expression.
    pub column: usize,
    /// What was wrong.
    pub message: String,
    /// The expression text.
    pub source_text: String,
}

impl Expr {
    /// Parses an expression.
    pub fn parse(s: &str) -> Result<Expr, ExprError> {
        Ok(Expr { src: s.to_string() })
    }

    /// The expression text as given.
    pub fn source(&self) -> &str {
        &self.src
    }
}
