//! The migration files: `DIR/<target>/NNN_name.sql`, read, checked and ordered; no I/O but reading them.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// The first line that makes a migration run outside a transaction (for `CREATE INDEX CONCURRENTLY`).
pub const NO_TRANSACTION: &str = "-- pgsplit: no-transaction";

/// One migration file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Migration {
    /// The folder it is in: the target it belongs to.
    pub folder: String,
    /// Its number as written (`007`): what is recorded, and compared numerically for order.
    pub version: String,
    /// The rest of its name, without `.sql`.
    pub name: String,
    /// The file.
    pub path: PathBuf,
    /// Its text.
    pub sql: String,
    /// SHA-256 of its bytes, in hex.
    pub checksum: String,
    /// `-- pgsplit: no-transaction` on its first line.
    pub no_transaction: bool,
}

impl Migration {
    /// `folder/NNN_name.sql`, as reports name it.
    pub fn file(&self) -> String {
        format!("{}/{}_{}.sql", self.folder, self.version, self.name)
    }
}

/// Why the migration files cannot be used; nothing runs.
#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    /// The folder or a file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// What was read.
        path: String,
        /// Why it failed.
        source: std::io::Error,
    },
    /// A `.sql` file whose name is not `NNN_name.sql`.
    #[error("{0}: a migration is named NNN_name.sql (digits, an underscore, a name)")]
    BadName(String),
    /// Two files of one folder with the same number.
    #[error("{0} and {1} have the same number")]
    SameVersion(String, String),
    /// A folder that names no target.
    #[error("{folder}: no target of that name in the configuration (targets: {targets})")]
    UnknownFolder {
        /// The folder.
        folder: String,
        /// The configured targets.
        targets: String,
    },
    /// A file that is not UTF-8.
    #[error("{0}: not UTF-8")]
    NotText(String),
}

/// Every migration under `dir`, folder by folder in `targets` order, each folder's by number. A folder that is
/// no target, a badly named `.sql` file or two files of one number is an error; other files (a README) are left
/// alone. A missing `dir`, or a target without a folder, has no migrations.
pub fn read(dir: &Path, targets: &[String]) -> Result<Vec<Migration>, FilesError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut folders = Vec::new();
    for entry in entries {
        let entry = entry.map_err(io(dir))?;
        if entry.file_type().map_err(io(&entry.path()))?.is_dir() {
            let folder = entry.file_name().to_string_lossy().into_owned();
            if !targets.contains(&folder) {
                return Err(FilesError::UnknownFolder { folder, targets: targets.join(", ") });
            }
            folders.push(folder);
        }
    }
    for target in targets.iter().filter(|t| folders.contains(t)) {
        out.extend(folder(&dir.join(target), target)?);
    }
    Ok(out)
}

/// A read error, naming what was read.
fn io(path: &Path) -> impl Fn(std::io::Error) -> FilesError {
    let path = path.display().to_string();
    move |source| FilesError::Read { path: path.clone(), source }
}

/// One folder's migrations, by number.
fn folder(path: &Path, folder: &str) -> Result<Vec<Migration>, FilesError> {
    let mut found: Vec<Migration> = Vec::new();
    for entry in std::fs::read_dir(path).map_err(io(path))? {
        let entry = entry.map_err(io(path))?;
        let file = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file.strip_suffix(".sql") else { continue };
        let shown = format!("{folder}/{file}");
        let (version, name) = stem.split_once('_').ok_or_else(|| FilesError::BadName(shown.clone()))?;
        if version.is_empty() || !version.bytes().all(|b| b.is_ascii_digit()) || name.is_empty() {
            return Err(FilesError::BadName(shown));
        }
        let bytes = std::fs::read(entry.path()).map_err(io(&entry.path()))?;
        let checksum = Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect();
        let sql = String::from_utf8(bytes).map_err(|_| FilesError::NotText(shown.clone()))?;
        let no_transaction = sql.lines().next().is_some_and(|l| l.trim() == NO_TRANSACTION);
        found.push(Migration {
            folder: folder.to_owned(),
            version: version.to_owned(),
            name: name.to_owned(),
            path: entry.path(),
            sql,
            checksum,
            no_transaction,
        });
    }
    found.sort_by(|a, b| number(&a.version).cmp(&number(&b.version)).then_with(|| a.version.cmp(&b.version)));
    for pair in found.windows(2) {
        if let [a, b] = pair {
            if number(&a.version) == number(&b.version) {
                return Err(FilesError::SameVersion(a.file(), b.file()));
            }
        }
    }
    Ok(found)
}

/// A version's number (leading zeros ignored; numbers too long to hold compare after every shorter one).
fn number(version: &str) -> (usize, String) {
    let digits = version.trim_start_matches('0');
    (digits.len(), digits.to_owned())
}

