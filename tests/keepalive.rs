//! TCP keepalive (issue 21, point 3): armed on the client sockets pgsplit accepts and on its server connections,
//! with the configured idle time, as `ss` reports them; off with `tcp_keepalive: false`. A binary of its own: the
//! setting is the process's (the last App built or reloaded sets it).

mod common;

use common::*;

/// `ss` for `filter` until every line shows the keepalive timer (a socket with data in flight shows its retransmit
/// timer instead), at most 10 s; the last output.
async fn ss_settled(filter: &str) -> String {
    let mut out = String::new();
    for _ in 0..100 {
        out = ss(filter);
        if !out.is_empty() && out.lines().all(|l| l.contains("timer:(keepalive,")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    out
}

/// `ss`'s lines for established TCP sockets matching `filter`, with their timers.
fn ss(filter: &str) -> String {
    let out = std::process::Command::new("ss").args(["-tnoH", "state", "established", filter]).output().expect("ss");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_keepalive_is_armed_on_client_and_server_sockets_with_the_configured_idle_time_and_off_when_disabled() {
    let proxy = Proxy::start(&config_yaml("verify-full", "tcp_keepidle: 4000s\n")).await;
    let c = proxy.connect().await;
    c.batch_execute("begin; select 1 from workspace.imports limit 1").await.expect("a DATA connection held");
    let accepted = ss_settled(&format!("( sport = :{} )", proxy.port)).await;
    assert!(!accepted.is_empty());
    assert!(accepted.lines().all(|l| l.contains("timer:(keepalive,")), "client sockets without keepalive:\n{accepted}");
    assert!(accepted.contains("keepalive,66min") || accepted.contains("keepalive,1h6min"), "tcp_keepidle: {accepted}");
    let servers = ss_settled(&format!("( dport = :{} )", clusters().data.port())).await;
    assert!(servers.lines().any(|l| l.contains("timer:(keepalive,")), "server sockets without keepalive:\n{servers}");
    c.batch_execute("commit").await.expect("commit");

    let off = Proxy::start(&config_yaml("verify-full", "tcp_keepalive: false\n")).await;
    let _c = off.connect().await;
    let accepted = ss(&format!("( sport = :{} )", off.port));
    assert!(!accepted.is_empty());
    assert!(!accepted.contains("keepalive"), "tcp_keepalive: false still arms it:\n{accepted}");
}
