//! `capstan proxy`: the command line of the proxy. Flags override the file.

use std::path::PathBuf;

use clap::Args;

use crate::config::{ProxyFile, ReleaseSection};

/// Clean shutdown.
pub const EXIT_OK: i32 = 0;
/// A listener could not be bound, or the event store could not be opened.
pub const EXIT_FAILED: i32 = 1;
/// A bad `proxy.toml` or flag; nothing was started.
pub const EXIT_BAD_INPUT: i32 = 3;

/// `capstan proxy [--config proxy.toml] [flags]`.
#[derive(Debug, Clone, Args)]
pub struct ProxyArgs {
    /// The proxy's configuration file.
    #[arg(short, long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Address to serve clients on (`127.0.0.1:8080`).
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Address of the admin API.
    #[arg(long, value_name = "ADDR")]
    pub admin_listen: Option<String>,
    /// Bearer token of the admin API (else the file's `admin_token`, else
    /// the environment's `CAPSTAN_PROXY_ADMIN_TOKEN`).
    #[arg(long, value_name = "TOKEN")]
    pub admin_token: Option<String>,
    /// The service's name in events.
    #[arg(long)]
    pub service: Option<String>,
    /// A release and its upstreams: `2.0.0=127.0.0.1:8081,127.0.0.1:8082`
    /// (repeat; replaces the file's releases; list the stable release first).
    #[arg(long = "release", value_name = "NAME=ADDR[,ADDR]")]
    pub releases: Vec<String>,
    /// A release's percent of public traffic: `2.0.0=10` (repeat; replaces the file's weights).
    #[arg(long = "weight", value_name = "NAME=PERCENT")]
    pub weights: Vec<String>,
    /// The release of the internal cohort.
    #[arg(long, value_name = "NAME")]
    pub internal: Option<String>,
    /// The path each upstream's health check asks for (`/readyz`; any 2xx
    /// passes): an upstream that answers it otherwise gets no traffic.
    #[arg(long, value_name = "PATH")]
    pub health_path: Option<String>,
    /// The event store (SQLite file).
    #[arg(long, value_name = "FILE")]
    pub events_store: Option<PathBuf>,
    /// Record no events.
    #[arg(long, conflicts_with = "events_store")]
    pub no_events: bool,
}

fn flag_error(msg: String) -> i32 {
    eprintln!("capstan proxy: {msg}");
    EXIT_BAD_INPUT
}

/// The settings the file and flags describe.
pub fn settings(args: &ProxyArgs) -> Result<crate::config::Settings, String> {
    let (mut file, text, origin) = match &args.config {
        Some(p) => {
            let (f, t) = ProxyFile::load(p).map_err(|e| e.to_string())?;
            (f, t, p.clone())
        }
        None => (ProxyFile::default(), String::new(), PathBuf::from("flags")),
    };
    if args.listen.is_some() {
        file.listen.clone_from(&args.listen);
    }
    if args.admin_listen.is_some() {
        file.admin_listen.clone_from(&args.admin_listen);
    }
    if args.admin_token.is_some() {
        file.admin_token.clone_from(&args.admin_token);
    }
    if args.service.is_some() {
        file.service.clone_from(&args.service);
    }
    // Values set here get empty spans: their errors say a flag set them,
    // and the file's own values keep their lines.
    if !args.releases.is_empty() {
        file.releases = args
            .releases
            .iter()
            .map(|r| {
                let (name, addrs) = r
                    .split_once('=')
                    .ok_or_else(|| format!("--release {r}: expected NAME=ADDR[,ADDR]"))?;
                Ok(toml::Spanned::new(
                    0..0,
                    ReleaseSection {
                        name: name.to_string(),
                        upstreams: addrs
                            .split(',')
                            .map(str::trim)
                            .filter(|a| !a.is_empty())
                            .map(str::to_string)
                            .collect(),
                        fleet: None,
                        version: None,
                    },
                ))
            })
            .collect::<Result<_, String>>()?;
    }
    if !args.weights.is_empty() {
        let mut w = std::collections::BTreeMap::new();
        for kv in &args.weights {
            let (name, pct) = kv
                .split_once('=')
                .ok_or_else(|| format!("--weight {kv}: expected NAME=PERCENT"))?;
            let pct: u32 = pct
                .parse()
                .map_err(|_| format!("--weight {kv}: `{pct}` is not a whole percent"))?;
            w.insert(name.to_string(), pct);
        }
        file.routing.weights = Some(toml::Spanned::new(0..0, w));
    }
    if let Some(i) = &args.internal {
        file.routing.internal = Some(toml::Spanned::new(0..0, i.clone()));
    }
    if let Some(path) = &args.health_path {
        if !path.starts_with('/') {
            return Err(format!("--health-path {path}: must start with /"));
        }
        file.health.path = Some(path.clone());
    }
    if args.events_store.is_some() {
        file.events.store.clone_from(&args.events_store);
    }
    if args.no_events {
        file.events.enabled = Some(false);
    }
    if file.releases.is_empty() {
        return Err(format!(
            "{}: no releases: add [[release]] sections or --release NAME=ADDR",
            origin.display()
        ));
    }
    file.resolve(&origin, &text).map_err(|e| e.to_string())
}

