//! An in-process stand-in for PostgreSQL for the session target: protocol 3.0 with trust authentication, simple and
//! extended queries with PostgreSQL's transaction status and skip-until-Sync rules, COPY both ways, and errors on
//! demand (`fuzzfail`: ERROR, `fuzzfatal`: FATAL). It records what pgsplit must never send a server as violations,
//! and, between inputs, checks that every connection pgsplit keeps is at rest, then closes them all (so that each
//! input starts from fresh server connections and a crash reproduces from its input alone).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::protocol::encode::{self, PgError};
use crate::protocol::encoding::ClientEncoding;
use crate::protocol::{decode, framing, STATUS_FAILED, STATUS_IDLE, STATUS_IN_TX};

/// The text of the query the session target ends every input with; answered with one row holding this text.
pub const PROBE: &str = "pgsplit-fuzz-probe";

/// What the harness sees of the fake server: violations, and the state of each open connection.
#[derive(Default)]
pub struct Watch {
    /// Tolerate the known bugs (fuzz/README.md, inputs in fuzz/artifacts/session/pending/), which the fuzzer would
    /// otherwise find again and again: (1) a statement that DEALLOCATE ALL or DISCARD ALL, executed earlier in the
    /// same extended batch, removed is not reported when pgsplit binds it (pgsplit learns of the removal only at
    /// Sync); (2) a Parse of one of pgsplit's statements that the connection already has, with the
    /// same text, succeeds (pgsplit forgets a connection's statements when DEALLOCATE ALL or DISCARD ALL is only
    /// bound, not executed). The strict watch (`SessionHarness::strict`) replays fuzz/artifacts/session/strict/.
    tolerate_known: bool,
    /// What pgsplit did wrong towards the server, in arrival order.
    violations: Mutex<Vec<String>>,
    /// Open connections by backend pid.
    conns: Mutex<HashMap<i32, Open>>,
}

/// An open connection as the watch sees it.
struct Open {
    /// Why the connection is not at rest; `None` when it is.
    unrest: Option<String>,
    /// Closes the connection.
    close: Arc<Notify>,
}

impl Watch {
    /// A watch with nothing seen yet; see `tolerate_known`.
    pub fn new(tolerate_known: bool) -> Watch {
        Watch { tolerate_known, ..Watch::default() }
    }

    fn violation(&self, what: String) {
        if let Ok(mut v) = self.violations.lock() {
            v.push(what);
        }
    }

    /// The violations seen since the last call.
    pub fn take_violations(&self) -> Vec<String> {
        self.violations.lock().map(|mut v| std::mem::take(&mut *v)).unwrap_or_default()
    }

    /// Called when no client is connected: every connection still open is in pgsplit's pool and must be at rest
    /// (idle, not skipping, not in COPY, no partial message). Records a violation for each that is not, then closes
    /// them all.
    pub fn audit_and_close(&self) {
        let Ok(conns) = self.conns.lock() else { return };
        for (pid, open) in conns.iter() {
            if let Some(why) = &open.unrest {
                self.violation(format!("server connection {pid} was left in the pool {why}"));
            }
            open.close.notify_one();
        }
    }
}

/// Serves connections on `listener` until the runtime stops.
pub async fn serve(listener: TcpListener, watch: Arc<Watch>) {
    let mut pid = 0;
    while let Ok((tcp, _)) = listener.accept().await {
        pid += 1;
        let _ = tcp.set_nodelay(true);
        let watch = watch.clone();
        tokio::spawn(async move {
            let _ = Conn::start(tcp, pid, watch.clone()).await;
            if let Ok(mut conns) = watch.conns.lock() {
                conns.remove(&pid);
            }
        });
    }
}

/// A COPY FROM STDIN in progress, from a simple query.
struct CopyIn {
    /// CopyData messages received.
    rows: usize,
    /// Statements of the same Query after the COPY, run once it ends.
    rest: VecDeque<String>,
}

