//! Signed-in sessions, kept in memory: a random 256-bit id (the cookie's
//! value) names the user and the session's CSRF token. A session unused
//! for longer than the idle limit has expired; expired sessions are
//! dropped when seen and whenever the store is full, and at most
//! `MAX_SESSIONS` are kept (the least recently used goes first). A restart
//! signs everyone out.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::csrf::random_hex;

/// How many sessions are kept at most.
const MAX_SESSIONS: usize = 10_000;

/// The signed-in user of a request, as handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) csrf: String,
}

struct Session {
    username: String,
    csrf: String,
    last_seen: Instant,
}

/// What a session cookie turned out to be.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// No cookie.
    None,
    /// A live session, now marked as used.
    Valid(SignedIn),
    /// A cookie naming a session that expired or is unknown (the server
    /// restarted, or it was dropped for room).
    Expired,
}

pub(crate) struct Sessions {
    idle: Duration,
    max: usize,
    map: Mutex<HashMap<String, Session>>,
}

impl Sessions {
    pub(crate) fn new(idle: Duration) -> Sessions {
        Sessions::with_max(idle, MAX_SESSIONS)
    }

    fn with_max(idle: Duration, max: usize) -> Sessions {
        Sessions {
            idle,
            max: max.max(1),
            map: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.map.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `username`.
    pub(crate) fn create(&self, username: &str) -> SignedIn {
        self.create_at(username, Instant::now())
    }

    fn create_at(&self, username: &str, now: Instant) -> SignedIn {
        let signed_in = SignedIn {
            id: random_hex(32),
            username: username.to_owned(),
            csrf: random_hex(32),
        };
        let mut map = self.lock();
        if map.len() >= self.max {
            let idle = self.idle;
            map.retain(|_, s| now.saturating_duration_since(s.last_seen) < idle);
            if map.len() >= self.max
                && let Some(oldest) = map
                    .iter()
                    .min_by_key(|(_, s)| s.last_seen)
                    .map(|(id, _)| id.clone())
            {
                map.remove(&oldest);
            }
        }
        map.insert(
            signed_in.id.clone(),
            Session {
                username: signed_in.username.clone(),
                csrf: signed_in.csrf.clone(),
                last_seen: now,
            },
        );
        signed_in
    }

    /// The session a cookie value names.
    pub(crate) fn lookup(&self, id: Option<&str>) -> Lookup {
        self.lookup_at(id, Instant::now())
    }

    fn lookup_at(&self, id: Option<&str>, now: Instant) -> Lookup {
        let Some(id) = id.filter(|id| !id.is_empty()) else {
            return Lookup::None;
        };
        let mut map = self.lock();
        let Some(session) = map.get_mut(id) else {
            return Lookup::Expired;
        };
        if now.saturating_duration_since(session.last_seen) >= self.idle {
            map.remove(id);
            return Lookup::Expired;
        }
        session.last_seen = now;
        Lookup::Valid(SignedIn {
            id: id.to_owned(),
            username: session.username.clone(),
            csrf: session.csrf.clone(),
        })
    }

    /// Ends a session (sign-out).
    pub(crate) fn remove(&self, id: &str) {
        self.lock().remove(id);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_lives_while_used_and_expires_when_idle() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let start = Instant::now();
        let s = sessions.create_at("teacher", start);
        assert_eq!(s.id.len(), 64);
        assert_ne!(s.id, s.csrf);
        // Used every 50 s, it lives on past the first minute.
        for step in 1..4 {
            let at = start + Duration::from_secs(50 * step);
            assert!(
                matches!(sessions.lookup_at(Some(&s.id), at), Lookup::Valid(v) if v.username == "teacher")
            );
        }
        let idle = start + Duration::from_secs(150 + 60);
        assert!(matches!(
            sessions.lookup_at(Some(&s.id), idle),
            Lookup::Expired
        ));
        assert_eq!(sessions.len(), 0, "dropped when seen expired");
    }

    #[test]
    fn unknown_and_missing_cookies_differ() {
        let sessions = Sessions::new(Duration::from_secs(60));
        assert!(matches!(sessions.lookup(None), Lookup::None));
        assert!(matches!(sessions.lookup(Some("")), Lookup::None));
        assert!(matches!(sessions.lookup(Some("0123")), Lookup::Expired));
    }

    #[test]
    fn a_removed_session_is_gone() {
        let sessions = Sessions::new(Duration::from_secs(60));
        let s = sessions.create("teacher");
        sessions.remove(&s.id);
        assert!(matches!(sessions.lookup(Some(&s.id)), Lookup::Expired));
    }

    #[test]
    fn the_store_is_bounded_expired_first_then_least_recently_used() {
        let sessions = Sessions::with_max(Duration::from_secs(60), 2);
        let start = Instant::now();
        let a = sessions.create_at("a", start);
        let b = sessions.create_at("b", start + Duration::from_secs(10));
        let _ = sessions.lookup_at(Some(&a.id), start + Duration::from_secs(20));
        let c = sessions.create_at("c", start + Duration::from_secs(30));
        assert_eq!(sessions.len(), 2);
        let now = start + Duration::from_secs(31);
        assert!(
            matches!(sessions.lookup_at(Some(&b.id), now), Lookup::Expired),
            "b was least recently used"
        );
        assert!(matches!(
            sessions.lookup_at(Some(&a.id), now),
            Lookup::Valid(_)
        ));
        assert!(matches!(
            sessions.lookup_at(Some(&c.id), now),
            Lookup::Valid(_)
        ));
    }
}
