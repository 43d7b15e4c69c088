//! Message framer throughput: `next_frontend` over client batches (extended Parse/Bind/Describe/Execute/Sync,
//! prepared Bind/Execute/Sync, simple Query) and `peek_len` over a server response stream scanned as relay.rs does.

use std::hint::black_box;

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use pgsplit::protocol::framing::{self, MAX_MESSAGE_LEN};

/// pgbench's select-only statement, the hottest text through a pooler.
const SELECT_ONLY: &str = "SELECT abalance FROM pgbench_accounts WHERE aid = $1;";

/// Appends one message: tag, length, body.
fn message(wire: &mut Vec<u8>, tag: u8, body: &[u8]) {
    wire.push(tag);
    wire.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    wire.extend_from_slice(body);
}

/// A NUL-terminated string.
fn cstr(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.push(0);
}

/// Parse of `sql` as statement `name` with one int4 parameter.
fn parse(wire: &mut Vec<u8>, name: &str, sql: &str) {
    let mut b = Vec::new();
    cstr(&mut b, name);
    cstr(&mut b, sql);
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&23u32.to_be_bytes());
    message(wire, b'P', &b);
}

/// Bind of statement `name` to the unnamed portal with one text parameter, text results.
fn bind(wire: &mut Vec<u8>, name: &str, param: &str) {
    let mut b = Vec::new();
    cstr(&mut b, "");
    cstr(&mut b, name);
    b.extend_from_slice(&0u16.to_be_bytes());
    b.extend_from_slice(&1u16.to_be_bytes());
    b.extend_from_slice(&(param.len() as u32).to_be_bytes());
    b.extend_from_slice(param.as_bytes());
    b.extend_from_slice(&0u16.to_be_bytes());
    message(wire, b'B', &b);
}

/// Describe portal, Execute (no row limit), Sync.
fn describe_execute_sync(wire: &mut Vec<u8>, describe: bool) {
    if describe {
        message(wire, b'D', b"P\0");
    }
    message(wire, b'E', b"\0\0\0\0\0");
    message(wire, b'S', b"");
}

/// The client side of `pgbench -M extended -S`: 200 unnamed Parse/Bind/Describe/Execute/Sync batches.
fn extended_batches() -> (Vec<u8>, u64) {
    let mut wire = Vec::new();
    for i in 0..200 {
        parse(&mut wire, "", SELECT_ONLY);
        bind(&mut wire, "", &(i * 4_999 % 1_000_000).to_string());
        describe_execute_sync(&mut wire, true);
    }
    (wire, 200 * 5)
}

/// The client side of `pgbench -M prepared -S` after the first transaction: 200 Bind/Execute/Sync batches.
fn prepared_batches() -> (Vec<u8>, u64) {
    let mut wire = Vec::new();
    for i in 0..200 {
        bind(&mut wire, "P0_1", &(i * 4_999 % 1_000_000).to_string());
        describe_execute_sync(&mut wire, false);
    }
    (wire, 200 * 3)
}

/// Simple-protocol traffic: 200 Query messages, short and ORM-sized.
fn simple_queries() -> (Vec<u8>, u64) {
    let mut wire = Vec::new();
    for i in 0..200 {
        let sql = match i % 4 {
            0 => format!("SELECT abalance FROM pgbench_accounts WHERE aid = {i};"),
            1 => "BEGIN;".to_owned(),
            2 => format!("UPDATE pgbench_accounts SET abalance = abalance + {i} WHERE aid = {};", i * 7),
            _ => format!(
                "SELECT \"workspace\".\"imports\".\"id\", \"workspace\".\"imports\".\"file_name\" FROM \
                 \"workspace\".\"imports\" WHERE \"workspace\".\"imports\".\"id\" IN ({}) LIMIT 50",
                (0..40).map(|n| (n + i).to_string()).collect::<Vec<_>>().join(", ")
            ),
        };
        let mut b = Vec::new();
        cstr(&mut b, &sql);
        message(&mut wire, b'Q', &b);
    }
    (wire, 200)
}