/// One statement's outcome.
enum Ran {
    /// Completed.
    Done,
    /// Failed with an ERROR: the rest of the Query, or of the batch up to Sync, is skipped.
    Failed,
    /// COPY FROM STDIN started.
    CopyIn,
    /// FATAL sent: the connection ends.
    Fatal,
}

/// One server connection's state.
struct Conn {
    /// The socket.
    tcp: TcpStream,
    /// Transaction status for ReadyForQuery.
    status: u8,
    /// After an error in an extended-protocol message: everything up to Sync is ignored.
    skipping: bool,
    /// Prepared statements: name → SQL.
    statements: HashMap<Vec<u8>, String>,
    /// Portals: name → SQL.
    portals: HashMap<Vec<u8>, String>,
    /// A COPY FROM STDIN in progress.
    copy_in: Option<CopyIn>,
    /// DEALLOCATE ALL or DISCARD ALL ran in the extended batch now open (see `Watch::tolerate_known`).
    forgot_in_batch: bool,
    /// The database the connection logged in to (the catalog snapshot's rows depend on it).
    database: String,
    /// Where violations and the connection's state are reported.
    watch: Arc<Watch>,
    /// The backend pid, this connection's key in `watch`.
    pid: i32,
    /// Notified when the harness closes every connection.
    close: Arc<Notify>,
    /// Replies not yet written.
    out: BytesMut,
}

impl Conn {
    async fn start(mut tcp: TcpStream, pid: i32, watch: Arc<Watch>) -> std::io::Result<()> {
        let mut rbuf = BytesMut::new();
        let params = loop {
            let payload = loop {
                match framing::next_startup(&mut rbuf) {
                    Ok(Some(p)) => break p,
                    Ok(None) if tcp.read_buf(&mut rbuf).await? > 0 => {}
                    _ => return Ok(()),
                }
            };
            match decode::startup(&payload) {
                Ok(decode::Startup::Params { params: p, .. }) => break p,
                Ok(decode::Startup::SslRequest | decode::Startup::GssEncRequest) => tcp.write_all(b"N").await?,
                _ => return Ok(()),
            }
        };
        let mut out = BytesMut::new();
        encode::auth_ok(&mut out);
        for (k, v) in [
            ("server_version", "15.0"),
            ("server_encoding", "UTF8"),
            ("client_encoding", "UTF8"),
            ("DateStyle", "ISO, MDY"),
            ("TimeZone", "UTC"),
            ("integer_datetimes", "on"),
            ("standard_conforming_strings", "on"),
        ] {
            encode::parameter_status(&mut out, k, v);
        }
        encode::backend_key_data(&mut out, pid, 7);
        encode::ready_for_query(&mut out, STATUS_IDLE);
        let database = params.get("database").cloned().unwrap_or_default();
        let mut conn = Conn {
            tcp,
            status: STATUS_IDLE,
            skipping: false,
            statements: HashMap::new(),
            portals: HashMap::new(),
            copy_in: None,
            forgot_in_batch: false,
            database,
            watch,
            pid,
            close: Arc::new(Notify::new()),
            out,
        };
        conn.report(&rbuf);
        conn.run(rbuf).await
    }

    async fn run(&mut self, mut rbuf: BytesMut) -> std::io::Result<()> {
        loop {
            self.tcp.write_all(&self.out).await?;
            self.out.clear();
            self.report(&rbuf);
            tokio::select! {
                read = self.tcp.read_buf(&mut rbuf) => if read? == 0 { return Ok(()) },
                _ = self.close.notified() => return Ok(()),
            }
            loop {
                let frame = match framing::next_frontend(&mut rbuf) {
                    Ok(Some(f)) => f,
                    Ok(None) => break,
                    Err(e) => {
                        self.violation(format!("pgsplit sent bytes that do not frame as a client message: {e}"));
                        return Ok(());
                    }
                };
                tracing::trace!(pid = self.pid, tag = %(frame.tag as char), body = %String::from_utf8_lossy(frame.body()), "server received");
                if !self.message(frame.tag, frame.body()) {
                    self.tcp.write_all(&self.out).await?;
                    return Ok(());
                }
            }
        }
    }

