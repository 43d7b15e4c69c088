//! COPY through pgsplit: large COPY FROM STDIN and TO STDOUT streamed both ways with the data intact, CopyFail,
//! COPY inside a transaction, and a client that vanishes mid-COPY never leaves a dirty server connection behind.

mod common;

use std::time::Duration;

use common::{clusters, config_yaml, direct, scalar, Proxy, APP_PASSWORD};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_thousand_rows_copy_in_and_out_intact() {
    let proxy = Proxy::split().await;
    let dir = clusters().dir.join("copy-test");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.tsv");
    let output = dir.join("out.tsv");
    let mut data = String::with_capacity(8 << 20);
    for i in 0..200_000 {
        data.push_str(&format!("{i}\trow-{i}-{}\t{}\n", "x".repeat(i % 17), i as f64 / 7.0));
    }
    std::fs::write(&input, &data).unwrap();
    let url = format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/handled?sslmode=disable", proxy.port);
    let script = format!(
        "create table workspace.copy_big (id int, label text, v float8);\n\\copy workspace.copy_big from '{}'\n\\copy (select * from workspace.copy_big order by id) to '{}'\nselect count(*) from workspace.copy_big;\n",
        input.display(),
        output.display()
    );
    let out = tokio::task::spawn_blocking(move || common::psql_script(&url, &script)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "200000");
    let back = std::fs::read_to_string(&output).unwrap();
    assert_eq!(back.len(), data.len());
    assert!(back == data, "COPY TO STDOUT returned what COPY FROM STDIN sent");
    assert_eq!(direct(&clusters().data, "handled_data", "select count(*) from workspace.copy_big").await, "200000");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_fail_and_copy_inside_a_transaction_behave_as_direct() {
    let proxy = Proxy::split().await;
    let url = format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/handled?sslmode=disable", proxy.port);
    let script = "create table workspace.copy_tx (v int);
begin;
insert into workspace.copy_tx values (1);
\\copy workspace.copy_tx from stdin
2
3
\\.
commit;
select sum(v) from workspace.copy_tx;
";
    let u = url.clone();
    let out = tokio::task::spawn_blocking(move || common::psql_script(&u, script)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "6");

    // CopyFail from a raw client: the server's error comes back and the session goes on.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = common::raw_login(proxy.port).await;
    let mut msg = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("copy workspace.copy_tx from stdin", &mut msg).unwrap();
    s.write_all(&msg).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(buf[0], b'G', "CopyInResponse: {:?}", &buf[..n]);
    msg.clear();
    postgres_protocol::message::frontend::copy_fail("client changed its mind", &mut msg).unwrap();
    postgres_protocol::message::frontend::query("select 'after copyfail'", &mut msg).unwrap();
    s.write_all(&msg).await.unwrap();
    let mut got = Vec::new();
    while !String::from_utf8_lossy(&got).contains("after copyfail") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf)).await.unwrap().unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got).contains("client changed its mind"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_gone_mid_copy_or_mid_transaction_leaves_no_dirty_connection() {
    // One DATA connection: whatever the vanished client left on it would meet the next client.
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 10s }");
    let proxy = Proxy::start(&yaml).await;
    let setup = proxy.connect().await;
    setup.simple_query("create table workspace.half_copied (v int)").await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    for stop_in_transaction in [false, true] {
        let mut s = common::raw_login(proxy.port).await;
        let mut msg = bytes::BytesMut::new();
        if stop_in_transaction {
            postgres_protocol::message::frontend::query("begin; insert into workspace.half_copied values (99)", &mut msg)
                .unwrap();
        } else {
            postgres_protocol::message::frontend::query("copy workspace.half_copied from stdin", &mut msg).unwrap();
        }
        s.write_all(&msg).await.unwrap();
        let mut buf = vec![0u8; 1024];
        let _ = s.read(&mut buf).await.unwrap();
        if !stop_in_transaction {
            msg.clear();
            // CopyData with two rows, then silence: the client vanishes before CopyDone.
            msg.extend_from_slice(&[b'd', 0, 0, 0, 8]);
            msg.extend_from_slice(b"1\n2\n");
            s.write_all(&msg).await.unwrap();
        }
        drop(s);
        tokio::time::sleep(Duration::from_millis(200)).await;
        let next = proxy.connect().await;
        let n = tokio::time::timeout(Duration::from_secs(10), scalar(&next, "select count(*) from workspace.half_copied")).await;
        assert_eq!(n.expect("the next client is served"), "0", "nothing of the vanished client was committed");
        assert_eq!(scalar(&next, "select count(*) from pg_stat_activity where state like 'idle in transaction%' and usename = 'pgsplit' and query like '%half_copied%'").await, "0");
    }
}

