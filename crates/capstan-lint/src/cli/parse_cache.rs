//! Parsing ahead for `capstan lint`: every whole section the run will parse is
//! parsed up front on all cores, or read from the parse cache, and handed to
//! the linter (a [`SectionParser`]) so that its walk in file order only looks
//! trees up.
//!
//! The cache is one file holding the encoded parse tree of each section by
//! the SHA-256 of its text: `$CAPSTAN_LINT_CACHE` (a directory; `off` for
//! none), else `$XDG_CACHE_HOME/capstan`, else `~/.cache/capstan`. A missing,
//! unreadable, corrupt (checked by a SHA-256 of the file) or stale cache is
//! only slower, never an error.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use prost::Message;
use sha2::{Digest, Sha256};

use crate::engine::{parse_protobuf, SectionParser};
use pg_query::protobuf::ParseResult;

type Key = [u8; 32];

/// Names the tree format: a new parser version starts a new file.
const MAGIC: &[u8] = b"capstan-lint parse cache v1 pg_query 18.1\n";
/// Above this, the file keeps only the sections of the latest run.
const MAX_BYTES: usize = 64 << 20;

fn key(sql: &str) -> Key {
    Sha256::digest(sql.as_bytes()).into()
}

/// The cache file, unless caching is off.
pub(crate) fn cache_file(disabled: bool) -> Option<PathBuf> {
    if disabled {
        return None;
    }
    let dir = match std::env::var_os("CAPSTAN_LINT_CACHE") {
        Some(v) if v == "off" || v.is_empty() => return None,
        Some(v) => PathBuf::from(v),
        None => match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x).join("capstan"),
            None => PathBuf::from(std::env::var_os("HOME")?).join(".cache/capstan"),
        },
    };
    Some(dir.join("lint-parse.bin"))
}

/// Trees parsed ahead, encoded (a few KiB each, where a decoded tree takes
/// a hundred times that), by the hash of their text; decoded when the walk
/// reaches them.
pub(crate) struct Parsed {
    trees: Mutex<HashMap<Key, Vec<u8>>>,
}

impl SectionParser for Parsed {
    fn parse(&self, sql: &str) -> Result<ParseResult, pg_query::Error> {
        let bytes = self
            .trees
            .lock()
            .map(|mut t| t.remove(&key(sql)))
            .unwrap_or(None);
        match bytes.and_then(|b| ParseResult::decode(b.as_slice()).ok()) {
            Some(t) => Ok(t),
            None => parse_protobuf(sql),
        }
    }
}

fn load(path: &Path) -> HashMap<Key, Vec<u8>> {
    let mut map = HashMap::new();
    let Ok(bytes) = std::fs::read(path) else {
        return map;
    };
    // The file ends with the SHA-256 of the rest: a torn or corrupt file is
    // a miss, never a wrong tree.
    let Some(split) = bytes.len().checked_sub(32) else {
        return map;
    };
    let (body, sum) = bytes.split_at(split);
    if Sha256::digest(body).as_slice() != sum {
        return map;
    }
    let Some(mut rest) = body.strip_prefix(MAGIC) else {
        return map;
    };
    while rest.len() >= 36 {
        let mut k = [0u8; 32];
        k.copy_from_slice(&rest[..32]);
        let len = u32::from_le_bytes([rest[32], rest[33], rest[34], rest[35]]) as usize;
        let Some(body) = rest.get(36..36 + len) else {
            break;
        };
        map.insert(k, body.to_vec());
        rest = &rest[36 + len..];
    }
    map
}

fn save(path: &Path, entries: &HashMap<Key, Vec<u8>>) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir)?;
    let mut out = Vec::with_capacity(entries.values().map(|v| v.len() + 36).sum::<usize>() + 64);
    out.extend_from_slice(MAGIC);
    let mut keys: Vec<&Key> = entries.keys().collect();
    keys.sort();
    for k in keys {
        let v = &entries[k];
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(v);
    }
    let sum = Sha256::digest(&out);
    out.extend_from_slice(&sum);
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, &out)?;
    tmp.persist(path).map_err(|e| e.error)?;
    Ok(())
}

/// Parses (or reads from the cache) every section in `sections`, on all cores.
pub(crate) fn prepare(sections: Vec<String>, cache: Option<&Path>) -> Parsed {
    let mut seen = std::collections::HashSet::new();
    let work: Vec<(Key, String)> = sections
        .into_iter()
        .map(|s| (key(&s), s))
        .filter(|(k, _)| seen.insert(*k))
        .collect();
    let cached = cache.map(load).unwrap_or_default();
    let workers = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 8)
        .min(work.len().max(1));
    // Each worker: the sections it parsed (the cache lacked them), encoded.
    type Done = Vec<(Key, Vec<u8>)>;
    let done: Vec<Done> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|w| {
                let (work, cached) = (&work, &cached);
                scope.spawn(move || {
                    let mut out: Done = Vec::new();
                    for (k, sql) in work.iter().skip(w).step_by(workers) {
                        if cached.contains_key(k) {
                            continue;
                        }
                        if let Ok(tree) = parse_protobuf(sql) {
                            out.push((*k, tree.encode_to_vec()));
                        }
                    }
                    out
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_default())
            .collect()
    });
    let mut trees: HashMap<Key, Vec<u8>> = HashMap::with_capacity(work.len());
    let mut fresh: Vec<(Key, Vec<u8>)> = Vec::new();
    for (k, bytes) in done.into_iter().flatten() {
        if cache.is_some() {
            fresh.push((k, bytes.clone()));
        }
        trees.insert(k, bytes);
    }
    for (k, _) in &work {
        if !trees.contains_key(k) {
            if let Some(b) = cached.get(k) {
                trees.insert(*k, b.clone());
            }
        }
    }
    if let (Some(path), false) = (cache, fresh.is_empty()) {
        let mut entries = cached;
        let total: usize = entries.values().map(Vec::len).sum::<usize>()
            + fresh.iter().map(|(_, b)| b.len()).sum::<usize>();
        if total > MAX_BYTES {
            let used: std::collections::HashSet<Key> = work.iter().map(|(k, _)| *k).collect();
            entries.retain(|k, _| used.contains(k));
        }
        entries.extend(fresh);
        let _ = save(path, &entries);
    }
    Parsed {
        trees: Mutex::new(trees),
    }
}
