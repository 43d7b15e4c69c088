//! Named prepared statements under transaction pooling (SPEC §4): a client's statement name maps to a server-side
//! statement named after its SQL, prepared lazily on whichever server connection serves the batch and shared by
//! every client that prepares the same text. The batch is rewritten for the connection it runs on, and the replies
//! pgsplit adds or answers itself are queued so the client sees what a direct connection would send.

use std::hash::BuildHasher;
use std::sync::Arc;

use bytes::{BufMut, Bytes, BytesMut};

use crate::backend::ServerConn;
use crate::protocol::decode;
use crate::protocol::encoding::ClientEncoding;
use crate::protocol::expect::{Expect, Reply};
use crate::protocol::Frame;
use crate::router::{SharedAnalysis, TargetId};

use super::Session;

/// A client's named statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// The target its SQL routes to.
    pub target: TargetId,
    /// Whether its SQL chose that target (relations, hint) or merely followed the session then.
    pub explicit: bool,
    /// Its server-side name: `pgsplit_` and a hash of SQL and parameter types.
    pub server_name: Arc<str>,
    /// The Parse body that creates it on a server (server-side name, SQL, parameter types).
    pub parse_body: Bytes,
    /// What its SQL does (session changes, DDL, pins), followed each time it is executed; `None` in single mode
    /// for texts that change nothing.
    pub analysis: Option<SharedAnalysis>,
    /// The routing it was routed under (`Session::routing_epoch`: mode and routes generation): a statement is
    /// routed again after a mode switch or a reload that changed the routes.
    pub epoch: u64,
    /// The client's encoding when it parsed the statement: its SQL is read in it.
    pub encoding: ClientEncoding,
    /// The shape of its result row when the client parsed it, once the server described it (`session::stale`).
    pub shape: crate::backend::Shape,
}

/// What a server-side statement is shared by besides its SQL and parameter types: two Parses share one only when
/// they agree on all of it.
#[derive(Debug, Clone, Copy)]
pub struct Sharing<'a> {
    /// The client's encoding: the same bytes are another text in another encoding.
    pub encoding: ClientEncoding,
    /// The target's catalog generation (`Backend::statement_epoch`): a Parse after DDL must be planned against
    /// today's catalog.
    pub catalog: u64,
    /// The session's search_path: there the same names may mean other objects (PostgreSQL would plan the statement
    /// again, and refuse it if its result row changed).
    pub search_path: &'a [String],
}

impl Prepared {
    /// The statement a client's Parse body (`name\0sql\0types`) creates.
    pub fn from_parse(
        target: TargetId,
        explicit: bool,
        analysis: Option<SharedAnalysis>,
        epoch: u64,
        sharing: Sharing<'_>,
        client_body: &[u8],
    ) -> Option<Prepared> {
        let nul = memchr::memchr(0, client_body)?;
        let rest = client_body.get(nul + 1..)?;
        let Sharing { encoding, catalog, search_path } = sharing;
        let hasher = foldhash::fast::FixedState::with_seed(0x7067_7370_6c69_7421);
        let hash = match (encoding.is_utf8(), catalog, search_path.is_empty()) {
            (true, 0, true) => hasher.hash_one(rest),
            _ => hasher.hash_one((rest, encoding.name(), catalog, search_path)),
        };
        let server_name = format!("pgsplit_{hash:016x}");
        let mut body = BytesMut::with_capacity(server_name.len() + 1 + rest.len());
        body.put_slice(server_name.as_bytes());
        body.put_u8(0);
        body.put_slice(rest);
        Some(Prepared {
            target,
            explicit,
            server_name: server_name.into(),
            parse_body: body.freeze(),
            analysis,
            epoch,
            encoding,
            shape: Default::default(),
        })
    }

    /// The same statement routed anew (after a mode switch).
    pub fn rerouted(&self, target: TargetId, explicit: bool, analysis: Option<SharedAnalysis>, epoch: u64) -> Prepared {
        Prepared { analysis, target, explicit, epoch, ..self.clone() }
    }

