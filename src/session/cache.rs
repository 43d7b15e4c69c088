//! The session's side of the session cache (`crate::cache`, `docs/session-cache.md`): which requests are reads the
//! cache may answer and which write cached tables, the key a read is stored under, a hit served, a miss's reply
//! captured and kept.

use bytes::Bytes;

use crate::cache::{key_class, reply, Part, SessionCache, TableId};
use crate::client::Capture;
use crate::protocol::Frame;
use crate::router::keys::KeyValue;
use crate::router::resolve::{self, Resolved};
use crate::router::{Analysis, ObjectKind, SharedAnalysis, TargetId};

use super::machine::Request;
use super::state::{Effects, Payload};
use super::{Session, SessionError};

/// What one request is to the session cache.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub enum CacheUse {
    /// Nothing: no cached table is named, or a read the cache may not answer.
    #[default]
    None,
    /// A read the cache may answer: every statement a cacheable read, every relation a cached table (these parts).
    Read(Vec<Part>),
    /// A write to these parts of cached tables.
    Write(Vec<Part>),
}

/// What a batch's statements are to the cache, gathered message by message (`Session::scan_for_cache`).
#[derive(Debug, Default)]
pub struct BatchScan {
    /// Parts of cached tables the batch reads.
    reads: Vec<Part>,
    /// Parts of cached tables the batch writes.
    writes: Vec<Part>,
    /// A statement the cache may not answer (or no statement at all so far).
    uncacheable: bool,
    /// A statement runs (a Bind).
    runs: bool,
}

impl BatchScan {
    /// A message the cache cannot follow: the batch is not cached.
    pub fn uncacheable(&mut self) {
        self.uncacheable = true;
    }

    /// What the whole batch is to the cache.
    pub fn verdict(self) -> CacheUse {
        if !self.writes.is_empty() {
            CacheUse::Write(self.writes)
        } else if self.runs && !self.uncacheable && !self.reads.is_empty() {
            CacheUse::Read(self.reads)
        } else {
            CacheUse::None
        }
    }
}

/// Adds `parts` to `set` without duplicates.
fn add_all(set: &mut Vec<Part>, parts: &[Part]) {
    for p in parts {
        if !set.contains(p) {
            set.push(*p);
        }
    }
}

impl Session {
    /// What a statement routed to `target` is to the cache (`None` analysis: a FunctionCall, which may write);
    /// `bind`: the body of the Bind that runs it, for the parameter its key column is compared with.
    pub(super) fn cache_use(&self, target: TargetId, analysis: Option<&Analysis>, bind: Option<&[u8]>) -> CacheUse {
        let Some(cache) = self.app.session_cache() else { return CacheUse::None };
        // Another database on the server (`any_database`) holds other tables under the same names.
        if !cache.owns(target) || self.app.is_single() || self.database_pool.is_some() {
            return CacheUse::None;
        }
        let Some(a) = analysis else { return CacheUse::Write(cache.tables_of(target)) };
        let (table, catalog) = (self.app.table(), self.app.catalog());
        let mut ids = Vec::new();
        // A relation that is not a cached table (or not resolved to one), or an unqualified one (a SET of search_path
        // pending in the transaction, or earlier in the same text, may resolve it elsewhere on the server).
        let mut others = false;
        let mut unqualified = false;
        for name in a.names.iter().filter(|n| n.kind == ObjectKind::Relation) {
            unqualified |= name.schema.is_none();
            let id = match resolve::resolve(&table, &catalog, name, &self.search_path) {
                Resolved::Target { schema, .. } => cache.table_id(schema, &name.object),
                _ => None,
            };
            match id {
                Some(id) if !ids.contains(&id) => ids.push(id),
                Some(_) => {}
                None => others = true,
            }
        }
        if a.may_write {
            // Only a DML statement on cached tables alone, qualified, calling only built-ins is confined to what it
            // names; anything else (a function, EXECUTE, a view, a cascade or trigger from another table, DDL) may
            // reach every cached table of the target.
            let confined = !ids.is_empty() && !others && !unqualified && !a.ddl && !a.fallback && a.known_functions;
            return match (confined, ids.as_slice()) {
                (true, [id]) => CacheUse::Write(vec![Part { table: *id, key: key_part(cache, *id, a, bind) }]),
                (true, _) => CacheUse::Write(ids.iter().map(|&id| Part::whole(id)).collect()),
                (false, _) => CacheUse::Write(cache.tables_of(target)),
            };
        }
        match (a.cacheable && !others, ids.as_slice()) {
            (true, [id]) => CacheUse::Read(vec![Part { table: *id, key: key_part(cache, *id, a, bind) }]),
            (true, [_, ..]) => CacheUse::Read(ids.iter().map(|&id| Part::whole(id)).collect()),
            _ => CacheUse::None,
        }
    }

