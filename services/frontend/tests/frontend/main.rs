//! The web UI's tests, in one binary. The API and the UI are both served
//! in this process (the API from `student_ages_testkit`), each on its own
//! loopback port, with a temporary copy of the data.
//!
//! - `pages`: the UI as a browser without JavaScript sees it: listing,
//!   filtering, escaping, the forms and their redirects, field errors, and
//!   the pages shown when the API is down.
//! - `class`: a real class: names in reading order, sort links, pages of
//!   a class of 1,000, the CSV export of the list shown, the CSV import
//!   and its preview (a bad row writes nothing), the class at a glance.
//! - `api_link`: how the UI reaches the API: over a unix socket, and a read
//!   retried once after a dropped connection (a write never is).
//! - `login`: sign-in: no session means no list, the session cookie, CSRF
//!   refusals, wrong passwords and the throttle, sign-out, expiry, and the
//!   public read-only list.
//! - `shared_key`: two UIs sharing a key file (as during a deploy) share
//!   sessions and sign-in forms; tampered cookies are refused; a session
//!   in use is kept alive by re-issued cookies.
//! - `binary`: the real `frontend` binary's `healthcheck` subcommand.
//! - `browser`: Debian's headless Chromium, through chromedriver, sees
//!   nothing before signing in, signs in, adds a student, signs out; lists
//!   a class of 37 in reading order, sorts it from the column headers,
//!   shows its chart, passes a contrast check; adds from the top of a
//!   1,000-student page; exports, edits and re-imports a CSV (a bad row
//!   first: nothing written, its line named). Saves screenshots under
//!   `target/screenshots/` (`frontend.png`, `frontend-mobile.png` and
//!   `frontend-import.png` are the ones in `docs/`).

mod api_link;
mod binary;
mod browser;
mod class;
mod helpers;
mod login;
mod pages;
mod shared_key;
