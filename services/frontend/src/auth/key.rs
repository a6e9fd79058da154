//! The key that signs session cookies, CSRF tokens and the sign-in form's
//! token. Every frontend container that holds the same key accepts what
//! another one issued, so a zero-downtime replacement (a new container
//! beside the old one, traffic switched, the old one stopped) signs
//! nobody out and refuses no open sign-in form.
//!
//! Where it comes from ([`resolve`]): `UI_SESSION_KEY` (base64, say from a
//! secret); else the file `UI_SESSION_KEY_FILE`; else
//! `/var/lib/frontend/session.key` when that directory exists and is
//! writable (a volume shared by the old and the new container); else a
//! random key for this process only, and sessions do not survive it.
//!
//! A missing key file is created atomically, mode 0600: the new key is
//! written and synced to a temporary file in the same directory, which is
//! then hard-linked to the final name. A hard link fails when the name
//! exists, so when two containers race, exactly one key wins and the
//! loser reads it; nobody ever reads a half-written file.
//!
//! The key is never logged: only a short fingerprint (a MAC of a fixed
//! label), so operators can see that two containers share it.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use super::csrf::random_hex;

/// The directory whose `session.key` is used by default, if it exists and
/// is writable.
pub const DEFAULT_KEY_DIR: &str = "/var/lib/frontend";
/// The key file's name there.
pub const DEFAULT_KEY_FILE: &str = "session.key";
/// The fewest key bytes accepted.
const MIN_KEY_BYTES: usize = 32;
/// How to make a key, for the error messages.
const MAKE_ONE: &str = "make one with `head -c 32 /dev/urandom | base64`";

