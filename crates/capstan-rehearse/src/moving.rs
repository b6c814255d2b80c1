//! `[move]` in `rehearse.toml`: rehearse a table's move between two services
//! (`capstan plan-move`) in one database, each service with its own
//! migrations, history and fleet.
//!
//! ```toml
//! services = "capstan.toml"         # declares the services and their `dir`
//!
//! [move]
//! table = "public.users"            # what moves (for the report)
//! # source_migrations = "migrations" # the source's directory after plan-move
//! #                                 # (default: the source service's `dir`)
//! # target_from = 0                 # the target's migrations already applied
//!
//! [[release]]                       # the source's binary, using the old name
//! name = "monolith"
//! service = "monolith"
//! …
//! [[release]]                       # the target's binary, using the new name
//! name = "users"
//! service = "users"
//! …
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::config::{Migrations, Origin, Release};
use crate::Error;

/// `[move]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct MoveFile {
    table: String,
    source_migrations: Option<PathBuf>,
    target_from: Option<u64>,
}

/// A table's move from the first release's service (the *source*) to the
/// second's (the *target*): the steps `capstan plan-move` wrote, walked in
/// their real order across the two services' histories.
#[derive(Debug, Clone)]
pub struct Move {
    /// The table, as `[move] table` names it (`public.users`).
    pub table: String,
    /// The source service (the first release's).
    pub source: String,
    /// The target service (the second release's).
    pub target: String,
    /// The source's migration directory after the move was planned: its
    /// migrations newer than the first release's are steps 2 (the leading
    /// expand ones) and 4 (the rest), run for the source service. A release
    /// only in name (`<source> migrations`): nothing starts its command.
    pub source_migrations: Release,
    /// The target's migrations up to this version are in place before the
    /// move (0: the target is a new service); the rest are step 1.
    pub target_from: u64,
}

/// Reads the services `path` (a `capstan.toml`, relative to `base`)
/// declares: `(path as shown, services)`.
pub(crate) fn load_services(
    origin: &Origin,
    base: &Path,
    path: &Path,
) -> Result<(String, capstan_service::Services), Error> {
    let full = base.join(path);
    let text = std::fs::read_to_string(&full)
        .map_err(|e| origin.error(None, "services", format!("{}: {e}", full.display())))?;
    let services = capstan_service::Services::parse(&text, &full)
        .map_err(|e| origin.error(None, "services", e))?;
    if services.is_empty() {
        return Err(origin.error(
            None,
            "services",
            format!("{} declares no [[service]]", full.display()),
        ));
    }
    Ok((full.display().to_string(), services))
}

