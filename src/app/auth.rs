//! What a client must prove at login: the configured user's secret, else the one `auth_query` finds on its target
//! (PgBouncer's `auth_user` + `auth_query`), kept `auth_cache_ttl` in a cache of at most `auth_cache_size` users.

use std::num::NonZeroUsize;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::auth::Secret;
use crate::backend::Login;

use super::App;
use crate::locks::lock;

/// How long one lookup may take before the login is refused.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(5);

/// Looked-up secrets by user name, with when they were read (`None`: no such user, or no password), and the
/// lookups' turns: at most `LOOKUPS` at once, so names sent by clients that have proven nothing cannot take more
/// than that many of the target's connections.
pub(crate) struct AuthCache(Mutex<lru::LruCache<String, (Instant, Option<Secret>)>>, tokio::sync::Semaphore);

/// Lookups running at once.
const LOOKUPS: usize = 2;

impl AuthCache {
    /// A cache of at most `size` users.
    pub(crate) fn new(size: usize) -> AuthCache {
        let lru = lru::LruCache::new(NonZeroUsize::new(size).unwrap_or(NonZeroUsize::MIN));
        AuthCache(Mutex::new(lru), tokio::sync::Semaphore::new(LOOKUPS))
    }

    /// Forgets everything (RELOAD).
    pub(crate) fn clear(&self) {
        lock(&self.0).clear();
    }
}

impl std::fmt::Debug for AuthCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthCache")
    }
}

impl App {
    /// The secret `user` must prove: the configured one, else `auth_query`'s answer; `None` for a name nobody
    /// knows (the login then fails after a mock exchange, at the same cost). The second value: whether it was
    /// looked up (such a user's server logins use its own name, by pass-through).
    pub async fn client_secret(&self, user: &str) -> (Option<Secret>, bool) {
        if let Some(s) = self.users().secret(user) {
            return (Some(s.clone()), false);
        }
        (self.looked_up(user).await, true)
    }

    /// `auth_query`'s answer for `user`, from the cache while fresh.
    async fn looked_up(&self, user: &str) -> Option<Secret> {
        let q = self.config().auth_query.clone()?;
        if let Some((at, secret)) = lock(&self.auth_cache.0).get(user) {
            if at.elapsed() < q.ttl {
                return secret.clone();
            }
        }
        let target = self.table().target_id(&q.target)?;
        let backend = self.backend(target);
        let login = match &q.user {
            Some(u) => backend.login_id(&Login { user: u.clone(), password: q.password.clone(), role: None, passthrough: None }),
            None => 0,
        };
        let lookup = async {
            let _turn = self.auth_cache.1.acquire().await.map_err(|e| e.to_string())?;
            let mut conn = backend.checkout_or_cancel(login, None).await.map_err(|e| e.to_string())?;
            conn.extended_with(&q.sql, &[user]).await.map_err(|e| e.to_string())
        };
        let rows = match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(user, error = %e, "auth_query failed: the login is refused");
                return None;
            }
            Err(_) => {
                tracing::warn!(user, "auth_query timed out: the login is refused");
                return None;
            }
        };
        let stored = rows.first().and_then(|r| r.get(1).cloned().flatten());
        let secret = stored.and_then(|s| Secret::from_stored(user, &s));
        lock(&self.auth_cache.0).put(user.to_owned(), (Instant::now(), secret.clone()));
        secret
    }
}
