//! Where a request goes: the one place that chooses a target. Mode, passthrough database, hints, the router's
//! answer and the transaction's binding are weighed here together; the rest of the session only asks.
//!
//! | situation                                        | target                                              |
//! |--------------------------------------------------|-----------------------------------------------------|
//! | passthrough database                             | that target, always                                 |
//! | single mode                                      | the single target                                   |
//! | no analysis (split mode, text not analysed)      | the default target                                  |
//! | otherwise                                        | the router's decision (relations, hint, search_path, `SET pgsplit.target`, default) |
//! | bound transaction, statement follows the session | the bound target                                    |
//! | bound transaction, statement chose another       | refused 0A000 (`other_target_in_transaction`)       |
//! | tentative binding (status `T`), chose another    | the other target: the transaction moves             |
//! | failed transaction on its server (status `E`)    | the bound target: PostgreSQL answers 25P02          |
//! | extended batch                                   | what its statements that chose agree on (else 0A000 `batch_mixes_targets`), else the binding, else the first follower |
//! | request naming no statement (Bind of an unknown name, a failed transaction's statement) | `fallback`: passthrough, single, default |

use crate::app::App;
use crate::metrics::RouteReason;
use crate::protocol::encode::PgError;
use crate::router::{DecisionMemo, Reason, SessionView, SharedAnalysis, TargetId};

use super::errors;
use super::machine::Binding;

/// What routing weighs besides the statement.
pub struct Context<'a> {
    /// Configuration, routing table, catalog.
    pub app: &'a App,
    /// Connected with a target's name as the database.
    pub passthrough: Option<TargetId>,
    /// The transaction's routing mode is single.
    pub single: bool,
    /// The session's search_path, case-folded.
    pub search_path: &'a [String],
    /// Moved on whenever the session's search_path changes.
    pub search_path_generation: u64,
    /// `SET pgsplit.target`.
    pub target_hint: Option<TargetId>,
    /// The transaction's hold on a server, if any.
    pub binding: Option<Binding>,
}

/// A routed statement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Routed {
    /// Where it runs.
    pub target: TargetId,
    /// Whether the statement itself chose it (relations, hint) rather than following the session.
    pub explicit: bool,
}

/// The target of a statement (`analysis` is `None` in single mode for texts not analysed), checked against the
/// transaction's binding.
pub fn route(analysis: Option<&SharedAnalysis>, ctx: &Context<'_>, memo: &mut DecisionMemo) -> Result<Routed, PgError> {
    let (target, explicit, why) = match (ctx.passthrough, analysis) {
        (Some(t), _) => (t, true, RouteReason::Passthrough),
        _ if ctx.single => (ctx.app.single_target(), false, RouteReason::Single),
        // Nothing to route by (a FunctionCall): the session's hint, else the default target.
        (None, None) => match ctx.target_hint {
            Some(t) => (t, false, RouteReason::Router(Reason::SessionHint)),
            None => (ctx.app.table().default_target, false, RouteReason::Router(Reason::Default)),
        },
        (None, Some(a)) => {
            let view = SessionView { search_path: ctx.search_path, target_hint: ctx.target_hint };
            let inputs = (ctx.app.routing_inputs(), ctx.search_path_generation);
            let d = memo.decide(inputs, || (ctx.app.table(), ctx.app.catalog()), a, &view).map_err(errors::route)?;
            (d.target, !matches!(d.reason, Reason::Default | Reason::SessionHint), RouteReason::Router(d.reason))
        }
    };
    ctx.app.backend(target).stats.routed(why);
    let Some(b) = ctx.binding else { return Ok(Routed { target, explicit }) };
    match b {
        // A transaction bound by a plain read moves to the first target a statement chooses.
        Binding { target: bound, status: crate::protocol::STATUS_IN_TX, tentative: true } if bound != target && explicit => {
            Ok(Routed { target, explicit })
        }
        // A transaction that failed on its server: PostgreSQL answers (25P02, or ROLLBACK) as it would directly.
        Binding { status: crate::protocol::STATUS_FAILED, .. } => Ok(Routed { target: b.target, explicit }),
        _ if b.target != target && explicit => Err(errors::other_target_in_transaction(ctx.app, target, b.target)),
        _ => Ok(Routed { target: b.target, explicit }),
    }
}

/// The target of a request that names no statement to route by: a Bind or Describe of a name the client does not
/// have (the server gives the error a direct connection would), or a failed transaction that must fail somewhere.
pub fn fallback(ctx: &Context<'_>) -> TargetId {
    match ctx.passthrough {
        Some(t) => t,
        None if ctx.single => ctx.app.single_target(),
        None => ctx.app.table().default_target,
    }
}

/// The target an extended batch agrees on: statements that chose their target must agree; the others (a JDBC
/// `BEGIN`, `SELECT 1`) follow them, else go where the first of them would.
#[derive(Debug, Default)]
pub struct Batch {
    explicit: Option<TargetId>,
    follower: Option<TargetId>,
}

impl Batch {
    /// Adds one statement the batch parses, binds or describes. A statement prepared earlier for another target
    /// cannot join the bound transaction (a Parse was checked by `route`; a Bind or Describe is checked here).
    pub fn add(&mut self, routed: Routed, ctx: &Context<'_>) -> Result<(), PgError> {
        if let Some(b) = ctx.binding.filter(|b| routed.explicit && routed.target != b.target) {
            return Err(errors::other_target_in_transaction(ctx.app, routed.target, b.target));
        }
        match (routed.explicit, self.explicit) {
            (true, Some(e)) if e != routed.target => Err(errors::batch_mixes_targets(ctx.app, e, routed.target)),
            (true, _) => {
                self.explicit = Some(routed.target);
                Ok(())
            }
            (false, _) => {
                self.follower = self.follower.or(Some(routed.target));
                Ok(())
            }
        }
    }

