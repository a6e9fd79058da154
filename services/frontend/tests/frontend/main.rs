//! The web UI's tests, in one binary. The API and the UI are both served
//! in this process (the API from `student_ages_testkit`), each on its own
//! loopback port, with a temporary copy of the data.
//!
//! - `pages`: the UI as a browser without JavaScript sees it: listing,
//!   filtering, escaping, the forms and their redirects, field errors, and
//!   the pages shown when the API is down.
//! - `api_link`: how the UI reaches the API: over a unix socket, and a read
//!   retried once after a dropped connection (a write never is).
//! - `binary`: the real `frontend` binary's `healthcheck` subcommand.
//! - `browser`: Debian's headless Chromium, through chromedriver, adds a
//!   student with the form; saves screenshots under `target/screenshots/`.

mod api_link;
mod binary;
mod browser;
mod helpers;
mod pages;