    /// Adds one message of a batch to what the batch is to the cache: a Parse's or Bind's statement, routed to
    /// `target`. Only a Bind runs a statement: only it writes.
    pub(super) fn scan_for_cache(&mut self, f: &Frame, target: TargetId, analysis: Option<&SharedAnalysis>) {
        if self.app.session_cache().is_none() {
            return;
        }
        let runs = f.tag == b'B';
        let verdict = self.cache_use(target, analysis.map(|a| &**a), runs.then(|| f.body()));
        let scan = &mut self.batch_cache;
        scan.runs |= runs;
        match verdict {
            CacheUse::Write(parts) if runs => add_all(&mut scan.writes, &parts),
            // What a batch reads is what its Binds run (a Parse alone reads nothing, and knows no parameter).
            CacheUse::Read(parts) if runs => add_all(&mut scan.reads, &parts),
            CacheUse::Read(_) | CacheUse::Write(_) => {}
            CacheUse::None => scan.uncacheable = true,
        }
    }

    /// Runs a request (`run_on`), through the session cache when it is a read the cache may answer, holding off
    /// inserts for the cached tables it writes until its transaction ends.
    pub(super) async fn run_request(
        &mut self,
        target: TargetId,
        request: &Request,
        payload: Payload<'_>,
        effects: &Effects,
        cache_use: CacheUse,
    ) -> Result<(), SessionError> {
        self.end_cache_holds();
        let Some(cache) = self.app.session_cache().cloned() else {
            return self.run_on(target, request, payload, effects).await;
        };
        match cache_use {
            CacheUse::None => self.run_on(target, request, payload, effects).await?,
            CacheUse::Write(ids) => {
                self.cache_holds.push(cache.write_begin(ids));
                self.run_on(target, request, payload, effects).await?;
            }
            CacheUse::Read(ids) => {
                let key = match self.may_serve_from_cache() {
                    true => self.cache_key(target, &payload),
                    false => None,
                };
                let Some(key) = key else { return self.run_on(target, request, payload, effects).await };
                if let Some(reply) = cache.lookup(&key) {
                    self.served_from_cache(target, &payload, reply);
                    return Ok(());
                }
                let Some(started) = cache.start_read(&ids) else {
                    return self.run_on(target, request, payload, effects).await;
                };
                self.client.capture = Some(Capture::new(self.client.wbuf.len(), cache.max_entry_bytes()));
                let result = self.run_on(target, request, payload, effects).await;
                let captured = self.client.capture.take().and_then(|c| (*c).finish(&self.client.wbuf));
                result?;
                match captured {
                    Some(bytes) if self.machine.idle() && reply::keepable(&bytes) => cache.insert(key, bytes, &ids, &started),
                    _ => cache.not_kept(),
                }
            }
        }
        self.end_cache_holds();
        Ok(())
    }

    /// A batch flushed ahead of its Sync that writes cached tables: inserts for them stop before it is sent.
    pub(super) fn hold_flushed_writes(&mut self) {
        if let CacheUse::Write(ids) = std::mem::take(&mut self.batch_cache).verdict() {
            if let Some(cache) = self.app.session_cache() {
                let hold = cache.write_begin(ids);
                self.cache_holds.push(hold);
            }
        }
    }

    /// Outside a transaction, the writes the session made are over: inserts for their tables may resume.
    pub(super) fn end_cache_holds(&mut self) {
        if !self.cache_holds.is_empty() && self.machine.idle() {
            self.cache_holds.clear();
        }
    }

    /// Whether the session is where a cached reply is the server's: outside any transaction, no connection of its
    /// own (temporary tables could shadow a cached one), transaction pooling, split mode.
    fn may_serve_from_cache(&self) -> bool {
        self.machine.idle() && !self.machine.pinned() && !self.session_pooled && !self.app.is_single()
    }

    /// The key a read is stored under: the target, the client's user, every session parameter but
    /// `application_name`, and the request's messages with the client's own names left out and each statement's
    /// text in place of its name. `None` for a request the cache does not take (a batch with other messages, a
    /// parameter PostgreSQL may read as the current time, a statement it does not have).
    fn cache_key(&self, target: TargetId, payload: &Payload<'_>) -> Option<Vec<u8>> {
        let mut key = Vec::with_capacity(256);
        put(&mut key, &(target as u64).to_be_bytes());
        put(&mut key, self.user.as_bytes());
        for (name, value) in self.params.current() {
            if name != "application_name" {
                put(&mut key, name.as_bytes());
                put(&mut key, value.as_bytes());
            }
        }
        match payload {
            Payload::Raw(bytes) => {
                key.push(b'Q');
                put(&mut key, bytes);
            }
            Payload::Batch(frames) => self.batch_key(frames, &mut key)?,
        }
        Some(key)
    }

