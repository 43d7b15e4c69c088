//! Statement analysis with sqlparser: every object a parsed statement names. All sqlparser AST matching lives here.

use std::ops::ControlFlow;

use sqlparser::ast::{
    ContextModifier, CopySource, DataType, DiscardObject, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident,
    ObjectName, ObjectNamePart, Query, Reset, SchemaName, SelectItem, Set, SetExpr, Statement, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use super::{Analysis, Command, Name, ObjectKind};

/// Parses `sql` and collects the objects it names.
pub fn parse(sql: &str) -> Result<Analysis, ParserError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)?;
    let mut c = Collector::default();
    let mut ddl = false;
    for st in &statements {
        c.writes |= writes(st);
        ddl |= changes_catalog(st);
        let _ = st.visit(&mut c);
    }
    let mut commands: Vec<Command> = statements.iter().map(command).collect();
    let command = match commands.as_slice() {
        [_] => commands[0].clone(),
        _ => Command::Other,
    };
    commands.retain(Command::changes_session);
    Ok(Analysis {
        names: c.names,
        command,
        session_changes: commands,
        hint: None,
        fallback: false,
        writes: c.writes,
        ddl,
        statements: statements.len(),
    })
}

/// Folds an identifier as PostgreSQL does: unquoted → lower case, quoted → as written.
pub fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_lowercase(),
    }
}

fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => fold(i),
            ObjectNamePart::Function(f) => fold(&f.name),
        })
        .collect()
}

/// Turns `[db.]schema.object` or `object` into a `Name`.
fn name_of(name: &ObjectName, kind: ObjectKind) -> Option<Name> {
    let mut p = parts(name);
    let object = p.pop()?;
    let schema = p.pop();
    Some(Name::new(schema, object, kind))
}

/// Parses a regclass-style string (`'workspace.seq'`, `'"Ws"."T"'`) into a relation name.
pub fn regclass_name(s: &str) -> Option<Name> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut was_quoted = false;
    let mut chars = s.trim().chars().peekable();
    while let Some(ch) = chars.next() {
        match ch {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                cur.push('"');
            }
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            '.' if !quoted => {
                parts.push(if was_quoted { std::mem::take(&mut cur) } else { std::mem::take(&mut cur).to_lowercase() });
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    parts.push(if was_quoted { cur } else { cur.to_lowercase() });
    if parts.iter().any(String::is_empty) || parts.len() > 3 {
        return None;
    }
    let object = parts.pop()?;
    Some(Name::new(parts.pop(), object, ObjectKind::Relation))
}

/// Gathers names while sqlparser's visitor walks the AST.
#[derive(Default)]
struct Collector {
    /// Names in order of first appearance.
    names: Vec<Name>,
    /// Whether any statement may write.
    writes: bool,
}

impl Collector {
    /// Records a name once; the first sighting decides whether it counts as created by the statement.
    fn add(&mut self, name: Option<Name>) {
        if let Some(n) = name {
            if !self.names.iter().any(|m| m.schema == n.schema && m.object == n.object && m.kind == n.kind) {
                self.names.push(n);
            }
        }
    }

    /// Records an object the statement creates (visited before the relation walk sees the same name).
    fn created(&mut self, name: &ObjectName, kind: ObjectKind) {
        if let Some(mut n) = name_of(name, kind) {
            n.created = true;
            self.add(Some(n));
        }
    }

    fn schema(&mut self, name: &ObjectName) {
        if let Some(s) = parts(name).pop() {
            self.add(Some(Name::new(Some(s), String::new(), ObjectKind::Schema)));
        }
    }
}

fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        self.add(name_of(relation, ObjectKind::Relation));
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => {
                let name = name_of(&f.name, ObjectKind::Function);
                let is_seq_fn = name.as_ref().is_some_and(|n| {
                    matches!(n.object.as_str(), "nextval" | "currval" | "setval")
                        && n.schema.as_deref().is_none_or(|s| s == "pg_catalog")
                });
                if is_seq_fn {
                    if let FunctionArguments::List(list) = &f.args {
                        if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.first() {
                            let lit = match arg {
                                Expr::Cast { expr, .. } => string_literal(expr),
                                other => string_literal(other),
                            };
                            self.add(lit.and_then(regclass_name));
                        }
                    }
                } else {
                    // Unqualified calls resolve through search_path (built-ins live in pg_catalog, searched first).
                    self.add(name);
                }
            }
            Expr::Cast { expr, data_type: DataType::Regclass, .. } => {
                self.add(string_literal(expr).and_then(regclass_name));
            }
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        match st {
            Statement::Copy { source: CopySource::Table { table_name, .. }, .. } => {
                self.add(name_of(table_name, ObjectKind::Relation));
            }
            Statement::CreateSchema { schema_name: SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _), .. } => {
                self.schema(n);
            }
            Statement::Comment { object_name, .. } => self.add(name_of(object_name, ObjectKind::Relation)),
            Statement::Call(f) => self.add(name_of(&f.name, ObjectKind::Function)),
            Statement::CreateTable(t) => self.created(&t.name, ObjectKind::Relation),
            Statement::CreateView(v) => self.created(&v.name, ObjectKind::Relation),
            Statement::CreateSequence { name, .. } => self.created(name, ObjectKind::Relation),
            Statement::CreateFunction(f) => self.created(&f.name, ObjectKind::Function),
            _ => {}
        }
        ControlFlow::Continue(())
    }
}