    /// Inside a bound transaction everything runs where it is bound (an explicit other target was refused); a
    /// statement prepared earlier for another target only follows. `None` when the batch names no statement.
    pub fn target(&self, ctx: &Context<'_>) -> Option<TargetId> {
        self.explicit.or(ctx.binding.map(|b| b.target)).or(self.follower)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{STATUS_FAILED, STATUS_IN_TX};

    const PRIMARY: TargetId = 0;
    const DATA: TargetId = 1;

    /// An App over two targets nothing connects to (pools open connections only when asked).
    fn app() -> App {
        let yaml = "listen: 127.0.0.1:0
database: handled
default_target: primary
single_target: data
targets:
  primary:
    url: postgresql://u:p@127.0.0.1:1/handled_primary
    tls: { mode: disable }
    schemas: [config, customer]
  data:
    url: postgresql://u:p@127.0.0.1:1/handled_data
    schemas: [workspace, reference]
users:
  - { name: app, password: \"pw\" }
";
        let config = crate::config::load_str(yaml, std::path::Path::new("."), &|_| None).expect("config");
        App::build(config).expect("app")
    }

    fn ctx<'a>(app: &'a App, passthrough: Option<TargetId>, single: bool, binding: Option<Binding>) -> Context<'a> {
        Context { app, passthrough, single, search_path: &[], search_path_generation: 0, target_hint: None, binding }
    }

    fn bound(target: TargetId, status: u8, tentative: bool) -> Option<Binding> {
        Some(Binding { target, status, tentative })
    }

    /// Every row of the module doc's table, statement by statement.
    #[tokio::test]
    async fn each_situation_routes_as_the_table_says() {
        let app = app();
        let data_read = app.analysis_for("select * from workspace.imports", false, &mut Default::default());
        let plain = app.analysis_for("select 1", false, &mut Default::default());
        let to = |target, explicit| Ok(Routed { target, explicit });
        type Row<'a> = (&'a str, Context<'a>, Option<&'a SharedAnalysis>, Result<Routed, &'a str>);
        let rows: Vec<Row<'_>> = vec![
            ("passthrough", ctx(&app, Some(DATA), false, None), plain.as_ref(), to(DATA, true)),
            ("single mode", ctx(&app, None, true, None), data_read.as_ref(), to(DATA, false)),
            ("no analysis", ctx(&app, None, false, None), None, to(PRIMARY, false)),
            ("relations choose", ctx(&app, None, false, None), data_read.as_ref(), to(DATA, true)),
            ("nothing routed: default", ctx(&app, None, false, None), plain.as_ref(), to(PRIMARY, false)),
            ("bound, follows", ctx(&app, None, false, bound(DATA, STATUS_IN_TX, false)), plain.as_ref(), to(DATA, false)),
            ("bound, same target", ctx(&app, None, false, bound(DATA, STATUS_IN_TX, false)), data_read.as_ref(), to(DATA, true)),
            ("bound elsewhere", ctx(&app, None, false, bound(PRIMARY, STATUS_IN_TX, false)), data_read.as_ref(), Err("0A000")),
            ("tentative moves", ctx(&app, None, false, bound(PRIMARY, STATUS_IN_TX, true)), data_read.as_ref(), to(DATA, true)),
            (
                "failed on its server",
                ctx(&app, None, false, bound(PRIMARY, STATUS_FAILED, true)),
                data_read.as_ref(),
                to(PRIMARY, true),
            ),
        ];
        for (name, c, analysis, want) in rows {
            let got = route(analysis, &c, &mut Default::default()).map_err(|e| e.code);
            assert_eq!(got, want, "{name}");
        }
    }

    #[tokio::test]
    async fn a_batch_agrees_on_the_target_its_statements_chose_and_a_request_naming_none_falls_back() {
        let app = app();
        let free = ctx(&app, None, false, None);
        let mut b = Batch::default();
        assert_eq!(b.target(&free), None);
        b.add(Routed { target: PRIMARY, explicit: false }, &free).expect("follower");
        assert_eq!(b.target(&free), Some(PRIMARY));
        b.add(Routed { target: DATA, explicit: true }, &free).expect("chooser");
        assert_eq!(b.target(&free), Some(DATA));
        let mixed = b.add(Routed { target: PRIMARY, explicit: true }, &free).expect_err("two choosers");
        assert_eq!((mixed.code, mixed.cause), ("0A000", "batch_mixes_targets"));
        // Bound: the binding wins over followers; a statement prepared for another target is refused.
        let inside = ctx(&app, None, false, bound(DATA, STATUS_IN_TX, false));
        let mut b = Batch::default();
        b.add(Routed { target: PRIMARY, explicit: false }, &inside).expect("follower");
        assert_eq!(b.target(&inside), Some(DATA));
        let other = b.add(Routed { target: PRIMARY, explicit: true }, &inside).expect_err("other target");
        assert_eq!(other.cause, "other_target_in_transaction");
        // Naming no statement: passthrough, single, default, in that order.
        assert_eq!(fallback(&ctx(&app, Some(DATA), true, None)), DATA);
        assert_eq!(fallback(&ctx(&app, None, true, None)), DATA);
        assert_eq!(fallback(&free), PRIMARY);
    }
}
