//! The bodies of the cargo-fuzz targets (`fuzz/fuzz_targets/*.rs`), one function per target taking the raw input, so
//! that `tests/fuzz_corpus.rs` replays the corpus and every crash input through the same code on stable Rust.
//!
//! A panic is a crash: each function panics, with what broke, when pgsplit panics or breaks an invariant checked
//! here. Errors on malformed input are the expected outcome and are ignored.

mod failure;
mod fake_server;
mod script;
mod session;

use std::collections::HashMap;
use std::path::Path;

use bytes::BytesMut;

use crate::auth::{ScramExchange, Verifier};
use crate::catalog::{Catalog, TargetCatalog};
use crate::protocol::encoding::ClientEncoding;
use crate::protocol::{decode, framing};
use crate::router::{self, Analysis, RoutingTable, SessionView};

pub use session::SessionHarness;

/// Frontend framing and the decoders of the messages pgsplit reads: the input is a client byte stream. Framing must
/// not depend on how the stream is cut into reads: the input is also fed in chunks (sizes taken from its first
/// byte) and must give the same frames and the same error.
pub fn frontend(data: &[u8]) {
    let whole = frames(data, data.len().max(1), framing::next_frontend);
    let chunk = usize::from(data.first().copied().unwrap_or(1) % 16) + 1;
    assert_eq!(frames(data, chunk, framing::next_frontend), whole, "framing depends on how the stream is read");
    // Client text is read in the client's encoding: one of those whose readers differ, chosen by the last byte.
    let encodings = ["UTF8", "LATIN1", "LATIN5", "KOI8R", "SJIS", "EUC_JP", "BIG5", "GB18030", "JOHAB"];
    let pick = usize::from(data.last().copied().unwrap_or(0)) % encodings.len();
    let enc = encodings.get(pick).and_then(|n| ClientEncoding::from_name(n)).unwrap_or_default();
    for frame in whole.0.iter().map(|(tag, bytes)| framing::Frame { tag: *tag, bytes: bytes.clone().into() }) {
        let body = frame.body();
        let _ = match frame.tag {
            b'Q' => decode::query(body).map(|q| drop(enc.decode(q))),
            b'P' => {
                let full = decode::parse(body, enc);
                // The shortcuts read the same leading fields as the full decoder.
                if let Ok(p) = &full {
                    assert_eq!(decode::parse_name(body, enc).as_ref(), Ok(&p.name));
                    assert_eq!(decode::parse_sql(body, enc), Ok((p.name.clone(), p.sql.clone())));
                    let (name, sql) = decode::parse_raw(body).expect("raw fields of a Parse that decodes");
                    assert_eq!((enc.decode(name).as_ref(), enc.decode(sql).as_ref()), (Ok(&p.name), Ok(&p.sql)));
                }
                full.map(drop)
            }
            b'B' => {
                let names = decode::bind_names(body, enc);
                if let Ok((portal, stmt)) = &names {
                    let (p, s) = decode::bind_raw(body).expect("raw names of a Bind that decodes");
                    assert_eq!((enc.decode(p).as_ref(), enc.decode(s).as_ref()), (Ok(portal), Ok(stmt)));
                }
                names.map(drop)
            }
            b'D' | b'C' => {
                let named = decode::describe_or_close(body, enc);
                if let Ok((kind, name)) = &named {
                    let (k, n) = decode::describe_or_close_raw(body).expect("raw name of a Describe that decodes");
                    assert_eq!((k, enc.decode(n).as_ref()), (*kind, Ok(name)));
                }
                named.map(drop)
            }
            b'E' => decode::execute_portal(body, enc).map(drop),
            b'p' => decode::sasl_initial(body).map(drop),
            _ => Ok(()),
        };
    }
    // The same bytes as a server stream: pgsplit frames what it relays and reads errors and parameters from it.
    let (backend, error) = frames(data, data.len().max(1), framing::next_backend);
    // A reply the session cache keeps is whole messages, the last a ReadyForQuery idle.
    if crate::cache::reply::keepable(data) {
        assert!(error.is_none(), "a kept reply frames");
        assert_eq!(backend.last().map(|(tag, bytes)| (*tag, bytes.len())), Some((b'Z', 6)), "ends with ReadyForQuery");
    }
    for (tag, bytes) in &backend {
        let _ = match tag {
            b'E' | b'N' => decode::error_fields(&bytes[5..]).map(drop),
            b'S' => decode::parameter_status(&bytes[5..]).map(drop),
            _ => Ok(()),
        };
    }
}

