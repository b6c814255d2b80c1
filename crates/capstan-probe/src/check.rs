//! What a dependency check is: the [`Check`] trait, its result, and its settings.

use std::future::Future;
use std::time::Duration;

use async_trait::async_trait;

/// What one successful run of a check observed.
///
/// Every field is optional. When `value` is `None`, the health body reports how long
/// the check took, in milliseconds, as the observed value of the check's
/// [`measurement`](CheckConfig::measurement) (`responseTime` by default).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observation {
    /// The measured value (`observedValue`), e.g. a connection count.
    pub value: Option<f64>,
    /// The unit of `value` (`observedUnit`), e.g. `"ms"` or `"connections"`.
    pub unit: Option<String>,
    /// Free text to show next to the result (`output`).
    pub output: Option<String>,
}

impl Observation {
    /// An observation with nothing but success to report.
    pub fn ok() -> Self {
        Self::default()
    }

    /// An observation of `value` in `unit`.
    pub fn value(value: f64, unit: impl Into<String>) -> Self {
        Self {
            value: Some(value),
            unit: Some(unit.into()),
            output: None,
        }
    }

    /// The same observation with `output` as its text.
    #[must_use]
    pub fn with_output(mut self, output: impl Into<String>) -> Self {
        self.output = Some(output.into());
        self
    }
}

/// One dependency check, run in the background by [`Health`](crate::Health).
///
/// `Ok` is a success, `Err(message)` a failure whose message appears in the
/// health body's `output`. A run that takes longer than the check's
/// [`timeout`](CheckConfig::timeout) counts as a failure, and a run that panics too.
///
/// A check should do the cheapest thing that proves the dependency answers (for a
/// database, `SELECT 1` on a pooled connection): it runs every
/// [`interval`](CheckConfig::interval), whatever the probe traffic.
///
/// For a one-off closure, [`check_fn`] is shorter. A type implements it with the
/// re-exported [`async_trait`](crate::async_trait) attribute:
///
/// ```
/// use capstan_probe::{async_trait, Check, Observation};
///
/// struct Pool; // the application's connection pool
/// impl Pool {
///     async fn ping(&self) -> Result<u32, std::io::Error> { Ok(4) }
/// }
///
/// struct Database(Pool);
///
/// #[async_trait]
/// impl Check for Database {
///     async fn check(&self) -> Result<Observation, String> {
///         let open = self.0.ping().await.map_err(|e| e.to_string())?;
///         Ok(Observation::value(f64::from(open), "connections"))
///     }
/// }
/// ```
#[async_trait]
pub trait Check: Send + Sync + 'static {
    /// Runs the check once.
    async fn check(&self) -> Result<Observation, String>;
}

/// A [`Check`] made from a closure; see [`check_fn`].
pub struct CheckFn<F>(F);

impl<F> std::fmt::Debug for CheckFn<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CheckFn")
    }
}

#[async_trait]
impl<F, Fut> Check for CheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Observation, String>> + Send + 'static,
{
    async fn check(&self) -> Result<Observation, String> {
        (self.0)().await
    }
}

/// Turns a closure that returns a future into a [`Check`].
///
/// ```
/// use capstan_probe::{check_fn, Observation};
///
/// let check = check_fn(|| async { Ok::<_, String>(Observation::ok()) });
/// # let _ = check;
/// ```
pub fn check_fn<F, Fut>(f: F) -> CheckFn<F>
where
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<Observation, String>> + Send + 'static,
{
    CheckFn(f)
}

/// Whose problem a failing dependency is, which decides what it does to readiness.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DependencyKind {
    /// Used by this instance alone (its connection pool, a local cache, a sidecar):
    /// while it fails, `/readyz` fails, so traffic goes to other instances.
    Private,
    /// Used by every instance alike (the shared database, a third-party API): its
    /// failure reports `warn` and keeps the instance ready, because taking every
    /// instance out of the load balancer would not fix it.
    Shared,
}

impl DependencyKind {
    /// `"private"` or `"shared"`, the value of the `kind` metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            DependencyKind::Private => "private",
            DependencyKind::Shared => "shared",
        }
    }
}

