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
//!   A failure before the rename changed nothing ([`StoreError::Write`]);
//!   after it, the change is in place, in memory too, and only its
//!   durability is unconfirmed ([`StoreError::NotDurable`]).
//! - One writer thread serializes writes within the process and batches
//!   them (group commit): whatever arrived while the previous batch was
//!   being committed goes into the next one, so throughput does not
//!   collapse to one fsync per request.
//! - An advisory lock on a sibling `<file>.lock` serializes writers across
//!   processes (two API containers may share the volume during a deploy).
//!   Under that lock the writer re-reads the file if another process
//!   changed it, so neither process loses the other's updates.
//! - Reads are served from memory, after a `stat` that notices when another
//!   process replaced the file. No file I/O waits on an async worker for
//!   long: the writer has its own thread; a re-read, the health check, and
//!   any `stat` that overlaps another run on the blocking pool with a
//!   timeout; only one `stat` at a time runs inline (it is a microsecond,
//!   and a hop to another thread would cost the list read more than that),
//!   and once one has hung for [`STUCK_AFTER`] every read answers
//!   [`StoreError::Stuck`] at once instead of piling up behind it. Each version of the data is an immutable
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
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, RwLock, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use student_ages_rules::{Age, StudentName};
use tokio::sync::oneshot;

use file::{FileLock, FileStamp};
pub use file::{Students, parse_students};

/// How long a request's file I/O may take before the file counts as stuck.
/// Generous: a busy disk (image pulls beside the volume, a journal commit)
/// can stall a `stat` for a second or more, and that is slow, not broken.
pub const STUCK_AFTER: Duration = Duration::from_secs(5);

/// How long the health check's file I/O may take: short enough that
/// `/healthz` answers within Docker's 3 s healthcheck timeout.
pub const HEALTH_STUCK_AFTER: Duration = Duration::from_secs(2);

/// One requested change to the data. Only valid names and ages get here:
/// the rules were applied where the request came in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Create the student or change their age.
    Put { name: StudentName, age: Age },
    /// Remove the student.
    Delete { name: StudentName },
    /// Create or change every student in `rows` (each name once), in one
    /// durable write: all of them or none. Students not in `rows` are
    /// left as they are.
    Import { rows: Vec<ImportRow> },
    /// Make the students exactly these (a restore), in one durable write.
    Replace { students: Students },
}

/// One row of an import: the student, and the line of the file it came
/// from (for the report).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportRow {
    pub line: u64,
    pub name: StudentName,
    pub age: Age,
}

/// What an import does (or, planned against a snapshot, would do) to the
/// students. Rows keep the file's order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportSummary {
    /// New students: (line, name, age).
    pub added: Vec<(u64, String, u32)>,
    /// Students whose age changes: (line, name, age, previous age).
    pub changed: Vec<(u64, String, u32, u32)>,
    /// Rows that match what is stored already.
    pub unchanged: usize,
    /// Students not in the file, left as they are.
    pub not_in_file: usize,
}

/// What importing `rows` into `students` does, without doing it.
pub fn plan_import(students: &Students, rows: &[ImportRow]) -> ImportSummary {
    let mut summary = ImportSummary::default();
    for row in rows {
        let age = row.age.years();
        match students.get(row.name.as_str()) {
            None => summary
                .added
                .push((row.line, row.name.as_str().to_owned(), age)),
            Some(stored) if stored.0 != age => {
                summary
                    .changed
                    .push((row.line, row.name.as_str().to_owned(), age, stored.0));
            }
            Some(_) => summary.unchanged += 1,
        }
    }
    let in_file = summary.changed.len() + summary.unchanged;
    summary.not_in_file = students.len() - in_file;
    summary
}

