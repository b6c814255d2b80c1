//! Charts as inline SVG, drawn on the server: no script is needed to see
//! them. Colours come from CSS classes (`app.css`), so the light and dark
//! themes and the colour-blind-safe palette live in one place; deploy kinds
//! differ by shape as well as colour.

use std::fmt::Write as _;

use crate::snapshot::Chart;

/// Escapes text for HTML and SVG.
pub fn esc(s: &str) -> String {
    let mut o = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => o.push_str("&amp;"),
            '<' => o.push_str("&lt;"),
            '>' => o.push_str("&gt;"),
            '"' => o.push_str("&quot;"),
            '\'' => o.push_str("&#39;"),
            c => o.push(c),
        }
    }
    o
}

/// A deploy marker on a time axis.
#[derive(Debug, Clone)]
pub struct Marker {
    /// When, unix ms.
    pub t_ms: i64,
    /// `release`, `migration`, `rollout`, `rollback`, `override`.
    pub kind: &'static str,
    /// The deploy's label.
    pub label: String,
}

const W: f64 = 760.0;
const H: f64 = 220.0;
const L: f64 = 64.0;
const R: f64 = 12.0;
const T: f64 = 14.0;
const B: f64 = 28.0;

fn x_of(t: i64, start: i64, end: i64) -> f64 {
    let span = (end - start).max(1) as f64;
    L + (t - start) as f64 / span * (W - L - R)
}

fn y_of(v: f64, lo: f64, hi: f64) -> f64 {
    let r = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
    T + (1.0 - r.clamp(0.0, 1.0)) * (H - T - B)
}

fn day_label(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|d| d.format("%b %d").to_string())
        .unwrap_or_default()
}

fn open(out: &mut String, id: &str, title: &str, desc: &str) {
    let _ = write!(
        out,
        r#"<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-labelledby="{id}-t {id}-d" preserveAspectRatio="none"><title id="{id}-t">{}</title><desc id="{id}-d">{}</desc>"#,
        esc(title),
        esc(desc)
    );
}

fn axes(out: &mut String, start: i64, end: i64, ticks: &[(f64, String)], lo: f64, hi: f64) {
    for (v, label) in ticks {
        let y = y_of(*v, lo, hi);
        let _ = write!(
            out,
            r#"<line class="grid" x1="{L}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
            W - R,
            L - 6.0,
            y + 4.0,
            esc(label)
        );
    }
    let days = ((end - start) / 86_400_000).max(1);
    let every = (days / 6).max(1) * 86_400_000;
    let mut t = (start / 86_400_000 + 1) * 86_400_000;
    while t < end {
        let x = x_of(t, start, end);
        let _ = write!(
            out,
            r#"<text class="tick" x="{x:.1}" y="{}" text-anchor="middle">{}</text>"#,
            H - 8.0,
            day_label(t)
        );
        t += every;
    }
}