    /// Tells the watch whether the connection is at rest now.
    fn report(&self, rbuf: &BytesMut) {
        let unrest = if self.status != STATUS_IDLE {
            Some(format!("in a transaction (status {})", self.status as char))
        } else if self.skipping {
            Some("skipping messages until Sync".to_owned())
        } else if self.copy_in.is_some() {
            Some("in COPY FROM STDIN".to_owned())
        } else if !rbuf.is_empty() {
            Some("with part of a message sent".to_owned())
        } else {
            None
        };
        if let Ok(mut conns) = self.watch.conns.lock() {
            conns.insert(self.pid, Open { unrest, close: self.close.clone() });
        }
    }

    fn violation(&self, what: String) {
        self.watch.violation(what);
    }

    /// Handles one message; false when the connection must end.
    fn message(&mut self, tag: u8, body: &[u8]) -> bool {
        if self.copy_in.is_some() {
            return self.copy_message(tag, body);
        }
        if tag == b'X' {
            return false;
        }
        if self.skipping && tag != b'S' {
            return true;
        }
        let ran = match tag {
            b'Q' => return self.simple(body),
            b'P' => self.parse(body),
            b'B' => self.bind(body),
            b'D' => self.describe(body),
            b'E' => self.execute(body),
            b'C' => self.close(body),
            b'S' => {
                self.skipping = false;
                self.forgot_in_batch = false;
                encode::ready_for_query(&mut self.out, self.status);
                Ran::Done
            }
            b'F' => {
                // A fast-path call: a NULL result, as from a function that returned NULL.
                encode::message(&mut self.out, b'V', |b| b.extend_from_slice(&(-1i32).to_be_bytes()));
                encode::ready_for_query(&mut self.out, self.status);
                Ran::Done
            }
            // Flush: replies are written after every read anyway. CopyData/CopyDone/CopyFail outside COPY: ignored.
            b'H' | b'd' | b'c' | b'f' => Ran::Done,
            other => {
                let e = PgError::fatal("08P01", format!("invalid frontend message type {other}"));
                e.encode(&mut self.out);
                return false;
            }
        };
        match ran {
            Ran::Failed => {
                self.skipping = true;
                true
            }
            Ran::Fatal => false,
            Ran::Done | Ran::CopyIn => true,
        }
    }

    /// A message during COPY FROM STDIN: data, the end, or anything else, which fails the COPY (as PostgreSQL does).
    fn copy_message(&mut self, tag: u8, body: &[u8]) -> bool {
        let Some(copy) = self.copy_in.as_mut() else { return true };
        match tag {
            b'd' => {
                copy.rows += 1;
                return true;
            }
            b'H' | b'S' => return true,
            _ => {}
        }
        let Some(copy) = self.copy_in.take() else { return true };
        match tag {
            b'c' => {
                encode::command_complete(&mut self.out, &format!("COPY {}", copy.rows));
                return self.statements_of(copy.rest);
            }
            b'f' => {
                let why = String::from_utf8_lossy(decode::query(body).unwrap_or(b"?"));
                self.error("57014", format!("COPY from stdin failed: {why}"));
            }
            other => self.error("08P01", format!("unexpected message type 0x{other:02X} during COPY from stdin")),
        }
        encode::ready_for_query(&mut self.out, self.status);
        true
    }

    fn error(&mut self, code: &'static str, message: String) {
        PgError::error(code, message).encode(&mut self.out);
        if self.status == STATUS_IN_TX {
            self.status = STATUS_FAILED;
        }
    }