/// What a [`Change`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Deleted,
    /// A delete of a student who does not exist: nothing was written.
    NotFound,
    /// An import, with what it did.
    Imported(ImportSummary),
    /// A replacement: how many students there were, and are now.
    Replaced {
        before: usize,
        after: usize,
    },
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
    #[error("cannot write the data file {path} (nothing was changed): {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error(
        "the data file {path} is read-only (mode {mode:04o}), so nothing was changed; \
         make it writable (chmod u+w) to allow changes"
    )]
    ReadOnly { path: PathBuf, mode: u32 },
    #[error(
        "cannot take the writers' lock file {path} (nothing was changed): {source}; \
         the data file's directory must let the API create and write it"
    )]
    Lock { path: PathBuf, source: io::Error },
    #[error(
        "the change was written to {path} but the disk did not confirm it is durable \
         (directory fsync failed: {source}); it is in place, check the data volume"
    )]
    NotDurable { path: PathBuf, source: io::Error },
    #[error(
        "the data file {path} did not answer within {} s; check the data volume",
        STUCK_AFTER.as_secs()
    )]
    Stuck { path: PathBuf },
    #[error("the store is shutting down")]
    Closed,
}

impl StoreError {
    /// Whether the change asked for is in place despite the error.
    pub fn change_is_in_place(&self) -> bool {
        matches!(self, StoreError::NotDurable { .. })
    }
}

/// The students as last read from or written to disk: one version of the
/// data, never changed once made.
#[derive(Debug)]
pub struct Snapshot {
    pub students: Students,
    stamp: FileStamp,
    json: OnceLock<Vec<u8>>,
    csv: OnceLock<Vec<u8>>,
}

impl Snapshot {
    fn new(students: Students, stamp: FileStamp) -> Snapshot {
        Snapshot {
            students,
            stamp,
            json: OnceLock::new(),
            csv: OnceLock::new(),
        }
    }

    fn read(path: &Path) -> Result<Snapshot, StoreError> {
        let (students, stamp) = file::read(path)?;
        Ok(Snapshot::new(students, stamp))
    }

    /// The students in reading order (`student_ages_rules::order`), the
    /// order every list the API answers is in.
    pub fn in_reading_order(&self) -> Vec<(&str, u32)> {
        let mut students: Vec<(&str, u32)> = self
            .students
            .iter()
            .map(|(name, age)| (name.as_str(), age.0))
            .collect();
        student_ages_rules::order::sort_by_reading_order(&mut students, |s| s.0);
        students
    }

    /// The students as one compact JSON object, `{"alice":12,...}`, in
    /// reading order, made on first use and kept: a write makes a new
    /// snapshot, so it cannot go stale.
    pub fn json(&self) -> &[u8] {
        self.json.get_or_init(|| {
            let mut bytes = Vec::with_capacity(self.students.len() * 16 + 2);
            let mut serializer = serde_json::Serializer::new(&mut bytes);
            serde::Serializer::collect_map(&mut serializer, self.in_reading_order())
                .expect("a map of strings to integers always serializes");
            bytes
        })
    }

    /// The students as CSV, `name,age` with a header, UTF-8, in reading
    /// order; made on first use and kept, like [`Snapshot::json`].
    pub fn csv(&self) -> &[u8] {
        self.csv.get_or_init(|| {
            let mut writer =
                csv::Writer::from_writer(Vec::with_capacity(self.students.len() * 16 + 9));
            writer
                .write_record(["name", "age"])
                .and_then(|()| {
                    self.in_reading_order()
                        .into_iter()
                        .try_for_each(|(name, age)| {
                            writer.write_record([name, age.to_string().as_str()])
                        })
                })
                .expect("writing CSV to memory cannot fail");
            writer
                .into_inner()
                .expect("writing CSV to memory cannot fail")
        })
    }
}

/// What the handles and the writer thread share.
struct Shared {
    path: PathBuf,
    current: RwLock<Arc<Snapshot>>,
    /// The one inline `stat`; see the module doc.
    inline_stat: Gate,
    /// A re-read in progress; one at a time waits on a stuck file.
    reload: Gate,
}

/// One at a time, and since when: 0 when free, else the entry time in ms
/// since `epoch`, plus one. One atomic, so a reader never pairs "busy" with
/// an earlier holder's entry time.
struct Gate {
    entered: AtomicU64,
    epoch: Instant,
}