    /// The statement's SQL text (it was read once, when it was parsed).
    pub fn sql(&self) -> std::borrow::Cow<'_, str> {
        decode::parse_sql(&self.parse_body, self.encoding).map(|(_, sql)| sql).unwrap_or_default()
    }
}

/// The client's unnamed statement served from a server-side one (`prepare_unnamed`), with what it was made under
/// besides its Parse: the same Parse under the same ones is the same statement (no hash, no allocation).
#[derive(Debug)]
pub struct UnnamedPrepared {
    statement: Arc<Prepared>,
    /// The target's catalog generation then.
    catalog: u64,
    /// The generation of the session's search_path then.
    search_path_generation: u64,
}

/// Most frames a session's emptied batch vector may hold room for to be kept for the next batch.
const BATCH_KEEP: usize = 64;

/// Largest rewrite buffer a session keeps between batches.
const REWRITE_KEEP: usize = 1024;

impl Session {
    /// The bytes to send on `conn` for an extended-protocol batch, with the replies they will get queued on `conn`.
    pub(super) fn rewrite_batch(&mut self, target: TargetId, conn: &mut ServerConn, mut batch: Vec<Frame>) -> BytesMut {
        let len = batch.iter().map(|f| f.bytes.len()).sum::<usize>();
        // The buffer the last batch was sent from, when it was small: no allocation per batch.
        let mut out = std::mem::take(&mut self.rewrite_buf);
        out.clear();
        out.reserve(len + 64);
        if self.session_pooled {
            self.pass_batch(conn, &mut batch, &mut out);
            return out;
        }
        // Another session's sequence state goes first (`Session::sequences_ahead`).
        conn.discard_ahead_in_batch(&mut out);
        // The unnamed statement lives on the connection: one prepared by another client (or by this one on another
        // connection) may be there. A Bind or Describe of it in a batch without its Parse gets the client's own
        // last unnamed Parse first.
        let mut unnamed_here = false;
        for f in batch.drain(..) {
            let uses_unnamed = match f.tag {
                b'B' => decode::bind_raw(f.body()).is_ok_and(|(_, s)| s.is_empty()),
                b'D' => matches!(decode::describe_or_close_raw(f.body()), Ok((b'S', b""))),
                _ => false,
            };
            if uses_unnamed && !unnamed_here && self.statement(conn, "").is_none() {
                if let Some(parse) = &self.unnamed_parse {
                    out.put_slice(parse);
                    conn.expect(Expect::Hide { statement: None });
                    unnamed_here = true;
                }
            }
            match f.tag {
                b'P' => self.rewrite_parse_message(target, conn, &f, &mut out, &mut unnamed_here),
                b'B' => self.rewrite_bind(conn, &f, &mut out, &mut unnamed_here),
                b'D' => self.rewrite_describe(conn, &f, &mut out, &mut unnamed_here),
                b'C' => self.rewrite_close(conn, &f, &mut out),
                tag => {
                    out.put_slice(&f.bytes);
                    match tag {
                        b'E' => conn.expect(Expect::Forward(Reply::Execute)),
                        b'S' => conn.expect(Expect::Forward(Reply::Sync)),
                        _ => {}
                    }
                }
            }
        }
        self.changed_rows.clear();
        // The emptied vector collects the next batch: no regrowth per batch (unless a long pipeline grew it).
        if self.batch.capacity() == 0 && batch.capacity() <= BATCH_KEEP {
            self.batch = batch;
        }
        out
    }

    /// Session pooling: the connection is the client's own, so its statements are the client's, under its names,
    /// as on a direct connection (SQL `EXECUTE` and `DEALLOCATE` see them, `pg_prepared_statements` lists exactly
    /// them): the batch goes as it is.
    fn pass_batch(&mut self, conn: &mut ServerConn, batch: &mut Vec<Frame>, out: &mut BytesMut) {
        for f in batch.drain(..) {
            out.put_slice(&f.bytes);
            let reply = match f.tag {
                b'P' => Some(Reply::Parse(None)),
                b'B' => Some(Reply::Bind),
                b'D' => Some(Reply::Describe),
                b'E' => Some(Reply::Execute),
                b'S' => Some(Reply::Sync),
                b'C' => {
                    if let Ok((b'S', name)) = decode::describe_or_close(f.body(), self.encoding) {
                        self.statements.remove(&*name);
                    }
                    Some(Reply::Close)
                }
                _ => None,
            };
            if let Some(reply) = reply {
                conn.expect(Expect::Forward(reply));
            }
        }
    }

