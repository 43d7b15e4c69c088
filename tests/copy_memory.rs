//! COPY is streamed, not buffered: moving ~250 MB through pgsplit in each direction leaves its peak memory (this
//! test process hosts the proxy) far below the payload. Alone in its binary so no other test moves the peak.

mod common;

use common::{Proxy, APP_PASSWORD};

/// Peak resident memory of this process, in KiB (VmHWM).
fn peak_rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quarter_gigabyte_copy_each_way_keeps_memory_flat() {
    let proxy = Proxy::split().await;
    let warm = proxy.connect().await;
    warm.simple_query("create table workspace.copy_stream (line text)").await.unwrap();
    let before = peak_rss_kib();
    let url = format!("postgresql://app:{APP_PASSWORD}@127.0.0.1:{}/handled?sslmode=disable", proxy.port);
    let script =
        "\\copy workspace.copy_stream from program 'yes pgsplit-streams-copy-data-without-buffering-it-whole | head -n 5000000'
\\copy (select * from workspace.copy_stream) to '/dev/null'
select pg_size_pretty(sum(length(line) + 1)) from workspace.copy_stream;
";
    let out = tokio::task::spawn_blocking(move || common::psql_script(&url, script)).await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "253 MB", "the payload moved");
    let grew = peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS grew by {grew} KiB");
    assert!(grew < 64 * 1024, "peak memory grew by {grew} KiB while 253 MB went through each way");
}
