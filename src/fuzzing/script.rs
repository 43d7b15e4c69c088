//! The session target's input language: how fuzz bytes become a login and a sequence of client messages (valid,
//! malformed, or raw bytes), chosen so that short inputs reach meaningful session states.

/// Statements the session target's messages carry, by index. They reach the routing decisions, the transaction
/// states, session settings, pinning, COPY, and the fake server's error triggers (`fuzzfail`, `fuzzfatal`).
const SQL: &[&str] = &[
    "select 1",
    "begin",
    "commit",
    "rollback",
    "start transaction isolation level serializable",
    "end",
    "abort",
    "select * from workspace.imports",
    "select * from config.users",
    "insert into workspace.imports values (1)",
    "update customer.accounts set x = 2 where id = 3",
    "select * from workspace.imports join config.users on true",
    "/* pgsplit: target=data */ select 1",
    "/* pgsplit: target=nowhere */ select 1",
    "set pgsplit.target = data",
    "set pgsplit.target = 'nowhere'",
    "reset pgsplit.target",
    "set search_path to workspace",
    "set search_path = config, public",
    "reset search_path",
    "reset all",
    "discard all",
    "set statement_timeout = 5",
    "select set_config('search_path', 'reference', false)",
    "set local work_mem = '1MB'",
    "savepoint a",
    "release a",
    "rollback to a",
    "select * from users",
    "select * from imports",
    "copy workspace.imports to stdout",
    "listen chan",
    "create temp table t (x int)",
    "select pg_advisory_lock(1)",
    "prepare q as select 1",
    "execute q",
    "deallocate all",
    "deallocate q",
    "declare c cursor with hold for select 1",
    "select fuzzfail",
    "select * from workspace.fuzzfail",
    "select fuzzfatal",
    "vacuum",
    "create table workspace.t (x int)",
    "drop table config.x",
    "select $1",
    "select * from workspace.imports where id = $1",
    "",
    ";",
    "select 'unterminated",
    "selec garbage (((",
    "begin; select 1; commit",
    "select now()",
    "commit and chain",
    "set session authorization x",
    "do $$ begin perform 1; end $$",
    "select nextval('workspace.seq')",
    "insert into config.users values (1); insert into workspace.imports values (2)",
    "set application_name = 'fuzz'",
    "set datestyle to iso",
];

/// Tables a COPY FROM STDIN step copies into.
const COPY_INTO: &[&str] = &["workspace.imports", "config.users", "imports", "nowhere.t"];

/// Names for statements and portals: a few fixed ones so that messages meet each other's names.
const NAMES: &[&str] = &["", "s1", "s2", "p", "a_statement_with_a_longer_name"];

/// Frontend message types a malformed message is given (the type is valid; the body is random).
const TAGS: &[u8] = b"QPBDECSHXdcfpF";

/// What the login packet says.
#[derive(Debug, Clone)]
pub struct Login {
    /// The `database` parameter.
    pub database: &'static str,
    /// The `user` parameter.
    pub user: &'static str,
    /// Whether the client knows the right password.
    pub good_password: bool,
    /// Extra startup parameters.
    pub params: Vec<(&'static str, &'static str)>,
    /// An SSLRequest before the StartupMessage (answered `N`: client TLS is disabled).
    pub ssl_request: bool,
    /// A GSSENCRequest before the StartupMessage (always answered `N`).
    pub gss_request: bool,
}

/// One step of the client.
#[derive(Debug, Clone)]
pub enum Op {
    /// A whole message: its type and body.
    Message(u8, Vec<u8>),
    /// Bytes written as they are (they may not frame); always the last step.
    Raw(Vec<u8>),
    /// Write what is buffered now, as a separate write, and let pgsplit run.
    Split,
}

/// A decoded input: the login, then the messages.
#[derive(Debug, Clone)]
pub struct Script {
    /// The startup packet.
    pub login: Login,
    /// The client's steps after login.
    pub ops: Vec<Op>,
}

