//! The data file on disk: its format (a pretty-printed JSON object of
//! name → age, sorted by name), how a version of it is recognised, how it
//! is replaced durably, and the lock that serializes writers across
//! processes.
//!
//! What a load accepts: every name and age must pass the API's own rules
//! (`student_ages_rules`), names in Unicode NFC, each name once. A file that
//! breaks them is refused at load, naming the file, the student and the
//! line, and is never rewritten: every student the API serves can then also
//! be changed and deleted through it.
//!
//! How a write treats the file: a symlinked data file is followed (the
//! target is replaced, atomically, through a temp file in the target's own
//! directory, and the link stays); the new file keeps the old one's mode and
//! owner; a file without its owner's write bit (0444) is refused, not
//! replaced; temp files have unique names (`.<file>.tmp-XXXXXX`) and any a
//! crash left behind are removed, under the writers' lock, when a store
//! opens.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use student_ages_rules::{MAX_AGE, StudentName};

use super::StoreError;

/// A student's age as stored on disk.
///
/// Written as a JSON number; read from a number or a numeric string, because
/// the original Flask service stored ages as strings. A load refuses an age
/// the API's rules refuse (over 150), as it refuses such a name.
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

/// Every student, by name, sorted. Every name is one the rules accept.
pub type Students = BTreeMap<String, StoredAge>;

/// The file's object, read strictly: each name once, and every name and
/// age one the API's rules accept.
struct StrictStudents(Students);

impl<'de> Deserialize<'de> for StrictStudents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjectVisitor;

        impl<'de> Visitor<'de> for ObjectVisitor {
            type Value = StrictStudents;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object of student name to age")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StrictStudents, A::Error> {
                let mut students = Students::new();
                while let Some(name) = map.next_key::<String>()? {
                    let age: StoredAge = map.next_value()?;
                    check_entry(&name, age).map_err(de::Error::custom)?;
                    if students.insert(name.clone(), age).is_some() {
                        return Err(de::Error::custom(format!(
                            "the student {name:?} appears twice; keep one entry"
                        )));
                    }
                }
                Ok(StrictStudents(students))
            }
        }

        deserializer.deserialize_map(ObjectVisitor)
    }
}

/// Whether the API's rules accept one entry of the file; the message names
/// the student and says what to change.
fn check_entry(name: &str, age: StoredAge) -> Result<(), String> {
    match StudentName::parse(name) {
        Err(error) => return Err(format!("the student {name:?} is refused: {error}")),
        Ok(parsed) if parsed.as_str() != name => {
            return Err(format!(
                "the student {name:?} is not written in Unicode NFC form; write it as {:?}",
                parsed.as_str()
            ));
        }
        Ok(_) => {}
    }
    if age.0 > MAX_AGE {
        return Err(format!(
            "the age of {name:?}, {age}, is not from 0 to {MAX_AGE}"
        ));
    }
    Ok(())
}

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
    parse_students(bytes).map_err(|source| StoreError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// Reads a data file's content as the API reads its own: each name once,
/// every name and age one the rules accept. The error names the first
/// problem, with its line and column.
pub fn parse_students(bytes: &[u8]) -> Result<Students, serde_json::Error> {
    serde_json::from_slice::<StrictStudents>(bytes).map(|strict| strict.0)
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

/// Why [`replace_durably`] failed, and so whether the change is in place.
#[derive(Debug)]
pub(super) enum ReplaceError {
    /// Failed before the rename: the data file is as it was.
    NotWritten(io::Error),
    /// The data file lacks its owner's write bit: refused, as it was.
    ReadOnly { mode: u32 },
    /// Renamed into place, but the directory's fsync failed: the change is
    /// what the file now holds, its durability is unconfirmed.
    NotDurable { stamp: FileStamp, source: io::Error },
}

/// The file a write replaces: `path`, or the file its symlinks lead to.
pub(super) fn write_target(path: &Path) -> io::Result<PathBuf> {
    fs::canonicalize(path)
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// The prefix of every temp file written beside `path`.
fn temp_prefix(path: &Path) -> std::ffi::OsString {
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(path.file_name().unwrap_or_default());
    prefix.push(".tmp-");
    prefix
}

/// Removes the temp files a killed writer left beside `target`. Call with
/// the writers' lock held, so no live writer's temp file is taken.
pub(super) fn remove_stale_temp_files(target: &Path) -> io::Result<usize> {
    let prefix = temp_prefix(target);
    let prefix = prefix.as_encoded_bytes();
    let mut removed = 0;
    for entry in fs::read_dir(directory_of(target))? {
        let entry = entry?;
        if entry.file_name().as_encoded_bytes().starts_with(prefix) && entry.file_type()?.is_file()
        {
            fs::remove_file(entry.path())?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Replaces `target` (a resolved path, see [`write_target`]) with `bytes`:
/// writes a uniquely named temp file beside it with its mode and owner,
/// fsyncs it, renames it over `target` and fsyncs the directory. Returns
/// the stamp of the new file.
pub(super) fn replace_durably(target: &Path, bytes: &[u8]) -> Result<FileStamp, ReplaceError> {
    use std::os::unix::fs::PermissionsExt;
    let dir = directory_of(target);
    let old = fs::metadata(target).map_err(ReplaceError::NotWritten)?;
    let mode = old.permissions().mode() & 0o7777;
    if mode & 0o200 == 0 {
        return Err(ReplaceError::ReadOnly { mode });
    }
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(target))
        .tempfile_in(dir)
        .map_err(ReplaceError::NotWritten)?;
    let stamp = (|| {
        let file = tmp.as_file_mut();
        file.write_all(bytes)?;
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        let mine = file.metadata()?;
        if (mine.uid(), mine.gid()) != (old.uid(), old.gid()) {
            std::os::unix::fs::fchown(&*file, Some(old.uid()), Some(old.gid())).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "cannot give the new file the data file's owner {}:{} ({e}); \
                         run the API as that user or chown the file to the API's user",
                        old.uid(),
                        old.gid()
                    ),
                )
            })?;
        }
        file.sync_all()?;
        Ok(FileStamp::of(&file.metadata()?))
    })()
    .map_err(ReplaceError::NotWritten)?;
    // On failure the temp file is removed when `persist` hands it back.
    tmp.persist(target)
        .map_err(|e| ReplaceError::NotWritten(e.error))?;
    sync_dir(dir).map_err(|source| ReplaceError::NotDurable { stamp, source })?;
    Ok(stamp)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    #[cfg(test)]
    if tests::dir_sync_fails(dir) {
        return Err(io::Error::other("injected directory fsync failure"));
    }
    File::open(dir)?.sync_all()
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use std::sync::Mutex;

    /// Directories whose fsync fails, for the tests that need it.
    static FAILING_DIR_SYNC: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

    pub(in crate::store) fn fail_dir_sync(dir: &Path) {
        FAILING_DIR_SYNC.lock().unwrap().push(dir.to_owned());
    }

    pub(super) fn dir_sync_fails(dir: &Path) -> bool {
        FAILING_DIR_SYNC.lock().unwrap().iter().any(|d| d == dir)
    }

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
