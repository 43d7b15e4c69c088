//! Pools under pressure: never more server connections than `max` (checked on the server), waiting clients served
//! in turn, and a checkout that times out is a 53300 naming the target, promptly, with the session kept.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{clusters, config_yaml, direct, scalar, sqlstate, Proxy};

/// Server connections are counted on the clusters: one proxy at a time in this binary.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_clients_over_a_pool_of_fifteen_on_three_workers_never_open_a_sixteenth_connection() {
    let _serial = SERIAL.lock().await;
    // Only this proxy's connections count: those the server started from now on.
    let since = direct(&clusters().primary, "handled_primary", "select now()::text").await;
    // Three worker threads, whatever the machine's cores: `max` bounds the pool across all of them together.
    let yaml = config_yaml("verify-full", "workers: 3\n")
        .replace("pool: { max: 5, checkout_timeout: 3s }", "pool: { max: 15, checkout_timeout: 30s }");
    let proxy = Proxy::start(&yaml).await;
    let sql = format!(
        "select count(*) from pg_stat_activity where usename = 'pgsplit' and datname = 'handled_primary' \
         and backend_start >= '{since}'"
    );
    let count = move || {
        let sql = sql.clone();
        async move { direct(&clusters().primary, "handled_primary", &sql).await.parse().unwrap_or(0) }
    };
    let peak =
        peak_under_load(&proxy, 60, 10, |i| format!("select {i} from config.users, pg_sleep(0.005) limit 1"), 20, count).await;
    assert!(peak <= 15, "{peak} server connections on PRIMARY");
    assert!(peak >= 5, "the pool was actually used in parallel ({peak})");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_checkout_timeout_is_53300_naming_the_target_within_twice_the_timeout_and_the_session_goes_on() {
    let _serial = SERIAL.lock().await;
    let yaml = config_yaml("verify-full", "")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 1, checkout_timeout: 1s }");
    let proxy = Proxy::start(&yaml).await;
    let holder = proxy.connect().await;
    holder.simple_query("begin").await.unwrap();
    holder.simple_query("select 1 from reference.countries limit 1").await.unwrap();
    let waiter = proxy.connect().await;
    let started = Instant::now();
    let err = waiter.simple_query("select count(*) from reference.countries").await.unwrap_err();
    let took = started.elapsed();
    assert_eq!(sqlstate(&err), "53300");
    let msg = err.as_db_error().map(|e| e.message().to_owned()).unwrap_or_default();
    assert!(msg.contains("\"data\""), "{msg}");
    assert!(took >= Duration::from_millis(900) && took < Duration::from_secs(2), "returned after {took:?}");
    // PRIMARY is unaffected, and once the holder commits the waiter is served in the same session.
    assert_eq!(scalar(&waiter, "select count(*) > 0 from config.users").await, "t");
    holder.simple_query("commit").await.unwrap();
    assert_eq!(scalar(&waiter, "select count(*) > 0 from reference.countries").await, "t");
    // The queued checkout's wait is in the checkout-wait histogram (immediate ones count as 0 s).
    let text = pgsplit::metrics::render(pgsplit::metrics::Snapshot::of(&proxy.app));
    let sum = text
        .lines()
        .find_map(|l| l.strip_prefix("pgsplit_checkout_wait_seconds_sum{target=\"data\"} "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(sum.is_some_and(|s| s >= 0.9), "checkout wait sum {sum:?}:\n{text}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_probes_and_min_connections_never_take_the_pool_past_max() {
    let _serial = SERIAL.lock().await;
    // Probes every 20 ms race the clients for idle connections, and `min` asks for idle ones while all are busy:
    // neither may open a connection beyond `max`.
    let yaml = config_yaml("verify-full", "health_interval: 20ms\n")
        .replace("pool: { max: 10, checkout_timeout: 3s }", "pool: { max: 3, min: 2, checkout_timeout: 30s }");
    let proxy = Proxy::start(&yaml).await;
    let data = proxy.app.backend(1);
    // `min` connections are opened without a client asking.
    let started = Instant::now();
    while data.pool_state().0 < 2 {
        assert!(started.elapsed() < Duration::from_secs(10), "min connections never opened: {:?}", data.pool_state());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let app = proxy.app.clone();
    let open = move || {
        let app = app.clone();
        async move { app.backend(1).pool_state().0 }
    };
    let peak = peak_under_load(&proxy, 12, 150, |i| format!("select {i} from reference.countries limit 1"), 1, open).await;
    assert!(peak <= 3, "{peak} server connections to DATA over a pool of 3");
    assert_eq!(peak, 3, "the pool was used to its max");
    assert!(data.pool_state().0 >= 2, "min connections stay open: {:?}", data.pool_state());
}

/// Runs `clients` sessions through `proxy`, each `queries` times `sql(i)` (which must answer `i`), while `sample` is
/// taken every `every_ms` milliseconds; returns the highest sample.
async fn peak_under_load<S, F>(proxy: &Proxy, clients: u32, queries: u32, sql: fn(u32) -> String, every_ms: u64, sample: S) -> u32
where
    S: Fn() -> F + Send + 'static,
    F: std::future::Future<Output = u32> + Send,
{
    let peak = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        tokio::spawn(async move {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(sample().await, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(every_ms)).await;
            }
        })
    };
    let mut tasks = Vec::new();
    for i in 0..clients {
        let c = proxy.connect().await;
        tasks.push(tokio::spawn(async move {
            for _ in 0..queries {
                assert_eq!(scalar(&c, &sql(i)).await, i.to_string());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.store(true, Ordering::Relaxed);
    sampler.await.unwrap();
    peak.load(Ordering::Relaxed)
}