/// A cursor over the fuzz input; reads past its end give zeros, so every input decodes.
struct Input<'a> {
    /// The bytes not yet read.
    rest: &'a [u8],
}

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.rest.split_first() {
            Some((&b, tail)) => {
                self.rest = tail;
                b
            }
            None => 0,
        }
    }

    fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = usize::from(self.byte()).min(max).min(self.rest.len());
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        head
    }

    /// A statement from `SQL` or, for a byte at or above 0xc0, raw bytes (NUL and invalid UTF-8 included).
    fn sql(&mut self) -> Vec<u8> {
        let b = self.byte();
        if b >= 0xc0 {
            defanged(self.bytes(255))
        } else {
            SQL[usize::from(b) % SQL.len()].as_bytes().to_vec()
        }
    }

    /// A name from `NAMES` or raw bytes; raw names never start with `pgsplit` (pgsplit's own server-side names).
    fn name(&mut self) -> Vec<u8> {
        let b = self.byte();
        match NAMES.get(usize::from(b) % (NAMES.len() + 1)) {
            Some(n) => n.as_bytes().to_vec(),
            None => {
                let raw = self.bytes(64);
                let mut name = if raw.starts_with(b"pgsplit") { b"x".to_vec() } else { Vec::new() };
                name.extend(raw.iter().filter(|&&c| c != 0));
                name
            }
        }
    }
}

/// Decodes fuzz input into a script. Every input decodes; the first two bytes choose the login.
pub fn decode(data: &[u8]) -> Script {
    let mut input = Input { rest: data };
    let login = login(input.byte(), input.byte());
    let mut ops = Vec::new();
    // Raw bytes are the last step: they may end inside a message, which swallows whatever would follow.
    while !input.rest.is_empty() && !matches!(ops.last(), Some(Op::Raw(_))) {
        op(&mut input, &mut ops);
    }
    Script { login, ops }
}

fn login(who: u8, how: u8) -> Login {
    let database = match who & 7 {
        5 => "primary",
        6 => "data",
        7 => "nosuchdb",
        _ => "handled",
    };
    let (user, good_password) = match (who >> 3) & 7 {
        6 => ("app", false),
        7 => ("nobody", true),
        _ => ("app", true),
    };
    let params = match how & 7 {
        4 => vec![("search_path", "workspace, public")],
        5 => vec![("options", "-c search_path=reference -c statement_timeout=5")],
        6 => vec![("application_name", "fuzz"), ("DateStyle", "ISO, MDY")],
        7 => vec![("TimeZone", "UTC"), ("client_encoding", "UTF8")],
        _ => Vec::new(),
    };
    Login { database, user, good_password, params, ssl_request: how & 0x40 != 0, gss_request: how & 0x80 != 0 }
}

/// Decodes one step (a COPY FROM STDIN is several messages) into `ops`.
fn op(input: &mut Input<'_>, ops: &mut Vec<Op>) {
    match input.byte() % 17 {
        13 => ops.push(Op::Raw(defanged(input.bytes(255)))),
        15 => copy_in(input, ops),
        16 => ops.push(Op::Split),
        kind => ops.push(client_message(kind, input)),
    }
}

/// One whole client message of step `kind` (0 to 12, or 14 for a valid type with a random body).
fn client_message(kind: u8, input: &mut Input<'_>) -> Op {
    let mut body = Vec::new();
    let tag = match kind {
        0 => {
            cstr(&mut body, &input.sql());
            b'Q'
        }
        1 => {
            // Two statements in one Query.
            let mut text = input.sql();
            text.push(b';');
            text.extend(input.sql());
            cstr(&mut body, &text);
            b'Q'
        }
        2 => {
            parse_body(input, &mut body);
            b'P'
        }
        3 => {
            bind_body(input, &mut body);
            b'B'
        }
        4 | 8 => {
            body.push(if input.byte() & 1 == 0 { b'S' } else { b'P' });
            cstr(&mut body, &input.name());
            if kind == 4 {
                b'D'
            } else {
                b'C'
            }
        }
        5 => {
            cstr(&mut body, &input.name());
            body.extend_from_slice(&i32::from(input.byte() % 3).to_be_bytes());
            b'E'
        }
        6 => b'S',
        7 => b'H',
        9 => {
            body.extend_from_slice(input.bytes(255));
            b'd'
        }
        10 => b'c',
        11 => {
            cstr(&mut body, b"client gave up");
            b'f'
        }
        12 => b'X',
        _ => {
            let tag = TAGS[usize::from(input.byte()) % TAGS.len()];
            body.extend(defanged(input.bytes(255)));
            tag
        }
    };
    Op::Message(tag, body)
}

