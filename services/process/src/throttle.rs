//! Failed-attempt throttling keyed by client address, for the UI's login
//! form now and the API's basic auth later: after `max_failures` failures
//! within `window`, a client is refused until the window that began with
//! its first failure has passed (the caller answers 429 with
//! `Retry-After`). Memory is bounded: at most `max_clients` addresses are
//! remembered; when full, finished windows are dropped first, then the
//! oldest.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// How many failures, how long a window, how many addresses remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleLimits {
    pub max_failures: u32,
    pub window: Duration,
    pub max_clients: usize,
}

impl Default for ThrottleLimits {
    /// 5 failures per 15 minutes, 10 000 addresses remembered.
    fn default() -> Self {
        ThrottleLimits {
            max_failures: 5,
            window: Duration::from_secs(15 * 60),
            max_clients: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// When the current window began: the first failure in it.
    since: Instant,
    failures: u32,
}

/// Failure counts per client address; share it behind an `Arc`.
#[derive(Debug)]
pub struct Throttle {
    limits: ThrottleLimits,
    entries: Mutex<HashMap<IpAddr, Entry>>,
    /// `entries.len()`, kept beside the map so that the common case, no
    /// failures remembered at all, costs no lock on every request.
    remembered: AtomicUsize,
}

impl Throttle {
    pub fn new(limits: ThrottleLimits) -> Throttle {
        Throttle {
            limits: ThrottleLimits {
                max_failures: limits.max_failures.max(1),
                max_clients: limits.max_clients.max(1),
                ..limits
            },
            entries: Mutex::new(HashMap::new()),
            remembered: AtomicUsize::new(0),
        }
    }

    pub fn limits(&self) -> ThrottleLimits {
        self.limits
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // The map holds only counters: a panic elsewhere cannot break it.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// `Err(retry_after)` when `client` has used up its failures; call it
    /// before checking the attempt.
    pub fn check(&self, client: IpAddr) -> Result<(), Duration> {
        if self.remembered.load(Ordering::Relaxed) == 0 {
            return Ok(());
        }
        self.check_at(client, Instant::now())
    }

    /// Counts one failed attempt by `client`.
    pub fn fail(&self, client: IpAddr) {
        self.fail_at(client, Instant::now());
    }

    /// Forgets `client`'s failures (it got in).
    pub fn succeed(&self, client: IpAddr) {
        if self.remembered.load(Ordering::Relaxed) == 0 {
            return;
        }
        let mut entries = self.lock();
        entries.remove(&client);
        self.remembered.store(entries.len(), Ordering::Relaxed);
    }

    /// How many addresses are remembered now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn check_at(&self, client: IpAddr, now: Instant) -> Result<(), Duration> {
        let mut entries = self.lock();
        let Some(entry) = entries.get(&client).copied() else {
            return Ok(());
        };
        let elapsed = now.saturating_duration_since(entry.since);
        if elapsed >= self.limits.window {
            entries.remove(&client);
            self.remembered.store(entries.len(), Ordering::Relaxed);
            return Ok(());
        }
        if entry.failures >= self.limits.max_failures {
            return Err(self.limits.window - elapsed);
        }
        Ok(())
    }

    fn fail_at(&self, client: IpAddr, now: Instant) {
        let window = self.limits.window;
        let mut entries = self.lock();
        if !entries.contains_key(&client) && entries.len() >= self.limits.max_clients {
            entries.retain(|_, e| now.saturating_duration_since(e.since) < window);
            if entries.len() >= self.limits.max_clients
                && let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, e)| e.since)
                    .map(|(ip, _)| *ip)
            {
                entries.remove(&oldest);
            }
        }
        let entry = entries.entry(client).or_insert(Entry {
            since: now,
            failures: 0,
        });
        if now.saturating_duration_since(entry.since) >= window {
            *entry = Entry {
                since: now,
                failures: 0,
            };
        }
        entry.failures = entry.failures.saturating_add(1);
        self.remembered.store(entries.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    fn throttle(max_failures: u32, max_clients: usize) -> Throttle {
        Throttle::new(ThrottleLimits {
            max_failures,
            window: Duration::from_secs(60),
            max_clients,
        })
    }

    #[test]
    fn the_nth_failure_blocks_until_the_window_ends() {
        let t = throttle(3, 10);
        let start = Instant::now();
        for _ in 0..2 {
            t.fail_at(ip(1), start);
            assert_eq!(t.check_at(ip(1), start), Ok(()));
        }
        t.fail_at(ip(1), start);
        let later = start + Duration::from_secs(20);
        assert_eq!(t.check_at(ip(1), later), Err(Duration::from_secs(40)));
        assert_eq!(
            t.check_at(ip(2), later),
            Ok(()),
            "other clients are not blocked"
        );
        assert_eq!(t.check_at(ip(1), start + Duration::from_secs(60)), Ok(()));
        assert!(t.is_empty(), "a finished window is forgotten");
    }

    #[test]
    fn a_success_forgets_the_failures() {
        let t = throttle(2, 10);
        let now = Instant::now();
        t.fail_at(ip(1), now);
        t.succeed(ip(1));
        t.fail_at(ip(1), now);
        assert_eq!(t.check_at(ip(1), now), Ok(()));
    }

    #[test]
    fn failures_after_the_window_start_a_new_one() {
        let t = throttle(2, 10);
        let start = Instant::now();
        t.fail_at(ip(1), start);
        t.fail_at(ip(1), start + Duration::from_secs(61));
        assert_eq!(t.check_at(ip(1), start + Duration::from_secs(62)), Ok(()));
    }

    #[test]
    fn memory_is_bounded_finished_windows_go_first_then_the_oldest() {
        let t = throttle(1, 3);
        let start = Instant::now();
        t.fail_at(ip(1), start);
        t.fail_at(ip(2), start + Duration::from_secs(30));
        t.fail_at(ip(3), start + Duration::from_secs(40));
        // ip(1)'s window has ended: it makes room.
        let now = start + Duration::from_secs(65);
        t.fail_at(ip(4), now);
        assert_eq!(t.len(), 3);
        assert!(t.check_at(ip(2), now).is_err());
        // Nothing has ended: the oldest, ip(2), makes room.
        t.fail_at(ip(5), now);
        assert_eq!(t.len(), 3);
        assert_eq!(t.check_at(ip(2), now), Ok(()));
        assert!(t.check_at(ip(3), now).is_err());
        assert!(t.check_at(ip(5), now).is_err());
    }
}
