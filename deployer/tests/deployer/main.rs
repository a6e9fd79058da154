//! The deployer's tests, one binary (like ripgrep's `tests/tests.rs`): each
//! module tells one part of the story against the real `deployer` binary,
//! a real Docker daemon and, for `deploy`, a real registry and sshd.
//! `support` holds the harness they share.

mod cli;
mod deploy;
mod errors;
mod jenkinsfile;
mod setup;
mod stack;
mod support;
mod swarm;
