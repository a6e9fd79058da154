//! Signed-in sessions as self-contained signed cookies, so that any
//! frontend container holding the same key ([`super::key`]) accepts them:
//! replacing the container signs nobody out.
//!
//! The cookie's value is `base64url(payload).base64url(HMAC-SHA256)`; the
//! payload (JSON) holds the username, a random 256-bit session id,
//! issued-at and last-seen (milliseconds since the Unix epoch). The
//! session's CSRF token is HMAC(key, "csrf" | session id), so it needs no
//! storage either.
//!
//! A session unused for longer than the idle limit has expired; so has
//! one older than the absolute maximum age, used or not. To record use,
//! the cookie is re-issued with a fresh last-seen when more than a minute
//! (or a quarter of the idle limit, if that is shorter) has passed since
//! the last one.
//!
//! Sign-out clears the cookie in the browser and puts the session id in a
//! small in-memory revocation set, so a copy of the cookie is refused by
//! this process until the session would have reached its maximum age.
//! Another container does not see that set (it is not shared): a copy
//! kept from before sign-out would still work there until it expires.
//! The browser no longer has the cookie, so this only matters for a
//! stolen copy.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use super::csrf::random_hex;
use super::key::SessionKey;

/// How many signed-out sessions are remembered at most.
const MAX_REVOKED: usize = 10_000;
/// How far in the future a timestamp may be (another container's clock)
/// before the cookie is refused.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
/// At most this long between re-issued cookies of a session in use.
const REFRESH_AFTER: Duration = Duration::from_secs(60);
/// The payload's format version.
const VERSION: u8 = 1;

/// The signed-in user of a request, as handlers see it.
#[derive(Debug, Clone)]
pub(crate) struct SignedIn {
    pub(crate) id: String,
    pub(crate) username: String,
    pub(crate) csrf: String,
}

/// What the cookie holds (short field names: it travels with every
/// request).
#[derive(Debug, Serialize, Deserialize)]
struct Payload {
    v: u8,
    /// Username.
    u: String,
    /// Session id.
    s: String,
    /// Issued at, ms since the epoch.
    i: u64,
    /// Last seen, ms since the epoch.
    l: u64,
}

/// What a session cookie turned out to be.
#[derive(Debug)]
pub(crate) enum Lookup {
    /// No cookie.
    None,
    /// A live session; `reissue` is a new cookie value with a fresh
    /// last-seen, to be set on the response.
    Valid {
        signed_in: SignedIn,
        reissue: Option<String>,
    },
    /// A genuine cookie of a session that is idle too long, too old, or
    /// signed out.
    Expired,
    /// Not a cookie this key signed: tampered with, or signed with another
    /// key (a container with another key file, a restart with a random
    /// key).
    Invalid,
}

pub(crate) struct Sessions {
    key: SessionKey,
    idle: Duration,
    max_age: Duration,
    /// Signed-out session ids, and when each would expire anyway (ms).
    revoked: Mutex<HashMap<String, u64>>,
}

fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

