//! What a rehearsal found, and its three renderings: the terminal matrix,
//! JSON (a versioned contract, see `docs/rehearse.md`) and Markdown for a
//! pull-request comment.

use std::fmt::Write as _;

use serde::Serialize;

use crate::load::LoadStats;

/// The JSON format version.
pub const FORMAT_VERSION: u32 = 1;

/// The whole rehearsal.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// JSON format version.
    pub format_version: u32,
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The releases, in order.
    pub releases: Vec<String>,
    /// One per pair of consecutive releases.
    pub steps: Vec<StepReport>,
    /// Where the time went.
    pub timings: Timings,
    /// True when every cell had its expected result.
    pub ok: bool,
}

/// One step, release N to N+1, on its own fresh database.
#[derive(Debug, Clone, Serialize)]
pub struct StepReport {
    /// Release N.
    pub from: String,
    /// Release N+1.
    pub to: String,
    /// The cells, in the order they ran.
    pub cells: Vec<Cell>,
    /// A failure before the first cell (building N's schema, the seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub setup_error: Option<Failure>,
}

/// One (binary, schema state) of the deploy path.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    /// 1 to 6 (see the crate docs); 1 to 8 in a `[move]`.
    pub number: u8,
    /// What the cell checks.
    pub title: String,
    /// The release whose binary ran.
    pub binary: String,
    /// The schema state, like `1.0.0 + 2.0.0 expand`.
    pub schema: String,
    /// Migrations run to reach this state.
    pub migrations: Vec<String>,
    /// The result.
    pub outcome: Outcome,
    /// Wall time of the cell, milliseconds.
    pub duration_ms: u64,
    /// With `--load`: the traffic during this cell.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub load: Option<LoadStats>,
}

/// A cell's result.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "result", rename_all = "kebab-case")]
pub enum Outcome {
    /// The binary started and passed its smoke test.
    Pass {
        /// A remark, such as "not refused".
        #[serde(skip_serializing_if = "Option::is_none")]
        note: Option<String>,
    },
    /// The gate refused the binary, as it should (cell 5, old binary).
    ExpectedRefusal {
        /// The binary's message.
        message: String,
    },
    /// Not applicable (no contract migrations, no down sections).
    Skipped {
        /// Why.
        reason: String,
    },
    /// Could not run because of an earlier failure.
    NotRun {
        /// Why.
        reason: String,
    },
    /// An unexpected failure.
    Fail(Failure),
}

impl Outcome {
    /// True for an unexpected failure.
    pub fn is_failure(&self) -> bool {
        matches!(self, Outcome::Fail(_))
    }

    fn short(&self) -> String {
        match self {
            Outcome::Pass { note: None } => "pass".into(),
            Outcome::Pass { note: Some(n) } => format!("pass ({n})"),
            Outcome::ExpectedRefusal { .. } => "refused by the gate (expected)".into(),
            Outcome::Skipped { reason } => format!("skipped: {reason}"),
            Outcome::NotRun { reason } => format!("not run: {reason}"),
            Outcome::Fail(f) => format!("FAIL: {}", f.summary),
        }
    }

    fn emoji(&self) -> &'static str {
        match self {
            Outcome::Pass { .. } => "✅",
            Outcome::ExpectedRefusal { .. } => "🛑",
            Outcome::Skipped { .. } | Outcome::NotRun { .. } => "⏭️",
            Outcome::Fail(_) => "❌",
        }
    }
}

/// An unexpected failure, with what a developer needs to understand it.
#[derive(Debug, Clone, Serialize)]
pub struct Failure {
    /// One line: what went wrong.
    pub summary: String,
    /// The failing request or command.
    pub what: String,
    /// Its output (response, command output, migration error).
    pub output: String,
    /// Server log lines around the failure.
    pub log: Vec<String>,
}

/// Where the time went, milliseconds.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    /// Wall time of the whole rehearsal.
    pub total_ms: u64,
    /// Running migrations (up, down, and reading the sets).
    pub migrations_ms: u64,
    /// Loading seed data.
    pub seed_ms: u64,
    /// From spawning a binary to ready (or refused).
    pub startup_ms: u64,
    /// Smoke tests.
    pub smoke_ms: u64,
    /// Waiting for binaries to stop.
    pub shutdown_ms: u64,
    /// Creating and dropping scratch databases.
    pub database_ms: u64,
    /// Everything else: `total - migrations - seed - startup - smoke`,
    /// as a percentage of `total`.
    pub overhead_pct: f64,
}

