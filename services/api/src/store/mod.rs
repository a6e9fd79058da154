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
//!   process replaced the file. Each version of the data is an immutable
//!   [`Snapshot`], which also keeps its JSON rendering once made, so the
//!   list read serializes once per version, not once per request.
//! - A malformed file is refused with its path and the parse error, and is
//!   never overwritten.
//!
//! `file` holds the on-disk format and the durable replace; `writer` the
//! thread that commits changes.

mod file;
mod writer;

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock, mpsc};
use std::thread;

use student_ages_rules::{Age, StudentName};
use tokio::sync::oneshot;

use file::FileStamp;
pub use file::Students;

/// One requested change to the data. Only valid names and ages get here:
/// the rules were applied where the request came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the student or change their age.
    Put { name: StudentName, age: Age },
    /// Remove the student.
    Delete { name: StudentName },
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

/// The students as last read from or written to disk: one version of the
/// data, never changed once made.
#[derive(Debug)]
pub struct Snapshot {
    pub students: Students,
    stamp: FileStamp,
    json: OnceLock<Vec<u8>>,
}

impl Snapshot {
    fn new(students: Students, stamp: FileStamp) -> Snapshot {
        Snapshot {
            students,
            stamp,
            json: OnceLock::new(),
        }
    }

    fn read(path: &Path) -> Result<Snapshot, StoreError> {
        let (students, stamp) = file::read(path)?;
        Ok(Snapshot::new(students, stamp))
    }

    /// The students as one compact JSON object, `{"alice":12,...}`, made on
    /// first use and kept: a write makes a new snapshot, so it cannot go
    /// stale.
    pub fn json(&self) -> &[u8] {
        self.json.get_or_init(|| {
            serde_json::to_vec(&self.students)
                .expect("a map of strings to integers always serializes")
        })
    }
}

/// What the handles and the writer thread share.
struct Shared {
    path: PathBuf,
    current: RwLock<Arc<Snapshot>>,
}

impl Shared {
    fn current(&self) -> Arc<Snapshot> {
        // A poisoned lock only means a reader panicked while cloning an Arc;
        // the snapshot itself is immutable and still valid.
        Arc::clone(&self.current.read().unwrap_or_else(|e| e.into_inner()))
    }

    fn publish(&self, snapshot: &Arc<Snapshot>) {
        let mut current = self.current.write().unwrap_or_else(|e| e.into_inner());
        *current = Arc::clone(snapshot);
    }
}

/// Handle to the data file; cheap to clone, shared by every handler.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    writer: mpsc::Sender<writer::Request>,
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
        let snapshot = Snapshot::read(&path)?;
        let shared = Arc::new(Shared {
            path,
            current: RwLock::new(Arc::new(snapshot)),
        });
        let (sender, requests) = mpsc::channel();
        let writer_shared = Arc::clone(&shared);
        thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer::write_loop(&writer_shared, &requests))
            .map_err(|source| StoreError::Write {
                path: shared.path.clone(),
                source,
            })?;
        Ok(Store {
            shared,
            writer: sender,
        })
    }

    /// The data file this store serves.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The current students, re-read first if another process replaced the
    /// file since we last looked.
    pub fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let cached = self.shared.current();
        if FileStamp::at(&self.shared.path)? == cached.stamp {
            return Ok(cached);
        }
        let fresh = Arc::new(Snapshot::read(&self.shared.path)?);
        self.shared.publish(&fresh);
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
            .send(writer::Request { change, reply })
            .map_err(|_| Arc::new(StoreError::Closed))?;
        outcome.await.map_err(|_| Arc::new(StoreError::Closed))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use file::StoredAge;
    use std::fs;

    fn store_with(content: &str) -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("student_age.json");
        fs::write(&path, content).unwrap();
        let store = Store::open(&path).unwrap();
        (dir, store)
    }

    fn name(name: &str) -> StudentName {
        StudentName::parse(name).unwrap()
    }

    fn put(student: &str, age: u32) -> Change {
        Change::Put {
            name: name(student),
            age: Age::new(age.into()).unwrap(),
        }
    }

    #[test]
    fn reads_ages_stored_as_numbers_or_strings() {
        let (_dir, store) = store_with(r#"{"alice": 12, "bob": "13", "carol": " 9 "}"#);
        let students = &store.snapshot().unwrap().students;
        assert_eq!(students["alice"], StoredAge(12));
        assert_eq!(students["bob"], StoredAge(13));
        assert_eq!(students["carol"], StoredAge(9));
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
        let delete = || Change::Delete { name: name("zoé") };
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
        let on_disk = file::parse(store.path(), &fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(on_disk.len(), 201);
        for i in 0..200 {
            assert_eq!(on_disk[&format!("s{i}")], StoredAge(i % 100));
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
        let outcome = file::replace_durably(&blocked, b"{}");
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

    #[tokio::test]
    async fn the_json_of_a_version_is_made_once_and_a_write_makes_a_new_one() {
        let (_dir, store) = store_with(r#"{"bob": "13", "alice": 12}"#);
        let before = store.snapshot().unwrap();
        assert_eq!(before.json(), br#"{"alice":12,"bob":13}"#);
        assert!(std::ptr::eq(
            before.json(),
            store.snapshot().unwrap().json()
        ));
        store.apply(put("carol", 11)).await.unwrap();
        assert_eq!(
            store.snapshot().unwrap().json(),
            br#"{"alice":12,"bob":13,"carol":11}"#
        );
        assert_eq!(before.json(), br#"{"alice":12,"bob":13}"#);
    }
}
