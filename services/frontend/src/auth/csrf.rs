//! CSRF tokens, so another site cannot make a signed-in browser send our
//! forms. Signed in, every form carries the session's own token (an HMAC of the session id, made in `session`). The sign-in form has
//! no session yet: it carries an HMAC of a random nonce that sits in an
//! HttpOnly cookie (a signed double-submit), keyed with the shared session
//! key (`key`), so a form rendered by one frontend container is accepted
//! by another, and a cookie planted from elsewhere without the matching
//! token is useless. Every comparison is constant time.

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::key::SessionKey;

/// `bytes` random bytes from the OS's CSPRNG, hex-encoded.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    // Without the OS's random numbers no session or token is safe: there
    // is nothing sensible to go on with.
    getrandom::fill(&mut buffer).expect("the operating system's random number generator failed");
    hex::encode(buffer)
}

/// Whether the token sent with a form is the expected one, in constant
/// time (for equal lengths; a length mismatch is refused at once).
pub(crate) fn tokens_match(expected: &str, sent: &str) -> bool {
    !expected.is_empty() && bool::from(expected.as_bytes().ct_eq(sent.as_bytes()))
}

/// Makes and checks the sign-in form's tokens.
pub(crate) struct LoginTokens {
    key: [u8; 32],
}

impl LoginTokens {
    /// With the login-form key derived from the session key: any
    /// container with the same key accepts the form.
    pub(crate) fn new(key: &SessionKey) -> LoginTokens {
        LoginTokens { key: key.login }
    }

    fn mac(&self, nonce: &str) -> Hmac<Sha256> {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes a key of any length");
        mac.update(b"student-ages login form\0");
        mac.update(nonce.as_bytes());
        mac
    }

    /// A (cookie nonce, form token) pair: for the nonce the browser
    /// already holds, if it sent one, so that every sign-in page it has
    /// open (or re-fetched behind its back, say after a redirected
    /// `/favicon.ico`) stays valid; else for a new one.
    pub(crate) fn issue(&self, held: Option<&str>) -> (String, String) {
        let nonce = match held {
            Some(nonce) if nonce.len() == 64 && nonce.bytes().all(|b| b.is_ascii_hexdigit()) => {
                nonce.to_owned()
            }
            _ => random_hex(32),
        };
        let token = hex::encode(self.mac(&nonce).finalize().into_bytes());
        (nonce, token)
    }

    /// Whether `token` (from the form) was made for `nonce` (from the cookie).
    pub(crate) fn check(&self, nonce: Option<&str>, token: &str) -> bool {
        let (Some(nonce), Ok(token)) = (nonce, hex::decode(token)) else {
            return false;
        };
        !nonce.is_empty() && self.mac(nonce).verify_slice(&token).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn random_tokens_are_256_bits_and_differ() {
        let (a, b) = (random_hex(32), random_hex(32));
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
    }

    #[test]
    fn a_session_token_matches_only_itself() {
        let token = random_hex(32);
        assert!(tokens_match(&token, &token.clone()));
        assert!(!tokens_match(&token, ""));
        assert!(!tokens_match(&token, &token[..63]));
        assert!(!tokens_match(&token, &random_hex(32)));
        assert!(!tokens_match("", ""), "no expected token never matches");
    }

    #[test]
    fn a_login_token_is_valid_only_with_its_nonce_and_key() {
        let key = SessionKey::random();
        let tokens = LoginTokens::new(&key);
        let (nonce, token) = tokens.issue(None);
        assert_eq!(nonce.len(), 64);
        assert!(tokens.check(Some(&nonce), &token));
        assert_eq!(
            tokens.issue(Some(&nonce)),
            (nonce.clone(), token.clone()),
            "a held nonce is kept"
        );
        assert_ne!(
            tokens.issue(Some("short")).0,
            "short",
            "a malformed one is not"
        );
        assert!(!tokens.check(None, &token));
        assert!(!tokens.check(Some(&nonce), ""));
        assert!(!tokens.check(Some(&nonce), "not hex"));
        let (other_nonce, _) = tokens.issue(None);
        assert!(!tokens.check(Some(&other_nonce), &token));
        assert!(
            LoginTokens::new(&key.clone()).check(Some(&nonce), &token),
            "another process with the same key accepts it"
        );
        assert!(
            !LoginTokens::new(&SessionKey::random()).check(Some(&nonce), &token),
            "another key refuses it"
        );
    }
}
