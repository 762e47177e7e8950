//! The sessions (cookie → name) and their JSON dump format.
//!
//! The dump is a flat JSON object `{"<uuid>": "<name>", …}`, sorted by cookie so that two dumps
//! of the same state are byte-identical and diffs stay readable. A dump that does not have that
//! shape is *corrupt*: we refuse to start rather than run with half the sessions, and never write
//! over it, so an operator can look at what went wrong.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// The sessions, with a generation that changes whenever they do (so a checkpoint can tell
/// whether there is anything new to write without comparing maps).
#[derive(Debug, Default, Clone)]
pub struct Store {
    names: HashMap<Uuid, String>,
    generation: u64,
}

/// The dump file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read dump file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("corrupt dump file {path}: {reason} (the file was left untouched)")]
    Corrupt { path: PathBuf, reason: String },
}

impl Store {
    pub fn get(&self, cookie: &Uuid) -> Option<&str> {
        self.names.get(cookie).map(String::as_str)
    }

    /// Stores `name` for `cookie`; an empty name deletes. Returns whether anything changed.
    pub fn set(&mut self, cookie: Uuid, name: &str) -> bool {
        let changed = if name.is_empty() {
            self.names.remove(&cookie).is_some()
        } else {
            self.names.insert(cookie, name.to_string()).as_deref() != Some(name)
        };
        if changed {
            self.generation += 1;
        }
        changed
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// The dump's bytes.
    pub fn to_json(&self) -> Vec<u8> {
        let sorted: BTreeMap<String, &str> = self
            .names
            .iter()
            .map(|(k, v)| (k.to_string(), v.as_str()))
            .collect();
        // Serialising a map of strings cannot fail; the fallback is never used.
        let mut bytes = serde_json::to_vec_pretty(&sorted).unwrap_or_else(|_| b"{}".to_vec());
        bytes.push(b'\n');
        bytes
    }

    /// Parses a dump. Every key must be a UUID and every value a non-empty string.
    pub fn from_json(bytes: &[u8]) -> Result<Store, String> {
        let raw: HashMap<String, String> = serde_json::from_slice(bytes)
            .map_err(|e| format!("not a JSON object of cookie → name: {e}"))?;
        let mut names = HashMap::with_capacity(raw.len());
        for (key, name) in raw {
            let cookie = Uuid::parse_str(&key)
                .map_err(|e| format!("key {key:?} is not a UUID cookie: {e}"))?;
            if name.is_empty() {
                return Err(format!("cookie {key} has an empty name"));
            }
            names.insert(cookie, name);
        }
        Ok(Store {
            names,
            generation: 0,
        })
    }

    /// Loads `path`; a missing file is an empty store (first start).
    pub fn load(path: &Path) -> Result<Store, LoadError> {
        match std::fs::read(path) {
            Ok(bytes) => Store::from_json(&bytes).map_err(|reason| LoadError::Corrupt {
                path: path.to_path_buf(),
                reason,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Store::default()),
            Err(source) => Err(LoadError::Read {
                path: path.to_path_buf(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_get_delete_and_generations() {
        let mut s = Store::default();
        let a = Uuid::new_v4();
        assert!(s.set(a, "Ada"));
        assert_eq!((s.get(&a), s.generation()), (Some("Ada"), 1));
        assert!(!s.set(a, "Ada"), "same name again is no change");
        assert_eq!(s.generation(), 1);
        assert!(s.set(a, "Grace"));
        assert!(s.set(a, ""));
        assert_eq!((s.get(&a), s.len(), s.generation()), (None, 0, 3));
        assert!(!s.set(a, ""), "deleting a missing cookie is no change");
        assert_eq!(s.generation(), 3);
    }

    #[test]
    fn json_round_trip_is_sorted_and_stable() {
        let mut s = Store::default();
        let ids: Vec<Uuid> = (0..5).map(|_| Uuid::new_v4()).collect();
        for (i, id) in ids.iter().enumerate() {
            s.set(*id, &format!("user \"{i}\" <é>"));
        }
        let bytes = s.to_json();
        let back = Store::from_json(&bytes).expect("round trip");
        for id in &ids {
            assert_eq!(back.get(id), s.get(id));
        }
        assert_eq!(back.to_json(), bytes);
        let text = String::from_utf8(bytes).expect("utf8");
        let mut sorted = ids.iter().map(Uuid::to_string).collect::<Vec<_>>();
        sorted.sort();
        let positions: Vec<usize> = sorted
            .iter()
            .map(|k| text.find(k.as_str()).expect("key"))
            .collect();
        assert!(
            positions.windows(2).all(|w| w[0] < w[1]),
            "keys sorted: {text}"
        );
    }

    #[test]
    fn empty_store_dumps_an_empty_object() {
        assert_eq!(Store::default().to_json(), b"{}\n");
        assert_eq!(Store::from_json(b"{}").expect("empty").len(), 0);
    }

    #[test]
    fn corrupt_dumps_are_explained() {
        let id = Uuid::new_v4();
        let cases: Vec<(String, &str)> = vec![
            ("{\"truncated".into(), "line 1 column"),
            ("[]".into(), "not a JSON object"),
            (format!("{{\"{id}\": 42}}"), "not a JSON object"),
            (
                "{\"not-a-uuid\": \"Ada\"}".into(),
                "\"not-a-uuid\" is not a UUID",
            ),
            (format!("{{\"{id}\": \"\"}}"), "empty name"),
            (String::new(), "EOF"),
        ];
        for (text, want) in cases {
            let err = Store::from_json(text.as_bytes()).expect_err(&text);
            assert!(err.contains(want), "{text:?}: {err}");
        }
    }

    #[test]
    fn load_missing_is_empty_and_corrupt_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("auth.json");
        assert_eq!(Store::load(&path).expect("missing is fine").len(), 0);
        std::fs::write(&path, b"{oops").expect("write");
        let err = Store::load(&path).expect_err("corrupt").to_string();
        assert!(
            err.contains("auth.json") && err.contains("line 1 column 2"),
            "{err}"
        );
        assert_eq!(std::fs::read(&path).expect("read"), b"{oops");
    }
}
