//! Services that share one database: which service owns which schemas and
//! tables, and which services each one depends on.
//!
//! A monolith is broken up one service at a time, and every service keeps
//! living in the same database for a while. capstan keeps each service's
//! migrations, history, fleet and gate apart, and refuses a migration of one
//! service that changes what another owns. This crate is the model those
//! checks share: pure data, no IO, read from the `service` key of
//! `capstan.toml`:
//!
//! ```toml
//! [[service]]
//! name = "users"
//! dir = "services/users/migrations"
//! owns = ["users"]                 # a schema
//!
//! [[service]]
//! name = "chirps"
//! dir = "services/chirps/migrations"
//! owns = ["chirps", "public.legacy_chirps"]   # a schema and a table
//! depends_on = ["users", { service = "search", hard = false }]
//! ```
//!
//! A project with one service may write `[service]` (one table) instead.
//! Ownership never overlaps: a schema or table belongs to at most one
//! service, and a table inside a schema another service owns is an overlap
//! too. An object no entry covers is owned by nobody ([`Owner::Nobody`]).
//!
//! ```
//! use capstan_service::{Owner, Services};
//! let services = Services::parse(
//!     "[[service]]\nname = \"users\"\nowns = [\"users\"]\n\
//!      [[service]]\nname = \"chirps\"\nowns = [\"chirps\"]\ndepends_on = [\"users\"]\n",
//!     "capstan.toml".as_ref(),
//! )
//! .unwrap();
//! assert_eq!(services.owner_of(Some("users"), "users").name(), Some("users"));
//! assert_eq!(services.owner_of(None, "orphans"), Owner::Nobody);
//! assert_eq!(services.get("chirps").unwrap().hard_dependencies().count(), 1);
//! ```

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// The schema an unqualified table name resolves to.
pub const DEFAULT_SCHEMA: &str = "public";

/// A schema or a table a service owns, identifiers folded as Postgres folds
/// unquoted ones (to lower case; a double-quoted part is kept as written).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Owned {
    /// Every object in the schema, and the schema itself.
    Schema(String),
    /// One table (with its indexes, constraints and triggers).
    Table {
        /// The table's schema.
        schema: String,
        /// The table's name.
        table: String,
    },
}

impl Owned {
    /// Reads `schema` or `schema.table`.
    pub fn parse(entry: &str) -> Result<Owned, String> {
        let parts = split_ident(entry)?;
        match parts.as_slice() {
            [schema] => Ok(Owned::Schema(schema.clone())),
            [schema, table] => Ok(Owned::Table {
                schema: schema.clone(),
                table: table.clone(),
            }),
            _ => Err("expected `schema` or `schema.table`".into()),
        }
    }

    /// Whether this entry covers the table `schema.table`.
    pub fn covers(&self, schema: &str, table: &str) -> bool {
        match self {
            Owned::Schema(s) => s == schema,
            Owned::Table {
                schema: s,
                table: t,
            } => s == schema && t == table,
        }
    }

    /// The schema the entry is in.
    pub fn schema(&self) -> &str {
        match self {
            Owned::Schema(s) | Owned::Table { schema: s, .. } => s,
        }
    }

    /// Whether the two entries claim a common object: the same table, or a
    /// schema and anything in it.
    pub fn overlaps(&self, other: &Owned) -> bool {
        match (self, other) {
            (Owned::Schema(a), o) | (o, Owned::Schema(a)) => o.schema() == a,
            (a, b) => a == b,
        }
    }
}

impl fmt::Display for Owned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owned::Schema(s) => f.write_str(&show_ident(s)),
            Owned::Table { schema, table } => {
                write!(f, "{}.{}", show_ident(schema), show_ident(table))
            }
        }
    }
}

/// One dependency of a service on another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dependency {
    /// The service depended on.
    pub service: String,
    /// A hard dependency: when it fails, this service fails (so this
    /// service cannot promise more than it publishes). Soft dependencies
    /// degrade the service gracefully instead.
    pub hard: bool,
}

/// One service: its name, its migrations, what it owns and depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    /// The service's name (`[a-z][a-z0-9_-]*`, at most 63 bytes).
    pub name: String,
    /// Its migration directory, relative to `capstan.toml`'s directory as
    /// written (the caller resolves it).
    pub dir: Option<PathBuf>,
    /// The schemas and tables it owns.
    pub owns: Vec<Owned>,
    /// The services it depends on.
    pub depends_on: Vec<Dependency>,
    /// The line of `capstan.toml` that names it (0 when not read from a file).
    pub line: usize,
}