/// Whether a statement may change data or schema (used to refuse guesses).
fn writes(st: &Statement) -> bool {
    match st {
        Statement::Query(_) => false,
        Statement::Copy { to, .. } => !to,
        Statement::StartTransaction { .. } | Statement::Commit { .. } | Statement::Rollback { .. } => false,
        Statement::Set(_) | Statement::ShowVariable { .. } | Statement::Explain { .. } => false,
        _ => true,
    }
}

/// Whether a statement may change what the catalog snapshot holds (relations, functions, schemas).
fn changes_catalog(st: &Statement) -> bool {
    !matches!(
        st,
        Statement::Query(_)
            | Statement::Insert(_)
            | Statement::Update(_)
            | Statement::Delete(_)
            | Statement::Merge(_)
            | Statement::Copy { .. }
            | Statement::StartTransaction { .. }
            | Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::Set(_)
            | Statement::Reset(_)
            | Statement::ShowVariable { .. }
            | Statement::Explain { .. }
            | Statement::Prepare { .. }
            | Statement::Execute { .. }
            | Statement::Deallocate { .. }
            | Statement::Discard { .. }
            | Statement::Declare { .. }
            | Statement::Fetch { .. }
            | Statement::Close { .. }
            | Statement::Call(_)
            | Statement::LISTEN { .. }
            | Statement::UNLISTEN { .. }
            | Statement::NOTIFY { .. }
            | Statement::Lock(_)
            | Statement::Truncate(_)
            | Statement::Analyze(_)
    )
}

fn command(st: &Statement) -> Command {
    match st {
        Statement::StartTransaction { .. } => Command::Begin,
        Statement::Commit { chain: false, .. } => Command::Commit,
        Statement::Rollback { chain: false, savepoint: None } => Command::Rollback,
        Statement::Set(Set::SingleAssignment { scope: None, variable, values, .. }) if is_target_var(variable) => {
            match values.as_slice() {
                [v] => match v {
                    Expr::Value(val) => match &val.value {
                        Value::SingleQuotedString(s) => Command::SetTarget(s.clone()),
                        _ => Command::Other,
                    },
                    Expr::Identifier(i) => Command::SetTarget(fold(i)),
                    _ => Command::Other,
                },
                _ => Command::Other,
            }
        }
        Statement::Set(Set::SingleAssignment { scope: None | Some(ContextModifier::Session), variable, values, .. }) => {
            let name = parts(variable).join(".");
            match values.as_slice() {
                [Expr::Identifier(i)] if i.quote_style.is_none() && i.value.eq_ignore_ascii_case("default") => {
                    Command::ResetParam(name)
                }
                [] => Command::Other,
                vs => Command::SetParam { name, value: vs.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ") },
            }
        }
        Statement::Set(Set::SetTimeZone { local: false, value }) => {
            Command::SetParam { name: "timezone".into(), value: value.to_string() }
        }
        Statement::Reset(r) => match &r.reset {
            Reset::ConfigurationParameter(p) if is_target_var(p) => Command::ResetTarget,
            Reset::ConfigurationParameter(p) => Command::ResetParam(parts(p).join(".")),
            Reset::ALL => Command::ResetAll,
            Reset::SessionAuthorization => Command::Other,
        },
        Statement::Discard { object_type: DiscardObject::ALL } => Command::DiscardAll,
        Statement::Deallocate { name, .. } if name.quote_style.is_none() && name.value.eq_ignore_ascii_case("all") => {
            Command::Deallocate(None)
        }
        Statement::Deallocate { name, .. } => Command::Deallocate(Some(fold(name))),
        Statement::Query(q) => set_config(q).unwrap_or(Command::Other),
        _ => Command::Other,
    }
}

/// `SELECT set_config('name', 'value', false)` (session-wide; `true` is transaction-local and not followed).
fn set_config(q: &Query) -> Option<Command> {
    let SetExpr::Select(select) = q.body.as_ref() else { return None };
    if !select.from.is_empty() || select.projection.len() != 1 {
        return None;
    }
    let (SelectItem::UnnamedExpr(Expr::Function(f)) | SelectItem::ExprWithAlias { expr: Expr::Function(f), .. }) =
        &select.projection[0]
    else {
        return None;
    };
    let n = name_of(&f.name, ObjectKind::Function)?;
    if n.object != "set_config" || n.schema.as_deref().is_some_and(|s| s != "pg_catalog") {
        return None;
    }
    let FunctionArguments::List(list) = &f.args else { return None };
    let args: Vec<&Expr> = list
        .args
        .iter()
        .filter_map(|a| match a {
            FunctionArg::Unnamed(FunctionArgExpr::Expr(e)) => Some(e),
            _ => None,
        })
        .collect();
    let [name, value, local] = args.as_slice() else { return None };
    let is_local = match local {
        Expr::Value(v) => matches!(v.value, Value::Boolean(true)),
        _ => return None,
    };
    let (name, value) = (string_literal(name)?.to_lowercase(), string_literal(value)?);
    if is_local {
        return None;
    }
    let value = if name == "search_path" {
        super::resolve::search_path_sql(&super::resolve::parse_search_path(value))
    } else {
        format!("'{}'", value.replace('\'', "''"))
    };
    Some(Command::SetParam { name, value })
}

fn is_target_var(name: &ObjectName) -> bool {
    parts(name) == ["pgsplit", "target"]
}
