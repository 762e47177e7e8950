//! The record file that every `bench-task` appends to: `S|E <id> <pid> <ns>` lines.
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

/// `S`: a task started; `E`: a task is about to exit on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Start,
    End,
}

/// One line of the record file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub kind: Kind,
    pub id: String,
    pub pid: i32,
    /// CLOCK_REALTIME in nanoseconds.
    pub ns: u128,
}

/// Parses one line; `None` for anything malformed.
pub fn parse_line(line: &str) -> Option<Record> {
    let mut it = line.split_ascii_whitespace();
    let kind = match it.next()? {
        "S" => Kind::Start,
        "E" => Kind::End,
        _ => return None,
    };
    let id = it.next()?.to_string();
    let pid = it.next()?.parse().ok()?;
    let ns = it.next()?.parse().ok()?;
    if it.next().is_some() {
        return None;
    }
    Some(Record { kind, id, pid, ns })
}

/// Follows a growing text file: the complete lines appended since the last call.
#[derive(Debug)]
pub struct Tail {
    path: PathBuf,
    offset: u64,
    partial: Vec<u8>,
}

impl Tail {
    pub fn new(path: &Path) -> Self {
        Tail {
            path: path.to_path_buf(),
            offset: 0,
            partial: Vec::new(),
        }
    }

    /// Starts at the current end of the file (what is there now is skipped).
    pub fn at_end(path: &Path) -> Self {
        let offset = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        Tail {
            path: path.to_path_buf(),
            offset,
            partial: Vec::new(),
        }
    }

    /// New complete lines. A missing file has no lines yet.
    pub fn lines(&mut self) -> Result<Vec<String>> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(e).with_context(|| format!("cannot open {}", self.path.display()));
            }
        };
        f.seek(SeekFrom::Start(self.offset))
            .with_context(|| format!("cannot seek in {}", self.path.display()))?;
        let before = self.partial.len();
        f.read_to_end(&mut self.partial)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        self.offset += (self.partial.len() - before) as u64;
        let Some(last_nl) = self.partial.iter().rposition(|b| *b == b'\n') else {
            return Ok(Vec::new());
        };
        let rest = self.partial.split_off(last_nl + 1);
        let done = std::mem::replace(&mut self.partial, rest);
        Ok(String::from_utf8_lossy(&done)
            .lines()
            .map(str::to_string)
            .collect())
    }
}

/// Reads the records appended since the last call.
#[derive(Debug)]
pub struct Reader(Tail);

impl Reader {
    pub fn new(path: &Path) -> Self {
        Reader(Tail::new(path))
    }

    /// Starts reading at the current end of the file.
    pub fn at_end(path: &Path) -> Self {
        Reader(Tail::at_end(path))
    }

    /// New complete records since the last call.
    pub fn poll(&mut self) -> Result<Vec<Record>> {
        Ok(self
            .0
            .lines()?
            .iter()
            .filter_map(|l| parse_line(l))
            .collect())
    }
}

/// The latest start of every id, from all records so far.
#[derive(Debug, Default)]
pub struct Latest {
    pub starts: HashMap<String, Record>,
}

impl Latest {
    pub fn add(&mut self, records: &[Record]) {
        for r in records.iter().filter(|r| r.kind == Kind::Start) {
            self.starts.insert(r.id.clone(), r.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn parses_good_lines_and_rejects_bad_ones() {
        assert_eq!(
            parse_line("S t1 42 1700000000123456789\n"),
            Some(Record {
                kind: Kind::Start,
                id: "t1".into(),
                pid: 42,
                ns: 1_700_000_000_123_456_789
            })
        );
        assert_eq!(parse_line("E x 1 2").map(|r| r.kind), Some(Kind::End));
        for bad in [
            "",
            "S",
            "S t1",
            "S t1 x 1",
            "S t1 1 y",
            "Q t1 1 2",
            "S t1 1 2 extra",
        ] {
            assert_eq!(parse_line(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn reader_returns_only_complete_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("rec");
        let mut r = Reader::new(&p);
        assert!(r.poll().unwrap().is_empty());
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&p)
            .unwrap();
        write!(f, "S a 1 10\nE a 1 2").unwrap();
        let got = r.poll().unwrap();
        assert_eq!(got.len(), 1);
        write!(f, "0\nS a 2 30\n").unwrap();
        let got = r.poll().unwrap();
        assert_eq!(got.iter().map(|r| r.ns).collect::<Vec<_>>(), vec![20, 30]);
        assert!(r.poll().unwrap().is_empty());
        assert!(Reader::at_end(&p).poll().unwrap().is_empty());
    }
}
