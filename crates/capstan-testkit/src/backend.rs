//! Running one test on every database backend: [`Backend`] and the
//! [`backends!`](crate::backends) macro, the one way a test says "on Postgres
//! and on SQLite".

/// A database backend an end-to-end test runs against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A fresh database on the test server (`CAPSTAN_TEST_PG`).
    Postgres,
    /// A fresh SQLite file.
    Sqlite,
}

/// Every backend, in the order the tests run them.
pub const BACKENDS: [Backend; 2] = [Backend::Postgres, Backend::Sqlite];

impl Backend {
    /// `postgres` or `sqlite`: the name of the test `backends!` declares for it.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
        }
    }
}

/// Declares one test per backend for each named function taking a
/// [`Backend`]: `backends!(f)` makes `f::postgres` and `f::sqlite`, each
/// calling `f(Backend::…)`, so a failure names its backend and the other
/// still runs. `backends!(f: [postgres])` limits `f` to the listed backends;
/// `backends!(async f)` runs an `async fn f(b: Backend)` on a two-worker
/// runtime of its own.
///
/// ```ignore
/// fn up_applies_everything(b: Backend) {
///     let p = Project::new(b);
///     // …
/// }
/// capstan_testkit::backends!(up_applies_everything);
/// ```
#[macro_export]
macro_rules! backends {
    (async $($name:ident),+ $(,)?) => {
        $(
            mod $name {
                #[test]
                fn postgres() {
                    $crate::block_on(super::$name($crate::Backend::Postgres));
                }
                #[test]
                fn sqlite() {
                    $crate::block_on(super::$name($crate::Backend::Sqlite));
                }
            }
        )+
    };
    ($($name:ident),+ $(,)?) => {
        $( $crate::backends!($name: [postgres, sqlite]); )+
    };
    ($($name:ident: [$($backend:ident),+ $(,)?]),+ $(,)?) => {
        $(
            mod $name {
                $(
                    #[test]
                    fn $backend() {
                        super::$name($crate::backend!($backend));
                    }
                )+
            }
        )+
    };
}

/// The [`Backend`] a test name stands for: `backend!(postgres)`.
#[macro_export]
macro_rules! backend {
    (postgres) => {
        $crate::Backend::Postgres
    };
    (sqlite) => {
        $crate::Backend::Sqlite
    };
}

/// Runs `future` to completion on a new multi-threaded runtime with two
/// workers (what `#[tokio::test(flavor = "multi_thread", worker_threads = 2)]`
/// gives), for the async tests [`backends!`](crate::backends) declares.
pub fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("build a test runtime")
        .block_on(future)
}
