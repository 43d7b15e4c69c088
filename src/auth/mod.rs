//! Client authentication: the users pgsplit accepts and their SCRAM-SHA-256 verifiers.

pub mod passthrough;
pub mod scram;

use std::collections::HashMap;

pub use passthrough::{Passthrough, ScramKeys};
pub use scram::{ScramError, ScramExchange, Verifier};

/// What a client proves its password against: a SCRAM verifier and/or an md5 verifier (a password in clear gives
/// both; a stored verifier one of them).
#[derive(Clone)]
pub struct Secret {
    /// For SCRAM-SHA-256.
    pub scram: Option<Verifier>,
    /// For md5 (`md5` + 32 hex digits).
    pub md5: Option<String>,
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(scram: {}, md5: {})", self.scram.is_some(), self.md5.is_some())
    }
}

impl Secret {
    /// From a password in clear.
    pub fn from_clear(user: &str, password: &str) -> Secret {
        Secret { scram: Some(Verifier::from_password(password)), md5: Some(passthrough::md5_verifier(user, password)) }
    }

    /// From what a server stores (`rolpassword`, or a configured verifier): a SCRAM or md5 verifier, else a password
    /// in clear. A malformed SCRAM verifier is none.
    pub fn from_stored(user: &str, stored: &str) -> Option<Secret> {
        if stored.starts_with("SCRAM-SHA-256$") {
            return Verifier::parse(stored).ok().map(|v| Secret { scram: Some(v), md5: None });
        }
        if is_verifier(stored) {
            return Some(Secret { scram: None, md5: Some(stored.to_ascii_lowercase()) });
        }
        Some(Secret::from_clear(user, stored))
    }
}

/// Whether a configured password is a stored verifier (SCRAM-SHA-256 or md5), not the password in clear.
pub fn is_verifier(password: &str) -> bool {
    password.starts_with("SCRAM-SHA-256$") || (password.len() == 35 && password.starts_with("md5"))
}

/// The users that may connect to pgsplit, with verifiers computed once at load.
pub struct UserStore {
    /// user name → its secret (from the configured plaintext password or a stored verifier).
    users: HashMap<String, Secret>,
    /// Random per process: the mock salt of an unknown name is derived from it and the name, as PostgreSQL's
    /// `scram_mock_salt` derives it from its cluster's mock nonce, so it is stable and looks like a real one.
    mock_secret: [u8; 32],
    /// Random keys of the mock verifier (no password matches them).
    mock_keys: [u8; 64],
}

impl std::fmt::Debug for UserStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserStore").field("users", &self.users.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl UserStore {
    /// Builds verifiers for each (name, password). A password already in PostgreSQL's
    /// `SCRAM-SHA-256$iter:salt$stored:server` form is used as is.
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self, ScramError> {
        let mut map = HashMap::new();
        for (name, password) in users {
            // A malformed SCRAM verifier is none: an error here, not a user nobody can log in as.
            let secret = Secret::from_stored(name, password).ok_or(ScramError::BadVerifier)?;
            map.insert(name.to_owned(), secret);
        }
        let mut mock_secret = [0u8; 32];
        let mut mock_keys = [0u8; 64];
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut mock_secret);
        rand::RngCore::fill_bytes(&mut rand::rng(), &mut mock_keys);
        Ok(UserStore { users: map, mock_secret, mock_keys })
    }

    /// The verifier to challenge `user` with: theirs, or for a name that may not connect a mock one with a salt
    /// stable for that name, at the same cost (no key derivation), so the exchange tells nothing about which names
    /// exist. Only a known user's exchange can succeed.
    pub fn challenge(&self, user: &str) -> (Verifier, bool) {
        match self.users.get(user).and_then(|s| s.scram.as_ref()) {
            Some(v) => (v.clone(), true),
            None => (self.mock(user), false),
        }
    }

    /// The mock verifier of a name that may not connect (`challenge`).
    pub fn mock(&self, user: &str) -> Verifier {
        use sha2::Digest;
        let mut h = sha2::Sha256::new();
        h.update(self.mock_secret);
        h.update(user.as_bytes());
        let salt = h.finalize().get(..16).map(<[u8]>::to_vec).unwrap_or_default();
        Verifier::mock(salt, &self.mock_keys)
    }

    /// The SCRAM verifier for `user`, if that user may connect with SCRAM.
    pub fn get(&self, user: &str) -> Option<&Verifier> {
        self.users.get(user).and_then(|s| s.scram.as_ref())
    }

    /// The configured secret of `user`.
    pub fn secret(&self, user: &str) -> Option<&Secret> {
        self.users.get(user)
    }
}