impl Gate {
    fn new() -> Gate {
        Gate {
            entered: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Enters if free; leaves when the guard drops.
    fn try_enter(&self) -> Option<GateGuard<'_>> {
        self.entered
            .compare_exchange(0, self.now_ms() + 1, Ordering::Acquire, Ordering::Relaxed)
            .ok()?;
        Some(GateGuard(self))
    }

    /// Whether whoever is inside has been there longer than [`STUCK_AFTER`].
    fn stuck(&self) -> bool {
        match self.entered.load(Ordering::Acquire) {
            0 => false,
            entered => self.now_ms().saturating_sub(entered - 1) > STUCK_AFTER.as_millis() as u64,
        }
    }
}

struct GateGuard<'a>(&'a Gate);

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        self.0.entered.store(0, Ordering::Release);
    }
}

/// Runs blocking file I/O on the blocking pool; a stuck file is
/// [`StoreError::Stuck`] after `limit` (the thread stays blocked until the
/// file answers, the caller does not).
async fn off_worker<T: Send + 'static>(
    path: &Path,
    limit: Duration,
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let stuck = || StoreError::Stuck {
        path: path.to_owned(),
    };
    match tokio::time::timeout(limit, tokio::task::spawn_blocking(work)).await {
        Ok(Ok(result)) => result,
        Ok(Err(_panicked)) => Err(StoreError::Closed),
        Err(_elapsed) => Err(stuck()),
    }
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
    /// malformed, removes temp files a killed writer left (when the
    /// directory is writable), and starts the writer thread.
    pub fn open(path: impl Into<PathBuf>) -> Result<Store, StoreError> {
        let path = path.into();
        let snapshot = Snapshot::read(&path)?;
        // A read-only volume still serves reads (`/healthz` says degraded).
        if let Err(error) = remove_stale_temp_files(&path) {
            tracing::warn!(%error, "cannot look for temp files a killed writer left");
        }
        let shared = Arc::new(Shared {
            path,
            current: RwLock::new(Arc::new(snapshot)),
            inline_stat: Gate::new(),
            reload: Gate::new(),
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
    pub async fn snapshot(&self) -> Result<Arc<Snapshot>, StoreError> {
        let cached = self.shared.current();
        if self.stamp_now().await? == cached.stamp {
            return Ok(cached);
        }
        if self.shared.reload.stuck() {
            return Err(StoreError::Stuck {
                path: self.shared.path.clone(),
            });
        }
        let shared = Arc::clone(&self.shared);
        off_worker(&self.shared.path, STUCK_AFTER, move || {
            let _reloading = shared.reload.try_enter();
            let fresh = Arc::new(Snapshot::read(&shared.path)?);
            shared.publish(&fresh);
            Ok(fresh)
        })
        .await
    }

    /// The data file's stamp now: inline when no other `stat` runs, on the
    /// blocking pool when one does, [`StoreError::Stuck`] at once when one
    /// has hung.
    async fn stamp_now(&self) -> Result<FileStamp, StoreError> {
        let path = &self.shared.path;
        if let Some(_inline) = self.shared.inline_stat.try_enter() {
            return FileStamp::at(path);
        }
        if self.shared.inline_stat.stuck() {
            return Err(StoreError::Stuck { path: path.clone() });
        }
        let owned = path.clone();
        off_worker(path, STUCK_AFTER, move || FileStamp::at(&owned)).await
    }

    /// What `/healthz` reports: whether the data file can be read and
    /// parsed, and whether a write could replace it, within
    /// [`HEALTH_STUCK_AFTER`].
    pub async fn health(&self) -> Health {
        let shared = Arc::clone(&self.shared);
        let check = move || Ok(health::check(&shared));
        match off_worker(&self.shared.path, HEALTH_STUCK_AFTER, check).await {
            Ok(health) => health,
            Err(StoreError::Stuck { .. }) => Health::Unavailable(health::Reason::DataFileStuck),
            Err(_) => Health::Unavailable(health::Reason::DataFileUnreadable),
        }
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

/// Removes the temp files a killed writer left beside the data file (or
/// the file its symlink leads to), under the writers' lock so no live
/// writer's temp file is taken.
fn remove_stale_temp_files(path: &Path) -> Result<(), StoreError> {
    let target = file::write_target(path).map_err(|source| StoreError::Read {
        path: path.to_owned(),
        source,
    })?;
    let lock_path = file::lock_path(&target);
    let _lock = FileLock::acquire(&lock_path).map_err(|source| StoreError::Lock {
        path: lock_path.clone(),
        source,
    })?;
    let removed = file::remove_stale_temp_files(&target).map_err(|source| StoreError::Write {
        path: target.clone(),
        source,
    })?;
    if removed > 0 {
        tracing::warn!(
            removed,
            "removed temp files an interrupted write left behind"
        );
    }
    Ok(())
}

pub use health::{Health, Reason};

mod health {
    //! What `/healthz` checks, in words a probe can act on: a reason code,
    //! never a path, an OS error's text or the file's content.

    use std::fs::{self, File};
    use std::io;
    use std::os::unix::fs::PermissionsExt;

    use super::{Shared, Snapshot, StoreError, file};

    /// The store's health.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Health {
        /// Reads and writes work.
        Ok,
        /// Reads work; writes would fail, for this reason.
        Degraded(Reason),
        /// Reads fail, for this reason.
        Unavailable(Reason),
    }

    /// Why the store is not fully healthy.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub enum Reason {
        DataFileMissing,
        DataFileUnreadable,
        DataFileInvalid,
        DataFileStuck,
        DataFileReadOnly,
        DataDirNotWritable,
        LockFileNotWritable,
    }

    impl Reason {
        /// The code `/healthz` answers.
        pub fn code(self) -> &'static str {
            match self {
                Reason::DataFileMissing => "data_file_missing",
                Reason::DataFileUnreadable => "data_file_unreadable",
                Reason::DataFileInvalid => "data_file_invalid",
                Reason::DataFileStuck => "data_file_stuck",
                Reason::DataFileReadOnly => "data_file_read_only",
                Reason::DataDirNotWritable => "data_dir_not_writable",
                Reason::LockFileNotWritable => "lock_file_not_writable",
            }
        }
    }

    fn unreadable(error: &io::Error) -> Reason {
        match error.kind() {
            io::ErrorKind::NotFound => Reason::DataFileMissing,
            _ => Reason::DataFileUnreadable,
        }
    }

    /// Blocking: run it off the async workers.
    pub(super) fn check(shared: &Shared) -> Health {
        let path = &shared.path;
        let read = match File::open(path).and_then(|f| f.metadata().map(|m| (f, m))) {
            Ok(read) => read,
            Err(error) => return Health::Unavailable(unreadable(&error)),
        };
        if file::FileStamp::of(&read.1) != shared.current().stamp {
            match Snapshot::read(path) {
                Ok(fresh) => shared.publish(&std::sync::Arc::new(fresh)),
                Err(StoreError::Malformed { .. }) => {
                    return Health::Unavailable(Reason::DataFileInvalid);
                }
                Err(StoreError::Read { source, .. }) => {
                    return Health::Unavailable(unreadable(&source));
                }
                Err(_) => return Health::Unavailable(Reason::DataFileUnreadable),
            }
        }
        if read.1.permissions().mode() & 0o200 == 0 {
            return Health::Degraded(Reason::DataFileReadOnly);
        }
        let Ok(target) = file::write_target(path) else {
            return Health::Unavailable(Reason::DataFileMissing);
        };
        let dir = match target.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
            _ => ".".into(),
        };
        // A real attempt, as a write would make it: permissions alone do
        // not tell (root, read-only mounts).
        let mut prefix = std::ffi::OsString::from(".");
        prefix.push(target.file_name().unwrap_or_default());
        prefix.push(".tmp-health-");
        if tempfile::Builder::new()
            .prefix(&prefix)
            .tempfile_in(&dir)
            .is_err()
        {
            return Health::Degraded(Reason::DataDirNotWritable);
        }
        let lock = file::lock_path(&target);
        if fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock)
            .is_err()
        {
            return Health::Degraded(Reason::LockFileNotWritable);
        }
        Health::Ok
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

    #[tokio::test]
    async fn reads_ages_stored_as_numbers_or_strings() {
        let (_dir, store) = store_with(r#"{"alice": 12, "bob": "13", "carol": " 9 "}"#);
        let students = &store.snapshot().await.unwrap().students;
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
        assert!(store.snapshot().await.unwrap().students.is_empty());
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
        let students = &first.snapshot().await.unwrap().students;
        assert_eq!(students.len(), 2, "{students:?}");
        assert_eq!(second.snapshot().await.unwrap().students, *students);
    }

    #[tokio::test]
    async fn a_failed_write_changes_nothing_and_leaves_no_temp_file() {
        let (dir, store) = store_with(r#"{"alice": 12}"#);
        // A directory where the data file should be makes the rename fail.
        let blocked = dir.path().join("blocked.json");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("keep"), "x").unwrap();
        let outcome = file::replace_durably(&blocked, b"{}");
        assert!(matches!(outcome, Err(file::ReplaceError::NotWritten(_))));
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
        assert_eq!(store.snapshot().await.unwrap().students.len(), 1);
    }

    fn rows(rows: &[(&str, u32)]) -> Vec<ImportRow> {
        rows.iter()
            .zip(2..)
            .map(|((student, age), line)| ImportRow {
                line,
                name: name(student),
                age: Age::new((*age).into()).unwrap(),
            })
            .collect()
    }

    #[tokio::test]
    async fn an_import_is_one_write_and_says_what_it_did() {
        let (_dir, store) = store_with(r#"{"alice": 12, "bob": 13, "carol": 11}"#);
        let import = rows(&[
            ("alice", 12),
            ("bob", 14),
            ("Student 10", 9),
            ("Student 2", 8),
        ]);
        let planned = plan_import(&store.snapshot().await.unwrap().students, &import);
        let Outcome::Imported(done) = store.apply(Change::Import { rows: import }).await.unwrap()
        else {
            panic!("not an import")
        };
        assert_eq!(planned, done);
        assert_eq!(
            done.added,
            [
                (4, "Student 10".to_owned(), 9),
                (5, "Student 2".to_owned(), 8)
            ]
        );
        assert_eq!(done.changed, [(3, "bob".to_owned(), 14, 13)]);
        assert_eq!((done.unchanged, done.not_in_file), (1, 1));
        // The file keeps its byte order; the JSON and CSV read in reading order.
        assert_eq!(
            fs::read_to_string(store.path()).unwrap(),
            "{\n  \"Student 10\": 9,\n  \"Student 2\": 8,\n  \"alice\": 12,\n  \"bob\": 14,\n  \"carol\": 11\n}\n"
        );
        let snapshot = store.snapshot().await.unwrap();
        assert_eq!(
            snapshot.json(),
            br#"{"alice":12,"bob":14,"carol":11,"Student 2":8,"Student 10":9}"#
        );
        assert_eq!(
            snapshot.csv(),
            b"name,age\nalice,12\nbob,14\ncarol,11\nStudent 2,8\nStudent 10,9\n"
        );
    }

    #[tokio::test]
    async fn a_failed_import_writes_none_of_it() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = store_with(r#"{"alice": 12}"#);
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o444)).unwrap();
        let error = store
            .apply(Change::Import {
                rows: rows(&[("bob", 1), ("alice", 2)]),
            })
            .await
            .unwrap_err();
        assert!(matches!(*error, StoreError::ReadOnly { .. }), "{error}");
        assert_eq!(
            fs::read_to_string(store.path()).unwrap(),
            r#"{"alice": 12}"#
        );
        assert_eq!(store.snapshot().await.unwrap().students.len(), 1);
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
        let before = store.snapshot().await.unwrap();
        assert_eq!(before.json(), br#"{"alice":12,"bob":13}"#);
        assert!(std::ptr::eq(
            before.json(),
            store.snapshot().await.unwrap().json()
        ));
        store.apply(put("carol", 11)).await.unwrap();
        assert_eq!(
            store.snapshot().await.unwrap().json(),
            br#"{"alice":12,"bob":13,"carol":11}"#
        );
        assert_eq!(before.json(), br#"{"alice":12,"bob":13}"#);
    }

    #[tokio::test]
    async fn a_change_renamed_into_place_is_never_reported_as_nothing_changed() {
        let (dir, store) = store_with(r#"{"alice": 12}"#);
        file::tests::fail_dir_sync(&fs::canonicalize(dir.path()).unwrap());
        let error = store.apply(put("bob", 13)).await.unwrap_err();
        assert!(matches!(*error, StoreError::NotDurable { .. }), "{error}");
        assert!(error.change_is_in_place());
        let message = error.to_string();
        assert!(message.contains("was written"), "{message}");
        assert!(!message.contains("nothing was changed"), "{message}");
        // On disk and in memory alike.
        let on_disk = file::parse(store.path(), &fs::read(store.path()).unwrap()).unwrap();
        assert_eq!(on_disk["bob"], StoredAge(13));
        assert_eq!(store.shared.current().students, on_disk);
        assert_eq!(store.snapshot().await.unwrap().students, on_disk);
    }

    #[tokio::test]
    async fn writes_keep_the_files_mode_and_refuse_a_read_only_file() {
        use std::os::unix::fs::PermissionsExt;
        let (_dir, store) = store_with(r#"{"alice": 12}"#);
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o600)).unwrap();
        store.apply(put("bob", 13)).await.unwrap();
        let mode = fs::metadata(store.path()).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode, 0o600);
        fs::set_permissions(store.path(), fs::Permissions::from_mode(0o444)).unwrap();
        let before = fs::read_to_string(store.path()).unwrap();
        let error = store.apply(put("carol", 11)).await.unwrap_err();
        assert!(
            matches!(*error, StoreError::ReadOnly { mode: 0o444, .. }),
            "{error}"
        );
        assert!(error.to_string().contains("read-only"), "{error}");
        assert_eq!(fs::read_to_string(store.path()).unwrap(), before);
        assert!(
            !store
                .snapshot()
                .await
                .unwrap()
                .students
                .contains_key("carol")
        );
    }

    #[tokio::test]
    async fn a_symlinked_data_file_is_followed_and_the_link_kept() {
        let dir = tempfile::tempdir().unwrap();
        let real_dir = dir.path().join("real");
        fs::create_dir(&real_dir).unwrap();
        let target = real_dir.join("ages.json");
        fs::write(&target, r#"{"alice": 12}"#).unwrap();
        let link = dir.path().join("student_age.json");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let store = Store::open(&link).unwrap();
        store.apply(put("bob", 13)).await.unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        let on_disk = file::parse(&target, &fs::read(&target).unwrap()).unwrap();
        assert_eq!(on_disk["bob"], StoredAge(13));
        // The temp file and the lock were beside the target.
        assert!(real_dir.join("ages.json.lock").exists());
        assert!(!dir.path().join("student_age.json.lock").exists());
    }

    #[test]
    fn stale_temp_files_are_removed_at_open_and_others_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("student_age.json");
        fs::write(&path, "{}").unwrap();
        let stale = dir.path().join(".student_age.json.tmp-4242-0");
        let other = dir.path().join(".other.json.tmp-1");
        fs::write(&stale, "{").unwrap();
        fs::write(&other, "{").unwrap();
        let _store = Store::open(&path).unwrap();
        assert!(!stale.exists());
        assert!(other.exists());
    }

    #[tokio::test]
    async fn a_lock_file_that_cannot_be_taken_is_named() {
        let (dir, store) = store_with("{}");
        let lock = dir.path().join("student_age.json.lock");
        fs::remove_file(&lock).unwrap();
        fs::create_dir(&lock).unwrap();
        let error = store.apply(put("bob", 13)).await.unwrap_err().to_string();
        assert!(error.contains("student_age.json.lock"), "{error}");
        assert!(error.contains("lock"), "{error}");
    }

    #[test]
    fn entries_the_rules_refuse_and_duplicates_are_refused_at_load_naming_them() {
        let cases = [
            (r#"{"alice": 12, "a/b": 1}"#, "\"a/b\""),
            (r#"{"alice": 151}"#, "\"alice\", 151"),
            (
                r#"{"alice": 1, "bob": 2, "alice": 3}"#,
                "\"alice\" appears twice",
            ),
            ("{\"zoe\\u0301\": 1}", "NFC"),
            ("{\"a\\u200bb\": 1}", "U+200B"),
        ];
        for (content, why) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("student_age.json");
            fs::write(&path, content).unwrap();
            let error = Store::open(&path).unwrap_err().to_string();
            assert!(error.contains(why), "{content}: {error}");
            assert!(error.contains(&path.display().to_string()), "{error}");
            assert!(error.contains("line 1"), "{error}");
            assert_eq!(fs::read_to_string(&path).unwrap(), content);
        }
    }
}