impl Service {
    /// A service with no directory, ownership or dependencies.
    pub fn new(name: &str) -> Service {
        Service {
            name: name.to_string(),
            dir: None,
            owns: Vec::new(),
            depends_on: Vec::new(),
            line: 0,
        }
    }

    /// Whether this service owns the table `schema.table`.
    pub fn owns_table(&self, schema: &str, table: &str) -> bool {
        self.owns.iter().any(|o| o.covers(schema, table))
    }

    /// Whether this service owns the schema itself.
    pub fn owns_schema(&self, schema: &str) -> bool {
        self.owns
            .iter()
            .any(|o| *o == Owned::Schema(schema.to_string()))
    }

    /// The names of its hard dependencies.
    pub fn hard_dependencies(&self) -> impl Iterator<Item = &str> {
        self.depends_on
            .iter()
            .filter(|d| d.hard)
            .map(|d| d.service.as_str())
    }
}

/// Who owns an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner<'a> {
    /// The service that owns it.
    Service(&'a Service),
    /// No service's `owns` covers it.
    Nobody,
}

impl<'a> Owner<'a> {
    /// The owning service's name, if any.
    pub fn name(&self) -> Option<&'a str> {
        match self {
            Owner::Service(s) => Some(&s.name),
            Owner::Nobody => None,
        }
    }
}

impl fmt::Display for Owner<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Owner::Service(s) => write!(f, "service `{}`", s.name),
            Owner::Nobody => f.write_str("no service"),
        }
    }
}

/// What is wrong with the services of a `capstan.toml`, or with a name asked
/// for. Every variant read from a file names the file and the line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The `service` key is not a table or an array of tables of the right shape.
    #[error("{file}: line {line}: {message}")]
    Invalid {
        /// The config file.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// What is wrong (from the TOML reader, naming the key).
        message: String,
    },
    /// A name that is not `[a-z][a-z0-9_-]*` of at most 63 bytes.
    #[error("{file}: line {line}: service name `{name}` is not valid: use lower-case letters, digits, `_` and `-`, starting with a letter, at most 63 bytes")]
    BadName {
        /// The config file.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// The name as written.
        name: String,
    },
    /// The same service declared twice.
    #[error("{file}: line {line}: service `{name}` is declared twice (first at line {first})")]
    Duplicate {
        /// The config file.
        file: PathBuf,
        /// The second declaration's line.
        line: usize,
        /// The name.
        name: String,
        /// The first declaration's line.
        first: usize,
    },
    /// An `owns` entry that is not `schema` or `schema.table`.
    #[error("{file}: line {line}: service `{service}` owns `{entry}`: {why}")]
    BadOwned {
        /// The config file.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// The service.
        service: String,
        /// The entry as written.
        entry: String,
        /// What is wrong with it.
        why: String,
    },
    /// Two services (or one, twice) claim the same object.
    #[error("{file}: line {line}: ownership overlaps: service `{service}` owns `{entry}`, and service `{other_service}` owns `{other_entry}` (line {other_line}); every schema and table has at most one owner")]
    Overlap {
        /// The config file.
        file: PathBuf,
        /// The later entry's line.
        line: usize,
        /// The later entry's service.
        service: String,
        /// The later entry.
        entry: String,
        /// The earlier entry's service (may be the same).
        other_service: String,
        /// The earlier entry.
        other_entry: String,
        /// The earlier entry's line.
        other_line: usize,
    },
    /// `depends_on` names a service the file does not declare, or itself.
    #[error("{file}: line {line}: service `{service}` depends on `{dependency}`, {why}")]
    BadDependency {
        /// The config file.
        file: PathBuf,
        /// Its line.
        line: usize,
        /// The service.
        service: String,
        /// The dependency as written.
        dependency: String,
        /// Why it is refused (unknown, itself), with the known names.
        why: String,
    },
    /// A service name asked for (`--service`) that no `[service]` declares.
    #[error("no service named `{name}`: {}", known_list(.known))]
    Unknown {
        /// The name asked for.
        name: String,
        /// The services declared.
        known: Vec<String>,
    },
}

fn known_list(known: &[String]) -> String {
    if known.is_empty() {
        "capstan.toml declares no service ([service] name = \"...\")".to_string()
    } else {
        format!("capstan.toml declares {}", quoted(known))
    }
}

fn quoted(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Every service of a project, validated: unique valid names, ownership
/// that never overlaps, dependencies on declared services only.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Services {
    list: Vec<Service>,
}

// Two shapes read directly (not as an untagged enum, which would lose the
// spans that give every error its line).
#[derive(Deserialize)]
struct OneFile {
    service: RawService,
}