    /// The batch's part of the key (`cache_key`).
    fn batch_key(&self, frames: &[Frame], key: &mut Vec<u8>) -> Option<()> {
        let mut unnamed: Option<(Bytes, Option<SharedAnalysis>)> = None;
        let last = frames.len().checked_sub(1)?;
        for (i, f) in frames.iter().enumerate() {
            let body = f.body();
            key.push(f.tag);
            match f.tag {
                b'P' => {
                    let (name, rest) = split_cstr(body)?;
                    // A named Parse is the session's to record with its shape (`stale`): never answered here.
                    if !name.is_empty() {
                        return None;
                    }
                    unnamed = Some((Bytes::copy_from_slice(body), None));
                    put(key, rest);
                }
                b'B' => {
                    let (_portal, rest) = split_cstr(body)?;
                    let (stmt, params) = split_cstr(rest)?;
                    if mentions_time(params) {
                        return None;
                    }
                    put(key, &self.statement_text(stmt, unnamed.as_ref())?);
                    put(key, params);
                }
                b'D' => match body.split_first()? {
                    (b'S', name) => put(key, &self.statement_text(split_cstr(name)?.0, unnamed.as_ref())?),
                    (b'P', _) => {}
                    _ => return None,
                },
                b'E' => put(key, split_cstr(body)?.1),
                b'S' if i == last => {}
                _ => return None,
            }
        }
        Some(())
    }

    /// A statement's Parse body without its name (text and parameter types), by the client's name for it.
    fn statement_text(&self, name: &[u8], batch_unnamed: Option<&(Bytes, Option<SharedAnalysis>)>) -> Option<Vec<u8>> {
        let name = std::str::from_utf8(name).ok()?;
        let (body, _) = self.statement_source(name, batch_unnamed)?;
        let mut text = split_cstr(&body)?.1.to_vec();
        // A named statement's server-side name says which catalog generation and search_path it was parsed under,
        // and the shape of its result row as the server described it to this client says what it returns: a client
        // that parsed it before DDL gets its own entries (and the server's 0A000 on a miss) even when the catalog
        // generation has not yet moved. A statement whose shape is not yet known is not answered from memory.
        if !name.is_empty() {
            let p = self.statements.get(name)?;
            text.extend_from_slice(p.server_name.as_bytes());
            text.extend_from_slice(&p.shape.get()?.to_le_bytes());
        }
        Some(text)
    }

    /// A hit: the stored reply goes to the client as the server gave it; a Parse in the batch is recorded as when
    /// the server parses it (the unnamed statement is the session's own; named ones were recorded when routed).
    fn served_from_cache(&mut self, target: TargetId, payload: &Payload<'_>, reply: Bytes) {
        if let Payload::Batch(frames) = payload {
            for f in frames.iter().filter(|f| f.tag == b'P' && f.body().first() == Some(&0)) {
                if self.prepare_unnamed {
                    self.prepare_unnamed_statement(target, f.body());
                }
                if self.unnamed_parse.as_deref() != Some(&f.bytes[..]) {
                    self.unnamed_parse = Some(Bytes::copy_from_slice(&f.bytes));
                }
            }
        }
        self.client.wbuf.extend_from_slice(&reply);
    }
}

/// The class of the value a single-table statement confines `table`'s key column to (`WHERE token = $1`, `'abc'`,
/// an INSERT's value), when the table has a key column, the statement does not assign it, and the value is known:
/// a string literal, or a text-format parameter of `bind`.
fn key_part(cache: &SessionCache, table: TableId, a: &Analysis, bind: Option<&[u8]>) -> Option<u64> {
    let column = cache.key_of(table)?;
    let keys = a.keys.as_deref()?;
    if keys.assigned.iter().any(|c| c == column) {
        return None;
    }
    match keys.value_of(column)? {
        KeyValue::Text(s) => key_class(s.as_bytes()),
        KeyValue::Param(n) => key_class(bind_param(bind?, usize::from(*n))?),
    }
}