    fn simple(&mut self, body: &[u8]) -> bool {
        let sql = match decode::query(body).and_then(|q| Ok(crate::protocol::encoding::utf8(q)?)) {
            Ok(sql) => sql,
            Err(e) => {
                self.error("08P01", format!("invalid Query message: {e}"));
                encode::ready_for_query(&mut self.out, self.status);
                return true;
            }
        };
        let statements: VecDeque<String> = split(sql).into_iter().map(str::to_owned).collect();
        if statements.is_empty() {
            encode::empty_query(&mut self.out);
            encode::ready_for_query(&mut self.out, self.status);
            return true;
        }
        self.statements_of(statements)
    }

    /// Runs statements of a simple Query in order; ReadyForQuery at the end unless a COPY FROM STDIN starts.
    fn statements_of(&mut self, mut statements: VecDeque<String>) -> bool {
        while let Some(sql) = statements.pop_front() {
            match self.statement(&sql, true) {
                Ran::Done => {}
                Ran::Failed => break,
                Ran::Fatal => return false,
                Ran::CopyIn => {
                    self.copy_in = Some(CopyIn { rows: 0, rest: statements });
                    return true;
                }
            }
        }
        encode::ready_for_query(&mut self.out, self.status);
        true
    }

    /// Runs one statement: transaction control by its first words, rows for SELECTs, errors on demand.
    fn statement(&mut self, sql: &str, simple: bool) -> Ran {
        let lower = sql.trim().to_lowercase();
        let starts = |w: &[&str]| w.iter().any(|w| lower.starts_with(w));
        let ends_tx = ends_transaction(&lower);
        if lower.contains("fuzzfatal") {
            PgError::fatal("57P01", "terminating connection due to administrator command").encode(&mut self.out);
            return Ran::Fatal;
        }
        if self.status == STATUS_FAILED && !ends_tx {
            self.error("25P02", "current transaction is aborted, commands ignored until end of transaction block".into());
            return Ran::Failed;
        }
        if lower.contains("fuzzfail") || lower.contains("raise exception") {
            self.error("P0001", format!("failed on request: {sql}"));
            return Ran::Failed;
        }
        let tag = if starts(&["begin", "start transaction"]) {
            self.status = STATUS_IN_TX;
            "BEGIN".to_owned()
        } else if starts(&["rollback to", "rollback transaction to", "rollback work to"]) {
            self.status = if self.status == STATUS_IDLE { STATUS_IDLE } else { STATUS_IN_TX };
            "ROLLBACK".to_owned()
        } else if ends_tx {
            let failed = self.status == STATUS_FAILED || starts(&["rollback", "abort"]);
            let chain = lower.ends_with("and chain") && self.status != STATUS_IDLE;
            self.status = if chain { STATUS_IN_TX } else { STATUS_IDLE };
            if failed { "ROLLBACK" } else { "COMMIT" }.to_owned()
        } else if starts(&["copy"]) && lower.contains("from stdin") && simple {
            self.out.extend_from_slice(&[b'G', 0, 0, 0, 7, 0, 0, 0]);
            return Ran::CopyIn;
        } else if starts(&["copy"]) && lower.contains("to stdout") && simple {
            self.out.extend_from_slice(&[b'H', 0, 0, 0, 7, 0, 0, 0]);
            for row in [&b"1\n"[..], b"2\n"] {
                encode::message(&mut self.out, b'd', |b| b.extend_from_slice(row));
            }
            encode::tag_only(&mut self.out, b'c');
            "COPY 2".to_owned()
        } else if starts(&["select", "values", "show", "table", "with"]) {
            self.rows(&lower, simple);
            "SELECT 1".to_owned()
        } else if starts(&["discard all", "deallocate all", "deallocate prepare all"]) {
            self.statements.clear();
            self.portals.clear();
            self.forgot_in_batch |= !simple;
            lower.split_whitespace().next().unwrap_or_default().to_uppercase()
        } else if starts(&["deallocate"]) {
            let name = lower.split_whitespace().filter(|w| *w != "prepare").nth(1).unwrap_or_default();
            self.statements.remove(name.as_bytes());
            "DEALLOCATE".to_owned()
        } else if starts(&["prepare "]) && !starts(&["prepare transaction"]) {
            let name = lower.split_whitespace().nth(1).unwrap_or_default();
            self.statements.insert(name.as_bytes().to_vec(), sql.to_owned());
            "PREPARE".to_owned()
        } else if starts(&["insert"]) {
            "INSERT 0 1".to_owned()
        } else {
            lower.split_whitespace().next().unwrap_or("EMPTY").to_uppercase()
        };
        encode::command_complete(&mut self.out, &tag);
        Ran::Done
    }