/// A client that sends a Query in the middle of COPY FROM STDIN: PostgreSQL ends the COPY with 08P01 (and, having
/// lost the protocol's thread, the connection with a FATAL). pgsplit relays the error as soon as the message is
/// sent rather than waiting for more CopyData, the client gets its ReadyForQuery, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_inside_copy_from_stdin_ends_the_copy_with_08p01_instead_of_hanging() {
    use postgres_protocol::message::frontend;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let proxy = Proxy::split().await;
    let setup = proxy.connect().await;
    setup.simple_query("create table workspace.copy_interrupted (v int)").await.unwrap();
    let mut s = common::raw_login(proxy.port).await;
    let mut msg = bytes::BytesMut::new();
    frontend::query("copy workspace.copy_interrupted from stdin", &mut msg).unwrap();
    s.write_all(&msg).await.unwrap();
    let mut buf = vec![0u8; 1024];
    let n = s.read(&mut buf).await.unwrap();
    assert_eq!(buf.first(), Some(&b'G'), "CopyInResponse: {:?}", &buf[..n]);
    msg.clear();
    msg.extend_from_slice(&[b'd', 0, 0, 0, 6]);
    msg.extend_from_slice(b"1\n");
    frontend::query("select 'inside copy'", &mut msg).unwrap();
    s.write_all(&msg).await.unwrap();
    let mut got = Vec::new();
    while !got.windows(6).any(|w| w == [b'Z', 0, 0, 0, 5, b'I']) {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
            .await
            .expect("the COPY's end reaches the client")
            .unwrap();
        assert!(n > 0, "pgsplit closed the session: {}", String::from_utf8_lossy(&got));
        got.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("08P01") && text.contains("during COPY from stdin"), "{text}");
    assert!(!text.contains("inside copy"), "the Query sent inside COPY was not run: {text}");
    msg.clear();
    frontend::query("select 'after the copy'", &mut msg).unwrap();
    s.write_all(&msg).await.unwrap();
    let (tags, status) = common::read_until_ready(&mut s).await;
    assert_eq!((tags.as_slice(), status), (&b"TDCZ"[..], b'I'));
    assert_eq!(scalar(&setup, "select count(*) from workspace.copy_interrupted").await, "0");
}

/// tokio-postgres runs COPY FROM STDIN as several drivers do: Bind, Execute and Sync in one write, the data once
/// CopyInResponse came, then CopyDone and Sync. PostgreSQL ignores the first Sync inside the COPY and answers at the
/// second; through pgsplit the COPY completes the same way, inside a transaction too, and the session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_in_over_the_extended_protocol_with_sync_before_the_data_completes() {
    use futures_util::SinkExt;
    let proxy = Proxy::split().await;
    let client = proxy.connect().await;
    client.simple_query("create table workspace.copy_extended (v int)").await.unwrap();
    for in_transaction in [false, true] {
        if in_transaction {
            client.simple_query("begin").await.unwrap();
        }
        let copied = tokio::time::timeout(Duration::from_secs(10), async {
            let sink = client.copy_in("copy workspace.copy_extended from stdin").await?;
            futures_util::pin_mut!(sink);
            sink.send(bytes::Bytes::from_static(b"1\n2\n3\n")).await?;
            sink.finish().await
        })
        .await
        .expect("the COPY through pgsplit completes");
        assert_eq!(copied.unwrap(), 3, "in transaction: {in_transaction}");
        if in_transaction {
            client.simple_query("commit").await.unwrap();
        }
    }
    assert_eq!(scalar(&client, "select sum(v) from workspace.copy_extended").await, "12");
    assert_eq!(direct(&clusters().data, "handled_data", "select count(*) from workspace.copy_extended").await, "6");
}

/// A client that dies in the middle of an extended-protocol COPY FROM STDIN (its Sync sent before the data, as
/// drivers send it): its server connection is closed, so the server ends the COPY; nothing is committed, and the
/// only DATA connection serves the next client at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_dies_inside_an_extended_copy_leaves_nothing_behind() {
    use postgres_protocol::message::frontend;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 10s }");
    let proxy = Proxy::start(&yaml).await;
    let setup = proxy.connect().await;
    setup.simple_query("create table workspace.copy_abandoned (v int)").await.unwrap();
    let mut s = common::raw_login(proxy.port).await;
    let mut msg = bytes::BytesMut::new();
    frontend::parse("", "copy workspace.copy_abandoned from stdin", std::iter::empty(), &mut msg).unwrap();
    common::bind_execute("", &mut msg);
    frontend::sync(&mut msg);
    s.write_all(&msg).await.unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 1024];
    while !got.contains(&b'G') {
        let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await.expect("CopyInResponse").unwrap();
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    msg.clear();
    msg.extend_from_slice(&[b'd', 0, 0, 0, 8]);
    msg.extend_from_slice(b"1\n2\n");
    s.write_all(&msg).await.unwrap();
    drop(s);
    let next = proxy.connect().await;
    let n = tokio::time::timeout(Duration::from_secs(10), scalar(&next, "select count(*) from workspace.copy_abandoned")).await;
    assert_eq!(n.expect("the next client is served"), "0", "nothing of the dead client was committed");
    let copying = "select count(*) from pg_stat_activity where query like 'copy workspace.copy_abandoned%' and state <> 'idle'";
    assert_eq!(scalar(&next, copying).await, "0", "no server session is left in the COPY");
}

/// libpq's large-object API runs over FunctionCall messages (psql's `\lo_import` and `\lo_export`, inside the
/// transaction psql opens for each): through pgsplit they run where the transaction binds, as on a direct connection,
/// and the bytes come back intact. pgsplit refused FunctionCall with FATAL 08P01 before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_objects_over_libpq_function_calls_round_trip() {
    let proxy = Proxy::split().await;
    let dir = clusters().dir.join("large-object-test");
    std::fs::create_dir_all(&dir).unwrap();
    let input = dir.join("in.bin");
    let output = dir.join("out.bin");
    let data: Vec<u8> = (0..300_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(&input, &data).unwrap();
    let url = format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/handled?sslmode=disable", proxy.port);
    let script = format!(
        "\\lo_import '{}'\n\\lo_export :LASTOID '{}'\nselect length(lo_get(:LASTOID));\n\\lo_unlink :LASTOID\nselect count(*) from pg_largeobject_metadata;\n",
        input.display(),
        output.display()
    );
    let out =
        tokio::time::timeout(Duration::from_secs(30), tokio::task::spawn_blocking(move || common::psql_script(&url, &script)))
            .await
            .expect("psql finishes")
            .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "300000\n0");
    assert!(std::fs::read(&output).unwrap() == data, "the large object came back as it went in");
}
