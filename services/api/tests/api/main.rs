//! The API's tests, in one binary.
//!
//! - `contract`: every route, status and error message as a client sees
//!   it, against the API served in this process on a loopback port.
//! - `csv`: the CSV export and import: preview, bad rows by line with
//!   nothing written, a 5 MB file, the size limit, bodies that are not CSV.
//! - `binary`: what only the real `api` binary can show: its environment
//!   variables, exit codes, the `healthcheck` subcommand, SIGTERM.
//! - `durability`: acknowledged writes survive concurrency, a second
//!   process on the same file, and a SIGKILL mid-load.
//!
//! `helpers` holds what they share beyond `student_ages_testkit`.

mod binary;
mod contract;
mod csv;
mod durability;
mod helpers;
