//! The student-ages deployer: builds the stack's images, runs the stack on a
//! Docker daemon (this machine's, or a deploy host's through SSH), checks
//! it, and reports its status.
//!
//! `main.rs` parses the command line; `commands` turns each subcommand into
//! calls to the modules below, which know nothing of clap. ARCHITECTURE.md
//! at the repository root is the map.

pub mod commands;
pub mod progress;
pub mod workspace;

pub use host::{HostFlags, Unverifiable};
pub use images::Platforms;
pub use registry::{Dirty, Latest};

mod backup;
mod checks;
mod config;
mod docker;
mod edge_ctl;
mod engine;
mod errors;
mod host;
mod images;
mod platform;
mod registry;
mod remote;
mod setup;
mod signal;
mod stack;
mod status;
mod swarm;
mod transfer;

pub use engine::Volumes;
