//! The process around a student-ages server: what `api` and `frontend` both
//! do before and after they serve.
//!
//! Both binaries take the same command line ([`ServerArgs`]: `serve`, the
//! default, or `healthcheck`, with `LISTEN_ADDR`), read the API credentials
//! from the environment (never from flags, so they stay out of `ps`), log
//! with tracing, stop cleanly on SIGTERM (they are PID 1 in a scratch image,
//! where `docker stop` sends it), and answer `<binary> healthcheck` for
//! Docker's `HEALTHCHECK`, since a scratch image has no curl. [`run_server`]
//! does all of that around the one thing each binary brings: its server,
//! which [`serve`] runs with the connection limits both share.
//!
//! Also what guards a sign-in, for the UI now and the API later: who may
//! sign in ([`LoginUser`]), which address a request came from
//! ([`TrustedProxies`]), and a per-address limit on failures ([`Throttle`]).

mod cli;
mod client_addr;
mod credentials;
mod healthcheck;
mod logging;
mod server;
mod signals;
mod throttle;

pub use cli::{ServerArgs, Shutdown, parse_args, run_server};
pub use client_addr::TrustedProxies;
pub use credentials::{ApiCredentials, LoginUser, api_credentials_from_env, ui_login_from_env};
pub use logging::log_request;
/// To read the password of [`ApiCredentials`]: `password.expose_secret()`.
pub use secrecy::{ExposeSecret, SecretString};
pub use server::{ServerLimits, serve};
pub use throttle::{Throttle, ThrottleLimits};

use healthcheck::healthcheck;
use logging::init_logging;
use signals::shutdown_signal;
