//! Client authentication: the users pgsplit accepts and their SCRAM-SHA-256 verifiers.

pub mod scram;

use std::collections::HashMap;

pub use scram::{ScramError, ScramExchange, Verifier};

/// The users that may connect to pgsplit, with verifiers computed once at load.
#[derive(Debug, Default)]
pub struct UserStore {
    /// user name → SCRAM verifier (from the configured plaintext password or a stored verifier).
    users: HashMap<String, Verifier>,
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
        Ok(UserStore { users: map })
    }

    /// The verifier for `user`, if that user may connect.
    pub fn get(&self, user: &str) -> Option<&Verifier> {
        self.users.get(user)
    }
}
