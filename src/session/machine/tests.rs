//! The session machine's transitions, one table row at a time (`transitions`), and under random event sequences
//! driven the way the session drives it (`random_sequences_keep_the_invariants`).

use bytes::Bytes;
use proptest::prelude::*;

use crate::protocol::{STATUS_FAILED, STATUS_IDLE, STATUS_IN_TX};

use super::{Cancel, Conn, Control, FailOn, Failing, Machine, Release, Reply, Request, Start};

/// A server connection as the machine sees it: a status and an identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fake {
    id: u32,
    status: u8,
}

impl Conn for Fake {
    fn status(&self) -> u8 {
        self.status
    }

    fn reusable(&self) -> bool {
        self.status == STATUS_IDLE
    }
}

fn q(text: &str) -> Bytes {
    Bytes::copy_from_slice(text.as_bytes())
}

fn req(explicit: bool, plain_read: bool) -> Request {
    Request { explicit, plain_read, replayed: None }
}

/// The machine in a named state, reached through its own events (never by setting fields).
fn in_state(state: &str) -> Machine<Fake> {
    let mut m = Machine::new(false);
    match state {
        "Idle" => {}
        "Deferred" => {
            m.local(Control::Begin(q("BEGIN")));
        }
        "Bound" => {
            m.start(0, &req(true, false));
            m.checked_out();
            assert_eq!(m.ready(Fake { id: 1, status: STATUS_IN_TX }), None);
        }
        "Tentative" => {
            m.local(Control::Begin(q("BEGIN")));
            m.local(Control::Hold("SAVEPOINT", q("SAVEPOINT a")));
            m.start(0, &req(false, true));
            m.checked_out();
            assert_eq!(m.ready(Fake { id: 1, status: STATUS_IN_TX }), None);
        }
        "Failed" => {
            m.local(Control::Begin(q("BEGIN")));
            m.refuse();
        }
        "Failed(bound)" => {
            m.start(0, &req(true, false));
            m.checked_out();
            m.ready(Fake { id: 1, status: STATUS_IN_TX });
            m.refuse();
        }
        other => panic!("no such state {other}"),
    }
    assert_eq!(m.state(), state);
    m
}

/// Every row of the module doc's table of local answers: from, control, to, reply.
#[test]
fn local_answers_follow_the_table() {
    let begin = || Control::Begin(q("BEGIN"));
    let hold = || Control::Hold("SAVEPOINT", q("SAVEPOINT a"));
    let complete = |tag, notice, status| Some(Reply::Complete { tag, notice, status });
    let rows: Vec<(&str, Control, &str, Option<Reply>)> = vec![
        ("Idle", begin(), "Deferred", complete("BEGIN", false, STATUS_IN_TX)),
        ("Idle", hold(), "Idle", None),
        ("Idle", Control::End(true), "Idle", None),
        ("Deferred", hold(), "Deferred", complete("SAVEPOINT", false, STATUS_IN_TX)),
        ("Deferred", begin(), "Deferred", complete("BEGIN", true, STATUS_IN_TX)),
        ("Deferred", Control::End(true), "Idle", complete("COMMIT", false, STATUS_IDLE)),
        ("Deferred", Control::End(false), "Idle", complete("ROLLBACK", false, STATUS_IDLE)),
        ("Deferred", Control::Other, "Deferred", None),
        ("Failed", Control::End(true), "Idle", complete("ROLLBACK", false, STATUS_IDLE)),
        ("Failed", Control::End(false), "Idle", complete("ROLLBACK", false, STATUS_IDLE)),
        ("Bound", begin(), "Bound", None),
        ("Bound", Control::End(true), "Bound", None),
        ("Tentative", Control::End(true), "Tentative", None),
        ("Failed(bound)", Control::End(false), "Failed(bound)", None),
    ];
    for (from, control, to, reply) in rows {
        let mut m = in_state(from);
        let got = m.local(control.clone());
        assert_eq!(got, reply, "{from} + {control:?}");
        assert_eq!(m.state(), to, "{from} + {control:?}");
    }
    // Anything but COMMIT/ROLLBACK in a failed, unbound transaction: 25P02, still failed.
    for control in [begin(), hold(), Control::Other] {
        let mut m = in_state("Failed");
        match m.local(control) {
            Some(Reply::Error { error, status }) => {
                assert_eq!((error.code, status), ("25P02", STATUS_FAILED));
            }
            other => panic!("expected 25P02, got {other:?}"),
        }
        assert_eq!(m.state(), "Failed");
    }
}