/// The statements of a migration, each with the byte offset it starts at, split at the semicolons that end them
/// (not those in quotes, dollar quotes or comments); for a migration that runs outside a transaction, where each
/// statement must be its own Query. Empty statements are left out. `None` when the text does not tokenize.
pub fn statements(sql: &str) -> Option<Vec<(usize, &str)>> {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize_with_location().ok()?;
    let line_starts: Vec<usize> =
        std::iter::once(0).chain(sql.bytes().enumerate().filter(|(_, b)| *b == b'\n').map(|(i, _)| i + 1)).collect();
    let offset = |line: u64, column: u64| -> Option<usize> {
        let start = *line_starts.get(usize::try_from(line).ok()?.checked_sub(1)?)?;
        // Columns count characters, from 1.
        let rest = sql.get(start..)?;
        let col = usize::try_from(column).ok()?.checked_sub(1)?;
        Some(start + rest.char_indices().nth(col).map_or(rest.len(), |(i, _)| i))
    };
    let mut out = Vec::new();
    let mut start = 0;
    for t in &tokens {
        if t.token == Token::SemiColon {
            let end = offset(t.span.start.line, t.span.start.column)?;
            push(sql, start, end, &mut out);
            start = end + 1;
        }
    }
    push(sql, start, sql.len(), &mut out);
    Some(out)
}

/// Adds `sql[start..end]` unless it holds nothing but blanks and comments.
fn push<'a>(sql: &'a str, start: usize, end: usize, out: &mut Vec<(usize, &'a str)>) {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Some(text) = sql.get(start..end) else { return };
    let meaningful = Tokenizer::new(&PostgreSqlDialect {}, text)
        .tokenize()
        .map(|ts| ts.iter().any(|t| !matches!(t, Token::Whitespace(_) | Token::EOF)))
        .unwrap_or(true);
    if meaningful {
        out.push((start, text));
    }
}

/// The byte offset of the first token of `text` that is not a blank or a comment (0 when none).
pub fn first_token(text: &str) -> usize {
    use sqlparser::dialect::PostgreSqlDialect;
    use sqlparser::tokenizer::{Token, Tokenizer};
    let Ok(tokens) = Tokenizer::new(&PostgreSqlDialect {}, text).tokenize_with_location() else { return 0 };
    let Some(t) = tokens.iter().find(|t| !matches!(t.token, Token::Whitespace(_) | Token::EOF)) else { return 0 };
    let (line, column) = (t.span.start.line, t.span.start.column);
    let start: usize = text.split_inclusive('\n').take(usize::try_from(line).unwrap_or(1).saturating_sub(1)).map(str::len).sum();
    let rest = text.get(start..).unwrap_or_default();
    start + rest.char_indices().nth(usize::try_from(column).unwrap_or(1).saturating_sub(1)).map_or(rest.len(), |(i, _)| i)
}

/// Whether two versions are one number (`9` and `009`).
pub fn same_version(a: &str, b: &str) -> bool {
    a.trim_start_matches('0') == b.trim_start_matches('0')
}

/// The 1-based line of byte `offset` in `sql`.
pub fn line_of(sql: &str, offset: usize) -> usize {
    sql.as_bytes().iter().take(offset).filter(|&&b| b == b'\n').count() + 1
}

/// The byte offset of a 1-based character position (PostgreSQL's error position) in `sql`.
pub fn char_offset(sql: &str, position: usize) -> usize {
    sql.char_indices().nth(position.saturating_sub(1)).map_or(sql.len(), |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_at_their_own_semicolons_only() {
        let sql = "-- pgsplit: no-transaction\ncreate index concurrently i on t (a);\n\
                   create function f() returns int language sql as $$ select 1; $$;\n\
                   insert into t values ('a;b'); /* ; */ -- ;\n   ";
        let found = statements(sql).unwrap();
        let texts: Vec<&str> = found.iter().map(|(_, s)| s.trim()).collect();
        assert_eq!(
            texts,
            [
                "-- pgsplit: no-transaction\ncreate index concurrently i on t (a)",
                "create function f() returns int language sql as $$ select 1; $$",
                "insert into t values ('a;b')",
            ]
        );
        assert_eq!(line_of(sql, found[2].0 + 1), 4);
        assert_eq!(
            statements("select 'é'; select 2").unwrap()[1],
            (12, " select 2"),
            "byte offsets, columns counted in characters"
        );
    }

    #[test]
    fn files_are_named_numbered_and_ordered() {
        let dir = std::env::temp_dir().join(format!("pgsplit-migrate-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let write = |p: &str, s: &str| {
            let path = dir.join(p);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, s).unwrap();
        };
        write("data/010_ten.sql", "select 10");
        write("data/9_nine.sql", "-- pgsplit: no-transaction\nselect 9");
        write("data/README.md", "not a migration");
        write("primary/001_one.sql", "select 1");
        let targets = ["primary".to_owned(), "data".to_owned()];
        let found = read(&dir, &targets).unwrap();
        let files: Vec<String> = found.iter().map(Migration::file).collect();
        assert_eq!(files, ["primary/001_one.sql", "data/9_nine.sql", "data/010_ten.sql"]);
        assert!(found[1].no_transaction && !found[2].no_transaction);
        assert_eq!(found[0].checksum.len(), 64);
        write("data/09_again.sql", "select 9");
        assert!(matches!(read(&dir, &targets), Err(FilesError::SameVersion(..))));
        std::fs::remove_file(dir.join("data/09_again.sql")).unwrap();
        write("data/x.sql", "select");
        assert!(matches!(read(&dir, &targets), Err(FilesError::BadName(_))));
        std::fs::remove_file(dir.join("data/x.sql")).unwrap();
        write("elsewhere/001_a.sql", "select");
        assert!(matches!(read(&dir, &targets), Err(FilesError::UnknownFolder { .. })));
        let _ = std::fs::remove_dir_all(&dir);
        assert!(read(&dir, &targets).unwrap().is_empty(), "no folder: nothing to do");
    }
}
