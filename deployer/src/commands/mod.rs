//! One module per subcommand: each turns its options into calls to the
//! modules that do the work (engine, images, registry, host, checks,
//! status) and says what a user needs to know. No command calls another.

pub mod backup;
pub mod build;
pub mod deploy;
pub mod down;
pub mod lock;
pub mod logs;
pub mod push;
pub mod release;
pub mod restore;
pub mod rollback;
pub mod setup;
pub mod status;
pub mod test;
pub mod up;