    /// A Parse: the unnamed statement is remembered and sent as it is; a named one is prepared under its
    /// server-side name unless the connection has it (behind a transaction pooler: only checked, as unnamed).
    fn rewrite_parse_message(
        &mut self,
        target: TargetId,
        conn: &mut ServerConn,
        f: &Frame,
        out: &mut BytesMut,
        unnamed_here: &mut bool,
    ) {
        let name = decode::parse_name(f.body(), self.encoding).unwrap_or_default();
        let named = !name.is_empty();
        if !named && self.prepare_unnamed && !conn.upstream_pooler() {
            // Made here, message by message: a batch's Binds of the unnamed statement bind the Parse before them.
            self.prepare_unnamed_statement(target, f.body());
        }
        let statement = self.statement(conn, &name);
        if !named {
            // A copy, not a slice of the read buffer (it would keep the whole buffer of an idle client alive);
            // the same Parse again, as most clients send it, is not copied again.
            if self.unnamed_parse.as_deref() != Some(&f.bytes[..]) {
                self.unnamed_parse = Some(bytes::Bytes::copy_from_slice(&f.bytes));
            }
            // Served from a server-side statement, it leaves the server's unnamed statement as it was.
            *unnamed_here = statement.is_none();
        }
        match statement {
            Some(p) if named && conn.upstream_pooler() => {
                parse_unnamed(&p, out);
                *unnamed_here = false;
                conn.expect(Expect::Forward(Reply::Parse(None)));
            }
            p => Self::rewrite_parse(conn, f, p, out),
        }
    }

    /// A Bind of a named statement binds its server-side statement (prepared first if missing; behind a
    /// transaction pooler, parsed anew as the unnamed one).
    fn rewrite_bind(&self, conn: &mut ServerConn, f: &Frame, out: &mut BytesMut, unnamed_here: &mut bool) {
        let (portal, stmt) = decode::bind_raw(f.body()).unwrap_or_default();
        let named = self.encoding.decode(stmt).ok().and_then(|name| self.statement(conn, &name));
        match named {
            Some(p) if self.changed_rows.contains(&p.server_name) => fail_changed(conn, out, unnamed_here),
            Some(p) => {
                let skip = portal.len() + 1 + stmt.len() + 1;
                let rest = f.body().get(skip..).unwrap_or_default();
                if conn.upstream_pooler() {
                    parse_unnamed(&p, out);
                    conn.expect(Expect::Hide { statement: None });
                    *unnamed_here = false;
                    message(out, b'B', &[portal, &[0], &[0], rest]);
                } else {
                    ensure_prepared(conn, &p, out);
                    message(out, b'B', &[portal, &[0], p.server_name.as_bytes(), &[0], rest]);
                }
            }
            None => out.put_slice(&f.bytes),
        }
        conn.expect(Expect::Forward(Reply::Bind));
    }

    /// A Describe of a named statement describes its server-side statement, as `rewrite_bind` binds it.
    fn rewrite_describe(&self, conn: &mut ServerConn, f: &Frame, out: &mut BytesMut, unnamed_here: &mut bool) {
        let named = match decode::describe_or_close(f.body(), self.encoding) {
            Ok((b'S', name)) => self.statement(conn, &name),
            _ => None,
        };
        match named {
            Some(p) if self.changed_rows.contains(&p.server_name) => fail_changed(conn, out, unnamed_here),
            Some(p) if conn.upstream_pooler() => {
                parse_unnamed(&p, out);
                conn.expect(Expect::Hide { statement: None });
                *unnamed_here = false;
                message(out, b'D', &[b"S", &[0]]);
            }
            Some(p) => {
                ensure_prepared(conn, &p, out);
                message(out, b'D', &[b"S", p.server_name.as_bytes(), &[0]]);
            }
            None => out.put_slice(&f.bytes),
        }
        conn.expect(Expect::Forward(Reply::Describe));
    }

