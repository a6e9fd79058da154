//! The JSON file that is the database.
//!
//! [`Store`] owns every access to `student_age.json`: handlers never touch
//! files. The file stays a human-readable, pretty-printed JSON object of
//! name → age, sorted by name so a diff of two versions is readable.
//!
//! Durability and concurrency, in one place:
//! - Every acknowledged write is on disk before [`Store::apply`] returns:
//!   the new content goes to a temp file in the same directory, which is
//!   fsynced, renamed over the data file, and the directory is fsynced.
//! - One writer thread serializes writes within the process and batches
//!   them (group commit): whatever arrived while the previous batch was
//!   being committed goes into the next one, so throughput does not
//!   collapse to one fsync per request.
//! - An advisory lock on a sibling `<file>.lock` serializes writers across
//!   processes (two API containers may share the volume during a deploy).
//!   Under that lock the writer re-reads the file if another process
//!   changed it, so neither process loses the other's updates.
//! - Reads are served from memory, after a `stat` that notices when another
//!   process replaced the file.
//! - A malformed file is refused with its path and the parse error, and is
//!   never overwritten.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, mpsc};
use std::thread;

use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;

/// The largest number of changes committed in one fsync cycle.
const MAX_BATCH: usize = 4096;

/// A student's age as stored on disk.
///
/// Written as a JSON number; read from a number or a numeric string, because
/// the original Flask service stored ages as strings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Age(pub u32);

impl fmt::Display for Age {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl<'de> Deserialize<'de> for Age {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct AgeVisitor;

        impl Visitor<'_> for AgeVisitor {
            type Value = Age;

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a whole number of years (a number like 12 or a string like \"12\")")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Age, E> {
                u32::try_from(v)
                    .map(Age)
                    .map_err(|_| E::custom(format!("age {v} is too large")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Age, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("age {v} is negative")))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Age, E> {
                if v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(&v) {
                    // Exact: the value is a whole number that fits in u32.
                    Ok(Age(v as u32))
                } else {
                    Err(E::invalid_value(de::Unexpected::Float(v), &self))
                }
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Age, E> {
                v.trim()
                    .parse::<u32>()
                    .map(Age)
                    .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
            }
        }

        deserializer.deserialize_any(AgeVisitor)
    }
}

/// Every student, by name, in the order the file keeps them.
pub type Students = BTreeMap<String, Age>;

/// One requested change to the data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the student or change their age.
    Put { name: String, age: Age },
    /// Remove the student.
    Delete { name: String },
}

/// What a [`Change`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Deleted,
    /// A delete of a student who does not exist: nothing was written.
    NotFound,
}

/// Why the store could not serve a request.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot read the data file {path}: {source}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "the data file {path} is not a JSON object of name → age: {source}; \
         fix or restore the file (it has not been modified)"
    )]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("cannot write the data file {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("the store is shutting down")]
    Closed,
}

/// Identifies one version of the data file on disk: a rename gives a new
/// inode, so any replacement by any process changes the stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

impl FileStamp {
    fn of(meta: &fs::Metadata) -> Self {
        FileStamp {
            dev: meta.dev(),
            ino: meta.ino(),
            len: meta.len(),
            mtime_ns: i128::from(meta.mtime()) * 1_000_000_000 + i128::from(meta.mtime_nsec()),
        }
    }
}

/// The students as last read from or written to disk.
#[derive(Debug)]
pub struct Snapshot {
    pub students: Students,
    stamp: FileStamp,
}

struct Request {
    change: Change,
    reply: oneshot::Sender<Result<Outcome, Arc<StoreError>>>,
}

struct Shared {
    path: PathBuf,
    current: RwLock<Arc<Snapshot>>,
}

