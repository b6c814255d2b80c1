//! Embedding a migration directory in an application binary.
//!
//! In the application's `build.rs`:
//!
//! ```no_run
//! capstan_migrate::embed::build("migrations");
//! ```
//!
//! and in its code:
//!
//! ```ignore
//! static MIGRATIONS: &[(&str, &str)] = capstan_migrate::include_migrations!();
//! let set = capstan_migrate::MigrationSet::from_embedded(MIGRATIONS)?;
//! ```
//!
//! The build fails, naming the file and line, when a migration is invalid or
//! `capstan.sum` is stale, so a binary never ships a set the CLI would refuse.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::source::{read_dir_files, MigrationSet};

/// Name of the generated file in `OUT_DIR`.
pub const GENERATED: &str = "capstan_migrations.rs";

/// For `build.rs`: validates `dir` (relative to the crate's manifest) and writes
/// the table that [`crate::include_migrations!`] includes. Panics, failing
/// the build with the error, when the directory is invalid.
pub fn build(dir: impl AsRef<Path>) {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR").map_or_else(PathBuf::new, PathBuf::from);
    let dir = manifest.join(dir.as_ref());
    println!("cargo:rerun-if-changed={}", dir.display());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR is set by cargo"));
    let code = generate(&dir).unwrap_or_else(|e| panic!("capstan: {e}"));
    std::fs::write(out.join(GENERATED), code).expect("write capstan_migrations.rs to OUT_DIR");
}

/// The Rust expression (a `&[(&str, &str)]`) embedding every file of `dir`.
pub fn generate(dir: &Path) -> Result<String, crate::source::SourceError> {
    MigrationSet::from_dir(dir)?;
    let mut code = String::from("&[\n");
    for (path, _) in read_dir_files(dir)? {
        let abs = std::fs::canonicalize(&path).unwrap_or(path.clone());
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let _ = writeln!(
            code,
            "    ({name:?}, include_str!({:?})),",
            abs.display().to_string()
        );
    }
    code.push(']');
    Ok(code)
}

/// Expands to the `&'static [(&str, &str)]` written by [`build`] in `build.rs`.
#[macro_export]
macro_rules! include_migrations {
    () => {
        include!(concat!(env!("OUT_DIR"), "/capstan_migrations.rs"))
    };
}