    /// A Close of a named statement is answered by pgsplit: the server-side statement stays for other clients;
    /// the client's name is gone.
    fn rewrite_close(&mut self, conn: &mut ServerConn, f: &Frame, out: &mut BytesMut) {
        match decode::describe_or_close(f.body(), self.encoding) {
            Ok((b'S', name)) if !name.is_empty() => {
                self.statements.remove(&*name);
                conn.expect(Expect::Inject(b'3'));
            }
            // The unnamed statement served from a server-side one: that one stays for the next Parse of its text.
            Ok((b'S', _)) if self.statement(conn, "").is_some() => conn.expect(Expect::Inject(b'3')),
            _ => {
                out.put_slice(&f.bytes);
                conn.expect(Expect::Forward(Reply::Close));
            }
        }
    }

    /// Takes back a sent batch's buffer for the next one, unless it grew past `REWRITE_KEEP` (a large batch's
    /// memory is not kept by an idle session).
    pub(super) fn give_back_rewrite(&mut self, buf: BytesMut) {
        if buf.capacity() <= REWRITE_KEEP {
            self.rewrite_buf = buf;
        }
    }

    fn rewrite_parse(conn: &mut ServerConn, f: &Frame, p: Option<Arc<Prepared>>, out: &mut BytesMut) {
        let Some(p) = p else {
            out.put_slice(&f.bytes);
            conn.expect(Expect::Forward(Reply::Parse(None)));
            return;
        };
        if conn.has_prepared(&p.server_name, &p.parse_body) {
            if let Some(shape) = conn.shape_here(&p.server_name) {
                let _ = p.shape.set(shape);
            }
            conn.expect(Expect::Inject(b'1'));
            return;
        }
        make_room(conn, &p, out);
        message(out, b'P', &[&p.parse_body]);
        conn.prepared_here(p.server_name.clone(), p.parse_body.clone(), p.shape.clone());
        conn.expect(Expect::Forward(Reply::Parse(Some(p.server_name.clone()))));
        // The shape of its result row as parsed now, for `session::stale`: a Describe whose replies are hidden.
        message(out, b'D', &[b"S", p.server_name.as_bytes(), &[0]]);
        conn.expect(Expect::Shape(p.shape.clone()));
    }

    /// A statement of this client as it runs on `conn`: a named one, or the unnamed one when it is served from a
    /// server-side statement (`prepare_unnamed`; not behind a transaction pooler, where the client's unnamed
    /// statement goes as it is).
    fn statement(&self, conn: &ServerConn, name: &str) -> Option<Arc<Prepared>> {
        if name.is_empty() {
            return self.unnamed_prepared.as_ref().filter(|_| !conn.upstream_pooler()).map(|u| u.statement.clone());
        }
        self.statements.get(name).cloned()
    }

    /// `prepare_unnamed`: the server-side statement the client's unnamed Parse (`body`) is served from, as a named
    /// Parse's would be (`Prepared::from_parse`): shared by every client and connection that parse the same text
    /// under the same catalog generation, search_path and encoding, so after DDL through pgsplit a Parse makes a new
    /// one, planned against today's catalog. The same Parse as the last one reuses it.
    pub(super) fn prepare_unnamed_statement(&mut self, target: TargetId, body: &[u8]) {
        let catalog = self.backend(target).statement_epoch();
        let rest = body.get(1..).unwrap_or_default();
        if let Some(u) = &self.unnamed_prepared {
            let p = &u.statement;
            if p.target == target
                && p.encoding == self.encoding
                && u.catalog == catalog
                && u.search_path_generation == self.search_path_generation
                && p.parse_body.get(p.server_name.len() + 1..) == Some(rest)
            {
                return;
            }
        }
        let sharing = Sharing { encoding: self.encoding, catalog, search_path: &self.search_path };
        // No analysis, no routing epoch: routing follows the client's unnamed statement (`Session::unnamed`); this
        // one is only what runs.
        self.unnamed_prepared = Prepared::from_parse(target, true, None, 0, sharing, body).map(|p| UnnamedPrepared {
            statement: Arc::new(p),
            catalog,
            search_path_generation: self.search_path_generation,
        });
    }
}

