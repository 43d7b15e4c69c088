//! A session's last routing decision, reused while nothing it was decided from has changed.

use std::ops::Deref;
use std::sync::Arc;

use super::{decide, Catalog, Decision, RouteError, RoutingTable, SessionView, SharedAnalysis, TargetId};

/// The inputs and result of a session's last successful `decide`. Texts of one shape share one analysis (the route
/// cache), so a client repeating a statement with other literals finds its decision here without resolving its names
/// again. The routing table and the catalog are compared by their generation (`App::routing_inputs`, moved on after
/// either is swapped), the session's search_path by its own (moved on by the session when the path changes): a memo
/// that is still right costs no load and no comparison of names.
#[derive(Debug, Default)]
pub struct DecisionMemo {
    last: Option<Last>,
}

#[derive(Debug)]
struct Last {
    /// The statement's analysis (shared by every text of its shape).
    analysis: SharedAnalysis,
    /// The generations it was decided with: of the routing table and catalog (read before they were loaded), and of
    /// the session's search_path.
    inputs: (u64, u64),
    /// The session's `SET pgsplit.target` then.
    target_hint: Option<TargetId>,
    /// What `decide` said.
    decision: Decision,
}

impl DecisionMemo {
    /// `decide(table, catalog, a, s)` with the routing table and catalog of generation `inputs.0` (`load` gives them,
    /// called only when the memo cannot answer) and `s.search_path` of generation `inputs.1` (the session's), from
    /// the memo when every input is the one it was last decided with. The caller reads `inputs.0` before anything
    /// `load` returns, so a memo never outlives a swap it did not see. Refusals are not kept: they are decided (and
    /// counted, and explained) each time.
    pub fn decide<T, C>(
        &mut self,
        inputs: (u64, u64),
        load: impl FnOnce() -> (T, C),
        a: &SharedAnalysis,
        s: &SessionView<'_>,
    ) -> Result<Decision, RouteError>
    where
        T: Deref<Target = Arc<RoutingTable>>,
        C: Deref<Target = Arc<Catalog>>,
    {
        if let Some(last) = &self.last {
            if Arc::ptr_eq(&last.analysis, a) && last.inputs == inputs && last.target_hint == s.target_hint {
                return Ok(last.decision.clone());
            }
        }
        let (table, catalog) = load();
        let decision = decide(&table, &catalog, a, s)?;
        self.last = Some(Last { analysis: a.clone(), inputs, target_hint: s.target_hint, decision: decision.clone() });
        Ok(decision)
    }
}