#[derive(Deserialize)]
struct ManyFile {
    service: Vec<RawService>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: Spanned<String>,
    #[serde(default)]
    dir: Option<PathBuf>,
    #[serde(default)]
    owns: Vec<Spanned<String>>,
    #[serde(default)]
    depends_on: Vec<Spanned<RawDependency>>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RawDependency {
    Name(String),
    Table {
        service: String,
        #[serde(default = "yes")]
        hard: bool,
    },
}

fn yes() -> bool {
    true
}

/// Validation input: a service with the line of each `owns` and
/// `depends_on` entry.
struct Located {
    service: Service,
    owns_lines: Vec<usize>,
    dep_lines: Vec<usize>,
}

impl Services {
    /// Reads the `service` key of a `capstan.toml`'s text (other keys are
    /// left to their readers). No `service` key gives no services.
    pub fn parse(text: &str, file: &Path) -> Result<Services, ServiceError> {
        let line_of = |offset: usize| text[..offset.min(text.len())].matches('\n').count() + 1;
        let invalid = |e: toml::de::Error| ServiceError::Invalid {
            file: file.to_path_buf(),
            line: e.span().map_or(0, |s| line_of(s.start)),
            message: e.message().to_string(),
        };
        let table: toml::Table = toml::from_str(text).map_err(invalid)?;
        let raws = match table.get("service") {
            None => Vec::new(),
            Some(toml::Value::Array(_)) => {
                toml::from_str::<ManyFile>(text).map_err(invalid)?.service
            }
            Some(_) => vec![toml::from_str::<OneFile>(text).map_err(invalid)?.service],
        };
        let mut located = Vec::new();
        for raw in raws {
            let line = line_of(raw.name.span().start);
            let name = raw.name.into_inner();
            let mut service = Service::new(&name);
            service.line = line;
            service.dir = raw.dir;
            let mut owns_lines = Vec::new();
            for entry in raw.owns {
                let entry_line = line_of(entry.span().start);
                let text = entry.into_inner();
                let owned = Owned::parse(&text).map_err(|why| ServiceError::BadOwned {
                    file: file.to_path_buf(),
                    line: entry_line,
                    service: name.clone(),
                    entry: text.clone(),
                    why,
                })?;
                service.owns.push(owned);
                owns_lines.push(entry_line);
            }
            let mut dep_lines = Vec::new();
            for dep in raw.depends_on {
                dep_lines.push(line_of(dep.span().start));
                service.depends_on.push(match dep.into_inner() {
                    RawDependency::Name(service) => Dependency {
                        service,
                        hard: true,
                    },
                    RawDependency::Table { service, hard } => Dependency { service, hard },
                });
            }
            located.push(Located {
                service,
                owns_lines,
                dep_lines,
            });
        }
        validate(located, file)
    }

    /// Validates services built in code (lines are 0).
    pub fn from_list(list: Vec<Service>) -> Result<Services, ServiceError> {
        let located = list
            .into_iter()
            .map(|service| Located {
                owns_lines: vec![service.line; service.owns.len()],
                dep_lines: vec![service.line; service.depends_on.len()],
                service,
            })
            .collect();
        validate(located, Path::new("(services)"))
    }

    /// Whether no service is declared (a project of one unnamed service).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The services in declaration order.
    pub fn iter(&self) -> impl Iterator<Item = &Service> {
        self.list.iter()
    }

    /// The declared names, in order.
    pub fn names(&self) -> Vec<String> {
        self.list.iter().map(|s| s.name.clone()).collect()
    }

    /// The service named `name`, or an error listing the declared ones.
    pub fn get(&self, name: &str) -> Result<&Service, ServiceError> {
        self.list
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| ServiceError::Unknown {
                name: name.to_string(),
                known: self.names(),
            })
    }

    /// The service a command acts for: the one named, else the only one
    /// declared; `None` when none is declared and none named.
    pub fn select(&self, name: Option<&str>) -> Result<Option<&Service>, ServiceError> {
        match name {
            Some(name) => self.get(name).map(Some),
            None if self.list.len() == 1 => Ok(self.list.first()),
            None => Ok(None),
        }
    }

    /// The service whose `dir` is the migration directory `dir`: each
    /// service's `dir` is read relative to `base` (the directory of
    /// `capstan.toml`) and compared lexically with `dir` (`.` parts and
    /// trailing separators ignored; the caller makes both absolute, or both
    /// relative to the same directory, first).
    pub fn for_dir(&self, base: &Path, dir: &Path) -> Option<&Service> {
        let want = lexical(dir);
        self.list.iter().find(|s| {
            s.dir
                .as_deref()
                .is_some_and(|d| lexical(&base.join(d)) == want)
        })
    }