/// Handle to the data file; cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    writer: mpsc::Sender<Request>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.shared.path)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens the data file, refusing it if it is missing, unreadable or
    /// malformed, and starts the writer thread.
    pub fn open(path: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let path = path.into();
        let snapshot = read_snapshot(&path)?;
        let shared = Arc::new(Shared {
            path,
            current: RwLock::new(Arc::new(snapshot)),
        });
        let (writer, requests) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || write_loop(&writer_shared, &requests))
            .map_err(|source| StoreError::Write {
                path: shared.path.clone(),
                source,
            })?;
        Ok(Store { shared, writer })
    }

    /// The data file this store serves.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The current students, re-read first if another process replaced the
    /// file since we last looked.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let cached = self.cached();
        let meta = fs::metadata(&self.shared.path).map_err(|source| StoreError::Read {
            path: self.shared.path.clone(),
            source,
        })?;
        if FileStamp::of(&meta) == cached.stamp {
            return Ok(cached);
        }
        let fresh = Arc::new(read_snapshot(&self.shared.path)?);
        self.publish(&fresh);
        Ok(fresh)
    }

    /// Checks that the data file can still be opened and parsed.
    pub fn check(&self) -> Result<(), StoreError> {
        File::open(&self.shared.path).map_err(|source| StoreError::Read {
            path: self.shared.path.clone(),
            source,
        })?;
        self.snapshot().map(drop)
    }

    /// Applies one change and returns once it is durably on disk.
    pub async fn apply(&self, change: Change) -> Result<Outcome, Arc<StoreError>> {
        let (reply, outcome) = oneshot::channel();
        self.writer
            .send(Request { change, reply })
            .map_err(|_| Arc::new(StoreError::Closed))?;
        outcome.await.map_err(|_| Arc::new(StoreError::Closed))?
    }

    fn cached(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a reader panicked while cloning an Arc;
        // the snapshot itself is immutable and still valid.
        Arc::clone(
            &self
                .shared
                .current
                .read()
                .unwrap_or_else(|e| e.into_inner()),
        )
    }

    fn publish(&self, snapshot: &Arc<Snapshot>) {
        publish(&self.shared, snapshot);
    }
}

fn publish(shared: &Shared, snapshot: &Arc<Snapshot>) {
    let mut current = shared.current.write().unwrap_or_else(|e| e.into_inner());
    *current = Arc::clone(snapshot);
}

/// Parses the data file's content.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Students, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Malformed {
        path: path.to_owned(),
        source,
    })
}

/// The exact bytes written for `students`: pretty-printed, sorted by name,
/// with a trailing newline.
pub fn render(students: &Students) -> Vec<u8> {
    let mut bytes = serde_json::to_vec_pretty(students)
        .expect("a map of strings to integers always serializes");
    bytes.push(b'\n');
    bytes
}

fn read_snapshot(path: &Path) -> Result<Snapshot, StoreError> {
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
    Ok(Snapshot { students, stamp })
}

fn write_loop(shared: &Shared, requests: &mpsc::Receiver<Request>) {
    // Ends when every Store handle is dropped and the queue is drained.
    while let Ok(first) = requests.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(request) => batch.push(request),
                Err(_) => break,
            }
        }
        let changes: Vec<&Change> = batch.iter().map(|r| &r.change).collect();
        match commit(shared, &changes) {
            Ok(outcomes) => {
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    // The client may have gone away; the write stands anyway.
                    let _ = request.reply.send(Ok(outcome));
                }
            }
            Err(error) => {
                tracing::error!(%error, changes = changes.len(), "write failed; nothing was changed");
                let error = Arc::new(error);
                for request in batch {
                    let _ = request.reply.send(Err(Arc::clone(&error)));
                }
            }
        }
    }
}

/// Applies `changes` in order under the cross-process lock and makes the
/// result durable. Either every change in the batch is on disk or none is.
fn commit(shared: &Shared, changes: &[&Change]) -> Result<Vec<Outcome>, StoreError> {
    let path = &shared.path;
    let write_err = |source| StoreError::Write {
        path: path.clone(),
        source,
    };
    let _lock = FileLock::acquire(&lock_path(path)).map_err(write_err)?;

    let cached = Arc::clone(&shared.current.read().unwrap_or_else(|e| e.into_inner()));
    let on_disk = fs::metadata(path).map_err(|source| StoreError::Read {
        path: path.clone(),
        source,
    })?;
    // Another process may have written since we last read: start from its
    // version, never from our stale copy.
    let base = if FileStamp::of(&on_disk) == cached.stamp {
        cached
    } else {
        Arc::new(read_snapshot(path)?)
    };

    let mut students = base.students.clone();
    let outcomes: Vec<Outcome> = changes
        .iter()
        .map(|change| apply_change(&mut students, change))
        .collect();

    if students == base.students {
        publish(shared, &base);
        return Ok(outcomes);
    }
    let stamp = replace_durably(path, &render(&students)).map_err(write_err)?;
    publish(shared, &Arc::new(Snapshot { students, stamp }));
    Ok(outcomes)
}

fn apply_change(students: &mut Students, change: &Change) -> Outcome {
    match change {
        Change::Put { name, age } => match students.insert(name.clone(), *age) {
            None => Outcome::Created,
            Some(_) => Outcome::Updated,
        },
        Change::Delete { name } => match students.remove(name) {
            Some(_) => Outcome::Deleted,
            None => Outcome::NotFound,
        },
    }
}

/// The advisory lock file that serializes writers across processes. It sits
/// beside the data file because the data file itself is replaced on every
/// write (a lock on it would be a lock on an old inode).
pub fn lock_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(".lock");
    path.with_file_name(name)
}

struct FileLock(File);