/// Frames and the error that stopped framing, from `data` fed `chunk` bytes at a time.
type Framed = (Vec<(u8, Vec<u8>)>, Option<framing::FrameError>);

fn frames(data: &[u8], chunk: usize, next: fn(&mut BytesMut) -> Result<Option<framing::Frame>, framing::FrameError>) -> Framed {
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match next(&mut buf) {
                Ok(Some(f)) => {
                    let declared = u32::from_be_bytes([f.bytes[1], f.bytes[2], f.bytes[3], f.bytes[4]]) as usize;
                    assert_eq!(declared + 1, f.bytes.len(), "a frame's bytes are its declared length");
                    assert_eq!(f.tag, f.bytes[0]);
                    out.push((f.tag, f.bytes.to_vec()));
                }
                Ok(None) => break,
                Err(e) => return (out, Some(e)),
            }
        }
    }
    (out, None)
}

/// Startup-phase framing and the startup packet decoder: the input is the first bytes of a connection.
pub fn startup(data: &[u8]) {
    let mut whole = BytesMut::from(data);
    let first = framing::next_startup(&mut whole);
    let mut chunked = BytesMut::new();
    let mut by_chunks = Ok(None);
    for piece in data.chunks(7) {
        chunked.extend_from_slice(piece);
        by_chunks = framing::next_startup(&mut chunked);
        if !matches!(by_chunks, Ok(None)) {
            break;
        }
    }
    assert_eq!(first, by_chunks, "startup framing depends on how the stream is read");
    if let Ok(Some(payload)) = first {
        assert!(payload.len() + 4 <= framing::MAX_STARTUP_LEN);
        if let Ok(decode::Startup::Params { params, .. }) = decode::startup(&payload) {
            if let Some(path) = params.get("search_path") {
                let _ = router::parse_search_path(path);
            }
        }
    }
    let _ = decode::startup(data);
}

/// The stored verifier the SCRAM target authenticates against: password `pencil`, RFC 7677's salt and iterations.
pub const SCRAM_VERIFIER: &str = "SCRAM-SHA-256$4096:W22ZaJ0SNY7soEsUEjb6gQ==$WG5d8oPm3OtcPnkdi4Uo7BkeZkBFzpcXkuLmtbsT4qY=:wfPLwcE6nTWhTAmQ7tl2KeoiWGPlZqQxSrmfPwDl2dU=";
/// The server nonce of the SCRAM target (a real exchange draws it at random), so a seed can carry a valid proof.
pub const SCRAM_SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";

/// The server side of SCRAM-SHA-256: the input is client-first-message, a NUL byte, client-final-message, and
/// optionally a NUL byte and a verifier string to parse.
pub fn scram(data: &[u8]) {
    let mut parts = data.splitn(3, |&b| b == 0);
    let first = parts.next().unwrap_or_default();
    let last = parts.next();
    if let Some(stored) = parts.next() {
        let _ = Verifier::parse(&String::from_utf8_lossy(stored));
    }
    let verifier = match Verifier::parse(SCRAM_VERIFIER) {
        Ok(v) => v,
        Err(e) => panic!("the fixed verifier does not parse: {e}"),
    };
    let Ok((exchange, server_first)) = ScramExchange::start_with_nonce(&verifier, first, SCRAM_SERVER_NONCE) else { return };
    assert!(server_first.starts_with("r=") && server_first.contains(SCRAM_SERVER_NONCE), "{server_first}");
    if let Some(last) = last {
        if let Ok(server_final) = exchange.finish(last) {
            assert!(server_final.starts_with("v="), "{server_final}");
        }
    }
}

/// The router on arbitrary SQL text (UTF-8; other input is skipped, as the session rejects it): analysis, then a
/// decision under a few search paths and session hints against a fixed routing table and catalog.
pub fn route(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let analysis = Analysis::of(sql);
    let _ = analysis.heap_bytes();
    let (table, catalog) = fixture();
    for (path, hint) in [("\"$user\", public", None), ("workspace, config", None), ("reference", Some(0))] {
        let path = router::parse_search_path(path);
        let view = SessionView { search_path: &path, target_hint: hint };
        let _ = router::decide(&table, &catalog, &analysis, &view);
        let _ = router::routed_relations(&table, &catalog, &analysis, &view);
    }
    let _ = router::parse_search_path(sql);
    // A migration file's statements (`pgsplit migrate`): each a piece of the text, in order, where it says it is.
    if let Some(statements) = crate::migrate::files::statements(sql) {
        let mut last = 0;
        for (offset, text) in statements {
            assert!(offset >= last && sql.get(offset..offset + text.len()) == Some(text), "statement at {offset}");
            last = offset + text.len();
        }
    }
}