fn ms(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

impl Sessions {
    pub(crate) fn new(key: SessionKey, idle: Duration, max_age: Duration) -> Sessions {
        Sessions {
            key,
            idle,
            max_age,
            revoked: Mutex::new(HashMap::new()),
        }
    }

    fn mac(&self) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key.session)
            .expect("HMAC takes a key of any length");
        mac.update(b"student-ages session\0");
        mac
    }

    /// The CSRF token of session `id`.
    fn csrf(&self, id: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key.csrf)
            .expect("HMAC takes a key of any length");
        mac.update(b"csrf\0");
        mac.update(id.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    fn seal(&self, payload: &Payload) -> String {
        let json = serde_json::to_vec(payload).expect("a payload always serialises");
        let mut mac = self.mac();
        mac.update(&json);
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(&json),
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        )
    }

    fn open(&self, cookie: &str) -> Option<Payload> {
        let (body, tag) = cookie.split_once('.')?;
        let json = URL_SAFE_NO_PAD.decode(body).ok()?;
        let tag = URL_SAFE_NO_PAD.decode(tag).ok()?;
        let mut mac = self.mac();
        mac.update(&json);
        mac.verify_slice(&tag).ok()?;
        let payload: Payload = serde_json::from_slice(&json).ok()?;
        (payload.v == VERSION).then_some(payload)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.revoked.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A new session for `username`, and its cookie value.
    pub(crate) fn create(&self, username: &str) -> (SignedIn, String) {
        self.create_at(username, now_ms())
    }

    fn create_at(&self, username: &str, now: u64) -> (SignedIn, String) {
        let id = random_hex(32);
        let cookie = self.seal(&Payload {
            v: VERSION,
            u: username.to_owned(),
            s: id.clone(),
            i: now,
            l: now,
        });
        let signed_in = SignedIn {
            csrf: self.csrf(&id),
            id,
            username: username.to_owned(),
        };
        (signed_in, cookie)
    }

    /// The session a cookie value holds.
    pub(crate) fn lookup(&self, cookie: Option<&str>) -> Lookup {
        self.lookup_at(cookie, now_ms())
    }

    fn lookup_at(&self, cookie: Option<&str>, now: u64) -> Lookup {
        let Some(cookie) = cookie.filter(|c| !c.is_empty()) else {
            return Lookup::None;
        };
        let Some(payload) = self.open(cookie) else {
            return Lookup::Invalid;
        };
        let future = now.saturating_add(ms(CLOCK_SKEW));
        if payload.i > future || payload.l > future || payload.l < payload.i {
            return Lookup::Invalid;
        }
        if now.saturating_sub(payload.i) >= ms(self.max_age)
            || now.saturating_sub(payload.l) >= ms(self.idle)
            || self.lock().contains_key(&payload.s)
        {
            return Lookup::Expired;
        }
        let refresh_after = ms(REFRESH_AFTER.min(self.idle / 4));
        let reissue = (now.saturating_sub(payload.l) > refresh_after).then(|| {
            self.seal(&Payload {
                l: now,
                u: payload.u.clone(),
                s: payload.s.clone(),
                ..payload
            })
        });
        Lookup::Valid {
            signed_in: SignedIn {
                csrf: self.csrf(&payload.s),
                id: payload.s,
                username: payload.u,
            },
            reissue,
        }
    }

    /// Ends a session (sign-out): this process refuses its cookie from now
    /// on; see the module's doc for other containers.
    pub(crate) fn revoke(&self, id: &str) {
        self.revoke_at(id, now_ms());
    }

    fn revoke_at(&self, id: &str, now: u64) {
        let mut revoked = self.lock();
        // Nothing issued before now - max_age is still valid anyway.
        let until = now.saturating_add(ms(self.max_age));
        if revoked.len() >= MAX_REVOKED {
            revoked.retain(|_, expires| *expires > now);
        }
        if revoked.len() >= MAX_REVOKED
            && let Some(soonest) = revoked
                .iter()
                .min_by_key(|(_, expires)| **expires)
                .map(|(id, _)| id.clone())
        {
            revoked.remove(&soonest);
        }
        revoked.insert(id.to_owned(), until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE: u64 = 60_000;

    fn sessions(key: &SessionKey) -> Sessions {
        Sessions::new(
            key.clone(),
            Duration::from_secs(600),
            Duration::from_secs(3600),
        )
    }

    fn valid(lookup: Lookup) -> (SignedIn, Option<String>) {
        match lookup {
            Lookup::Valid { signed_in, reissue } => (signed_in, reissue),
            other => panic!("not valid: {other:?}"),
        }
    }

    #[test]
    fn a_cookie_names_its_user_and_session_and_the_csrf_token_follows() {
        let key = SessionKey::random();
        let a = sessions(&key);
        let start = 1_700_000_000_000;
        let (made, cookie) = a.create_at("teacher", start);
        assert_eq!(made.id.len(), 64);
        assert_ne!(made.id, made.csrf);
        // Another process with the same key: the same session and token.
        let b = sessions(&key);
        let (seen, reissue) = valid(b.lookup_at(Some(&cookie), start + 1000));
        assert_eq!(
            (seen.id, seen.username, seen.csrf),
            (made.id, made.username, made.csrf)
        );
        assert!(reissue.is_none(), "used within the minute: no new cookie");
        // Another key: refused.
        let other = sessions(&SessionKey::random());
        assert!(matches!(
            other.lookup_at(Some(&cookie), start + 1000),
            Lookup::Invalid
        ));
    }

    #[test]
    fn a_session_lives_while_used_and_expires_when_idle() {
        let sessions = sessions(&SessionKey::random());
        let start = 1_700_000_000_000;
        let (_, mut cookie) = sessions.create_at("teacher", start);
        // Used every 5 minutes, it lives on past the 10-minute idle limit,
        // with a new cookie each time.
        for step in 1..5 {
            let at = start + 5 * MINUTE * step;
            let (_, reissue) = valid(sessions.lookup_at(Some(&cookie), at));
            cookie = reissue.expect("re-issued after more than a minute");
        }
        let last = start + 20 * MINUTE;
        assert!(matches!(
            sessions.lookup_at(Some(&cookie), last + 10 * MINUTE),
            Lookup::Expired
        ));
        assert!(matches!(
            sessions.lookup_at(Some(&cookie), last + 10 * MINUTE - 1),
            Lookup::Valid { .. }
        ));
    }

    #[test]
    fn a_session_ends_at_its_maximum_age_even_in_use() {
        let sessions = sessions(&SessionKey::random());
        let start = 1_700_000_000_000;
        let (_, mut cookie) = sessions.create_at("teacher", start);
        for step in 1..12 {
            let (_, reissue) = valid(sessions.lookup_at(Some(&cookie), start + 5 * MINUTE * step));
            cookie = reissue.unwrap();
        }
        assert!(matches!(
            sessions.lookup_at(Some(&cookie), start + 60 * MINUTE),
            Lookup::Expired
        ));
    }

    #[test]
    fn tampered_and_malformed_cookies_are_invalid_and_missing_ones_none() {
        let sessions = sessions(&SessionKey::random());
        let now = 1_700_000_000_000;
        let (_, cookie) = sessions.create_at("teacher", now);
        let (body, tag) = cookie.split_once('.').unwrap();
        // Claim another user, or a later last-seen, with the old tag.
        let mut payload: Payload =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(body).unwrap()).unwrap();
        payload.u = "admin".into();
        let forged = format!(
            "{}.{tag}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap())
        );
        let mut flipped = cookie.clone().into_bytes();
        let last = flipped.len() - 1;
        flipped[last] = if flipped[last] == b'A' { b'B' } else { b'A' };
        for bad in [
            forged.as_str(),
            std::str::from_utf8(&flipped).unwrap(),
            body,
            "0123",
            "a.b",
            "!!.??",
        ] {
            assert!(
                matches!(sessions.lookup_at(Some(bad), now), Lookup::Invalid),
                "{bad}"
            );
        }
        assert!(matches!(sessions.lookup_at(None, now), Lookup::None));
        assert!(matches!(sessions.lookup_at(Some(""), now), Lookup::None));
    }

    #[test]
    fn timestamps_from_the_future_are_refused() {
        let sessions = sessions(&SessionKey::random());
        let now = 1_700_000_000_000;
        let (_, cookie) = sessions.create_at("teacher", now + 5 * MINUTE);
        assert!(matches!(
            sessions.lookup_at(Some(&cookie), now),
            Lookup::Invalid
        ));
        let (_, cookie) = sessions.create_at("teacher", now + 30_000);
        assert!(matches!(
            sessions.lookup_at(Some(&cookie), now),
            Lookup::Valid { .. }
        ));
    }

    #[test]
    fn a_revoked_session_is_refused_here_and_the_set_is_bounded() {
        let sessions = sessions(&SessionKey::random());
        let now = 1_700_000_000_000;
        let (s, cookie) = sessions.create_at("teacher", now);
        sessions.revoke_at(&s.id, now + 1);
        assert!(matches!(
            sessions.lookup_at(Some(&cookie), now + 2),
            Lookup::Expired
        ));
        for n in 0..MAX_REVOKED + 5 {
            sessions.revoke_at(&format!("id{n}"), now + 10);
        }
        assert_eq!(sessions.lock().len(), MAX_REVOKED);
        // Entries past the maximum age are dropped when the set is full.
        sessions.revoke_at("late", now + 10 + 3_600_001);
        assert_eq!(sessions.lock().len(), 1);
    }
}
