//! Client authentication: the users pgsplit accepts and their SCRAM-SHA-256 verifiers.

pub mod scram;

use std::collections::HashMap;

pub use scram::{ScramError, ScramExchange, Verifier};

/// Whether a configured password is a stored verifier (SCRAM-SHA-256 or md5), not the password in clear.
pub fn is_verifier(password: &str) -> bool {
    password.starts_with("SCRAM-SHA-256$") || (password.len() == 35 && password.starts_with("md5"))
}

/// The users that may connect to pgsplit, with verifiers computed once at load.
pub struct UserStore {
    /// user name → SCRAM verifier (from the configured plaintext password or a stored verifier).
    users: HashMap<String, Verifier>,
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
            let v = if password.starts_with("SCRAM-SHA-256$") {
                Verifier::parse(password)?
            } else {
                Verifier::from_password(password)
            };
            map.insert(name.to_owned(), v);
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
        match self.users.get(user) {
            Some(v) => (v.clone(), true),
            None => {
                use sha2::Digest;
                let mut h = sha2::Sha256::new();
                h.update(self.mock_secret);
                h.update(user.as_bytes());
                let salt = h.finalize()[..16].to_vec();
                (Verifier::mock(salt, &self.mock_keys), false)
            }
        }
    }

    /// The verifier for `user`, if that user may connect.
    pub fn get(&self, user: &str) -> Option<&Verifier> {
        self.users.get(user)
    }
}