    /// The rows of a SELECT (with its RowDescription in the simple protocol): the catalog snapshot of this
    /// database, the probe's own text, or one `1`.
    fn rows(&mut self, lower: &str, simple: bool) {
        if lower.contains("pg_catalog.pg_class c") {
            let schemas: &[(&str, &str, &str)] = match self.database.as_str() {
                "primary_db" => {
                    &[("s", "config", ""), ("s", "customer", ""), ("r", "config", "users"), ("r", "customer", "accounts")]
                }
                _ => {
                    &[("s", "workspace", ""), ("s", "reference", ""), ("r", "workspace", "users"), ("r", "workspace", "imports")]
                }
            };
            if simple {
                encode::row_description(&mut self.out, &["kind", "schema", "name"]);
            }
            for (k, s, n) in
                schemas.iter().chain(&[("s", "public", ""), ("s", "pg_catalog", ""), ("r", "pg_catalog", "pg_class")])
            {
                encode::data_row(&mut self.out, &[Some(k), Some(s), Some(n)]);
            }
            return;
        }
        if simple {
            encode::row_description(&mut self.out, &["?column?"]);
        }
        let value = if lower.contains(PROBE) { PROBE } else { "1" };
        encode::data_row(&mut self.out, &[Some(value)]);
    }

    fn parse(&mut self, body: &[u8]) -> Ran {
        let Ok(p) = decode::parse(body, ClientEncoding::UTF8) else {
            self.error("08P01", "invalid Parse message".into());
            return Ran::Failed;
        };
        let name = p.name.as_bytes().to_vec();
        let same = self.statements.get(&name).is_some_and(|sql| *sql == p.sql);
        if same && p.name.starts_with("pgsplit_") && self.watch.tolerate_known {
            encode::tag_only(&mut self.out, b'1');
            return Ran::Done;
        }
        if !name.is_empty() && self.statements.contains_key(&name) {
            if p.name.starts_with("pgsplit_") {
                self.violation(format!("Parse of {} that the connection already has", p.name));
            }
            self.error("42P05", format!("prepared statement \"{}\" already exists", p.name));
            return Ran::Failed;
        }
        if self.status == STATUS_FAILED && !ends_transaction(&p.sql) {
            self.error("25P02", "current transaction is aborted".into());
            return Ran::Failed;
        }
        if p.sql.to_lowercase().contains("fuzzfail") {
            self.error("42601", "syntax error on request".into());
            return Ran::Failed;
        }
        self.statements.insert(name, p.sql.into_owned());
        encode::tag_only(&mut self.out, b'1');
        Ran::Done
    }

    /// The SQL of a statement, or an error (and a violation for one of pgsplit's own names).
    fn statement_sql(&mut self, name: &[u8]) -> Option<String> {
        let found = self.statements.get(name).cloned();
        if found.is_none() {
            let shown = String::from_utf8_lossy(name).into_owned();
            if shown.starts_with("pgsplit_") && !(self.forgot_in_batch && self.watch.tolerate_known) {
                self.violation(format!("use of statement {shown} that the connection does not have"));
            }
            self.error("26000", format!("prepared statement \"{shown}\" does not exist"));
        }
        found
    }

