//! A session's last routing decision, reused while nothing it was decided from has changed.

use std::sync::Arc;

use super::{decide, Catalog, Decision, RouteError, RoutingTable, SessionView, SharedAnalysis, TargetId};

/// The inputs and result of a session's last successful `decide`. Texts of one shape share one analysis (the route
/// cache), so a client repeating a statement with other literals finds its decision here without resolving its names
/// again. The `Arc`s it holds keep the compared snapshots alive, so a pointer seen equal is the same snapshot.
#[derive(Debug, Default)]
pub struct DecisionMemo {
    last: Option<Last>,
}

#[derive(Debug)]
struct Last {
    /// The statement's analysis (shared by every text of its shape).
    analysis: SharedAnalysis,
    /// The routing table it was decided with (a reload swaps in a new one).
    table: Arc<RoutingTable>,
    /// The catalog snapshot names were resolved in (a refresh swaps in a new one).
    catalog: Arc<Catalog>,
    /// The session's search_path then.
    search_path: Vec<String>,
    /// The session's `SET pgsplit.target` then.
    target_hint: Option<TargetId>,
    /// What `decide` said.
    decision: Decision,
}

impl DecisionMemo {
    /// `decide(table, catalog, a, s)`, from the memo when every input is the one it was last decided with.
    /// Refusals are not kept: they are decided (and counted, and explained) each time.
    pub fn decide(
        &mut self,
        table: &Arc<RoutingTable>,
        catalog: &Arc<Catalog>,
        a: &SharedAnalysis,
        s: &SessionView<'_>,
    ) -> Result<Decision, RouteError> {
        if let Some(last) = &self.last {
            if Arc::ptr_eq(&last.analysis, a)
                && Arc::ptr_eq(&last.table, table)
                && Arc::ptr_eq(&last.catalog, catalog)
                && last.target_hint == s.target_hint
                && last.search_path == s.search_path
            {
                return Ok(last.decision.clone());
            }
        }
        let decision = decide(table, catalog, a, s)?;
        let mut search_path = self.last.take().map(|last| last.search_path).unwrap_or_default();
        copy_into(&mut search_path, s.search_path);
        self.last = Some(Last {
            analysis: a.clone(),
            table: table.clone(),
            catalog: catalog.clone(),
            search_path,
            target_hint: s.target_hint,
            decision: decision.clone(),
        });
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
