//! The client side: ask a probe endpoint, as an exec probe in an image without curl.

use std::error::Error as _;
use std::fmt;
use std::time::Duration;

use crate::endpoints::parse_report;
use crate::report::Status;

/// What a probe endpoint answered.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProbeOutcome {
    /// An HTTP answer. `status` is the worse of the body's `status` (when the body is
    /// a health body) and what the HTTP status implies (2xx and 3xx pass, others
    /// fail), so a plain `200 OK` passes and a `503` fails whatever it says.
    Answered {
        /// The health status.
        status: Status,
        /// The HTTP status code.
        http_status: u16,
        /// The body's top-level `output`, if any.
        output: Option<String>,
    },
    /// No HTTP answer within the timeout: refused, unreachable, timed out, or a URL
    /// that can't be asked.
    NoAnswer {
        /// Why, in words.
        reason: String,
    },
}

impl ProbeOutcome {
    /// The health status; no answer counts as fail.
    pub fn status(&self) -> Status {
        match self {
            ProbeOutcome::Answered { status, .. } => *status,
            ProbeOutcome::NoAnswer { .. } => Status::Fail,
        }
    }

    /// The exit code of `capstan probe`: 0 for pass and warn, 1 for fail or no answer.
    pub fn exit_code(&self) -> i32 {
        match self.status() {
            Status::Pass | Status::Warn => 0,
            Status::Fail => 1,
        }
    }
}

impl fmt::Display for ProbeOutcome {
    /// One line: `pass (HTTP 200)`, `fail (HTTP 503): draining`,
    /// `fail: no answer: connection refused`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProbeOutcome::Answered {
                status,
                http_status,
                output,
            } => {
                write!(f, "{status} (HTTP {http_status})")?;
                match output {
                    Some(o) => write!(f, ": {o}"),
                    None => Ok(()),
                }
            }
            ProbeOutcome::NoAnswer { reason } => write!(f, "fail: no answer: {reason}"),
        }
    }
}

/// Asks `url` with a GET and reads the answer, all within `timeout`.
///
/// Plain HTTP only (probes talk to a listener on the same host); proxies from the
/// environment are ignored and redirects are not followed.
pub async fn probe(url: &str, timeout: Duration) -> ProbeOutcome {
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .build()
    {
        Ok(client) => client,
        Err(e) => return no_answer(&e, timeout),
    };
    let response = match client
        .get(url)
        .header(
            http::header::ACCEPT,
            "application/health+json, application/json;q=0.9, */*;q=0.1",
        )
        .send()
        .await
    {
        Ok(response) => response,
        Err(e) => return no_answer(&e, timeout),
    };
    let code = response.status();
    let body = match response.bytes().await {
        Ok(body) => body,
        Err(e) => return no_answer(&e, timeout),
    };
    let by_code = if code.is_success() || code.is_redirection() {
        Status::Pass
    } else {
        Status::Fail
    };
    let report = parse_report(&body);
    let status = report.as_ref().map_or(by_code, |r| r.status.max(by_code));
    ProbeOutcome::Answered {
        status,
        http_status: code.as_u16(),
        output: report.and_then(|r| r.output),
    }
}

fn no_answer(e: &reqwest::Error, timeout: Duration) -> ProbeOutcome {
    let reason = if e.is_timeout() {
        format!("no answer within {}", humantime::format_duration(timeout))
    } else if e.is_builder() {
        // The URL, which may carry credentials, is left out.
        match e.source() {
            Some(source) => format!("cannot ask this URL: {source}"),
            None => "cannot ask this URL".to_owned(),
        }
    } else {
        // The innermost cause says it best ("Connection refused (os error 111)").
        let mut cause: &dyn std::error::Error = e;
        while let Some(next) = cause.source() {
            cause = next;
        }
        cause.to_string()
    };
    ProbeOutcome::NoAnswer { reason }
}
