//! stub
use super::Rule;
use crate::finding::Severity;
pub(crate) static RULE: Rule = Rule { name: "lock-table", severity: Severity::Warning, summary: "", lock: "", why: "", help: "", setup: "", bad: "", safe: "", up_only: false, check: super::no_check };