/// Parameter `n` (1-based) of a Bind body, when it is sent in text format and not NULL.
fn bind_param(body: &[u8], n: usize) -> Option<&[u8]> {
    let (_portal, rest) = split_cstr(body)?;
    let (_stmt, mut r) = split_cstr(rest)?;
    let mut take = |len: usize| -> Option<&[u8]> {
        let (head, tail) = (r.get(..len)?, r.get(len..)?);
        r = tail;
        Some(head)
    };
    let i16_at = |b: &[u8]| b.try_into().ok().map(i16::from_be_bytes);
    let nfmt = usize::try_from(i16_at(take(2)?)?).ok()?;
    let formats: Vec<i16> = (0..nfmt).map(|_| take(2).and_then(i16_at)).collect::<Option<_>>()?;
    let format = match formats.as_slice() {
        [] => 0,
        [all] => *all,
        each => *each.get(n.checked_sub(1)?)?,
    };
    if format != 0 {
        return None;
    }
    let nparams = usize::try_from(i16_at(take(2)?)?).ok()?;
    for i in 1..=nparams {
        let len = i32::from_be_bytes(take(4)?.try_into().ok()?);
        let value = match usize::try_from(len) {
            Ok(len) => Some(take(len)?),
            Err(_) => None,
        };
        if i == n {
            return value;
        }
    }
    None
}

/// Appends a length-prefixed field (the key's parts can never run into each other).
fn put(key: &mut Vec<u8>, bytes: &[u8]) {
    key.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
    key.extend_from_slice(bytes);
}

/// A NUL-terminated string and what follows it.
fn split_cstr(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let nul = memchr::memchr(0, bytes)?;
    Some((bytes.get(..nul)?, bytes.get(nul + 1..)?))
}

/// Whether a Bind's parameter section holds a value PostgreSQL may read as the current time (`router::TIME_WORDS`): any
/// parameter equal to one, whatever its format, in any case, surrounded by spaces or not. Malformed: true (not
/// cached; the server will refuse it).
fn mentions_time(params: &[u8]) -> bool {
    let mut r = params;
    let mut take = |n: usize| -> Option<&[u8]> {
        let (head, tail) = (r.get(..n)?, r.get(n..)?);
        r = tail;
        Some(head)
    };
    let mut walk = || -> Option<bool> {
        let nfmt = i16::from_be_bytes(take(2)?.try_into().ok()?);
        take(usize::try_from(nfmt).ok()? * 2)?;
        let nparams = i16::from_be_bytes(take(2)?.try_into().ok()?);
        for _ in 0..nparams {
            let len = i32::from_be_bytes(take(4)?.try_into().ok()?);
            if len < 0 {
                continue;
            }
            let v = take(usize::try_from(len).ok()?)?;
            let v = v.trim_ascii();
            if crate::router::TIME_WORDS.iter().any(|w| v.eq_ignore_ascii_case(w.as_bytes())) {
                return Some(true);
            }
        }
        Some(false)
    };
    walk().unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::mentions_time;

    fn bind_params(values: &[Option<&[u8]>]) -> Vec<u8> {
        let mut b = vec![0, 0];
        b.extend_from_slice(&(values.len() as i16).to_be_bytes());
        for v in values {
            match v {
                Some(v) => {
                    b.extend_from_slice(&(v.len() as i32).to_be_bytes());
                    b.extend_from_slice(v);
                }
                None => b.extend_from_slice(&(-1i32).to_be_bytes()),
            }
        }
        b.extend_from_slice(&[0, 0]);
        b
    }

    #[test]
    fn a_bind_gives_its_text_parameters() {
        let mut body = b"portal\0stmt\0".to_vec();
        body.extend_from_slice(&bind_params(&[Some(b"tok-1"), None, Some(b"x")])[..]);
        assert_eq!(super::bind_param(&body, 1), Some(&b"tok-1"[..]));
        assert_eq!(super::bind_param(&body, 2), None, "NULL");
        assert_eq!(super::bind_param(&body, 3), Some(&b"x"[..]));
        assert_eq!(super::bind_param(&body, 4), None);
        // Binary parameters are not read.
        let mut binary = b"\0\0\0\x01\0\x01".to_vec();
        binary.extend_from_slice(&bind_params(&[Some(b"abc")])[2..]);
        assert_eq!(super::bind_param(&binary, 1), None);
        assert_eq!(super::bind_param(b"\0\0\0", 1), None, "malformed");
    }

    #[test]
    fn a_parameter_read_as_the_current_time_is_seen() {
        assert!(!mentions_time(&bind_params(&[Some(b"tok-1"), None])));
        assert!(mentions_time(&bind_params(&[Some(b"abc"), Some(b" NOW ")])));
        assert!(mentions_time(&bind_params(&[Some(b"today")])));
        assert!(mentions_time(&[0, 1]), "malformed counts as seen");
    }
}