/// Why no key could be had. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error(
        "UI_SESSION_KEY and UI_SESSION_KEY_FILE are both set: set only one (the key, base64, or \
         the file holding it)"
    )]
    BothSet,
    #[error("UI_SESSION_KEY is not base64: set it to 32 or more random bytes, base64; {MAKE_ONE}")]
    NotBase64,
    #[error(
        "{origin} holds {len} bytes; a session key needs at least {MIN_KEY_BYTES} random bytes \
         (raw or base64): {MAKE_ONE}{hint}"
    )]
    TooShort {
        origin: String,
        len: usize,
        hint: &'static str,
    },
    #[error(
        "cannot {action} the session key file {}: {source}; check that the directory exists \
         and that this user (the image runs as uid 65532) may write it, or set \
         UI_SESSION_KEY_FILE to another file",
        path.display()
    )]
    Io {
        action: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// The secret behind sessions and form tokens: three keys derived from
/// one master key, one per use, so a MAC made for one can never pass as
/// another. `Debug` shows only the fingerprint.
#[derive(Clone)]
pub struct SessionKey {
    pub(crate) session: [u8; 32],
    pub(crate) csrf: [u8; 32],
    pub(crate) login: [u8; 32],
    fingerprint: String,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

fn derive(master: &[u8], label: &str) -> [u8; 32] {
    let mut mac =
        <Hmac<Sha256> as KeyInit>::new_from_slice(master).expect("HMAC takes a key of any length");
    mac.update(b"student-ages frontend key\0");
    mac.update(label.as_bytes());
    mac.finalize().into_bytes().into()
}

impl SessionKey {
    /// From a master key of at least 32 bytes.
    pub fn from_bytes(master: &[u8]) -> Result<SessionKey, KeyError> {
        if master.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                origin: "the session key".into(),
                len: master.len(),
                hint: "",
            });
        }
        Ok(SessionKey::derived(master))
    }

    fn derived(master: &[u8]) -> SessionKey {
        SessionKey {
            session: derive(master, "session cookie"),
            csrf: derive(master, "csrf"),
            login: derive(master, "login form"),
            fingerprint: hex::encode(&derive(master, "fingerprint")[..4]),
        }
    }

    /// A random key, for this process only: sessions and sign-in forms do
    /// not survive a restart, nor move to another container.
    pub fn random() -> SessionKey {
        let mut master = [0u8; 32];
        getrandom::fill(&mut master)
            .expect("the operating system's random number generator failed");
        SessionKey::derived(&master)
    }

    /// From base64 (standard or URL-safe, padded or not), as
    /// `UI_SESSION_KEY` holds it.
    pub fn from_base64(text: &str) -> Result<SessionKey, KeyError> {
        let master = decode_base64(text.trim()).ok_or(KeyError::NotBase64)?;
        if master.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort {
                origin: "UI_SESSION_KEY".into(),
                len: master.len(),
                hint: "",
            });
        }
        Ok(SessionKey::derived(&master))
    }

    /// Reads the key file at `path`, or creates it (mode 0600, atomically;
    /// see the module's doc) if there is none. Returns whether it was
    /// created here.
    pub fn load_or_create(path: &Path) -> Result<(SessionKey, bool), KeyError> {
        if let Some(key) = read_key_file(path)? {
            return Ok((key, false));
        }
        let dir = match path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map_or_else(|| "session.key".into(), |n| n.to_string_lossy());
        let temporary = dir.join(format!(".{name}.{}.tmp", random_hex(8)));
        let mut master = [0u8; 32];
        getrandom::fill(&mut master)
            .expect("the operating system's random number generator failed");
        let written = write_new(&temporary, STANDARD.encode(master).as_bytes());
        let linked = written.and_then(|()| fs::hard_link(&temporary, path));
        // The temporary name goes whatever happened; the final name, if
        // linked, keeps the file.
        let _ = fs::remove_file(&temporary);
        match linked {
            Ok(()) => {
                // The new name outlives a crash only once the directory is
                // on disk too; a failure here costs at most that.
                if let Ok(dir) = fs::File::open(dir) {
                    let _ = dir.sync_all();
                }
                Ok((SessionKey::derived(&master), true))
            }
            // Another container won the race: its key is the key.
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {
                match read_key_file(path)? {
                    Some(key) => Ok((key, false)),
                    None => Err(KeyError::Io {
                        action: "read",
                        path: path.to_owned(),
                        source: io::Error::new(
                            io::ErrorKind::NotFound,
                            "it vanished right after another process created it",
                        ),
                    }),
                }
            }
            Err(source) => Err(KeyError::Io {
                action: "create",
                path: path.to_owned(),
                source,
            }),
        }
    }

    /// A short, non-secret name for the key: equal in two containers when
    /// they share the key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
}

/// Writes `contents` to a new file (refusing an existing one) with mode
/// 0600, synced to disk.
fn write_new(path: &Path, contents: &[u8]) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(contents)?;
    file.write_all(b"\n")?;
    file.sync_all()
}

fn decode_base64(text: &str) -> Option<Vec<u8>> {
    [STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD]
        .iter()
        .find_map(|engine| engine.decode(text).ok())
}

/// The key in a file: base64 text if it decodes to 32 or more bytes, else
/// the raw bytes. `None` if there is no such file.
fn read_key_file(path: &Path) -> Result<Option<SessionKey>, KeyError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(source) => {
            return Err(KeyError::Io {
                action: "read",
                path: path.to_owned(),
                source,
            });
        }
    };
    let decoded = std::str::from_utf8(&bytes)
        .ok()
        .and_then(|text| decode_base64(text.trim()))
        .filter(|master| master.len() >= MIN_KEY_BYTES);
    match decoded {
        Some(master) => Ok(Some(SessionKey::derived(&master))),
        None if bytes.len() >= MIN_KEY_BYTES => Ok(Some(SessionKey::derived(&bytes))),
        None => Err(KeyError::TooShort {
            origin: format!("the session key file {}", path.display()),
            len: bytes.len(),
            hint: "; or delete the file to have a new key made (everyone signed in is then \
                   signed out)",
        }),
    }
}

