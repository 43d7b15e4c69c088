//! Which login a user's server connections use on each target (issue 20, SPEC §5): the user's `server_user` /
//! `role` for that target, else the client's own name when the target has that login role and pgsplit knows the
//! client's password in clear, else the target URL's login. Each login has its own connections within the target's
//! pool, whose `max` holds for all of them together (`backend::shelf`).

use std::collections::HashMap;
use std::sync::Mutex;

use crate::auth::Passthrough;
use crate::backend::{Login, LoginId};
use crate::router::TargetId;

use super::App;

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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl App {
    /// The number of the login `user`'s server connections use on `target` (0: the target URL's login);
    /// `passthrough`: what the client's own login left to log in with in its name (`auth::Passthrough`).
    pub async fn login_for(&self, user: &str, target: TargetId, passthrough: Option<&Passthrough>) -> LoginId {
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
        let Some(login) = login else { return 0 };
        if implicit && !self.has_login_role(target, user).await {
            return 0;
        }
        let id = backend.login_id(&login);
        tracing::debug!(user, target = backend.name(), login = login.shown(), "server login");
        id
    }

    /// Whether `target` has a role named `role` that may log in (asked once per target and role, on a connection
    /// of the URL's login; unknown when the target cannot be asked: then not).
    async fn has_login_role(&self, target: TargetId, role: &str) -> bool {
        if let Some(known) = self.login_roles.get(target, role) {
            return known;
        }
        let sql = format!("select 1 from pg_catalog.pg_roles where rolname = {} and rolcanlogin", crate::quote::literal(role));
        let Ok(mut conn) = self.backend(target).checkout().await else { return false };
        match conn.simple(&sql).await {
            Ok(rows) => {
                let exists = !rows.is_empty();
                self.login_roles.put(target, role, exists);
                exists
            }
            Err(_) => false,
        }
    }
}