fn markers(out: &mut String, ms: &[Marker], start: i64, end: i64) {
    for m in ms {
        if m.t_ms < start || m.t_ms > end {
            continue;
        }
        let x = x_of(m.t_ms, start, end);
        let shape = match m.kind {
            "release" => format!(r#"<circle cx="{x:.1}" cy="{T}" r="5"/>"#),
            "migration" => format!(
                r#"<rect x="{:.1}" y="{}" width="9" height="9"/>"#,
                x - 4.5,
                T - 4.5
            ),
            "rollout" => format!(r#"<path d="M{x:.1} {} l5 9 h-10 z"/>"#, T - 5.0),
            "rollback" => format!(r#"<path d="M{x:.1} {} l5 5 l-5 5 l-5 -5 z"/>"#, T - 5.0),
            _ => format!(
                r#"<path d="M{:.1} {} l8 8 m0 -8 l-8 8" class="x"/>"#,
                x - 4.0,
                T - 4.0
            ),
        };
        let _ = write!(
            out,
            r#"<g class="marker {}" tabindex="0"><title>{}</title><line x1="{x:.1}" x2="{x:.1}" y1="{T}" y2="{}"/>{shape}</g>"#,
            m.kind,
            esc(&m.label),
            H - B
        );
    }
}

/// The SLI per bucket over the window, the objective as a dashed line, and
/// deploy markers.
pub fn sli_chart(id: &str, chart: &Chart, target: f64, ms: &[Marker]) -> String {
    let (start, end) = (chart.start_ms, chart.now_ms);
    let min = chart
        .points
        .iter()
        .filter_map(|p| p.sli)
        .fold(1.0f64, f64::min);
    let margin = (1.0 - target).max(1e-4);
    let lo = (min.min(target) - margin).max(0.0);
    let hi = 1.0;
    let mut out = String::new();
    open(
        &mut out,
        id,
        "SLI over the window",
        &format!(
            "SLI per bucket from {} to {}, lowest {:.3} %, objective {:.3} %, {} deploy markers",
            capstan_slo::math::rfc3339(start),
            capstan_slo::math::rfc3339(end),
            min * 100.0,
            target * 100.0,
            ms.len()
        ),
    );
    // The objective's tick only where it does not overlap the others.
    let near = |a: f64, b: f64| (a - b).abs() < (hi - lo) * 0.08;
    let ticks = [lo, target, hi]
        .iter()
        .filter(|&&v| v != target || !(near(v, lo) || near(v, hi)))
        .map(|v| (*v, format!("{:.2}%", v * 100.0)))
        .collect::<Vec<_>>();
    axes(&mut out, start, end, &ticks, lo, hi);
    let ty = y_of(target, lo, hi);
    let _ = write!(
        out,
        r#"<line class="objective" x1="{L}" x2="{}" y1="{ty:.1}" y2="{ty:.1}"/>"#,
        W - R
    );
    let mut d = String::new();
    let mut pen = false;
    for p in &chart.points {
        match p.sli {
            Some(v) => {
                let _ = write!(
                    d,
                    "{}{:.1} {:.1} ",
                    if pen { "L" } else { "M" },
                    x_of(p.t_ms, start, end),
                    y_of(v, lo, hi)
                );
                pen = true;
            }
            None => pen = false,
        }
    }
    let _ = write!(out, r#"<path class="line sli" d="{}"/>"#, d.trim_end());
    markers(&mut out, ms, start, end);
    out.push_str("</svg>");
    out
}

/// Budget remaining over the window (100 % at the start of the period).
pub fn burn_down(id: &str, chart: &Chart, ms: &[Marker]) -> String {
    let (start, end) = (chart.start_ms, chart.now_ms);
    let mut out = String::new();
    let last = chart.points.last().map(|p| p.remaining).unwrap_or(1.0);
    open(
        &mut out,
        id,
        "Error budget burn-down",
        &format!(
            "Budget remaining from 100 % at {} to {:.3} % at {}",
            capstan_slo::math::rfc3339(start),
            last * 100.0,
            capstan_slo::math::rfc3339(end)
        ),
    );
    let ticks = [0.0, 0.5, 1.0]
        .iter()
        .map(|v| (*v, format!("{:.0}%", v * 100.0)))
        .collect::<Vec<_>>();
    axes(&mut out, start, end, &ticks, 0.0, 1.0);
    let mut d = format!("M{L} {:.1} ", y_of(1.0, 0.0, 1.0));
    for p in &chart.points {
        let _ = write!(
            d,
            "L{:.1} {:.1} ",
            x_of(p.t_ms, start, end),
            y_of(p.remaining, 0.0, 1.0)
        );
    }
    let area = format!(
        "{}L{:.1} {:.1} L{L} {:.1} Z",
        d,
        x_of(end, start, end),
        y_of(0.0, 0.0, 1.0),
        y_of(0.0, 0.0, 1.0)
    );
    let _ = write!(
        out,
        r#"<path class="area budget" d="{area}"/><path class="line budget" d="{}"/>"#,
        d.trim_end()
    );
    markers(&mut out, ms, start, end);
    out.push_str("</svg>");
    out
}

/// A latency heatmap: time across, latency buckets up, a stronger cell = more events.
/// `cells[i][j]`: events in time column `i` and latency bucket `j`.
pub fn heatmap(
    id: &str,
    start: i64,
    end: i64,
    cells: &[Vec<u64>],
    bucket_labels: &[String],
) -> String {
    let mut out = String::new();
    let total: u64 = cells.iter().flatten().sum();
    open(
        &mut out,
        id,
        "Latency heatmap",
        &format!(
            "{total} events from {} to {} by latency bucket; the more events, the stronger the cell",
            capstan_slo::math::rfc3339(start),
            capstan_slo::math::rfc3339(end)
        ),
    );
    let rows = bucket_labels.len().max(1);
    let cols = cells.len().max(1);
    let cw = (W - L - R) / cols as f64;
    let ch = (H - T - B) / rows as f64;
    let max = cells.iter().flatten().copied().max().unwrap_or(0).max(1) as f64;
    for (j, label) in bucket_labels.iter().enumerate() {
        if j % 2 == 0 {
            let y = H - B - (j as f64 + 0.5) * ch + 4.0;
            let _ = write!(
                out,
                r#"<text class="tick" x="{}" y="{y:.1}" text-anchor="end">{}</text>"#,
                L - 6.0,
                esc(label)
            );
        }
    }
    for (i, col) in cells.iter().enumerate() {
        for (j, &n) in col.iter().enumerate() {
            if n == 0 {
                continue;
            }
            let o = 0.15 + 0.85 * ((n as f64).ln_1p() / max.ln_1p());
            let _ = write!(
                out,
                r#"<rect class="cell" x="{:.1}" y="{:.1}" width="{:.1}" height="{:.1}" fill-opacity="{o:.2}"><title>{} events, {}</title></rect>"#,
                L + i as f64 * cw,
                H - B - (j as f64 + 1.0) * ch,
                cw.max(1.0),
                ch,
                n,
                esc(bucket_labels.get(j).map(String::as_str).unwrap_or(""))
            );
        }
    }
    let mid = start + (end - start) / 2;
    for (t, anchor) in [(start, "start"), (mid, "middle"), (end, "end")] {
        let label = chrono::DateTime::<chrono::Utc>::from_timestamp_millis(t)
            .map(|d| {
                let f = if end - start > 86_400_000 {
                    "%b %d %H:%M"
                } else {
                    "%H:%M"
                };
                d.format(f).to_string()
            })
            .unwrap_or_default();
        let _ = write!(
            out,
            r#"<text class="tick" x="{:.1}" y="{}" text-anchor="{anchor}">{label}</text>"#,
            x_of(t, start, end),
            H - 8.0
        );
    }
    out.push_str("</svg>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::snapshot::ChartPoint;

    #[test]
    fn charts_escape_labels_and_skip_gaps() {
        let c = Chart {
            start_ms: 0,
            now_ms: 3_600_000,
            points: vec![
                ChartPoint {
                    t_ms: 1_000_000,
                    sli: Some(1.0),
                    remaining: 1.0,
                },
                ChartPoint {
                    t_ms: 2_000_000,
                    sli: None,
                    remaining: 0.9,
                },
                ChartPoint {
                    t_ms: 3_000_000,
                    sli: Some(0.99),
                    remaining: 0.5,
                },
            ],
        };
        let m = [Marker {
            t_ms: 1_500_000,
            kind: "release",
            label: "release <b>".into(),
        }];
        let s = sli_chart("c", &c, 0.999, &m);
        assert!(s.contains("release &lt;b&gt;"));
        let d = s.split(r#"class="line sli" d=""#).nth(1).unwrap();
        let d = &d[..d.find('"').unwrap()];
        assert_eq!(
            d.matches('M').count(),
            2,
            "a bucket without events breaks the line"
        );
        let b = burn_down("b", &c, &m);
        assert!(b.contains("50.000 %"));
    }
}