    /// Who owns the table (or view, sequence, function…) `schema.name`; an
    /// unqualified name is looked up in [`DEFAULT_SCHEMA`]. Identifiers are
    /// compared as given: fold them the way the parser does first.
    pub fn owner_of(&self, schema: Option<&str>, name: &str) -> Owner<'_> {
        let schema = schema.unwrap_or(DEFAULT_SCHEMA);
        self.list
            .iter()
            .find(|s| s.owns_table(schema, name))
            .map_or(Owner::Nobody, Owner::Service)
    }

    /// Who owns the schema itself (creating, altering or dropping it).
    pub fn owner_of_schema(&self, schema: &str) -> Owner<'_> {
        self.list
            .iter()
            .find(|s| s.owns_schema(schema))
            .map_or(Owner::Nobody, Owner::Service)
    }
}

fn validate(located: Vec<Located>, file: &Path) -> Result<Services, ServiceError> {
    let file = file.to_path_buf();
    for (i, l) in located.iter().enumerate() {
        let s = &l.service;
        if !valid_name(&s.name) {
            return Err(ServiceError::BadName {
                file,
                line: s.line,
                name: s.name.clone(),
            });
        }
        if let Some(first) = located[..i].iter().find(|o| o.service.name == s.name) {
            return Err(ServiceError::Duplicate {
                file,
                line: s.line,
                name: s.name.clone(),
                first: first.service.line,
            });
        }
    }
    // Every entry against every earlier one, in file order.
    let entries: Vec<(&Service, &Owned, usize)> = located
        .iter()
        .flat_map(|l| {
            l.service
                .owns
                .iter()
                .zip(&l.owns_lines)
                .map(move |(o, line)| (&l.service, o, *line))
        })
        .collect();
    for (i, (service, owned, line)) in entries.iter().enumerate() {
        for (other, other_owned, other_line) in &entries[..i] {
            let same = other.name == service.name;
            // A service may list its own table inside its own schema.
            if owned.overlaps(other_owned) && (!same || owned == other_owned) {
                return Err(ServiceError::Overlap {
                    file,
                    line: *line,
                    service: service.name.clone(),
                    entry: owned.to_string(),
                    other_service: other.name.clone(),
                    other_entry: other_owned.to_string(),
                    other_line: *other_line,
                });
            }
        }
    }
    let names: Vec<String> = located.iter().map(|l| l.service.name.clone()).collect();
    for l in &located {
        for (dep, line) in l.service.depends_on.iter().zip(&l.dep_lines) {
            let why = if dep.service == l.service.name {
                Some("itself".to_string())
            } else if !names.contains(&dep.service) {
                Some(format!(
                    "which is not declared (capstan.toml declares {})",
                    quoted(&names)
                ))
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ServiceError::BadDependency {
                    file,
                    line: *line,
                    service: l.service.name.clone(),
                    dependency: dep.service.clone(),
                    why,
                });
            }
        }
    }
    Ok(Services {
        list: located.into_iter().map(|l| l.service).collect(),
    })
}

/// `path` without `.` components, `..` applied to what precedes it.
fn lexical(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir if out.file_name().is_some() => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Whether `name` is a valid service name.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() <= 63
        && chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
}

/// Splits `a.b` into identifiers, folding unquoted ones to lower case.
fn split_ident(entry: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut chars = entry.trim().chars().peekable();
    loop {
        let mut part = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        part.push('"');
                    }
                    Some('"') => break,
                    Some(c) => part.push(c),
                    None => return Err("unterminated quoted identifier".into()),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == '.' {
                    break;
                }
                if !(c.is_alphanumeric() || c == '_' || c == '$') {
                    return Err(format!("`{c}` is not allowed in an unquoted identifier"));
                }
                part.push(c.to_ascii_lowercase());
                chars.next();
            }
        }
        if part.is_empty() {
            return Err("empty identifier".into());
        }
        parts.push(part);
        match chars.next() {
            None => return Ok(parts),
            Some('.') => continue,
            Some(c) => return Err(format!("unexpected `{c}` after an identifier")),
        }
    }
}

/// An identifier as written back: quoted when folding would change it.
fn show_ident(ident: &str) -> String {
    let plain = ident
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && ident.chars().next().is_some_and(|c| !c.is_ascii_digit());
    if plain {
        ident.to_string()
    } else {
        format!("\"{}\"", ident.replace('"', "\"\""))
    }
}

#[cfg(test)]
mod tests;