#[test]
fn a_refusal_fails_an_open_transaction_and_leaves_autocommit_alone() {
    let rows = [
        ("Idle", "Idle", STATUS_IDLE),
        ("Deferred", "Failed", STATUS_FAILED),
        ("Bound", "Failed(bound)", STATUS_FAILED),
        ("Tentative", "Failed(bound)", STATUS_FAILED),
        ("Failed", "Failed", STATUS_FAILED),
        ("Failed(bound)", "Failed(bound)", STATUS_FAILED),
    ];
    for (from, to, status) in rows {
        let mut m = in_state(from);
        assert_eq!(m.refuse(), status, "{from}");
        assert_eq!(m.state(), to, "{from}");
        assert!(!m.skipping());
        let mut m = in_state(from);
        m.refuse_before_sync();
        assert_eq!((m.state(), m.skipping()), (to, true), "{from} before Sync");
    }
}

#[test]
fn an_autocommit_request_checks_out_and_returns_its_connection_at_ready_idle() {
    let mut m = in_state("Idle");
    match m.start(1, &req(true, false)) {
        Start::Checkout { target: 1, prelude, moved_from: None } => assert!(prelude.is_empty()),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.state(), "Waiting");
    m.checked_out();
    assert_eq!(m.state(), "Running");
    let conn = Fake { id: 7, status: STATUS_IDLE };
    assert_eq!(m.ready(conn), Some(conn));
    assert_eq!((m.state(), m.status()), ("Idle", STATUS_IDLE));
}

