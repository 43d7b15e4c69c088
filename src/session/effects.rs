//! What a request does to the session once the server has accepted it, gathered from the analyses of its
//! statements: parameters to follow, DDL that stales a catalog, what pins, and a database to free first.

use crate::router::{Analysis, Command};

/// What a statement does to session state once the server has accepted it.
#[derive(Debug, Default)]
pub struct Effects {
    /// Session parameter changes (SET, RESET, ...), in order.
    pub changes: Vec<Command>,
    /// The text changes the catalog: the target's snapshot is re-read when the transaction ends.
    pub ddl: bool,
    /// The text drops every prepared statement of the server connection (`DEALLOCATE ALL`, `DISCARD ALL`).
    pub forgets_prepared: bool,
    /// The text leaves state on the connection that only it has: the session keeps the connection.
    pub pins: bool,
    /// The text controls transactions itself or cannot run in a transaction block (see `Analysis::own_transaction`).
    pub own_transaction: bool,
    /// The text creates an object it does not qualify: with `pg_temp` in the session's search_path, it may be
    /// created there (then it pins, see `Session::follow`).
    pub creates_unqualified: bool,
    /// The text needs this database free of other users: pgsplit's idle connections to it close first.
    pub frees_database: Option<String>,
    /// The text may call nextval or setval (`Analysis::sequences`): the connection may hold the session's
    /// sequence state afterwards. Texts single mode does not analyse cannot (`App::analysis_for`).
    pub sequences: bool,
    /// The text may read sequence state (`Analysis::observes_sequences`).
    pub observes_sequences: bool,
    /// The text calls nextval or setval itself (`Analysis::calls_nextval`).
    pub calls_nextval: bool,
    /// The text may create a temporary object unseen (`Analysis::may_make_temp`).
    pub may_make_temp: bool,
}

impl Effects {
    /// The effects of an analysed text (none in single mode, where texts are not analysed).
    pub fn of(analysis: Option<&Analysis>) -> Effects {
        let mut e = Effects::default();
        if let Some(a) = analysis {
            e.add(a);
        }
        e
    }

    /// Adds the effects of one more statement that runs in the same exchange.
    pub fn add(&mut self, a: &Analysis) {
        self.changes.extend(a.session_changes.iter().cloned());
        self.ddl |= a.ddl;
        self.forgets_prepared |= a.session_changes.iter().any(Command::forgets_prepared);
        self.pins |= a.pins;
        self.own_transaction |= a.own_transaction;
        self.creates_unqualified |= a.ddl && a.names.iter().any(|n| n.created && n.schema.is_none());
        self.sequences |= a.sequences;
        self.observes_sequences |= a.observes_sequences;
        self.calls_nextval |= a.calls_nextval;
        self.may_make_temp |= a.may_make_temp;
        if let Some(db) = &a.frees_database {
            self.frees_database = Some(db.to_string());
        }
    }
}
