//! Property tests of the SLO math: budgets, burn rates, the workbook's alert
//! table, forecasts, time slices and calendar windows.

use capstan_slo::math::{
    self, alert, budget, burn_rate, calendar_bounds, conditions, evaluate, Counts, DeployMark,
    Method, Series, Severity, Windows, MINUTE_MS,
};
use capstan_slo::spec::{CalendarUnit, TimeWindow};
use chrono::{Datelike, NaiveDate, TimeZone, Timelike};
use proptest::prelude::*;

const DAY_MIN: i64 = 1440;
const NOW: i64 = 1_780_000_000_000 / MINUTE_MS * MINUTE_MS;

fn rolling(days: i64) -> TimeWindow {
    TimeWindow::Rolling {
        minutes: days * DAY_MIN,
    }
}

/// A constant error ratio over the last `minutes` minutes, 100 requests a minute.
fn constant(minutes: i64, bad_per_100: u32) -> Series {
    Series::new(
        (0..minutes)
            .map(|i| (NOW - (i + 1) * MINUTE_MS, f64::from(bad_per_100), 100.0))
            .collect(),
    )
}

proptest! {
    #[test]
    fn a_perfect_service_burns_nothing(minutes in 1i64..5000, target in 0.5f64..0.9999) {
        let s = constant(minutes, 0);
        let e = evaluate(&s, Method::Occurrences, target, &rolling(30), NOW, &[], true);
        prop_assert!(e.burn_rates.iter().all(|b| b.rate == 0.0));
        prop_assert_eq!(e.sli, Some(1.0));
        prop_assert_eq!(e.budget.remaining, 1.0);
        prop_assert_eq!(e.alert.state, Severity::Ok);
        prop_assert_eq!(e.forecast.exhausted_at_ms, None);
    }

    #[test]
    fn the_budget_is_never_negative(error in 0.0f64..1.0, target in 0.0f64..0.99999) {
        let b = budget(Some(error), target, Some(30 * DAY_MIN));
        prop_assert!(b.consumed >= 0.0);
        prop_assert!((0.0..=1.0).contains(&b.remaining));
        prop_assert!(b.minutes_left.unwrap() >= 0.0);
        prop_assert!(b.minutes_left.unwrap() <= b.minutes_total.unwrap() + 1e-9);
        if b.consumed <= 1.0 {
            prop_assert!((b.consumed + b.remaining - 1.0).abs() < 1e-9);
        } else {
            prop_assert_eq!(b.remaining, 0.0);
        }
    }

    #[test]
    fn more_errors_never_leave_more_budget(a in 0.0f64..1.0, b in 0.0f64..1.0, target in 0.5f64..0.9999) {
        let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
        prop_assert!(budget(Some(hi), target, None).remaining <= budget(Some(lo), target, None).remaining);
        prop_assert!(burn_rate(Some(hi), target) >= burn_rate(Some(lo), target));
    }

    #[test]
    fn series_windows_match_a_plain_sum(
        rows in prop::collection::vec((0i64..500, 0u32..50, 0u32..100), 0..200),
        from in 0i64..500, len in 0i64..500,
    ) {
        let rows: Vec<(i64, f64, f64)> = rows
            .into_iter()
            .map(|(m, b, t)| (m * MINUTE_MS, f64::from(b.min(t)), f64::from(t)))
            .collect();
        let s = Series::new(rows.clone());
        let (a, z) = (from * MINUTE_MS, (from + len) * MINUTE_MS);
        let want = rows.iter().filter(|r| r.0 >= a && r.0 < z).fold(Counts::default(), |c, r| Counts {
            bad: c.bad + r.1,
            total: c.total + r.2,
        });
        prop_assert_eq!(s.counts(a, z), want);
    }

    /// With the same error ratio in every window, the alert state is the
    /// workbook's table: page above 14.4× or 6×, ticket above 3× or 1×.
    #[test]
    fn the_alert_table_of_the_workbook(burn in 0.0f64..30.0) {
        let a = alert(30 * DAY_MIN, &|_| burn);
        let want = if burn > 6.0 {
            Severity::Page
        } else if burn > 1.0 {
            Severity::Ticket
        } else {
            Severity::Ok
        };
        prop_assert_eq!(a.state, want);
        prop_assert_eq!(a.firing.iter().any(|c| c.factor == 14.4 || (c.factor - 14.4).abs() < 1e-9), burn > 14.4);
    }

    #[test]
    fn the_forecast_spends_the_rest_at_the_current_burn(
        remaining in 0.01f64..1.0, burn in 0.01f64..100.0, days in 7i64..90,
    ) {
        let f = math::forecast(remaining, burn, days * DAY_MIN, NOW);
        let at = f.exhausted_at_ms.unwrap();
        let expect = remaining * (days * DAY_MIN * MINUTE_MS) as f64 / burn;
        prop_assert!(((at - NOW) as f64 - expect).abs() <= 1.0);
        prop_assert!(!f.exhausted);
    }

    /// Calendar months in a zone with DST: `now` is inside its period, the
    /// period starts on the first of a month at local midnight and ends where
    /// the next one starts.
    #[test]
    fn calendar_months_across_month_ends_and_dst(offset_min in 0i64..(3 * 365 * DAY_MIN)) {
        let zone: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
        let start = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap().and_hms_opt(0, 0, 0).unwrap();
        let now = zone.from_local_datetime(&start).unwrap().timestamp_millis() + offset_min * MINUTE_MS;
        let (a, b) = calendar_bounds(1, CalendarUnit::Month, start, zone, now);
        prop_assert!(a <= now && now < b);
        let local = |ms: i64| zone.timestamp_millis_opt(ms).unwrap();
        let (la, lb) = (local(a), local(b));
        prop_assert_eq!((la.day(), la.hour(), la.minute()), (1, 0, 0));
        prop_assert_eq!((lb.day(), lb.hour(), lb.minute()), (1, 0, 0));
        prop_assert_eq!((lb.year() * 12 + lb.month0() as i32) - (la.year() * 12 + la.month0() as i32), 1);
        let (a2, _) = calendar_bounds(1, CalendarUnit::Month, start, zone, b);
        prop_assert_eq!(a2, b);
    }

    /// A slice is bad exactly when its good ratio is below the slice target.
    #[test]
    fn timeslices_count_bad_slices(bad in prop::collection::vec(0u32..=100, 1..60), slice_target in 0.5f64..1.0) {
        let start = NOW - bad.len() as i64 * MINUTE_MS;
        let s = Series::new(bad.iter().enumerate().map(|(i, b)| (start + i as i64 * MINUTE_MS, f64::from(*b), 100.0)).collect());
        let m = Method::Timeslices { slice_minutes: 1, slice_target };
        let c = m.measure(&s, start, NOW);
        let want = bad.iter().filter(|b| (100 - **b) as f64 / 100.0 < slice_target - 1e-12).count();
        prop_assert_eq!(c.total, bad.len() as f64);
        prop_assert_eq!(c.bad, want as f64);
    }

    /// Budget charged to deploys never exceeds the budget spent in the span.
    #[test]
    fn attribution_is_bounded_by_what_was_spent(
        deploys in prop::collection::vec(1i64..(2 * DAY_MIN), 0..6),
        bad_per_100 in 0u32..20,
    ) {
        let s = constant(3 * DAY_MIN, bad_per_100);
        let marks: Vec<DeployMark> = deploys.iter().map(|m| DeployMark { time_ms: NOW - m * MINUTE_MS, label: format!("d{m}") }).collect();
        let e = evaluate(&s, Method::Occurrences, 0.99, &rolling(30), NOW, &marks, true);
        let charged: f64 = e.deploys.iter().map(|d| d.bad).sum();
        prop_assert!(charged <= e.counts.bad + 1e-9);
        let share: f64 = e.deploys.iter().map(|d| d.budget_share).sum();
        prop_assert!(share <= e.budget.consumed + 1e-9);
        for d in &e.deploys {
            prop_assert!(d.until_ms - d.deploy.time_ms <= 60 * MINUTE_MS);
        }
    }
}

