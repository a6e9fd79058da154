//! The data file on disk: its format (a pretty-printed JSON object of
//! name → age, sorted by name), how a version of it is recognised, how it
//! is replaced durably, and the lock that serializes writers across
//! processes.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};

use super::StoreError;

/// A student's age as stored on disk.
///
/// Written as a JSON number; read from a number or a numeric string, because
/// the original Flask service stored ages as strings. Any whole number the
/// file holds is served as it is: the rules on new ages (0 to 150) apply to
/// what the API accepts, not to what an operator wrote into the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StoredAge(pub u32);

impl fmt::Display for StoredAge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for StoredAge {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AgeVisitor;

        impl Visitor<'_> for AgeVisitor {
            type Value = StoredAge;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number of years (a number like 12 or a string like \"12\")")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StoredAge, E> {
                u32::try_from(v)
                    .map(StoredAge)
                    .map_err(|_| E::custom(format!("age {v} is too large")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StoredAge, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("age {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<StoredAge, E> {
                if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                    // Exact: the value is a whole number that fits in u32.
                    Ok(StoredAge(v as u32))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<StoredAge, E> {
                v.trim()
                    .parse::<u32>()
                    .map(StoredAge)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(AgeVisitor)
    }
}

/// Every student, by name, in the order the file keeps them. Names are
/// kept as the file has them, even ones the rules would refuse today.
pub type Students = BTreeMap<String, StoredAge>;

/// Identifies one version of the data file on disk: a rename gives a new
/// inode, so any replacement by any process changes the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    pub(super) fn of(meta: &fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }

    /// The stamp of the file at `path` now.
    pub(super) fn at(path: &Path) -> Result<FileStamp, StoreError> {
        fs::metadata(path)
            .map(|meta| FileStamp::of(&meta))
            .map_err(|source| StoreError::Read {
                path: path.to_owned(),
                source,
            })
    }
}

/// Parses the data file's content.
pub(super) fn parse(path: &Path, bytes: &[u8]) -> Result<Students, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// The exact bytes written for `students`: pretty-printed, sorted by name,
/// with a trailing newline.
pub(super) fn render(students: &Students) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(students)
        .expect("a map of strings to integers always serializes");
    bytes.push(b'\n');
    bytes
}

/// Reads and parses the file, with the stamp of exactly the bytes parsed.
pub(super) fn read(path: &Path) -> Result<(Students, FileStamp), StoreError> {
    let read_err = |source| StoreError::Read {
        path: path.to_owned(),
        source,
    };
    // Stat the open file, not the path, so the stamp describes exactly the
    // bytes we parse even if the file is replaced meanwhile.
    let file = File::open(path).map_err(read_err)?;
    let stamp = FileStamp::of(&file.metadata().map_err(read_err)?);
    let bytes = io::read_to_string(file).map_err(read_err)?;
    let students = parse(path, bytes.as_bytes())?;
    Ok((students, stamp))
}

/// The advisory lock file that serializes writers across processes. It sits
/// beside the data file because the data file itself is replaced on every
/// write (a lock on it would be a lock on an old inode).
pub(super) fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

/// An exclusive advisory lock, released when dropped.
pub(super) struct FileLock(File);

impl FileLock {
    pub(super) fn acquire(path: &Path) -> io::Result<FileLock> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)?;
        file.lock()?;
        Ok(FileLock(file))
    }
}

impl Drop for FileLock {
    fn drop(&mut self) {
        // Closing the file releases the lock too; unlocking first is explicit.
        let _ = self.0.unlock();
    }
}

/// Writes `bytes` to a temp file beside `path`, fsyncs it, renames it over
/// `path` and fsyncs the directory. Returns the stamp of the new file.
pub(super) fn replace_durably(path: &Path, bytes: &[u8]) -> io::Result<FileStamp> {
    static SEQUENCE: AtomicU64 = AtomicU64::new(0);
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(path.file_name().unwrap_or_default());
    tmp_name.push(format!(
        ".tmp-{}-{}",
        std::process::id(),
        SEQUENCE.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = dir.join(tmp_name);

    let result = (|| {
        let mut file = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        let stamp = FileStamp::of(&file.metadata()?);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()?;
        Ok(stamp)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_negative_and_fractional_ages() {
        for content in [r#"{"a": -1}"#, r#"{"a": 1.5}"#, r#"[1, 2]"#, ""] {
            let path = Path::new("x.json");
            assert!(
                parse(path, content.as_bytes()).is_err(),
                "{content} was accepted"
            );
        }
        assert_eq!(
            parse(Path::new("x"), b"{\"a\": 7.0}").unwrap()["a"],
            StoredAge(7)
        );
    }

    #[test]
    fn the_lock_file_sits_beside_the_data_file() {
        assert_eq!(
            lock_path(Path::new("/data/student_age.json")),
            Path::new("/data/student_age.json.lock")
        );
    }
}
