//! The workers' own loop: sockets served wherever they are polled, wake-ups across threads, and the ending of
//! tasks, on real sockets and threads.

use std::sync::mpsc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{here, Socket, Workers, MAIN};

const WAIT: Duration = Duration::from_secs(10);

/// A connected pair: the far end (plain std, blocking) and the near end as a `Socket` registered nowhere yet.
fn pair() -> (std::net::TcpStream, Socket) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let far = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
    let (near, _) = listener.accept().expect("accept");
    far.set_read_timeout(Some(WAIT)).expect("timeout");
    (far, Socket::from(near))
}

/// Reads exactly `n` bytes from `far` (blocking, within `WAIT`).
fn read_far(far: &mut std::net::TcpStream, n: usize) -> Vec<u8> {
    use std::io::Read;
    let mut buf = vec![0; n];
    far.read_exact(&mut buf).expect("the far end reads");
    buf
}

#[test]
fn a_socket_is_served_by_the_loop_of_whichever_thread_polls_it_and_moves_between_them() {
    use std::io::Write;
    let workers = Workers::start(2).expect("two worker threads");
    let (mut far, mut near) = pair();
    // Each hop: the far end writes, the socket's current holder echoes it with its thread's name, then hands the
    // socket on. Worker 0, worker 1, worker 0 again, then the main thread (a tokio runtime), then worker 1.
    let hops = [Some(0usize), Some(1), Some(0), None, Some(1)];
    for (i, hop) in hops.into_iter().enumerate() {
        let msg = format!("hop{i}");
        far.write_all(msg.as_bytes()).expect("far writes");
        let (tx, rx) = mpsc::channel();
        run_at(&workers, hop, echo(near, tx));
        let (read, at, unix, socket) = rx.recv_timeout(WAIT).expect("the hop ran");
        near = socket;
        assert!(read, "hop {i} read its message");
        assert!(!unix, "hop {i}: a TCP socket");
        assert_eq!(at, hop.map_or(MAIN, |w| w as u16), "hop {i} ran where it was sent");
        assert_eq!(read_far(&mut far, 4), &msg.as_bytes()[..4], "hop {i} echoed");
    }
    // The end: the far side sees the socket close once its last holder drops it.
    drop(near);
    assert_eq!(read_far_to_end(&mut far), 0);
}

/// A Unix-domain socket (a client of `unix_socket_dir`) moves the same way: worker, tokio's reactor, worker, and
/// tells its kind in each state; it has no IP address, and Nagle's setting is nothing to do.
#[test]
fn a_unix_domain_socket_moves_between_the_loops_as_a_tcp_one() {
    use std::io::{Read, Write};
    let workers = Workers::start(2).expect("two worker threads");
    let (mut far, near) = std::os::unix::net::UnixStream::pair().expect("a socket pair");
    far.set_read_timeout(Some(WAIT)).expect("timeout");
    let mut near = Socket::from(near);
    assert!(near.is_unix(), "loose");
    assert!(near.peer_addr().is_err() && near.local_addr().is_err());
    near.set_nodelay(true).expect("nothing to do on a Unix-domain socket");
    for (i, hop) in [Some(0usize), None, Some(1)].into_iter().enumerate() {
        let msg = format!("hop{i}");
        far.write_all(msg.as_bytes()).expect("far writes");
        let (tx, rx) = mpsc::channel();
        run_at(&workers, hop, echo(near, tx));
        let (read, _, unix, socket) = rx.recv_timeout(WAIT).expect("the hop ran");
        near = socket;
        assert!(read && unix, "hop {i}: read {read}, is_unix {unix}");
        let mut echoed = [0u8; 4];
        far.read_exact(&mut echoed).expect("the far end reads");
        assert_eq!(&echoed, &msg.as_bytes()[..4], "hop {i} echoed");
    }
    let (tx, rx) = mpsc::channel();
    workers.workers[0].shared.spawn(async move {
        let _ = tx.send(near.shutdown().await.is_ok());
    });
    assert!(rx.recv_timeout(WAIT).expect("the shutdown ran"), "shut down on a worker");
    let mut rest = Vec::new();
    assert_eq!(far.read_to_end(&mut rest).expect("the far end reads to the end"), 0);
}