/// Runs the proxy until SIGTERM or Ctrl-C; returns the exit code.
pub async fn run(args: ProxyArgs) -> i32 {
    let settings = match settings(&args) {
        Ok(s) => s,
        Err(e) => return flag_error(e),
    };
    // The proxy wants every core: its own multi-threaded runtime.
    let joined = tokio::task::spawn_blocking(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                eprintln!("capstan proxy: cannot start the runtime: {e}");
                return EXIT_FAILED;
            }
        };
        rt.block_on(async move {
            let result = crate::server::run(settings, shutdown_signal(), |b| {
                eprintln!(
                    "capstan proxy listening on {}{}",
                    b.listen,
                    b.admin
                        .map(|a| format!(", admin on {a}"))
                        .unwrap_or_default()
                );
            })
            .await;
            match result {
                Ok(()) => EXIT_OK,
                Err(e) => {
                    eprintln!("capstan proxy: {e}");
                    EXIT_FAILED
                }
            }
        })
    })
    .await;
    joined.unwrap_or(EXIT_FAILED)
}

/// SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        proxy: ProxyArgs,
    }

    fn args(flags: &[&str]) -> ProxyArgs {
        let argv = ["proxy", "--release", "1.0.0=127.0.0.1:8081"];
        Cli::parse_from(argv.iter().chain(flags)).proxy
    }

    #[test]
    fn the_health_path_flag_replaces_readyz_and_must_be_a_path() {
        assert_eq!(settings(&args(&[])).unwrap().health.path, "/readyz");
        let s = settings(&args(&["--health-path", "/healthz"])).unwrap();
        assert_eq!(s.health.path, "/healthz");
        let e = settings(&args(&["--health-path", "healthz"])).unwrap_err();
        assert_eq!(e, "--health-path healthz: must start with /");
    }

    /// An error in a value a flag set does not point at a line of the file;
    /// one in the file's own values still does.
    #[test]
    fn errors_name_the_files_line_or_say_a_flag_set_the_value() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.toml");
        let releases = "[[release]]\nname = \"1.0.0\"\nupstreams = [\"127.0.0.1:8081\"]\n\n\
                        [[release]]\nname = \"2.0.0\"\nupstreams = [\"127.0.0.1:8082\"]\n";
        let weights = "weights = { \"1.0.0\" = 100, \"2.0.0\" = 0 }";
        std::fs::write(
            &file,
            format!("{releases}\n[routing]\ninternal = \"2.0.0\"\n{weights}\n"),
        )
        .unwrap();
        let config = file.to_str().unwrap();
        let from_file = |flags: &[&str]| {
            let argv = ["proxy", "--config", config];
            settings(&Cli::parse_from(argv.iter().chain(flags)).proxy).unwrap_err()
        };
        let e = from_file(&["--internal", "3.0.0"]);
        assert!(e.contains("set by a flag: routing.internal"), "{e}");
        assert!(!e.contains("line "), "{e}");
        let e = from_file(&["--weight", "1.0.0=90", "--weight", "2.0.0=5"]);
        assert!(e.contains("set by a flag: routing.weights"), "{e}");

        // The file's mistake keeps its line when a flag sets other values.
        std::fs::write(
            &file,
            format!(
                "{releases}\n[routing]\n{weights}\nmirror = {{ release = \"2.0.0\", percent = 200 }}\n"
            ),
        )
        .unwrap();
        let e = from_file(&["--weight", "1.0.0=90", "--weight", "2.0.0=10"]);
        assert!(e.contains("line 11: routing.mirror"), "{e}");
    }

    /// The flag, then the file, then the environment: a stale token in the
    /// environment does not override the one the file names.
    #[test]
    fn the_admin_token_comes_from_the_flag_then_the_file_then_the_environment() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("proxy.toml");
        std::fs::write(
            &file,
            "admin_listen = \"127.0.0.1:0\"\nadmin_token = \"from-file\"\n\
             [[release]]\nname = \"1.0.0\"\nupstreams = [\"127.0.0.1:8081\"]\n",
        )
        .unwrap();
        std::env::set_var(crate::config::ADMIN_TOKEN_ENV, "from-env");
        let config = file.to_str().unwrap();
        let token = |flags: &[&str]| {
            let a = Cli::parse_from(["proxy"].iter().chain(flags)).proxy;
            settings(&a).unwrap().admin_token
        };
        assert_eq!(token(&["--config", config]).as_deref(), Some("from-file"));
        assert_eq!(
            token(&["--config", config, "--admin-token", "from-flag"]).as_deref(),
            Some("from-flag")
        );
        assert_eq!(
            token(&[
                "--admin-listen",
                "127.0.0.1:0",
                "--release",
                "1.0.0=127.0.0.1:8081"
            ])
            .as_deref(),
            Some("from-env")
        );
        std::env::remove_var(crate::config::ADMIN_TOKEN_ENV);
    }
}
