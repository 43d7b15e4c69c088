//! A session's last routing decision, reused while nothing it was decided from has changed.

use std::ops::Deref;
use std::sync::Arc;

use super::{decide, Catalog, Decision, RouteError, RoutingTable, SessionView, SharedAnalysis, TargetId};

/// The inputs and result of a session's last successful `decide`. Texts of one shape share one analysis (the route
/// cache), so a client repeating a statement with other literals finds its decision here without resolving its names
/// again. The routing table and the catalog are compared by their generation (`App::routing_inputs`, moved on after
/// either is swapped): a memo that is still right costs no load of either.
#[derive(Debug, Default)]
pub struct DecisionMemo {
    last: Option<Last>,
}

#[derive(Debug)]
struct Last {
    /// The statement's analysis (shared by every text of its shape).
    analysis: SharedAnalysis,
    /// The generation of the routing table and catalog it was decided with (read before they were loaded).
    inputs: u64,
    /// The session's search_path then.
    search_path: Vec<String>,
    /// The session's `SET pgsplit.target` then.
    target_hint: Option<TargetId>,
    /// What `decide` said.
    decision: Decision,
}

impl DecisionMemo {
    /// `decide(table, catalog, a, s)` with the routing table and catalog of generation `inputs` (`load` gives them,
    /// called only when the memo cannot answer), from the memo when every input is the one it was last decided with.
    /// The caller reads `inputs` before anything `load` returns, so a memo never outlives a swap it did not see.
    /// Refusals are not kept: they are decided (and counted, and explained) each time.
    pub fn decide<T, C>(
        &mut self,
        inputs: u64,
        load: impl FnOnce() -> (T, C),
        a: &SharedAnalysis,
        s: &SessionView<'_>,
    ) -> Result<Decision, RouteError>
    where
        T: Deref<Target = Arc<RoutingTable>>,
        C: Deref<Target = Arc<Catalog>>,
    {
        if let Some(last) = &self.last {
            if Arc::ptr_eq(&last.analysis, a)
                && last.inputs == inputs
                && last.target_hint == s.target_hint
                && last.search_path == s.search_path
            {
                return Ok(last.decision.clone());
            }
        }
        let (table, catalog) = load();
        let decision = decide(&table, &catalog, a, s)?;
        let mut search_path = self.last.take().map(|last| last.search_path).unwrap_or_default();
        copy_into(&mut search_path, s.search_path);
        self.last =
            Some(Last { analysis: a.clone(), inputs, search_path, target_hint: s.target_hint, decision: decision.clone() });
        Ok(decision)
    }
}

/// `dst = src.to_vec()`, reusing `dst`'s strings: no allocation while the search_path keeps its shape.
fn copy_into(dst: &mut Vec<String>, src: &[String]) {
    dst.truncate(src.len());
    for (i, schema) in src.iter().enumerate() {
        match dst.get_mut(i) {
            Some(d) => d.clone_from(schema),
            None => dst.push(schema.clone()),
        }
    }
}
