//! The student-ages deployer: builds the stack's images, runs the stack on a
//! Docker daemon, checks it, and reports its status.
//!
//! `main.rs` parses the command line; `commands` turns each subcommand into
//! calls to the modules below, which know nothing of clap.

pub mod checks;
pub mod commands;
pub mod config;
pub mod docker;
pub mod engine;
pub mod host;
pub mod images;
pub mod progress;
pub mod registry;
pub mod remote;
pub mod setup;
pub mod stack;
pub mod status;