/// Checks the releases' services, and `[move]` when given.
pub(crate) fn check(
    origin: &Origin,
    base: &Path,
    services: Option<&(String, capstan_service::Services)>,
    file: Option<MoveFile>,
    releases: &[Release],
) -> Result<Option<Move>, Error> {
    let at = |i: usize| Some((i, releases[i].name.as_str()));
    let Some(file) = file else {
        // One service's releases: each step runs one history.
        if let Some((i, r)) = releases
            .iter()
            .enumerate()
            .find(|(_, r)| r.service != releases[0].service)
        {
            let name = |s: &Option<String>| s.clone().unwrap_or_else(|| "default".into());
            return Err(origin.error(
                at(i),
                "service",
                format!(
                    "`{}` differs from release 1's `{}`: a rehearsal walks one service's releases (to rehearse a table's move between services, add [move])",
                    name(&r.service),
                    name(&releases[0].service)
                ),
            ));
        }
        return Ok(None);
    };
    if releases.len() != 2 {
        return Err(origin.error(
            None,
            "move",
            format!(
                "{} [[release]] tables: a move has two, the source's binary (old name) first, then the target's (new name)",
                releases.len()
            ),
        ));
    }
    let service_of = |i: usize| {
        releases[i].service.clone().ok_or_else(|| {
            origin.error(
                at(i),
                "service",
                "missing: in a move, each release names its service",
            )
        })
    };
    let (source, target) = (service_of(0)?, service_of(1)?);
    if source == target {
        return Err(origin.error(
            at(1),
            "service",
            format!("`{target}` is the source's service too: a move goes to another service"),
        ));
    }
    let table = file.table.trim().to_string();
    if table.is_empty() {
        return Err(origin.error(None, "move.table", "empty: name the table that moves"));
    }
    let dir = match (&file.source_migrations, services) {
        (Some(d), _) => base.join(d),
        (None, Some((path, list))) => {
            let declared = list
                .get(&source)
                .map_err(|e| origin.error(None, "move.source_migrations", e))?;
            let d = declared.dir.as_ref().ok_or_else(|| {
                origin.error(
                    None,
                    "move.source_migrations",
                    format!("service `{source}` has no `dir` in {path}: give the directory"),
                )
            })?;
            Path::new(path).parent().unwrap_or(Path::new(".")).join(d)
        }
        (None, None) => {
            return Err(origin.error(
                None,
                "move.source_migrations",
                "missing: give the source's migration directory (or `services`, a capstan.toml declaring its `dir`)",
            ))
        }
    };
    capstan_migrate::MigrationSet::from_dir(&dir)
        .map_err(|e| origin.error(None, "move.source_migrations", e))?;
    let old = &releases[0];
    let source_migrations = Release {
        name: format!("{source} migrations"),
        migrations: Migrations::Dir(std::fs::canonicalize(&dir).unwrap_or(dir)),
        smoke: crate::config::Smoke::None,
        seed: None,
        ..old.clone()
    };
    if releases.iter().any(|r| r.name == source_migrations.name) {
        return Err(origin.error(
            at(0),
            "",
            format!(
                "the name `{}` is the move's own name for the source's migrations: rename the release",
                source_migrations.name
            ),
        ));
    }
    Ok(Some(Move {
        table,
        source,
        target,
        source_migrations,
        target_from: file.target_from.unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn error(text: &str) -> String {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("capstan.toml"),
            "[[service]]\nname = \"monolith\"\ndir = \"m\"\nowns = [\"public\"]\n\n[[service]]\nname = \"users\"\ndir = \"u\"\nowns = [\"users\"]\n",
        )
        .unwrap();
        let path = dir.path().join("rehearse.toml");
        Config::parse(&path, text).unwrap_err().to_string()
    }

    const RELEASES: &str = "[[release]]\nname = \"old\"\nservice = \"monolith\"\nmigrations = \"embedded\"\ncommand = [\"a\"]\n\n[[release]]\nname = \"new\"\nservice = \"users\"\nmigrations = \"embedded\"\ncommand = [\"b\"]\n";

    #[test]
    fn bad_moves_are_refused_naming_the_key() {
        let cases = [
            (
                format!(
                    "services = \"capstan.toml\"\n[move]\ntable = \"t\"\ntabel = \"x\"\n{RELEASES}"
                ),
                "unknown field `tabel`",
            ),
            (
                format!("services = \"capstan.toml\"\n{RELEASES}"),
                "release 2 (`new`): service: `users` differs from release 1's `monolith`",
            ),
            (
                format!(
                    "services = \"capstan.toml\"\n[move]\ntable = \"t\"\n{}",
                    RELEASES.replace("\"users\"", "\"billing\"")
                ),
                "release 2 (`new`): service: ",
            ),
            (
                format!(
                    "[move]\ntable = \"t\"\n{}",
                    RELEASES.replace("service = \"users\"\n", "")
                ),
                "release 2 (`new`): service: missing",
            ),
            (
                format!("[move]\ntable = \"t\"\n{RELEASES}"),
                "move.source_migrations: missing",
            ),
            (
                format!("services = \"capstan.toml\"\n[move]\ntable = \"t\"\n{RELEASES}"),
                "move.source_migrations: cannot read migration directory",
            ),
            (
                format!("services = \"nowhere.toml\"\n{RELEASES}"),
                "services: ",
            ),
        ];
        for (text, want) in cases {
            let got = error(&text);
            assert!(got.contains(want), "{got}\nwanted: {want}");
            assert!(got.contains("rehearse.toml"), "{got}");
        }
    }

    #[test]
    fn a_move_takes_the_source_directory_from_capstan_toml() {
        let dir = tempfile::tempdir().unwrap();
        let chirpy = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/chirpy/migrations");
        std::fs::write(
            dir.path().join("capstan.toml"),
            format!(
                "[[service]]\nname = \"monolith\"\ndir = \"{}\"\nowns = [\"public\"]\n\n[[service]]\nname = \"users\"\nowns = [\"users\"]\n",
                chirpy.display()
            ),
        )
        .unwrap();
        let text =
            format!("services = \"capstan.toml\"\n[move]\ntable = \"public.users\"\n{RELEASES}");
        let c = Config::parse(&dir.path().join("rehearse.toml"), &text).unwrap();
        let m = c.moving.expect("a move");
        assert_eq!(
            (m.source.as_str(), m.target.as_str()),
            ("monolith", "users")
        );
        assert!(
            matches!(&m.source_migrations.migrations, crate::Migrations::Dir(d) if d.ends_with("chirpy/migrations"))
        );
        assert_eq!(m.source_migrations.service.as_deref(), Some("monolith"));
        assert_eq!(
            c.releases[1].declared.as_ref().map(|s| s.name.as_str()),
            Some("users")
        );
    }
}
