//! Reading a task's output and error files for `GET /tasks/{name}/logs`: the last lines of a
//! file, read backwards from its end (a 10 GB log costs what its tail costs), and following
//! what is appended.
//!
//! The supervisor opens a task's files `O_APPEND` at every start and hands them to the task, so
//! it never holds them itself and logrotate's `copytruncate` is safe. A follower keeps an
//! offset and looks at the file's size and inode every [`POLL`]: a size below the offset is a
//! truncation (copytruncate) and a new inode is a rename-rotation; both start again from 0.
//! Everything here is blocking file IO, run by the API thread's blocking pool, never by the
//! event loop.
use std::fs::File;
use std::io;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::Path;
use std::time::Duration;

/// The most lines one request may ask for.
pub const MAX_TAIL: usize = 10_000;
/// The most bytes a tail reads back from the end: longer lines are cut at this many bytes.
pub const MAX_TAIL_BYTES: u64 = 16 * 1024 * 1024;
/// How often a follower looks at the file.
pub const POLL: Duration = Duration::from_millis(150);
/// The most a follower sends in one piece.
const CHUNK: u64 = 256 * 1024;

/// The last `n` lines of `path` (a last line without its newline counts), and the size of the
/// file when they were read (where a follower goes on). A missing file is empty: the task has
/// not been started yet.
pub fn tail(path: &Path, n: usize) -> io::Result<(Vec<u8>, Position)> {
    let f = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Ok((Vec::new(), Position::default()));
        }
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    let size = meta.len();
    let pos = Position {
        offset: size,
        inode: Some(meta.ino()),
    };
    if n == 0 || size == 0 {
        return Ok((Vec::new(), pos));
    }
    // Read blocks backwards until n newlines are in hand (one more when the file ends in one:
    // that newline ends the last line, it does not start another).
    let ends_in_newline = {
        let mut b = [0u8; 1];
        f.read_exact_at(&mut b, size - 1)?;
        b[0] == b'\n'
    };
    let wanted = n + usize::from(ends_in_newline);
    let floor = size.saturating_sub(MAX_TAIL_BYTES);
    let mut start = size;
    let mut buf: Vec<u8> = Vec::new();
    let mut newlines = 0;
    const BLOCK: u64 = 64 * 1024;
    while start > floor && newlines < wanted {
        let from = start.saturating_sub(BLOCK).max(floor);
        let mut block = vec![0u8; (start - from) as usize];
        f.read_exact_at(&mut block, from)?;
        newlines += block.iter().filter(|&&b| b == b'\n').count();
        block.extend_from_slice(&buf);
        buf = block;
        start = from;
    }
    // Cut after the newline that precedes the n lines wanted.
    let body_end = buf.len() - usize::from(ends_in_newline);
    let mut seen = 0;
    let mut cut = 0;
    for (i, b) in buf[..body_end].iter().enumerate().rev() {
        if *b == b'\n' {
            seen += 1;
            if seen == n {
                cut = i + 1;
                break;
            }
        }
    }
    Ok((buf.split_off(cut), pos))
}

/// Where a follower is in a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Position {
    pub offset: u64,
    /// The file read so far; `None` before it existed.
    pub inode: Option<u64>,
}

/// One look at a followed file: what was appended since `pos` (at most [`CHUNK`] bytes), and
/// the new position. A truncated or replaced file is read again from its start.
pub fn appended(path: &Path, pos: Position) -> io::Result<(Vec<u8>, Position)> {
    let f = match File::open(path) {
        Ok(f) => f,
        // Between a rename and the task's next start the file may be missing for a while.
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), pos)),
        Err(e) => return Err(e),
    };
    let meta = f.metadata()?;
    let mut offset = pos.offset;
    if pos.inode != Some(meta.ino()) || meta.len() < offset {
        offset = 0;
    }
    let end = meta.len().min(offset + CHUNK);
    let mut data = vec![0u8; (end - offset) as usize];
    let got = read_at_most(&f, &mut data, offset)?;
    data.truncate(got);
    Ok((
        data,
        Position {
            offset: offset + got as u64,
            inode: Some(meta.ino()),
        },
    ))
}

/// `pread` until `buf` is full or the file ends (a concurrent truncation ends it early).
fn read_at_most(f: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match f.read_at(&mut buf[done..], offset + done as u64) {
            Ok(0) => break,
            Ok(k) => done += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn file(content: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("out.log");
        std::fs::write(&p, content).unwrap();
        (d, p)
    }

    #[test]
    fn tail_gives_exactly_the_last_n_lines() {
        let text: String = (1..=1000).map(|i| format!("line {i}\n")).collect();
        let (_d, p) = file(text.as_bytes());
        let (got, pos) = tail(&p, 3).unwrap();
        assert_eq!(got, b"line 998\nline 999\nline 1000\n");
        assert_eq!(pos.offset, text.len() as u64);
        assert_eq!(tail(&p, 0).unwrap().0, b"");
        assert_eq!(tail(&p, 5000).unwrap().0, text.as_bytes());
    }

    #[test]
    fn tail_counts_an_unfinished_last_line_and_spans_blocks() {
        let (_d, p) = file(b"a\nb\nc");
        assert_eq!(tail(&p, 2).unwrap().0, b"b\nc");
        assert_eq!(tail(&p, 1).unwrap().0, b"c");
        let long = "x".repeat(200_000);
        let (_d2, p2) = file(format!("first\n{long}\nlast\n").as_bytes());
        assert_eq!(
            tail(&p2, 2).unwrap().0,
            format!("{long}\nlast\n").as_bytes()
        );
        assert_eq!(tail(&p2, 1).unwrap().0, b"last\n");
    }

    #[test]
    fn a_missing_file_is_empty() {
        let d = tempfile::tempdir().unwrap();
        assert_eq!(tail(&d.path().join("none"), 10).unwrap().0, b"");
    }

    #[test]
    fn appended_follows_growth_truncation_and_replacement() {
        let (d, p) = file(b"old\n");
        let (_, pos) = tail(&p, 10).unwrap();
        let mut f = std::fs::OpenOptions::new().append(true).open(&p).unwrap();
        f.write_all(b"new 1\n").unwrap();
        let (got, pos) = appended(&p, pos).unwrap();
        assert_eq!(got, b"new 1\n");
        assert_eq!(appended(&p, pos).unwrap().0, b"", "nothing new");
        // copytruncate: the file shrinks, and is read from 0 again.
        f.set_len(0).unwrap();
        f.write_all(b"after\n").unwrap();
        let (got, pos) = appended(&p, pos).unwrap();
        assert_eq!(got, b"after\n");
        // A rename rotation: another file at the path.
        std::fs::rename(&p, d.path().join("out.log.1")).unwrap();
        std::fs::write(&p, b"fresh\n").unwrap();
        assert_eq!(appended(&p, pos).unwrap().0, b"fresh\n");
    }
}