/// A Parse body: statement name, text, and up to two parameter types (int4, then text).
fn parse_body(input: &mut Input<'_>, body: &mut Vec<u8>) {
    cstr(body, &input.name());
    cstr(body, &input.sql());
    let n = input.byte() % 3;
    body.extend_from_slice(&i16::from(n).to_be_bytes());
    for i in 0..n {
        body.extend_from_slice(&[0, 0, 0, if i == 0 { 23 } else { 25 }]);
    }
}

/// A Bind body: portal and statement names, text formats, up to two values (an empty one is NULL), text results.
fn bind_body(input: &mut Input<'_>, body: &mut Vec<u8>) {
    cstr(body, &input.name());
    cstr(body, &input.name());
    body.extend_from_slice(&0i16.to_be_bytes());
    let n = input.byte() % 3;
    body.extend_from_slice(&i16::from(n).to_be_bytes());
    for _ in 0..n {
        let value = input.bytes(16);
        if value.is_empty() {
            body.extend_from_slice(&(-1i32).to_be_bytes());
        } else {
            body.extend_from_slice(&(value.len() as i32).to_be_bytes());
            body.extend_from_slice(value);
        }
    }
    body.extend_from_slice(&0i16.to_be_bytes());
}

/// A COPY FROM STDIN with its data and its end (CopyDone or CopyFail), Flush and Sync possibly in between (a
/// server ignores them during COPY). The client sends nothing else until the COPY ends, as a client must:
/// everything pgsplit receives until CopyDone or CopyFail goes to the server as COPY data.
fn copy_in(input: &mut Input<'_>, ops: &mut Vec<Op>) {
    let mut body = format!("copy {} from stdin", COPY_INTO[usize::from(input.byte()) % COPY_INTO.len()]).into_bytes();
    body.push(0);
    ops.push(Op::Message(b'Q', body));
    let steps = input.byte();
    for i in 0..steps % 4 {
        match (steps >> (2 + 2 * i)) & 3 {
            0 => ops.push(Op::Message(b'H', Vec::new())),
            1 => ops.push(Op::Message(b'S', Vec::new())),
            _ => ops.push(Op::Message(b'd', input.bytes(64).to_vec())),
        }
    }
    if input.byte() & 1 == 0 {
        ops.push(Op::Message(b'c', Vec::new()));
    } else {
        ops.push(Op::Message(b'f', b"client gave up\0".to_vec()));
    }
}

/// `raw` with every `stdin` (any case) made `stdxn`: only the COPY step starts a COPY FROM STDIN, so that no other
/// message is sent while one is in progress.
fn defanged(raw: &[u8]) -> Vec<u8> {
    let mut out = raw.to_vec();
    for i in 0..out.len().saturating_sub(4) {
        if out[i..i + 5].eq_ignore_ascii_case(b"stdin") {
            out[i + 3] = b'x';
        }
    }
    out
}

fn cstr(out: &mut Vec<u8>, s: &[u8]) {
    out.extend_from_slice(s);
    out.push(0);
}

/// Appends a whole message (type, length, body) to `out`.
pub fn message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
    out.push(tag);
    out.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    out.extend_from_slice(body);
}

/// A Query message.
pub fn query(out: &mut Vec<u8>, sql: &str) {
    let mut body = sql.as_bytes().to_vec();
    body.push(0);
    message(out, b'Q', &body);
}