impl Timings {
    /// Fills `overhead_pct` from the other fields.
    pub fn finish(&mut self) {
        let work = self.migrations_ms + self.seed_ms + self.startup_ms + self.smoke_ms;
        self.overhead_pct = if self.total_ms == 0 {
            0.0
        } else {
            let o = self.total_ms.saturating_sub(work) as f64 * 100.0 / self.total_ms as f64;
            (o * 10.0).round() / 10.0
        };
    }
}

impl Report {
    /// Number of cells with an unexpected result.
    pub fn failures(&self) -> usize {
        self.steps
            .iter()
            .map(|s| {
                s.cells.iter().filter(|c| c.outcome.is_failure()).count()
                    + usize::from(s.setup_error.is_some())
            })
            .sum()
    }

    /// The JSON document.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serializes")
    }

    fn summary_line(&self) -> String {
        let cells: Vec<&Cell> = self.steps.iter().flat_map(|s| &s.cells).collect();
        let count = |f: &dyn Fn(&Outcome) -> bool| cells.iter().filter(|c| f(&c.outcome)).count();
        format!(
            "{} step{}, {} cells: {} pass, {} refused as expected, {} skipped or not run, {} unexpected",
            self.steps.len(),
            if self.steps.len() == 1 { "" } else { "s" },
            cells.len(),
            count(&|o| matches!(o, Outcome::Pass { .. })),
            count(&|o| matches!(o, Outcome::ExpectedRefusal { .. })),
            count(&|o| matches!(o, Outcome::Skipped { .. } | Outcome::NotRun { .. })),
            self.failures()
        )
    }

    fn timing_line(&self) -> String {
        let t = &self.timings;
        let s = |ms: u64| format!("{:.2} s", ms as f64 / 1000.0);
        format!(
            "time: total {}; migrations {}, seed {}, start-ups {}, smoke {} (overhead {:.1}%: shutdowns {}, databases {}, the rest {})",
            s(t.total_ms),
            s(t.migrations_ms),
            s(t.seed_ms),
            s(t.startup_ms),
            s(t.smoke_ms),
            t.overhead_pct,
            s(t.shutdown_ms),
            s(t.database_ms),
            s(t.total_ms
                .saturating_sub(t.migrations_ms + t.seed_ms + t.startup_ms + t.smoke_ms + t.shutdown_ms + t.database_ms)),
        )
    }

    /// The terminal rendering: one matrix per step, then each failure in full.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let loaded = self
            .steps
            .iter()
            .flat_map(|s| &s.cells)
            .any(|c| c.load.is_some());
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(
                out,
                "step {}: {} → {} ({})",
                i + 1,
                step.from,
                step.to,
                self.backend
            );
            if let Some(f) = &step.setup_error {
                let _ = writeln!(out, "  FAIL before the first cell: {}", f.summary);
            }
            let bw = step
                .cells
                .iter()
                .map(|c| c.binary.chars().count())
                .max()
                .unwrap_or(6)
                .max(6);
            let sw = step
                .cells
                .iter()
                .map(|c| c.schema.chars().count())
                .max()
                .unwrap_or(6)
                .max(6);
            let tw = step
                .cells
                .iter()
                .map(|c| c.title.chars().count())
                .max()
                .unwrap_or(4)
                .max(4);
            let _ = write!(
                out,
                "  #  {:tw$}  {:bw$}  {:sw$}  ",
                "cell", "binary", "schema"
            );
            if loaded {
                let _ = write!(
                    out,
                    "{:>6} {:>4} {:>7} {:>7} {:>8}  ",
                    "reqs", "errs", "p50", "p99", "stall"
                );
            }
            let _ = writeln!(out, "result");
            for c in &step.cells {
                let _ = write!(
                    out,
                    "  {}  {:tw$}  {:bw$}  {:sw$}  ",
                    c.number, c.title, c.binary, c.schema
                );
                if loaded {
                    match &c.load {
                        Some(l) => {
                            let _ = write!(
                                out,
                                "{:>6} {:>4} {:>5.0}ms {:>5.0}ms {:>6.0}ms  ",
                                l.requests, l.errors, l.p50_ms, l.p99_ms, l.stall_ms
                            );
                        }
                        None => {
                            let _ = write!(
                                out,
                                "{:>6} {:>4} {:>7} {:>7} {:>8}  ",
                                "-", "-", "-", "-", "-"
                            );
                        }
                    }
                }
                let _ = writeln!(out, "{}", c.outcome.short());
            }
            out.push('\n');
        }
        for (i, step) in self.steps.iter().enumerate() {
            let failures = step
                .setup_error
                .iter()
                .map(|f| ("setup".to_string(), f))
                .chain(step.cells.iter().filter_map(|c| match &c.outcome {
                    Outcome::Fail(f) => Some((
                        format!(
                            "cell {} ({}, binary {}, schema {})",
                            c.number, c.title, c.binary, c.schema
                        ),
                        f,
                    )),
                    _ => None,
                }));
            for (where_, f) in failures {
                let _ = writeln!(
                    out,
                    "FAIL step {} ({} → {}), {where_}",
                    i + 1,
                    step.from,
                    step.to
                );
                let _ = writeln!(out, "  {}", f.summary);
                let _ = writeln!(out, "  failing: {}", f.what);
                if !f.output.trim().is_empty() {
                    let _ = writeln!(out, "  output:");
                    for l in f.output.trim_end().lines() {
                        let _ = writeln!(out, "    {l}");
                    }
                }
                if !f.log.is_empty() {
                    let _ = writeln!(out, "  server log around it:");
                    for l in &f.log {
                        let _ = writeln!(out, "    | {l}");
                    }
                }
                out.push('\n');
            }
        }
        let _ = writeln!(out, "{}", self.summary_line());
        let _ = writeln!(out, "{}", self.timing_line());
        out
    }

    /// The Markdown rendering, for a pull-request comment.
    pub fn to_markdown(&self) -> String {
        let mut out = String::new();
        let verdict = if self.ok {
            "✅ rehearsal passed"
        } else {
            "❌ rehearsal found unexpected results"
        };
        let _ = writeln!(out, "### capstan rehearse: {verdict}\n");
        let _ = writeln!(
            out,
            "Releases {} on {}. {}.\n",
            self.releases.join(" → "),
            self.backend,
            self.summary_line()
        );
        let loaded = self
            .steps
            .iter()
            .flat_map(|s| &s.cells)
            .any(|c| c.load.is_some());
        for (i, step) in self.steps.iter().enumerate() {
            let _ = writeln!(out, "#### Step {}: {} → {}\n", i + 1, step.from, step.to);
            if let Some(f) = &step.setup_error {
                let _ = writeln!(out, "❌ before the first cell: {}\n", md_escape(&f.summary));
            }
            let _ = write!(out, "| # | cell | binary | schema | result |");
            if loaded {
                let _ = write!(out, " requests | errors | p50 | p99 | longest stall |");
            }
            let _ = writeln!(out);
            let _ = write!(out, "|---|---|---|---|---|");
            if loaded {
                let _ = write!(out, "---:|---:|---:|---:|---:|");
            }
            let _ = writeln!(out);
            for c in &step.cells {
                let _ = write!(
                    out,
                    "| {} | {} | `{}` | {} | {} {} |",
                    c.number,
                    md_escape(&c.title),
                    c.binary,
                    md_escape(&c.schema),
                    c.outcome.emoji(),
                    md_escape(&c.outcome.short())
                );
                if loaded {
                    match &c.load {
                        Some(l) => {
                            let _ = write!(
                                out,
                                " {} | {} | {:.0} ms | {:.0} ms | {:.0} ms |",
                                l.requests, l.errors, l.p50_ms, l.p99_ms, l.stall_ms
                            );
                        }
                        None => out.push_str(" | | | | |"),
                    }
                }
                let _ = writeln!(out);
            }
            out.push('\n');
            for c in &step.cells {
                if let Outcome::Fail(f) = &c.outcome {
                    let _ = writeln!(
                        out,
                        "<details><summary>❌ cell {}: {} (binary <code>{}</code>)</summary>\n",
                        c.number,
                        md_escape(&f.summary),
                        c.binary
                    );
                    let _ = writeln!(out, "Failing: `{}`\n", f.what.replace('`', "'"));
                    if !f.output.trim().is_empty() {
                        let _ = writeln!(out, "```\n{}\n```\n", f.output.trim_end());
                    }
                    if !f.log.is_empty() {
                        let _ = writeln!(
                            out,
                            "Server log around it:\n\n```\n{}\n```\n",
                            f.log.join("\n")
                        );
                    }
                    let _ = writeln!(out, "</details>\n");
                }
            }
        }
        let _ = writeln!(out, "<sub>{}</sub>", self.timing_line());
        out
    }
}

fn md_escape(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}