#[test]
fn a_request_that_leaves_a_transaction_open_binds_it() {
    for status in [STATUS_IN_TX, STATUS_FAILED] {
        let mut m = in_state("Idle");
        m.start(1, &req(false, false));
        m.checked_out();
        assert_eq!(m.ready(Fake { id: 7, status }), None);
        assert_eq!((m.state(), m.status()), ("Bound", status));
        let b = m.binding().expect("bound");
        assert_eq!((b.target, b.tentative), (1, false));
        // The next request uses the same connection.
        match m.start(0, &req(false, false)) {
            Start::Use(1, Fake { id: 7, .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(m.state(), "Running");
    }
}

#[test]
fn a_deferred_begin_is_replayed_with_what_was_held_where_the_transaction_binds() {
    let mut m = in_state("Deferred");
    m.local(Control::Hold("SET", q("SET LOCAL a = 1")));
    match m.start(2, &req(true, false)) {
        Start::Checkout { target: 2, prelude, moved_from: None } => assert_eq!(prelude, vec![q("BEGIN"), q("SET LOCAL a = 1")]),
        other => panic!("{other:?}"),
    }
    m.checked_out();
    m.ready(Fake { id: 3, status: STATUS_IN_TX });
    assert_eq!(m.state(), "Bound");
}

#[test]
fn a_plain_read_binds_tentatively_and_a_statement_choosing_another_target_moves_the_transaction() {
    let mut m = in_state("Tentative");
    let b = m.binding().expect("bound");
    assert!(b.tentative);
    // Another plain read and an unhinted held statement keep it tentative; the held one joins the replay.
    m.start(0, &req(false, true));
    m.ready(Fake { id: 1, status: STATUS_IN_TX });
    assert_eq!(m.state(), "Tentative");
    m.start(0, &Request { explicit: false, plain_read: false, replayed: Some(q("SET LOCAL b = 2")) });
    m.ready(Fake { id: 1, status: STATUS_IN_TX });
    assert_eq!(m.state(), "Tentative");
    // A statement for target 1 moves it: roll back on 0, replay everything on 1.
    match m.start(1, &req(true, false)) {
        Start::Checkout { target: 1, prelude, moved_from: Some((0, Fake { id: 1, .. })) } => {
            assert_eq!(prelude, vec![q("BEGIN"), q("SAVEPOINT a"), q("SET LOCAL b = 2")]);
        }
        other => panic!("{other:?}"),
    }
    m.checked_out();
    m.ready(Fake { id: 2, status: STATUS_IN_TX });
    assert_eq!((m.state(), m.binding().map(|b| (b.target, b.tentative))), ("Bound", Some((1, false))));
}

#[test]
fn a_tentative_binding_becomes_firm_with_a_statement_on_its_target_or_a_batch() {
    let mut m = in_state("Tentative");
    m.start(0, &req(true, false));
    m.ready(Fake { id: 1, status: STATUS_IN_TX });
    assert_eq!(m.state(), "Bound");
    let mut m = in_state("Tentative");
    m.firm();
    assert_eq!(m.state(), "Bound");
    // firm leaves every other state as it is.
    for s in ["Idle", "Deferred", "Bound", "Failed", "Failed(bound)"] {
        let mut m = in_state(s);
        m.firm();
        assert_eq!(m.state(), s);
    }
}

#[test]
fn a_failed_checkout_fails_a_deferred_transaction_but_not_autocommit() {
    let mut m = in_state("Idle");
    m.start(0, &req(false, false));
    assert_eq!(m.checkout_failed(), STATUS_IDLE);
    assert_eq!(m.state(), "Idle");
    let mut m = in_state("Deferred");
    m.start(0, &req(false, false));
    assert_eq!(m.checkout_failed(), STATUS_FAILED);
    assert_eq!(m.state(), "Failed");
}

#[test]
fn a_lost_server_connection_ends_the_transaction() {
    for s in ["Idle", "Bound", "Tentative"] {
        let mut m = in_state(s);
        m.start(0, &req(false, false));
        m.lost();
        assert_eq!((m.state(), m.status()), ("Idle", STATUS_IDLE), "{s}");
    }
}

#[test]
fn a_flushed_batch_keeps_its_connection_until_sync() {
    let mut m = in_state("Idle");
    m.start(0, &Request::default());
    m.checked_out();
    m.flushed(Fake { id: 4, status: STATUS_IN_TX });
    assert_eq!(m.state(), "Bound");
    assert!(!m.at_rest());
    match m.start(0, &Request::default()) {
        Start::Use(0, Fake { id: 4, .. }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(m.ready(Fake { id: 4, status: STATUS_IDLE }), Some(Fake { id: 4, status: STATUS_IDLE }));
    assert!(m.at_rest());
}

#[test]
fn a_failed_transaction_is_failed_on_a_server_before_the_next_request() {
    // Bound: its own connection; the server's failed transaction answers from then on.
    let mut m = in_state("Failed(bound)");
    match m.take_failed(9) {
        Some(FailOn::Bound(0, conn)) => {
            assert_eq!(m.failed_on_server(Failing::Failed(0, Fake { status: STATUS_FAILED, ..conn })), None);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!((m.state(), m.status()), ("Bound", STATUS_FAILED));
    // Unbound: the fallback target, which the driver checks out.
    let mut m = in_state("Failed");
    assert!(matches!(m.take_failed(9), Some(FailOn::Unbound)));
    assert_eq!(m.failed_on_server(Failing::Failed(9, Fake { id: 5, status: STATUS_FAILED })), None);
    assert_eq!(m.binding().map(|b| b.target), Some(9));
    // The implicit transaction of a flushed batch ended: the connection goes back.
    let mut m = in_state("Failed(bound)");
    m.take_failed(9);
    let idle = Fake { id: 1, status: STATUS_IDLE };
    assert_eq!(m.failed_on_server(Failing::Ended(idle)), Some(idle));
    assert_eq!(m.state(), "Idle");
    // Lost: failed, unbound.
    let mut m = in_state("Failed(bound)");
    m.take_failed(9);
    assert_eq!(m.failed_on_server(Failing::Lost), None);
    assert_eq!(m.state(), "Failed");
    // Nothing to do outside a failed transaction.
    for s in ["Idle", "Deferred", "Bound", "Tentative"] {
        assert!(in_state(s).take_failed(9).is_none(), "{s}");
    }
}

#[test]
fn a_request_in_a_failed_unbound_transaction_is_answered_25p02_without_a_server() {
    let mut m = in_state("Failed");
    match m.start(0, &req(true, false)) {
        Start::Answer(Reply::Error { error, status: STATUS_FAILED }) => assert_eq!(error.code, "25P02"),
        other => panic!("{other:?}"),
    }
    assert_eq!(m.state(), "Failed");
}

#[test]
fn a_skipped_batch_ends_at_its_sync_failing_a_bound_transaction_on_its_server() {
    let mut m = in_state("Bound");
    m.refuse_before_sync();
    assert!(m.skipping());
    assert!(m.sync_skipped(), "the bound failed transaction must fail on its server");
    assert!(!m.skipping());
    let mut m = in_state("Idle");
    m.refuse_before_sync();
    assert!(!m.sync_skipped());
    assert_eq!(m.status(), STATUS_IDLE);
}

/// Every row of the table "Cancel": a cancel ends a wait for a connection, goes to the server of a request that
/// runs, and does nothing otherwise.
#[test]
fn a_cancel_reaches_what_is_in_flight_and_nothing_else() {
    for state in ["Idle", "Deferred", "Bound", "Tentative", "Failed", "Failed(bound)"] {
        assert_eq!(in_state(state).cancel(), Cancel::Nothing, "{state}");
    }
    let mut m = in_state("Idle");
    assert!(matches!(m.start(1, &req(true, false)), Start::Checkout { target: 1, .. }));
    assert_eq!((m.state(), m.cancel()), ("Waiting", Cancel::EndWait));
    // The wait ended by the cancel: the autocommit request fails, the session is idle again.
    assert_eq!(m.checkout_failed(), STATUS_IDLE);
    assert_eq!((m.state(), m.cancel()), ("Idle", Cancel::Nothing));
    m.start(1, &req(true, false));
    m.checked_out();
    assert_eq!((m.state(), m.cancel()), ("Running", Cancel::Server(1)));
    // The cancelled statement's error and ReadyForQuery settle the state as any other answer.
    assert!(m.ready(Fake { id: 3, status: STATUS_IDLE }).is_some());
    assert_eq!(m.cancel(), Cancel::Nothing);
    // A pinned or bound connection runs the request at once: a cancel goes to its server.
    let mut m = in_state("Bound");
    assert!(matches!(m.start(0, &req(false, false)), Start::Use(0, _)));
    assert_eq!(m.cancel(), Cancel::Server(0));
}

#[test]
fn the_mode_changes_only_between_transactions() {
    let mut m = in_state("Deferred");
    m.follow_mode(true);
    assert!(!m.single());
    let mut m = in_state("Idle");
    m.follow_mode(true);
    assert!(m.single());
}

#[test]
fn a_pinned_target_keeps_its_connection_between_requests_until_it_breaks() {
    let mut m: Machine<Fake> = Machine::new(false);
    let idle = Fake { id: 1, status: STATUS_IDLE };
    // Not pinned: back to the pool.
    assert_eq!(m.release(0, idle), Release::Pool(idle));
    assert_eq!(m.pin(0), (true, true));
    assert_eq!(m.pin(0), (false, false));
    assert_eq!(m.pin(1), (true, false));
    // Pinned and reusable: kept, and handed to the next request for that target only.
    assert_eq!(m.release(0, idle), Release::Pinned);
    assert_eq!(m.pinned_idle().count(), 1);
    assert_eq!(m.take_pinned(1), None);
    assert_eq!(m.take_pinned(0), Some(idle));
    assert_eq!(m.take_pinned(0), None);
    // Pinned but not reusable: closed, and the target is unpinned; the last pin gone says so.
    let busy = Fake { id: 2, status: STATUS_IN_TX };
    assert_eq!(m.release(0, busy), Release::Unpinned { conn: busy, last: false });
    assert_eq!(m.release(1, busy), Release::Unpinned { conn: busy, last: true });
    assert!(!m.pinned());
    // A pinned connection found gone while idle is dropped; the target stays pinned.
    m.pin(0);
    m.release(0, idle);
    m.drop_pinned_if(|c| c.id == 1);
    assert!(m.pinned());
    assert_eq!(m.pinned_idle().count(), 0);
}

/// One step of a random session: what a client sends, and how the server answers what reaches it.
#[derive(Debug, Clone)]
enum Step {
    Begin,
    Hold,
    End(bool),
    Refused,
    Statement { target: usize, explicit: bool, plain_read: bool },
    Batch { target: usize },
    Flush { target: usize },
    SkippedSync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        Just(Step::Begin),
        Just(Step::Hold),
        any::<bool>().prop_map(Step::End),
        Just(Step::Refused),
        (0..2usize, any::<bool>(), any::<bool>()).prop_map(|(target, explicit, plain_read)| Step::Statement {
            target,
            explicit,
            plain_read
        }),
        (0..2usize).prop_map(|target| Step::Batch { target }),
        (0..2usize).prop_map(|target| Step::Flush { target }),
        Just(Step::SkippedSync),
    ]
}

/// What the fake server and pool do: every answer a real one could give.
#[derive(Debug, Clone, Copy)]
struct World {
    checkout_fails: bool,
    status: u8,
    lost: bool,
    /// The statement left what pins its connection (LISTEN, a temporary table).
    pins: bool,
}

fn world() -> impl Strategy<Value = World> {
    (any::<bool>(), prop_oneof![Just(STATUS_IDLE), Just(STATUS_IN_TX), Just(STATUS_FAILED)], 0..10u8)
        .prop_map(|(fails, status, lost)| World { checkout_fails: fails && lost < 2, status, lost: lost == 0, pins: lost == 9 })
}

/// The driver's side of the test: connections handed out and returned, ReadyForQuery sent to the client.
#[derive(Default)]
struct Driver {
    next_id: u32,
    out: Vec<u32>,
    returned: Vec<Fake>,
    closed: Vec<u32>,
    ready: usize,
}

impl Driver {
    /// `Session::acquire`: the pinned connection of the target, else a new one from the pool.
    fn checkout(&mut self, m: &mut Machine<Fake>, target: usize) -> Fake {
        if let Some(conn) = m.take_pinned(target) {
            return conn;
        }
        self.next_id += 1;
        self.out.push(self.next_id);
        Fake { id: self.next_id, status: STATUS_IDLE }
    }

    /// `Session::release`: to the pool only idle, to the pin slot, or closed when a pinned one broke.
    fn give_back(&mut self, m: &mut Machine<Fake>, target: usize, conn: Fake) {
        match m.release(target, conn) {
            Release::Pool(conn) => {
                assert_eq!(conn.status, STATUS_IDLE, "a connection returned while not idle: {conn:?}");
                self.out.retain(|&id| id != conn.id);
                self.returned.push(conn);
            }
            Release::Pinned => {}
            Release::Unpinned { conn, .. } => self.close(conn),
        }
    }

    fn close(&mut self, conn: Fake) {
        self.out.retain(|&id| id != conn.id);
        self.closed.push(conn.id);
    }

    /// Every reply of the machine ends with ReadyForQuery.
    fn reply(&mut self, _reply: Reply) {
        self.ready += 1;
    }

    /// Runs a request as `Session::run_on` does; `sync` false for a flushed batch (no ReadyForQuery).
    fn run(&mut self, m: &mut Machine<Fake>, target: usize, request: &Request, w: World, sync: bool) {
        let conn = match m.start(target, request) {
            Start::Answer(reply) => return self.reply(reply),
            Start::Use(t, conn) => (t, conn),
            Start::Checkout { target, moved_from, .. } => {
                if let Some((t, conn)) = moved_from {
                    self.give_back(m, t, Fake { status: STATUS_IDLE, ..conn });
                }
                if w.checkout_fails {
                    m.checkout_failed();
                    self.ready += usize::from(sync);
                    return;
                }
                let conn = self.checkout(m, target);
                m.checked_out();
                (target, conn)
            }
        };
        let (target, conn) = conn;
        if w.lost {
            m.lost();
            self.close(conn);
            self.ready += usize::from(sync);
            return;
        }
        if !sync {
            return m.flushed(Fake { status: STATUS_IN_TX, ..conn });
        }
        self.ready += 1;
        if let Some(conn) = m.ready(Fake { status: w.status, ..conn }) {
            self.give_back(m, target, conn);
        }
        if w.pins {
            m.pin(target);
        }
    }

    /// `Session::fail_on_server`: the bound or a fallback connection's transaction fails too.
    fn fail_on_server(&mut self, m: &mut Machine<Fake>, w: World) {
        let (target, conn) = match m.take_failed(0) {
            None => return,
            Some(FailOn::Bound(t, conn)) => (t, conn),
            Some(FailOn::Unbound) => (0, self.checkout(m, 0)),
        };
        let failing = if w.lost {
            self.close(conn);
            Failing::Lost
        } else if w.status == STATUS_IDLE {
            Failing::Ended(Fake { status: STATUS_IDLE, ..conn })
        } else {
            Failing::Failed(target, Fake { status: STATUS_FAILED, ..conn })
        };
        if let Some(conn) = m.failed_on_server(failing) {
            self.give_back(m, target, conn);
        }
    }

    /// One client message, as the session handles it; returns how many ReadyForQuery it must produce.
    fn step(&mut self, m: &mut Machine<Fake>, s: &Step, w: World) -> usize {
        match s {
            Step::SkippedSync if m.skipping() => {
                if m.sync_skipped() {
                    self.fail_on_server(m, w);
                }
                self.ready += 1;
                1
            }
            Step::SkippedSync | Step::Flush { .. } if m.skipping() => 0,
            Step::Begin | Step::Hold | Step::End(_) => {
                let control = match s {
                    Step::Begin => Control::Begin(q("BEGIN")),
                    Step::Hold => Control::Hold("SAVEPOINT", q("SAVEPOINT s")),
                    _ => Control::End(matches!(s, Step::End(true))),
                };
                if m.failed_bound() {
                    self.fail_on_server(m, w);
                }
                match m.local(control) {
                    Some(reply) => self.reply(reply),
                    None => self.run(m, 0, &Request::default(), w, true),
                }
                1
            }
            Step::Refused => {
                m.refuse();
                self.ready += 1;
                1
            }
            Step::Statement { target, explicit, plain_read } => {
                if m.failed_bound() {
                    self.fail_on_server(m, w);
                }
                let target = match m.binding() {
                    Some(b) if b.target != *target && *explicit && !(b.tentative && b.status == STATUS_IN_TX) => {
                        m.refuse();
                        self.ready += 1;
                        return 1;
                    }
                    Some(b) if !(*explicit && b.tentative && b.status == STATUS_IN_TX) => b.target,
                    _ => *target,
                };
                let plain_read = *plain_read && m.asks_plain_read() && !explicit;
                self.run(m, target, &Request { explicit: *explicit, plain_read, replayed: None }, w, true);
                1
            }
            Step::Batch { target } | Step::Flush { target } => {
                let sync = matches!(s, Step::Batch { .. });
                if m.is_failed() {
                    self.fail_on_server(m, w);
                    if m.is_failed() {
                        self.ready += usize::from(sync);
                        return usize::from(sync);
                    }
                }
                m.firm();
                let target = m.binding().map_or(*target, |b| b.target);
                self.run(m, target, &Request::default(), w, sync);
                usize::from(sync)
            }
            Step::SkippedSync => {
                // A bare Sync outside a skipped batch: answered with the machine's status, or run where bound.
                match m.binding() {
                    Some(b) => self.run(m, b.target, &Request::default(), w, true),
                    None => self.ready += 1,
                }
                1
            }
        }
    }
}

const STATES: &[&str] = &["Idle", "Deferred", "Tentative", "Bound", "Failed", "Failed(bound)"];

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, failure_persistence: None, ..ProptestConfig::default() })]

    /// After every client message: the machine rests in a state of the table (never mid-request), holds a
    /// connection exactly when its state says so, the client got exactly one ReadyForQuery per Query and per Sync,
    /// every connection returned was idle (asserted in `give_back`), and none is lost track of.
    #[test]
    fn random_sequences_keep_the_invariants(steps in proptest::collection::vec((step(), world()), 1..40)) {
        let mut m: Machine<Fake> = Machine::new(false);
        let mut d = Driver::default();
        for (s, w) in &steps {
            let before = d.ready;
            let due = d.step(&mut m, s, *w);
            prop_assert_eq!(d.ready - before, due, "ReadyForQuery count after {:?} in {}", s, m.state());
            prop_assert!(STATES.contains(&m.state()), "state {} outside the table after {:?}", m.state(), s);
            let holds = matches!(m.state(), "Tentative" | "Bound" | "Failed(bound)");
            prop_assert_eq!(m.conn().is_some(), holds, "connection held in {}", m.state());
            prop_assert_eq!(m.binding().is_some(), matches!(m.state(), "Tentative" | "Bound"));
            // Every connection handed out is held by the machine (its transaction's, or idle in a pin slot), or
            // was returned or closed; none is held twice.
            let mut held: Vec<u32> = m.conn().map(|c| c.id).into_iter().collect();
            held.extend(m.pinned_idle().map(|c| c.id));
            held.sort_unstable();
            let mut out = d.out.clone();
            out.sort_unstable();
            prop_assert_eq!(&out, &held, "connections out vs held in {}", m.state());
            match m.state() {
                "Idle" => prop_assert_eq!(m.status(), STATUS_IDLE),
                "Deferred" => prop_assert_eq!(m.status(), STATUS_IN_TX),
                "Failed" | "Failed(bound)" => prop_assert_eq!(m.status(), STATUS_FAILED),
                _ => prop_assert_ne!(m.status(), STATUS_IDLE),
            }
            prop_assert!(!m.at_rest() || m.conn().is_none());
        }
    }
}