/// Reads 4 bytes from `near` and writes them back; sends whether it read them, where it ran, whether the socket is
/// a Unix-domain one, and the socket.
async fn echo(mut near: Socket, tx: mpsc::Sender<(bool, super::Home, bool, Socket)>) {
    let mut buf = [0u8; 4];
    let read = near.read_exact(&mut buf).await.map(|_| buf);
    let at = here();
    let _ = near.write_all(&buf).await;
    let unix = near.is_unix();
    let _ = tx.send((read.is_ok(), at, unix, near));
}

/// Runs `task` on worker `hop`, or on a tokio runtime on this thread for `None`.
fn run_at(workers: &Workers, hop: Option<usize>, task: impl std::future::Future<Output = ()> + Send + 'static) {
    match hop {
        Some(w) => workers.workers[w].shared.spawn(task),
        None => tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime").block_on(task),
    }
}

fn read_far_to_end(far: &mut std::net::TcpStream) -> usize {
    use std::io::Read;
    let mut rest = Vec::new();
    far.read_to_end(&mut rest).expect("the far end reads to the end");
    rest.len()
}

#[test]
fn a_task_waits_for_readiness_and_is_woken_from_other_threads() {
    use std::io::Write;
    let workers = Workers::start(2).expect("two worker threads");
    let (mut far, mut near) = pair();
    let (woken_tx, woken_rx) = tokio::sync::oneshot::channel::<u8>();
    let (tx, rx) = mpsc::channel();
    workers.workers[1].shared.spawn(async move {
        // Woken by another thread through the worker's inbox.
        let first = woken_rx.await.unwrap_or(0);
        // Then by the socket becoming readable (nothing was written yet when the read began).
        let mut buf = [0u8; 1];
        let read = near.read_exact(&mut buf).await.map(|_| buf[0]).unwrap_or(0);
        let _ = tx.send((first, read));
    });
    std::thread::sleep(Duration::from_millis(50));
    woken_tx.send(7).expect("the task waits");
    std::thread::sleep(Duration::from_millis(50));
    far.write_all(&[9]).expect("far writes");
    assert_eq!(rx.recv_timeout(WAIT).expect("the task ended"), (7, 9));
}

#[test]
fn abort_all_drops_every_task_of_every_worker() {
    struct Dropped(mpsc::Sender<()>);
    impl Drop for Dropped {
        fn drop(&mut self) {
            let _ = self.0.send(());
        }
    }
    let workers = Workers::start(2).expect("two worker threads");
    let (tx, rx) = mpsc::channel();
    let mut sockets = Vec::new();
    for w in 0..2 {
        for _ in 0..3 {
            let (far, mut near) = pair();
            sockets.push(far);
            let guard = Dropped(tx.clone());
            // A task waiting on a socket nobody writes to.
            workers.workers[w].shared.spawn(async move {
                let _guard = guard;
                let mut buf = [0u8; 1];
                let _ = near.read(&mut buf).await;
                std::future::pending::<()>().await;
            });
        }
    }
    std::thread::sleep(Duration::from_millis(100));
    assert!(rx.try_recv().is_err(), "no task ended on its own");
    workers.abort_all();
    for i in 0..6 {
        rx.recv_timeout(WAIT).unwrap_or_else(|_| panic!("task {i} was dropped"));
    }
    // The sockets the tasks held are closed: each far end reads its end.
    for mut far in sockets {
        assert_eq!(read_far_to_end(&mut far), 0);
    }
}

#[test]
fn a_task_that_panics_ends_alone_and_its_worker_goes_on() {
    let workers = Workers::start(2).expect("two worker threads");
    workers.workers[0].shared.spawn(async { panic!("a bug in one session (expected by this test)") });
    let (tx, rx) = mpsc::channel();
    workers.workers[0].shared.spawn(async move {
        let _ = tx.send(here());
    });
    assert_eq!(rx.recv_timeout(WAIT).expect("the worker still runs tasks"), 0);
}