    fn portal_sql(&mut self, name: &[u8]) -> Option<String> {
        let found = self.portals.get(name).cloned();
        if found.is_none() {
            self.error("34000", format!("portal \"{}\" does not exist", String::from_utf8_lossy(name)));
        }
        found
    }

    fn bind(&mut self, body: &[u8]) -> Ran {
        let Ok((portal, statement)) = decode::bind_names(body, ClientEncoding::UTF8) else {
            self.error("08P01", "invalid Bind message".into());
            return Ran::Failed;
        };
        let Some(sql) = self.statement_sql(statement.as_bytes()) else { return Ran::Failed };
        if self.status == STATUS_FAILED && !ends_transaction(&sql) {
            self.error("25P02", "current transaction is aborted".into());
            return Ran::Failed;
        }
        self.portals.insert(portal.as_bytes().to_vec(), sql);
        encode::tag_only(&mut self.out, b'2');
        Ran::Done
    }

    fn describe(&mut self, body: &[u8]) -> Ran {
        let Ok((kind, name)) = decode::describe_or_close(body, ClientEncoding::UTF8) else {
            self.error("08P01", "invalid Describe message".into());
            return Ran::Failed;
        };
        let sql = if kind == b'S' { self.statement_sql(name.as_bytes()) } else { self.portal_sql(name.as_bytes()) };
        let Some(sql) = sql else { return Ran::Failed };
        if kind == b'S' {
            encode::message(&mut self.out, b't', |b| b.extend_from_slice(&0i16.to_be_bytes()));
        }
        if sql.trim().to_lowercase().starts_with("select") {
            encode::row_description(&mut self.out, &["?column?"]);
        } else {
            encode::tag_only(&mut self.out, b'n');
        }
        Ran::Done
    }

    fn execute(&mut self, body: &[u8]) -> Ran {
        let Ok(portal) = decode::execute_portal(body, ClientEncoding::UTF8) else {
            self.error("08P01", "invalid Execute message".into());
            return Ran::Failed;
        };
        let Some(sql) = self.portal_sql(portal.as_bytes()) else { return Ran::Failed };
        match split(&sql).first() {
            Some(first) => self.statement(first, false),
            None => {
                encode::empty_query(&mut self.out);
                Ran::Done
            }
        }
    }

    fn close(&mut self, body: &[u8]) -> Ran {
        let Ok((kind, name)) = decode::describe_or_close(body, ClientEncoding::UTF8) else {
            self.error("08P01", "invalid Close message".into());
            return Ran::Failed;
        };
        if kind == b'S' {
            self.statements.remove(name.as_bytes());
        } else {
            self.portals.remove(name.as_bytes());
        }
        encode::tag_only(&mut self.out, b'3');
        Ran::Done
    }
}

/// Whether a statement ends a transaction (PostgreSQL runs only these in a failed one).
fn ends_transaction(sql: &str) -> bool {
    let lower = sql.trim_start().to_lowercase();
    ["commit", "end", "rollback", "abort"].iter().any(|w| lower.starts_with(w))
}

/// Splits a Query's text at semicolons outside quotes and dollar quotes; empty statements are dropped.
fn split(sql: &str) -> Vec<&str> {
    let b = sql.as_bytes();
    let mut out = Vec::new();
    let (mut start, mut i) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' => i = b[i + 1..].iter().position(|&c| c == b'\'').map_or(b.len(), |p| i + 1 + p),
            b'$' => {
                let tag_end = b[i + 1..].iter().position(|&c| !(c.is_ascii_alphanumeric() || c == b'_')).map(|p| i + 1 + p);
                if let Some(end) = tag_end.filter(|&e| b[e] == b'$') {
                    let tag = &b[i..=end];
                    i = b[end + 1..].windows(tag.len()).position(|w| w == tag).map_or(b.len(), |p| end + p + tag.len());
                }
            }
            b';' => {
                out.push(&sql[start..i]);
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    out.push(&sql[start..]);
    out.into_iter().filter(|s| !s.trim().is_empty()).collect()
}