/// The literal shaper and the fallback scan. Texts of one shape share one cached analysis (`router::cache`), so a
/// text and its shape must be routed alike whenever the cache lets them share it.
pub fn literals(data: &[u8]) {
    let Ok(sql) = std::str::from_utf8(data) else { return };
    let _ = router::fallback::scan(sql);
    let mut shaped = String::new();
    if !router::literals::shape_into(sql, &mut shaped) {
        return;
    }
    let mut again = String::new();
    if router::literals::shape_into(&shaped, &mut again) {
        assert_eq!(again, shaped, "shaping a shape changes it");
    }
    // The route cache (`router::cache`) keeps an analysis under the shape only when `shared_by_shape` holds, and
    // then hands it to every text of that shape: so when either side may be shared, both must route alike and
    // agree on whether they may be shared.
    let original = Analysis::of(sql);
    let of_shape = Analysis::of(&shaped);
    let shared = router::cache::shared_by_shape;
    if !shared(&original) && !shared(&of_shape) {
        return;
    }
    let (table, catalog) = fixture();
    let path = router::parse_search_path("\"$user\", public");
    let view = SessionView { search_path: &path, target_hint: None };
    let routed = |a: &Analysis| {
        let decision = router::decide(&table, &catalog, a, &view);
        (shared(a), decision, a.writes, a.ddl, a.pins, a.own_transaction, a.command.clone())
    };
    assert_eq!(routed(&original), routed(&of_shape), "{sql:?} and its shape {shaped:?} are routed differently");
}

/// The configuration loader on arbitrary text, with a fixed environment; a configuration it accepts must hold
/// what the rest of pgsplit relies on.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let env = |name: &str| match name {
        "PRIMARY_DATABASE_URL" => Some("postgresql://u:p%40ss@db.example.com:25060/handled_primary?sslmode=require".to_owned()),
        "DATA_DATABASE_URL" => Some("postgresql://u:pw@localhost/handled_data".to_owned()),
        "APP_PASSWORD" => Some("s3cret".to_owned()),
        "EMPTY" => Some(String::new()),
        _ => None,
    };
    let _ = crate::config::parse_duration(text);
    let _ = crate::config::parse_size(text);
    let Ok(c) = crate::config::load_str(text, Path::new("/nonexistent/pgsplit-fuzz"), &env) else { return };
    let known = |name: &str| c.targets.iter().any(|t| t.name == name);
    assert!(!c.targets.is_empty(), "a configuration without targets was accepted");
    assert!(known(&c.default_target) && known(&c.single_target), "default or single target unknown: {c:?}");
    let mut owners = HashMap::new();
    for t in &c.targets {
        assert!(t.pool.max >= 1 && t.pool.min <= t.pool.max, "pool bounds accepted: {:?}", t.pool);
        for s in &t.schemas {
            assert!(owners.insert(s.as_str(), t.name.as_str()).is_none(), "schema {s} owned twice");
        }
    }
}

/// The routing table and catalog the router targets decide against: primary (0) owns config and customer, data (1)
/// owns workspace and reference.
fn fixture() -> (RoutingTable, Catalog) {
    let schemas = [("config", 0), ("customer", 0), ("workspace", 1), ("reference", 1)];
    let table = RoutingTable {
        targets: vec!["primary".into(), "data".into()],
        schemas: schemas.iter().map(|(s, t)| ((*s).to_owned(), *t)).collect(),
        default_target: 0,
    };
    let common = [("s", "public", ""), ("s", "pg_catalog", ""), ("r", "pg_catalog", "pg_class"), ("f", "pg_catalog", "now")];
    let primary = [("s", "config", ""), ("s", "customer", ""), ("r", "config", "users"), ("r", "customer", "accounts")];
    let data = [("s", "workspace", ""), ("s", "reference", ""), ("r", "workspace", "users"), ("r", "workspace", "imports")];
    let catalog = Catalog::unknown(2)
        .with_target(0, TargetCatalog::from_rows(common.iter().chain(&primary).copied()))
        .with_target(1, TargetCatalog::from_rows(common.iter().chain(&data).copied()));
    (table, catalog)
}
