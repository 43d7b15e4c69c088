//! `routing.yaml`: loading (environment expansion, YAML), the model, and validation that reports every problem
//! with its line (SPEC §2).

pub mod limits;
mod load;
mod model;
mod strict;
pub(crate) mod validate;

use std::path::Path;

pub use limits::Limits;
pub use load::{parse_duration, parse_size};
pub use model::*;

/// One problem found in the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// 1-based line in the file, when known.
    pub line: Option<usize>,
    /// Dotted path of the key, e.g. `targets.data.schemas`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        source: std::io::Error,
    },
    /// The YAML did not parse or did not match the expected shape.
    #[error("{file}:{line}:{column}: {message}")]
    Yaml {
        /// The file name.
        file: String,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column.
        column: usize,
        /// serde_yaml's message.
        message: String,
    },
    /// Environment expansion or validation failed.
    #[error("{}", render(.file, .issues))]
    Invalid {
        /// The file name.
        file: String,
        /// Every problem found.
        issues: Vec<Issue>,
    },
}

/// Why a target's `url:` was refused; its text becomes the message of the `targets.<name>.url` issue. Never echoes
/// the URL: it may hold a password.
#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    /// The text does not parse as a URL.
    #[error("not a valid URL ({0})")]
    NotUrl(#[source] url::ParseError),
    /// A scheme other than `postgres://` or `postgresql://`.
    #[error("scheme must be postgresql://, not {0}://")]
    Scheme(String),
    /// No host name or address.
    #[error("the URL has no host")]
    NoHost,
    /// No user name.
    #[error("the URL has no user")]
    NoUser,
    /// An `sslmode` libpq does not know.
    #[error("invalid sslmode value: \"{0}\" (disable, allow, prefer, require, verify-ca, verify-full)")]
    SslMode(String),
}

fn render(file: &str, issues: &[Issue]) -> String {
    let lines: Vec<String> = issues
        .iter()
        .map(|i| {
            let at = i.line.map(|l| format!("{file}:{l}")).unwrap_or_else(|| file.to_owned());
            if i.key.is_empty() {
                format!("{at}: {}", i.message)
            } else {
                format!("{at}: {}: {}", i.key, i.message)
            }
        })
        .collect();
    lines.join("\n")
}

/// Writes a file only its owner can read (mode 0600, also when it existed): pgsplit's files that hold passwords.
pub fn write_private(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(contents)
}

/// The permission bits of a configuration file that group or others may read (it may hold passwords), for the
/// warning `serve` logs; `None` when only its owner can.
pub fn readable_by_others(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & 0o044 != 0).then_some(mode)
}

/// Reads, expands, parses and validates a file. Relative paths in it resolve against the file's folder.
pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io { path: path.display().to_string(), source })?;
    let base = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let env = |k: &str| std::env::var(k).ok();
    load_named(&text, base, &env, &path.display().to_string())
}

/// The testable core of `load_file`: configuration text, the folder relative paths resolve against, and an
/// environment lookup.
pub fn load_str(text: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
    load_named(text, base_dir, env, "<config>")
}

fn load_named(text: &str, base_dir: &Path, env: &dyn Fn(&str) -> Option<String>, file: &str) -> Result<Config, ConfigError> {
    let expanded = load::expand_env(text, env).map_err(|issues| ConfigError::Invalid { file: file.to_owned(), issues })?;
    let mut tree: serde_yaml::Value = serde_yaml::from_str(&expanded).map_err(|e| {
        let (line, column) = e.location().map(|l| (l.line(), l.column())).unwrap_or((0, 0));
        ConfigError::Yaml { file: file.to_owned(), line, column, message: e.to_string() }
    })?;
    if let Err(e) = tree.apply_merge() {
        return Err(ConfigError::Yaml { file: file.to_owned(), line: 0, column: 0, message: e.to_string() });
    }
    let mut issues = strict::clean(&mut tree, &expanded);
    let split_env = env("SPLIT_DB_MODE");
    let built = match serde_yaml::from_value::<load::RawConfig>(tree) {
        Ok(raw) => validate::build(raw, &expanded, base_dir, split_env.as_deref()),
        Err(e) => Err(vec![Issue { line: None, key: String::new(), message: e.to_string() }]),
    };
    match built {
        Ok(config) if issues.is_empty() => Ok(config),
        Ok(_) => {
            issues.sort_by_key(|i| i.line.unwrap_or(usize::MAX));
            Err(ConfigError::Invalid { file: file.to_owned(), issues })
        }
        Err(more) => {
            // A key already reported was removed before validation: what validation says of its absence is noise.
            let reported: Vec<String> = issues.iter().map(|i| i.key.clone()).collect();
            issues.sort_by_key(|i| i.line.unwrap_or(usize::MAX));
            issues.extend(more.into_iter().filter(|i| !reported.iter().any(|r| !r.is_empty() && i.key.starts_with(r.as_str()))));
            Err(ConfigError::Invalid { file: file.to_owned(), issues })
        }
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod strict_tests;
