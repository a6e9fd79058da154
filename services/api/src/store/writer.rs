//! The writer thread: the only code that changes the data file. It takes
//! requests in batches (group commit), applies them under the
//! cross-process lock to the newest version of the file, and makes the
//! result durable before anyone is told it happened.

use std::sync::{Arc, mpsc};

use tokio::sync::oneshot;

use super::file::{self, FileLock, FileStamp, ReplaceError};
use super::{Change, Outcome, Shared, Snapshot, StoreError, Students, plan_import};

/// The largest number of changes committed in one fsync cycle.
const MAX_BATCH: usize = 4096;

/// One change waiting for the writer, and where to send what it did.
pub(super) struct Request {
    pub(super) change: Change,
    pub(super) reply: oneshot::Sender<Result<Outcome, Arc<StoreError>>>,
}

/// Commits batches until every [`Store`](super::Store) handle is dropped and
/// the queue is drained.
pub(super) fn write_loop(shared: &Shared, requests: &mpsc::Receiver<Request>) {
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
                if error.change_is_in_place() {
                    tracing::error!(%error, changes = changes.len(), "write in place, durability unconfirmed");
                } else {
                    tracing::error!(%error, changes = changes.len(), "write failed; nothing was changed");
                }
                let error = Arc::new(error);
                for request in batch {
                    let _ = request.reply.send(Err(Arc::clone(&error)));
                }
            }
        }
    }
}

/// Applies `changes` in order under the cross-process lock and makes the
/// result durable. Either every change in the batch is on disk or none is;
/// with [`StoreError::NotDurable`] every change is in place (in memory
/// too) and only its durability is unconfirmed.
fn commit(shared: &Shared, changes: &[&Change]) -> Result<Vec<Outcome>, StoreError> {
    let path = &shared.path;
    let write_err = |source| StoreError::Write {
        path: path.clone(),
        source,
    };
    // A symlinked data file is followed: the lock and the temp file sit
    // beside the file it leads to, which is what gets replaced.
    let target = file::write_target(path).map_err(|source| StoreError::Read {
        path: path.clone(),
        source,
    })?;
    let lock_path = file::lock_path(&target);
    let _lock = FileLock::acquire(&lock_path).map_err(|source| StoreError::Lock {
        path: lock_path.clone(),
        source,
    })?;

    let cached = shared.current();
    // Another process may have written since we last read: start from its
    // version, never from our stale copy.
    let base = if FileStamp::at(path)? == cached.stamp {
        cached
    } else {
        Arc::new(Snapshot::read(path)?)
    };

    let mut students = base.students.clone();
    let outcomes: Vec<Outcome> = changes
        .iter()
        .map(|change| apply_change(&mut students, change))
        .collect();

    if students == base.students {
        shared.publish(&base);
        return Ok(outcomes);
    }
    match file::replace_durably(&target, &file::render(&students)) {
        Ok(stamp) => {
            shared.publish(&Arc::new(Snapshot::new(students, stamp)));
            Ok(outcomes)
        }
        Err(ReplaceError::NotDurable { stamp, source }) => {
            shared.publish(&Arc::new(Snapshot::new(students, stamp)));
            Err(StoreError::NotDurable {
                path: path.clone(),
                source,
            })
        }
        Err(ReplaceError::ReadOnly { mode }) => {
            shared.publish(&base);
            Err(StoreError::ReadOnly {
                path: path.clone(),
                mode,
            })
        }
        Err(ReplaceError::NotWritten(source)) => {
            shared.publish(&base);
            Err(write_err(source))
        }
    }
}

fn apply_change(students: &mut Students, change: &Change) -> Outcome {
    match change {
        Change::Put { name, age } => {
            let age = file::StoredAge(age.years());
            match students.insert(name.as_str().to_owned(), age) {
                None => Outcome::Created,
                Some(_) => Outcome::Updated,
            }
        }
        Change::Delete { name } => match students.remove(name.as_str()) {
            Some(_) => Outcome::Deleted,
            None => Outcome::NotFound,
        },
        Change::Import { rows } => {
            // Planned against the version it is applied to, so the summary
            // is what happened, whatever was written since a preview.
            let summary = plan_import(students, rows);
            for row in rows {
                students.insert(
                    row.name.as_str().to_owned(),
                    file::StoredAge(row.age.years()),
                );
            }
            Outcome::Imported(summary)
        }
        Change::Replace { students: new } => {
            let before = students.len();
            students.clone_from(new);
            Outcome::Replaced {
                before,
                after: students.len(),
            }
        }
    }
}