/// A Parse of `p`'s SQL and parameter types as the unnamed statement: behind a transaction pooler, named statements
/// cannot stay on the server (the next transaction may run on another backend), so each use parses them anew.
fn parse_unnamed(p: &Prepared, out: &mut BytesMut) {
    let rest = p.parse_body.get(p.server_name.len() + 1..).unwrap_or_default();
    message(out, b'P', &[&[0], rest]);
}

/// Prepares `p` on `conn` first if the connection lacks it; the ParseComplete is hidden from the client.
fn ensure_prepared(conn: &mut ServerConn, p: &Prepared, out: &mut BytesMut) {
    if conn.has_prepared(&p.server_name, &p.parse_body) {
        return;
    }
    make_room(conn, p, out);
    message(out, b'P', &[&p.parse_body]);
    conn.prepared_here(p.server_name.clone(), p.parse_body.clone(), p.shape.clone());
    conn.expect(Expect::Hide { statement: Some(p.server_name.clone()) });
}

/// What the Bind or Describe of a statement whose result row changed becomes (`session::stale`): it fails on the
/// server with PostgreSQL's error for it, so that the transaction fails, and the server skips to Sync, exactly as
/// on a direct connection. The error answers the client's message; the unnamed statement and portal are used for it.
fn fail_changed(conn: &mut ServerConn, out: &mut BytesMut, unnamed_here: &mut bool) {
    message(out, b'P', &[&[0], ROW_CHANGED, &[0, 0, 0]]);
    conn.expect(Expect::Hide { statement: None });
    message(out, b'B', &[&[0, 0], &[0; 6]]);
    conn.expect(Expect::Hide { statement: None });
    message(out, b'E', &[&[0; 5]]);
    *unnamed_here = false;
}

/// Raises PostgreSQL's error for a prepared statement whose result row changed.
const ROW_CHANGED: &[u8] = b"DO $$BEGIN RAISE EXCEPTION USING ERRCODE = 'feature_not_supported', \
MESSAGE = 'cached plan must not change result type'; END$$";

/// Closes a statement to keep the connection's cache bounded, and a stale one under `p`'s name (a hash collision).
fn make_room(conn: &mut ServerConn, p: &Prepared, out: &mut BytesMut) {
    if let Some(v) = conn.make_room_for(&p.server_name) {
        message(out, b'C', &[b"S", v.as_bytes(), &[0]]);
        conn.expect(Expect::Hide { statement: None });
    }
}

/// Appends one message made of `parts`.
fn message(out: &mut BytesMut, tag: u8, parts: &[&[u8]]) {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    out.put_u8(tag);
    out.put_u32((len + 4) as u32);
    for p in parts {
        out.put_slice(p);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const UTF8: Sharing<'static> = Sharing { encoding: ClientEncoding::UTF8, catalog: 0, search_path: &[] };

    #[test]
    fn same_sql_and_types_share_a_server_name_and_others_do_not() {
        let a = Prepared::from_parse(0, true, None, 0, UTF8, b"s1\0select $1\0\0\x01\0\0\0\x17").unwrap();
        let b = Prepared::from_parse(1, true, None, 0, UTF8, b"other\0select $1\0\0\x01\0\0\0\x17").unwrap();
        let c = Prepared::from_parse(0, true, None, 0, UTF8, b"s1\0select $1\0\0\x01\0\0\0\x19").unwrap();
        assert_eq!(a.server_name, b.server_name);
        assert_ne!(a.server_name, c.server_name);
        let path = ["reference".to_owned()];
        let d =
            Prepared::from_parse(0, true, None, 0, Sharing { search_path: &path, ..UTF8 }, b"s1\0select $1\0\0\x01\0\0\0\x17")
                .unwrap();
        assert_ne!(a.server_name, d.server_name, "another search_path, another statement");
        assert!(a.parse_body.starts_with(a.server_name.as_bytes()));
        assert!(a.parse_body.ends_with(b"select $1\0\0\x01\0\0\0\x17"));
        assert!(Prepared::from_parse(0, true, None, 0, UTF8, b"no terminator").is_none());
    }
}
