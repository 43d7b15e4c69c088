//! Which login a user's server connections use on each target (issue 20, SPEC §5): the user's `server_user` /
//! `role` for that target, else the client's own name when the target has that login role and pgsplit knows the
//! client's password in clear, else the target URL's login. Each login has its own connections within the target's
//! pool, whose `max` holds for all of them together (`backend::shelf`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::Passthrough;
use crate::backend::{Login, LoginId};
use crate::protocol::encode::PgError;
use crate::router::TargetId;

use super::App;
use crate::locks::lock;

/// What the targets said of login roles: (target, role) → whether it exists and may log in. Filled at a user's
/// first transaction on a target, emptied by RELOAD (a role made since is then found).
#[derive(Debug, Default)]
pub(crate) struct LoginRoles(Mutex<HashMap<(TargetId, String), bool>>);

impl LoginRoles {
    fn get(&self, target: TargetId, role: &str) -> Option<bool> {
        lock(&self.0).get(&(target, role.to_owned())).copied()
    }

    fn put(&self, target: TargetId, role: &str, exists: bool) {
        lock(&self.0).insert((target, role.to_owned()), exists);
    }

    /// Forgets every answer (RELOAD).
    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }
}

impl App {
    /// The number of the login `user`'s server connections use on `target` (0: the target URL's login);
    /// `passthrough`: what the client's own login left to log in with in its name (`auth::Passthrough`).
    /// A target that cannot say whether it has the client's role refuses the statement (08006), never falls back
    /// to the URL's login.
    pub async fn login_for(&self, user: &str, target: TargetId, passthrough: Option<&Passthrough>) -> Result<LoginId, PgError> {
        let backend = self.backend(target);
        let url = &backend.spec;
        let own = |password: Option<String>, passthrough: Option<&Passthrough>| Login {
            user: user.to_owned(),
            password,
            role: None,
            passthrough: passthrough.cloned(),
        };
        // The configured login, or the client's own name (`implicit`: only where the target has that role).
        let (login, implicit) = {
            let config = self.config();
            match config.users.iter().find(|u| u.name == user) {
                Some(u) if u.login_on(backend.name()).is_set() => {
                    let wanted = u.login_on(backend.name());
                    let named = wanted.server_user.is_some();
                    let login = Login {
                        user: wanted.server_user.unwrap_or_else(|| url.user.clone()),
                        password: if named { wanted.server_password } else { url.password.clone() },
                        role: wanted.role,
                        passthrough: None,
                    };
                    (Some(login), false)
                }
                Some(u) if u.name == url.user => (None, false),
                Some(u) if !crate::auth::is_verifier(&u.password) => (Some(own(Some(u.password.clone()), None)), true),
                // A stored verifier, or a user `auth_query` found: by pass-through.
                _ => (passthrough.map(|p| own(None, Some(p))), true),
            }
        };
        let Some(login) = login else { return Ok(0) };
        if implicit && !self.has_login_role(target, user).await? {
            return Ok(0);
        }
        let id = backend.login_id(&login);
        tracing::debug!(user, target = backend.name(), login = login.shown(), "server login");
        Ok(id)
    }

    /// Whether `target` has a role named `role` that may log in (asked once per target and role, on a connection
    /// of the URL's login); an error when the target cannot be asked (not remembered).
    async fn has_login_role(&self, target: TargetId, role: &str) -> Result<bool, PgError> {
        if let Some(known) = self.login_roles.get(target, role) {
            return Ok(known);
        }
        let sql = format!("select 1 from pg_catalog.pg_roles where rolname = {} and rolcanlogin", crate::quote::literal(role));
        let backend = self.backend(target);
        let unknown = |e: String| {
            tracing::warn!(target = backend.name(), role, error = %e, "cannot ask the target for the client's role");
            PgError::error(
                crate::protocol::codes::CONNECTION_FAILURE,
                format!("target \"{}\" cannot say which login the user's connections use: {e}", backend.name()),
            )
        };
        // A checkout refused is refused as the statement's own would be (57P03 disabled, 53300, 08006 ...).
        let mut conn = backend.checkout().await.map_err(|e| crate::session::errors::checkout(&e))?;
        let rows = conn.simple(&sql).await.map_err(|e| unknown(e.to_string()))?;
        let exists = !rows.is_empty();
        self.login_roles.put(target, role, exists);
        Ok(exists)
    }
}