#[test]
fn scaled_factors_keep_the_budget_share() {
    for days in [7, 28, 30, 90] {
        for c in conditions(days * DAY_MIN) {
            // factor × long window = share × SLO window
            let spent = c.factor * c.long_minutes as f64 / (days * DAY_MIN) as f64;
            assert!((spent - c.budget_share).abs() < 1e-12);
        }
    }
}

#[test]
fn workbook_example_one_hour_at_fifteen_times_pages() {
    // 99.9 %: 1.5 % errors (15×) for the last hour, nothing before.
    let s = Series::new(
        (0..30 * DAY_MIN)
            .map(|i| {
                let bad = if i < 60 { 15.0 } else { 0.0 };
                (NOW - (i + 1) * MINUTE_MS, bad, 1000.0)
            })
            .collect(),
    );
    let e = evaluate(&s, Method::Occurrences, 0.999, &rolling(30), NOW, &[], true);
    assert_eq!(e.alert.state, Severity::Page);
    assert!(
        (e.burn_rates[2].rate - 15.0).abs() < 1e-9,
        "{:?}",
        e.burn_rates
    );
    // Spent: 60 × 15 bad of 43200 × 1000 × 0.001 allowed.
    let consumed = 60.0 * 15.0 / (43_200.0 * 1000.0 * 0.001);
    assert!((e.budget.consumed - consumed).abs() < 1e-12);
    assert!((e.budget.minutes_left.unwrap() - 43.2 * (1.0 - consumed)).abs() < 1e-9);
    // At 15× the remaining budget lasts remaining × 30 days / 15.
    let left_ms = (1.0 - consumed) * (30 * DAY_MIN * MINUTE_MS) as f64 / 15.0;
    assert!(((e.forecast.exhausted_at_ms.unwrap() - NOW) as f64 - left_ms).abs() < 1.0);
}

#[test]
fn a_dst_month_is_an_hour_short() {
    let zone: chrono_tz::Tz = "Europe/Paris".parse().unwrap();
    let start = NaiveDate::from_ymd_opt(2026, 1, 1)
        .unwrap()
        .and_hms_opt(0, 0, 0)
        .unwrap();
    let in_march = zone
        .with_ymd_and_hms(2026, 3, 15, 12, 0, 0)
        .unwrap()
        .timestamp_millis();
    let (a, b) = calendar_bounds(1, CalendarUnit::Month, start, zone, in_march);
    assert_eq!((b - a) / MINUTE_MS, 31 * DAY_MIN - 60);
    let in_feb = zone
        .with_ymd_and_hms(2026, 2, 28, 23, 59, 0)
        .unwrap()
        .timestamp_millis();
    let (a, b) = calendar_bounds(1, CalendarUnit::Month, start, zone, in_feb);
    assert_eq!((b - a) / MINUTE_MS, 28 * DAY_MIN);
}