impl FileLock {
    fn acquire(path: &Path) -> io::Result<FileLock> {
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
fn replace_durably(path: &Path, bytes: &[u8]) -> io::Result<FileStamp> {
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

    fn store_with(content: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("student_age.json");
        fs::write(&path, content).unwrap();
        let store = Store::open(&path).unwrap();
        (dir, store)
    }

    fn put(name: &str, age: u32) -> Change {
        Change::Put {
            name: name.into(),
            age: Age(age),
        }
    }

    #[test]
    fn reads_ages_stored_as_numbers_or_strings() {
        let (_dir, store) = store_with(r#"{"alice": 12, "bob": "13", "carol": " 9 "}"#);
        let students = &store.snapshot().unwrap().students;
        assert_eq!(students["alice"], Age(12));
        assert_eq!(students["bob"], Age(13));
        assert_eq!(students["carol"], Age(9));
    }

    #[test]
    fn refuses_a_malformed_file_naming_it_and_leaves_it_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("student_age.json");
        let content = r#"{"alice": 12, "bob": "thirteen"}"#;
        fs::write(&path, content).unwrap();
        let error = Store::open(&path).unwrap_err().to_string();
        assert!(error.contains(&path.display().to_string()), "{error}");
        assert!(error.contains("thirteen"), "{error}");
        assert!(error.contains("line 1 column"), "{error}");
        assert_eq!(fs::read_to_string(&path).unwrap(), content);
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
        assert_eq!(parse(Path::new("x"), b"{\"a\": 7.0}").unwrap()["a"], Age(7));
    }

    #[test]
    fn a_missing_file_is_refused_with_its_path() {
        let error = Store::open("/nonexistent/student_age.json")
            .unwrap_err()
            .to_string();
        assert!(error.contains("/nonexistent/student_age.json"), "{error}");
    }

    #[tokio::test]
    async fn writes_are_pretty_sorted_and_use_numbers() {
        let (_dir, store) = store_with(r#"{"bob": "13", "alice": 12}"#);
        assert_eq!(
            store.apply(put("carol", 11)).await.unwrap(),
            Outcome::Created
        );
        assert_eq!(
            fs::read_to_string(store.path()).unwrap(),
            "{\n  \"alice\": 12,\n  \"bob\": 13,\n  \"carol\": 11\n}\n"
        );
    }

    #[tokio::test]
    async fn put_then_delete_report_what_they_did() {
        let (_dir, store) = store_with("{}");
        assert_eq!(store.apply(put("zoé", 10)).await.unwrap(), Outcome::Created);
        assert_eq!(store.apply(put("zoé", 11)).await.unwrap(), Outcome::Updated);
        let delete = || Change::Delete {
            name: "zoé".into()
        };
        assert_eq!(store.apply(delete()).await.unwrap(), Outcome::Deleted);
        assert_eq!(store.apply(delete()).await.unwrap(), Outcome::NotFound);
        assert!(store.snapshot().unwrap().students.is_empty());
    }

    #[tokio::test]
    async fn concurrent_writers_lose_nothing() {
        let (_dir, store) = store_with(r#"{"alice": 12}"#);
        let writers: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.apply(put(&format!("s{i}"), i % 100)).await })
            })
            .collect();
        for writer in writers {
            assert_eq!(writer.await.unwrap().unwrap(), Outcome::Created);
        }
        let on_disk = parse(store.path(), &fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(on_disk.len(), 201);
        for i in 0..200 {
            assert_eq!(on_disk[&format!("s{i}")], Age(i % 100));
        }
    }

    #[tokio::test]
    async fn two_stores_on_one_file_see_and_keep_each_others_writes() {
        let (_dir, first) = store_with("{}");
        let second = Store::open(first.path()).unwrap();
        first.apply(put("from-first", 1)).await.unwrap();
        // The second store's cache is stale; its write must not drop the first's.
        second.apply(put("from-second", 2)).await.unwrap();
        let students = &first.snapshot().unwrap().students;
        assert_eq!(students.len(), 2, "{students:?}");
        assert_eq!(second.snapshot().unwrap().students, *students);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing_and_leaves_no_temp_file() {
        let (dir, store) = store_with(r#"{"alice": 12}"#);
        // A directory where the data file should be makes the rename fail.
        let blocked = dir.path().join("blocked.json");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), "x").unwrap();
        let outcome = replace_durably(&blocked, b"{}");
        assert!(outcome.is_err());
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(store.snapshot().unwrap().students.len(), 1);
    }

    #[tokio::test]
    async fn an_unchanged_put_does_not_rewrite_the_file() {
        let (_dir, store) = store_with("{\"alice\": \"12\"}");
        assert_eq!(
            store.apply(put("alice", 12)).await.unwrap(),
            Outcome::Updated
        );
        assert_eq!(
            fs::read_to_string(store.path()).unwrap(),
            "{\"alice\": \"12\"}"
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