/// A server's answer to a 1,000-row SELECT: RowDescription, 1,000 DataRows of four columns, CommandComplete,
/// ReadyForQuery.
fn response_stream() -> (Vec<u8>, u64) {
    let mut wire = Vec::new();
    let mut rd = Vec::new();
    rd.extend_from_slice(&4u16.to_be_bytes());
    for (name, oid, size) in [("aid", 23u32, 4i16), ("bid", 23, 4), ("abalance", 23, 4), ("filler", 1042, -1)] {
        cstr(&mut rd, name);
        rd.extend_from_slice(&16_384u32.to_be_bytes());
        rd.extend_from_slice(&1u16.to_be_bytes());
        rd.extend_from_slice(&oid.to_be_bytes());
        rd.extend_from_slice(&size.to_be_bytes());
        rd.extend_from_slice(&(-1i32).to_be_bytes());
        rd.extend_from_slice(&0u16.to_be_bytes());
    }
    message(&mut wire, b'T', &rd);
    for i in 0..1_000u32 {
        let mut row = Vec::new();
        row.extend_from_slice(&4u16.to_be_bytes());
        let filler = " ".repeat(84);
        for col in [i.to_string(), (i / 100_000 + 1).to_string(), "0".to_owned(), filler] {
            row.extend_from_slice(&(col.len() as u32).to_be_bytes());
            row.extend_from_slice(col.as_bytes());
        }
        message(&mut wire, b'D', &row);
    }
    message(&mut wire, b'C', b"SELECT 1000\0");
    message(&mut wire, b'Z', b"I");
    (wire, 1_003)
}

/// Frames every message of `wire` with `next_frontend`, as the session's read loop does.
fn frame_all(mut buf: BytesMut) -> usize {
    let mut n = 0;
    while let Some(f) = framing::next_frontend(&mut buf).expect("the bench input is well formed") {
        n += f.bytes.len();
        black_box(&f);
    }
    n
}

/// Walks `wire` with `peek_len` and looks at each tag, as relay.rs scans a server read buffer before relaying it.
fn scan_backend(wire: &[u8]) -> (usize, u8) {
    let mut off = 0;
    let mut status = 0;
    while let Some(n) = framing::peek_len(&wire[off..], |_| Some(MAX_MESSAGE_LEN)).expect("the bench input is well formed") {
        match wire[off] {
            b'Z' => status = wire.get(off + 5).copied().unwrap_or(b'I'),
            b'C' => status = u8::from(wire[off + 5..off + n].starts_with(b"COMMIT\0")),
            b'E' | b'G' => status = b'!',
            _ => {}
        }
        off += n;
    }
    (off, status)
}

/// Walks client bytes with `peek_len` and the frontend limits, as relay.rs scans CopyData from a client.
fn scan_frontend(wire: &[u8]) -> usize {
    let mut off = 0;
    while let Some(n) = framing::peek_len(&wire[off..], framing::frontend_limit).expect("the bench input is well formed") {
        off += n;
    }
    off
}

fn frontend(c: &mut Criterion) {
    for (name, (wire, messages)) in
        [("extended_batches", extended_batches()), ("prepared_batches", prepared_batches()), ("simple_queries", simple_queries())]
    {
        let wire = Bytes::from(wire);
        let mut group = c.benchmark_group(format!("frontend/{name}"));
        group.throughput(Throughput::Elements(messages));
        group.bench_function("next_frontend", |b| {
            b.iter_batched(|| BytesMut::from(&wire[..]), |buf| black_box(frame_all(buf)), BatchSize::SmallInput)
        });
        group.bench_function("peek_len", |b| b.iter(|| black_box(scan_frontend(black_box(&wire)))));
        group.finish();
    }
}

fn backend(c: &mut Criterion) {
    let (wire, messages) = response_stream();
    let mut group = c.benchmark_group("backend/select_1000_rows");
    group.throughput(Throughput::Elements(messages));
    group.bench_function("peek_len_relay_scan", |b| b.iter(|| black_box(scan_backend(black_box(&wire)))));
    group.bench_function("next_backend", |b| {
        b.iter_batched(
            || BytesMut::from(&wire[..]),
            |mut buf| {
                let mut n = 0;
                while let Some(f) = framing::next_backend(&mut buf).expect("the bench input is well formed") {
                    n += f.bytes.len();
                }
                black_box(n)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
    let mut bytes = c.benchmark_group("backend/select_1000_rows_bytes");
    bytes.throughput(Throughput::Bytes(wire.len() as u64));
    bytes.bench_function("peek_len_relay_scan", |b| b.iter(|| black_box(scan_backend(black_box(&wire)))));
    bytes.finish();
}

criterion_group!(benches, frontend, backend);
criterion_main!(benches);
