//! Statement analysis with sqlparser: every object a parsed statement names. All sqlparser AST matching lives here.

use std::ops::ControlFlow;

use sqlparser::ast::{
    CopySource, DataType, Expr, FunctionArg, FunctionArgExpr, FunctionArguments, Ident, ObjectName, ObjectNamePart, Reset,
    SchemaName, Set, Statement, Value, Visit, Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use super::{Analysis, Command, Name, ObjectKind};

/// Parses `sql` and collects the objects it names.
pub fn parse(sql: &str) -> Result<Analysis, ParserError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)?;
    let mut c = Collector::default();
    for st in &statements {
        c.writes |= writes(st);
        let _ = st.visit(&mut c);
    }
    let command = match statements.as_slice() {
        [one] => command(one),
        _ => Command::Other,
    };
    Ok(Analysis { names: c.names, command, hint: None, fallback: false, writes: c.writes, statements: statements.len() })
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
    Some(Name { schema, object, kind })
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
    Some(Name { schema: parts.pop(), object, kind: ObjectKind::Relation })
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
    fn add(&mut self, name: Option<Name>) {
        if let Some(n) = name {
            if !self.names.contains(&n) {
                self.names.push(n);
            }
        }
    }

    fn schema(&mut self, name: &ObjectName) {
        if let Some(s) = parts(name).pop() {
            self.add(Some(Name { schema: Some(s), object: String::new(), kind: ObjectKind::Schema }));
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
                } else if name.as_ref().is_some_and(|n| n.schema.is_some()) {
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
        Statement::Reset(r) => match &r.reset {
            Reset::ConfigurationParameter(p) if is_target_var(p) => Command::ResetTarget,
            _ => Command::Other,
        },
        _ => Command::Other,
    }
}

fn is_target_var(name: &ObjectName) -> bool {
    parts(name) == ["pgsplit", "target"]
}