/// The settings of one check.
///
/// Build one with [`CheckConfig::private`] or [`CheckConfig::shared`] and adjust the
/// public fields. The defaults:
///
/// | field | default | why |
/// |---|---|---|
/// | `interval` | 2 s | fast enough to leave the load balancer within seconds, cheap for the dependency |
/// | `timeout` | 1 s | a dependency slower than this is not serving requests well either |
/// | `failure_threshold` | 3 | one lost packet or slow query must not flip readiness |
/// | `success_threshold` | 1 | come back as soon as the dependency answers |
///
/// So with the defaults a dependency that goes down fails readiness after about
/// 4 to 6 seconds (three failed runs, two seconds apart), and one that comes back
/// restores it at the next run.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckConfig {
    /// The `componentId` in the health body and the `check` metric label, e.g.
    /// `"postgres"`. Unique within one [`Health`](crate::Health).
    pub id: String,
    /// The `componentType`: `"datastore"`, `"component"`, `"system"`, or any other
    /// name. Default `"component"`.
    pub component_type: String,
    /// The measurement name in the check's key `"<id>:<measurement>"`. Default
    /// `"responseTime"`.
    pub measurement: String,
    /// Whether a failure fails readiness ([`DependencyKind::Private`]) or only warns.
    pub kind: DependencyKind,
    /// Time between the starts of two runs.
    pub interval: Duration,
    /// How long one run may take before it counts as a failure.
    pub timeout: Duration,
    /// Consecutive failures that turn a passing check into a failing one.
    pub failure_threshold: u32,
    /// Consecutive successes that turn a failing check into a passing one.
    pub success_threshold: u32,
}

impl Default for CheckConfig {
    /// A private dependency with an empty id (set one: an empty id is refused), so
    /// `CheckConfig { id: "db".into(), ..Default::default() }` works.
    fn default() -> Self {
        Self::new("", DependencyKind::Private)
    }
}

impl CheckConfig {
    /// Settings for a dependency of the given kind, with the defaults above.
    pub fn new(id: impl Into<String>, kind: DependencyKind) -> Self {
        Self {
            id: id.into(),
            component_type: "component".to_owned(),
            measurement: "responseTime".to_owned(),
            kind,
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            failure_threshold: 3,
            success_threshold: 1,
        }
    }

    /// Settings for a [`DependencyKind::Private`] dependency.
    pub fn private(id: impl Into<String>) -> Self {
        Self::new(id, DependencyKind::Private)
    }

    /// Settings for a [`DependencyKind::Shared`] dependency.
    pub fn shared(id: impl Into<String>) -> Self {
        Self::new(id, DependencyKind::Shared)
    }

    /// Sets the `componentType`.
    #[must_use]
    pub fn component_type(mut self, component_type: impl Into<String>) -> Self {
        self.component_type = component_type.into();
        self
    }

    /// Sets the measurement name.
    #[must_use]
    pub fn measurement(mut self, measurement: impl Into<String>) -> Self {
        self.measurement = measurement.into();
        self
    }

    /// Sets the interval between runs.
    #[must_use]
    pub fn interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    /// Sets the timeout of one run.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sets both thresholds: consecutive failures to fail, successes to pass.
    #[must_use]
    pub fn thresholds(mut self, failures: u32, successes: u32) -> Self {
        self.failure_threshold = failures;
        self.success_threshold = successes;
        self
    }

    /// The check's key in the health body, `"<id>:<measurement>"`.
    pub fn key(&self) -> String {
        format!("{}:{}", self.id, self.measurement)
    }

    pub(crate) fn validate(&self) -> Result<(), String> {
        if self.id.is_empty() {
            return Err("the id is empty".to_owned());
        }
        if self.id.contains(':') {
            return Err("the id contains ':', which separates id and measurement".to_owned());
        }
        if self.interval.is_zero() {
            return Err("the interval is zero".to_owned());
        }
        if self.timeout.is_zero() {
            return Err("the timeout is zero".to_owned());
        }
        if self.failure_threshold == 0 || self.success_threshold == 0 {
            return Err("a threshold is zero; the smallest is 1".to_owned());
        }
        Ok(())
    }
}