/// Where the key in use came from, for the start-up log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `UI_SESSION_KEY`.
    Environment,
    /// A key file, read or (`created`) made here.
    File { path: PathBuf, created: bool },
    /// Random, for this process only, and why.
    Random { why: String },
}

/// Picks the key: `UI_SESSION_KEY` (`inline`), else `UI_SESSION_KEY_FILE`
/// (`file`, read or created), else `session.key` in `default_dir` (read if
/// present; created when the directory exists and is writable), else a
/// random key. Errors with the first two, or with a default key file that
/// exists but cannot be read or is too short, are fatal: falling back
/// would silently sign everyone out at the next deploy.
pub fn resolve(
    inline: Option<&str>,
    file: Option<&Path>,
    default_dir: &Path,
) -> Result<(SessionKey, KeySource), KeyError> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(KeyError::BothSet),
        (Some(text), None) => Ok((SessionKey::from_base64(text)?, KeySource::Environment)),
        (None, Some(path)) => {
            let (key, created) = SessionKey::load_or_create(path)?;
            Ok((
                key,
                KeySource::File {
                    path: path.to_owned(),
                    created,
                },
            ))
        }
        (None, None) => {
            let path = default_dir.join(DEFAULT_KEY_FILE);
            if let Some(key) = read_key_file(&path)? {
                let source = KeySource::File {
                    path,
                    created: false,
                };
                return Ok((key, source));
            }
            if !default_dir.is_dir() {
                let why = format!(
                    "{} does not exist (mount a volume there, or set UI_SESSION_KEY_FILE or \
                     UI_SESSION_KEY)",
                    default_dir.display()
                );
                return Ok((SessionKey::random(), KeySource::Random { why }));
            }
            match SessionKey::load_or_create(&path) {
                Ok((key, created)) => Ok((key, KeySource::File { path, created })),
                Err(KeyError::Io {
                    action: "create",
                    source,
                    ..
                }) => {
                    let why = format!(
                        "{} cannot be written ({source}; the volume there must be writable by \
                         this user, uid 65532 in the image)",
                        default_dir.display()
                    );
                    Ok((SessionKey::random(), KeySource::Random { why }))
                }
                Err(error) => Err(error),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;
    use std::sync::{Arc, Barrier};

    use super::*;

    #[test]
    fn a_created_key_file_is_private_base64_and_read_back() {
        let dir = tempfile::Builder::new()
            .prefix("sa-key-create-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("session.key");
        let (key, created) = SessionKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(STANDARD.decode(text.trim()).unwrap().len(), 32);
        let (again, created) = SessionKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.session, again.session);
        assert_eq!(key.fingerprint(), again.fingerprint());
        assert_eq!(
            fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file is left"
        );
    }

    #[test]
    fn racing_creators_end_with_one_key() {
        let dir = tempfile::Builder::new()
            .prefix("sa-key-race-")
            .tempdir()
            .unwrap();
        let path = dir.path().join("session.key");
        for _ in 0..20 {
            let _ = fs::remove_file(&path);
            let barrier = Arc::new(Barrier::new(8));
            let keys: Vec<_> = (0..8)
                .map(|_| {
                    let (barrier, path) = (Arc::clone(&barrier), path.clone());
                    std::thread::spawn(move || {
                        barrier.wait();
                        SessionKey::load_or_create(&path).unwrap()
                    })
                })
                .collect::<Vec<_>>()
                .into_iter()
                .map(|t| t.join().unwrap())
                .collect();
            assert_eq!(keys.iter().filter(|(_, created)| *created).count(), 1);
            assert!(keys.iter().all(|(k, _)| k.session == keys[0].0.session));
            assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        }
    }

    #[test]
    fn raw_and_base64_files_are_read_and_short_ones_refused() {
        let dir = tempfile::Builder::new()
            .prefix("sa-key-formats-")
            .tempdir()
            .unwrap();
        let raw: Vec<u8> = (0u8..40).map(|b| b.wrapping_mul(97) ^ 0xa5).collect();
        let raw_path = dir.path().join("raw.key");
        fs::write(&raw_path, &raw).unwrap();
        let b64_path = dir.path().join("b64.key");
        fs::write(&b64_path, format!("{}\n", URL_SAFE_NO_PAD.encode(&raw))).unwrap();
        let from_raw = SessionKey::load_or_create(&raw_path).unwrap().0;
        let from_b64 = SessionKey::load_or_create(&b64_path).unwrap().0;
        let direct = SessionKey::from_bytes(&raw).unwrap();
        assert_eq!(from_raw.session, direct.session);
        assert_eq!(from_b64.session, direct.session);
        assert_eq!(
            SessionKey::from_base64(&STANDARD.encode(&raw))
                .unwrap()
                .session,
            direct.session
        );

        let short = dir.path().join("short.key");
        fs::write(&short, "c2hvcnQ=").unwrap();
        let error = SessionKey::load_or_create(&short).unwrap_err().to_string();
        assert!(
            error.contains("at least 32") && error.contains("delete"),
            "{error}"
        );
        assert!(matches!(
            SessionKey::from_base64("not base64!"),
            Err(KeyError::NotBase64)
        ));
        assert!(matches!(
            SessionKey::from_base64(&STANDARD.encode([1u8; 16])),
            Err(KeyError::TooShort { .. })
        ));
    }

    #[test]
    fn derived_keys_differ_and_debug_shows_no_key() {
        let key = SessionKey::random();
        assert_ne!(key.session, key.csrf);
        assert_ne!(key.csrf, key.login);
        let debug = format!("{key:?}");
        assert!(debug.contains(key.fingerprint()), "{debug}");
        assert!(!debug.contains(&hex::encode(key.session)), "{debug}");
        assert_eq!(key.fingerprint().len(), 8);
    }

    #[test]
    fn resolve_prefers_the_environment_then_the_file_then_the_default_dir() {
        let dir = tempfile::Builder::new()
            .prefix("sa-key-resolve-")
            .tempdir()
            .unwrap();
        let inline = STANDARD.encode([7u8; 32]);
        let file = dir.path().join("given.key");
        assert!(matches!(
            resolve(Some(&inline), Some(&file), dir.path()),
            Err(KeyError::BothSet)
        ));
        let (_, source) = resolve(Some(&inline), None, dir.path()).unwrap();
        assert_eq!(source, KeySource::Environment);
        let (_, source) = resolve(None, Some(&file), dir.path()).unwrap();
        assert_eq!(
            source,
            KeySource::File {
                path: file.clone(),
                created: true
            }
        );
        // The default directory: created there, then read.
        let (made, source) = resolve(None, None, dir.path()).unwrap();
        let default = dir.path().join(DEFAULT_KEY_FILE);
        assert_eq!(
            source,
            KeySource::File {
                path: default.clone(),
                created: true
            }
        );
        let (read, _) = resolve(None, None, dir.path()).unwrap();
        assert_eq!(made.session, read.session);
        // No such directory: random, with the reason.
        let (_, source) = resolve(None, None, &dir.path().join("absent")).unwrap();
        assert!(
            matches!(&source, KeySource::Random { why } if why.contains("does not exist")),
            "{source:?}"
        );
    }

    #[test]
    fn a_read_only_default_dir_falls_back_to_a_random_key() {
        let dir = tempfile::Builder::new()
            .prefix("sa-key-readonly-")
            .tempdir()
            .unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o500)).unwrap();
        let probe = dir.path().join("probe");
        let root = fs::write(&probe, b"").is_ok();
        let result = resolve(None, None, dir.path());
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        if root {
            // Root writes anyway: nothing to see here.
            return;
        }
        let (_, source) = result.unwrap();
        assert!(
            matches!(&source, KeySource::Random { why } if why.contains("cannot be written")),
            "{source:?}"
        );
    }
}
