//! pgsplit: a PostgreSQL wire-protocol proxy that splits one logical database across several by schema.

pub mod auth;
pub mod protocol;
pub mod router;
