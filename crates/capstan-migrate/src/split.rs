//! Splitting a section of SQL into statements, with the one lexer of
//! `capstan-format` (strings, `E''` escapes, quoted identifiers, dollar
//! quotes, nested comments, `BEGIN ATOMIC` bodies on Postgres and trigger
//! bodies on SQLite).

pub use capstan_format::{split, Dialect, SplitError, Statement};
