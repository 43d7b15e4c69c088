//! Taking a lock whose holder panicked. pgsplit takes a poisoned lock anyway: every critical section leaves its data
//! whole at each step (counters, maps, stacks of idle connections), and one session's panic must not take every
//! other session's pool or registry down with it.

use std::sync::{Mutex, MutexGuard};

/// `m`'s guard, poisoned or not.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
