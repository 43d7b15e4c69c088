//! Statement analysis with sqlparser: every object a parsed statement names. All sqlparser AST matching lives here.

use std::ops::ControlFlow;

use sqlparser::ast::{
    AlterTableOperation, ArrayElemTypeDef, ColumnDef, ColumnOption, CommentObject, CopySource, CreateTable, CreateTableLikeKind,
    DataType, DropFunction, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArguments, Grant, GrantObjects, Ident,
    ObjectName, ObjectNamePart, ObjectType, Query, Revoke, SchemaName, Statement, TableConstraint, TableFactor, Value, Visit,
    Visitor,
};
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::{Parser, ParserError};

use super::commands::{self, SESSION_LOCK_FUNCTIONS};
use super::{Analysis, Command, Name, ObjectKind};

/// Parses `sql` and collects the objects it names.
pub fn parse(sql: &str) -> Result<Analysis, ParserError> {
    let statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)?;
    let mut c = Collector::default();
    let mut ddl = false;
    for st in &statements {
        c.writes |= commands::writes(st);
        c.pins |= commands::pins(st);
        ddl |= commands::changes_catalog(st);
        let _ = st.visit(&mut c);
    }
    let own_transaction = statements.iter().any(commands::controls_transaction);
    let mut commands: Vec<Command> = statements.iter().map(commands::command).collect();
    let command = match commands.as_slice() {
        [_] => commands[0].clone(),
        _ => Command::Other,
    };
    commands.retain(Command::changes_session);
    // set_config outside the one form pgsplit follows (`SELECT set_config('x', 'v', false)`) may change session
    // state it cannot replay: keep the connection (transaction-local ones included: harmless over-pinning).
    let followed = commands.iter().filter(|c| matches!(c, Command::SetParam { .. })).count();
    c.pins |= c.set_configs > followed;
    // An object created in the session's temporary schema (`CREATE TABLE pg_temp.t`, `CREATE FUNCTION pg_temp.f`)
    // lives on that server connection only, as a `CREATE TEMP TABLE` does.
    c.pins |= c.names.iter().any(|n| n.created && n.schema.as_deref().is_some_and(is_temp_schema));
    Ok(Analysis {
        names: c.names,
        command,
        session_changes: commands,
        hint: None,
        fallback: false,
        writes: c.writes,
        ddl,
        pins: c.pins,
        statements: statements.len(),
        own_transaction,
        frees_database: None,
        sequences: false,
        observes_sequences: c.currval,
        calls_nextval: c.nextval,
        may_make_temp: false,
        plain: false,
        cacheable: false,
        may_write: false,
        known_functions: false,
        keys: match statements.as_slice() {
            [one] => super::keys::of(one).map(Box::new),
            _ => None,
        },
    })
}

/// `pg_temp`, or a session's own temporary schema by its real name (`pg_temp_3`).
pub fn is_temp_schema(schema: &str) -> bool {
    schema == "pg_temp" || schema.strip_prefix("pg_temp_").is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// Folds an identifier as PostgreSQL does: unquoted → ASCII letters in lower case (PostgreSQL's
/// `downcase_identifier` leaves other characters alone in UTF-8: `Ärger` stays `Ärger`), quoted → as written.
pub fn fold(ident: &Ident) -> String {
    match ident.quote_style {
        Some(_) => ident.value.clone(),
        None => ident.value.to_ascii_lowercase(),
    }
}

pub(super) fn parts(name: &ObjectName) -> Vec<String> {
    name.0
        .iter()
        .map(|p| match p {
            ObjectNamePart::Identifier(i) => fold(i),
            ObjectNamePart::Function(f) => fold(&f.name),
        })
        .collect()
}

/// Turns `[db.]schema.object` or `object` into a `Name`.
pub(super) fn name_of(name: &ObjectName, kind: ObjectKind) -> Option<Name> {
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
                parts.push(if was_quoted { std::mem::take(&mut cur) } else { std::mem::take(&mut cur).to_ascii_lowercase() });
                was_quoted = false;
            }
            c => cur.push(c),
        }
    }
    parts.push(if was_quoted { cur } else { cur.to_ascii_lowercase() });
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
    /// Whether any statement leaves state that pins the session to its server connection.
    pins: bool,
    /// `set_config` calls seen; those not followed as a session parameter change pin the session.
    set_configs: usize,
    /// A built-in `nextval` or `setval` is called.
    nextval: bool,
    /// A built-in `currval` is called.
    currval: bool,
    /// One scope per query being walked, outermost first: an unqualified relation matching a CTE name in scope is
    /// the CTE, not a table.
    scopes: Vec<CteScope>,
    /// The next relation the walk reports is the name of a table function (`FROM f(1)`), not a relation.
    function_next: bool,
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

    /// Records a name as written, of `kind`.
    fn named(&mut self, name: &ObjectName, kind: ObjectKind) {
        self.add(name_of(name, kind));
    }

    /// Records an object the statement creates (visited before the relation walk sees the same name).
    fn created(&mut self, name: &ObjectName, kind: ObjectKind) {
        if let Some(mut n) = name_of(name, kind) {
            n.created = true;
            self.add(Some(n));
        }
    }

    /// Records a schema itself (`CREATE SCHEMA s`, `GRANT ... IN SCHEMA s`).
    fn schema(&mut self, name: &ObjectName) {
        if let Some(s) = parts(name).pop() {
            self.add(Some(Name::new(Some(s), String::new(), ObjectKind::Schema)));
        }
    }

    /// Whether an unqualified relation name is a CTE of an enclosing query. Inside the body of a query's n-th CTE
    /// only the CTEs before it are visible (all of them under `WITH RECURSIVE`), as in PostgreSQL.
    fn is_cte(&self, name: &ObjectName) -> bool {
        let [ObjectNamePart::Identifier(i)] = name.0.as_slice() else { return false };
        let n = fold(i);
        self.scopes.iter().enumerate().any(|(depth, scope)| {
            let visible = match self.scopes.get(depth + 1).and_then(|inner| inner.cte_index) {
                Some(i) if !scope.recursive => &scope.ctes[..i],
                _ => &scope.ctes[..],
            };
            visible.contains(&n)
        })
    }

    /// A qualified user-defined type (`workspace.mood`) routes by its schema; unqualified ones are left to the
    /// relations around them (the catalog snapshot holds no types).
    fn data_type(&mut self, dt: &DataType) {
        match dt {
            DataType::Custom(name, _) if name.0.len() > 1 => self.named(name, ObjectKind::Relation),
            DataType::Array(ArrayElemTypeDef::AngleBracket(t) | ArrayElemTypeDef::SquareBracket(t, _)) => self.data_type(t),
            _ => {}
        }
    }

    /// `REFERENCES t` in a column or table constraint.
    fn column(&mut self, col: &ColumnDef) {
        self.data_type(&col.data_type);
        for o in &col.options {
            if let ColumnOption::ForeignKey(fk) = &o.option {
                self.named(&fk.foreign_table, ObjectKind::Relation);
            }
        }
    }

    fn constraint(&mut self, c: &TableConstraint) {
        if let TableConstraint::ForeignKey(fk) = c {
            self.named(&fk.foreign_table, ObjectKind::Relation);
        }
    }

    /// `CREATE TABLE`: the table (created), `LIKE`, `INHERITS`, `REFERENCES`, column types.
    fn create_table(&mut self, t: &CreateTable) {
        self.created(&t.name, ObjectKind::Relation);
        match &t.like {
            Some(CreateTableLikeKind::Parenthesized(l) | CreateTableLikeKind::Plain(l)) => {
                self.named(&l.name, ObjectKind::Relation)
            }
            None => {}
        }
        for parent in t.inherits.iter().flatten() {
            self.named(parent, ObjectKind::Relation);
        }
        for col in &t.columns {
            self.column(col);
        }
        for c in &t.constraints {
            self.constraint(c);
        }
    }

    /// The objects of `GRANT`/`REVOKE ... ON`.
    fn grant_objects(&mut self, objects: &GrantObjects) {
        match objects {
            GrantObjects::AllSequencesInSchema { schemas }
            | GrantObjects::AllTablesInSchema { schemas }
            | GrantObjects::AllViewsInSchema { schemas }
            | GrantObjects::AllMaterializedViewsInSchema { schemas }
            | GrantObjects::AllExternalTablesInSchema { schemas }
            | GrantObjects::AllFunctionsInSchema { schemas }
            | GrantObjects::FutureTablesInSchema { schemas }
            | GrantObjects::FutureViewsInSchema { schemas }
            | GrantObjects::FutureExternalTablesInSchema { schemas }
            | GrantObjects::FutureMaterializedViewsInSchema { schemas }
            | GrantObjects::FutureSequencesInSchema { schemas }
            | GrantObjects::Schemas(schemas) => schemas.iter().for_each(|s| self.schema(s)),
            GrantObjects::Sequences(names) | GrantObjects::Tables(names) | GrantObjects::Views(names) => {
                names.iter().for_each(|n| self.named(n, ObjectKind::Relation))
            }
            GrantObjects::Procedure { name, .. } | GrantObjects::Function { name, .. } => self.named(name, ObjectKind::Function),
            _ => {}
        }
    }

    /// `COMMENT ON kind name`: a column's name ends with the column; a schema is a schema.
    fn comment(&mut self, kind: &CommentObject, name: &ObjectName) {
        match kind {
            CommentObject::Column => {
                let mut p = parts(name);
                p.pop();
                let object = p.pop();
                if let Some(object) = object {
                    self.add(Some(Name::new(p.pop(), object, ObjectKind::Relation)));
                }
            }
            CommentObject::Schema => self.schema(name),
            CommentObject::Function | CommentObject::Procedure => self.named(name, ObjectKind::Function),
            _ => self.named(name, ObjectKind::Relation),
        }
    }

    /// Names that sqlparser's relation walk does not report, by statement kind.
    fn statement(&mut self, st: &Statement) {
        match st {
            Statement::Copy { source: CopySource::Table { table_name, .. }, .. } => self.named(table_name, ObjectKind::Relation),
            Statement::CreateSchema { schema_name: SchemaName::Simple(n) | SchemaName::NamedAuthorization(n, _), .. } => {
                self.schema(n)
            }
            Statement::AlterSchema(a) => self.schema(&a.name),
            Statement::Comment { object_type, object_name, .. } => self.comment(object_type, object_name),
            Statement::Call(f) => self.named(&f.name, ObjectKind::Function),
            Statement::CreateTable(t) => self.create_table(t),
            Statement::CreateView(v) => self.created(&v.name, ObjectKind::Relation),
            Statement::CreateSequence { name, .. } => self.created(name, ObjectKind::Relation),
            Statement::CreateType { name, .. } => self.created(name, ObjectKind::Relation),
            Statement::CreateDomain(d) => {
                self.created(&d.name, ObjectKind::Relation);
                self.data_type(&d.data_type);
            }
            Statement::CreateFunction(f) => self.created(&f.name, ObjectKind::Function),
            Statement::CreateProcedure { name, .. } => self.created(name, ObjectKind::Function),
            Statement::CreateTrigger(t) => {
                self.named(&t.table_name, ObjectKind::Relation);
                if let Some(r) = &t.referenced_table_name {
                    self.named(r, ObjectKind::Relation);
                }
                if let Some(body) = &t.exec_body {
                    self.named(&body.func_desc.name, ObjectKind::Function);
                }
            }
            Statement::CreateExtension(e) => {
                if let Some(s) = &e.schema {
                    self.add(Some(Name::new(Some(fold(s)), String::new(), ObjectKind::Schema)));
                }
            }
            Statement::AlterTable(t) => {
                for op in &t.operations {
                    match op {
                        AlterTableOperation::AddConstraint { constraint, .. } => self.constraint(constraint),
                        AlterTableOperation::AddColumn { column_def, .. } => self.column(column_def),
                        _ => {}
                    }
                }
            }
            Statement::AlterIndex { name, .. } => self.named(name, ObjectKind::Relation),
            Statement::AlterType(t) => self.named(&t.name, ObjectKind::Relation),
            Statement::AlterFunction(f) => self.named(&f.function.name, ObjectKind::Function),
            Statement::Drop { object_type, names, table, .. } => {
                for n in names {
                    match object_type {
                        ObjectType::Schema => self.schema(n),
                        _ => self.named(n, ObjectKind::Relation),
                    }
                }
                if let Some(t) = table {
                    self.named(t, ObjectKind::Relation);
                }
            }
            Statement::DropFunction(DropFunction { func_desc, .. }) | Statement::DropProcedure { proc_desc: func_desc, .. } => {
                func_desc.iter().for_each(|f| self.named(&f.name, ObjectKind::Function))
            }
            Statement::DropTrigger(t) => {
                if let Some(n) = &t.table_name {
                    self.named(n, ObjectKind::Relation);
                }
            }
            Statement::Grant(Grant { objects: Some(o), .. }) | Statement::Revoke(Revoke { objects: Some(o), .. }) => {
                self.grant_objects(o)
            }
            Statement::Vacuum(v) => {
                if let Some(t) = &v.table_name {
                    self.named(t, ObjectKind::Relation);
                }
            }
            _ => {}
        }
    }

    /// A function call: sequence and regclass functions name a relation in their first (string) argument.
    fn function(&mut self, f: &Function) {
        let Some(name) = name_of(&f.name, ObjectKind::Function) else { return };
        let builtin = name.schema.as_deref().is_none_or(|s| s == "pg_catalog");
        self.pins |= builtin && SESSION_LOCK_FUNCTIONS.contains(&name.object.as_str());
        if builtin && name.object == "set_config" && !transaction_local(f) {
            self.set_configs += 1;
        }
        self.nextval |= builtin && matches!(name.object.as_str(), "nextval" | "setval");
        self.currval |= builtin && name.object == "currval";
        if builtin && REGCLASS_FUNCTIONS.contains(&name.object.as_str()) {
            if let FunctionArguments::List(list) = &f.args {
                if let Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(arg))) = list.args.first() {
                    let lit = match arg {
                        Expr::Cast { expr, .. } => string_literal(expr),
                        other => string_literal(other),
                    };
                    self.add(lit.and_then(regclass_name));
                }
            }
            return;
        }
        // Unqualified calls resolve through search_path (built-ins live in pg_catalog, searched first).
        self.add(Some(name));
    }

    /// `'x'::regclass`, `CAST('x' AS regclass)`, `'f'::regproc`, `x::workspace.mood`.
    fn cast(&mut self, expr: &Expr, dt: &DataType) {
        let custom = match dt {
            DataType::Regclass => Some(ObjectKind::Relation),
            DataType::Custom(name, _) => match name_of(name, ObjectKind::Relation) {
                Some(n) if n.schema.as_deref().is_none_or(|s| s == "pg_catalog") => match n.object.as_str() {
                    "regclass" => Some(ObjectKind::Relation),
                    "regproc" | "regprocedure" => Some(ObjectKind::Function),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        };
        match custom {
            Some(kind) => {
                let name = string_literal(expr).and_then(regclass_name).map(|mut n| {
                    n.kind = kind;
                    if kind == ObjectKind::Function {
                        // `'f(int)'::regprocedure` names `f`.
                        n.object.truncate(n.object.find('(').unwrap_or(n.object.len()));
                    }
                    n
                });
                self.add(name);
            }
            None => self.data_type(dt),
        }
    }
}

/// The CTEs one query defines, for telling CTE references from relations.
struct CteScope {
    /// CTE names (folded), in order.
    ctes: Vec<String>,
    /// `WITH RECURSIVE`: every CTE is visible in every body.
    recursive: bool,
    /// How many CTE bodies the walk has entered so far.
    entered: usize,
    /// When this query is the body of the enclosing query's n-th CTE: n.
    cte_index: Option<usize>,
}

/// Built-in functions whose first argument is a regclass (a string literal naming a relation).
pub const REGCLASS_FUNCTIONS: &[&str] = &[
    "nextval",
    "currval",
    "setval",
    "to_regclass",
    "pg_relation_size",
    "pg_total_relation_size",
    "pg_table_size",
    "pg_indexes_size",
];

pub(super) fn string_literal(e: &Expr) -> Option<&str> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) | Value::UnicodeStringLiteral(s) => Some(s),
            _ => None,
        },
        _ => None,
    }
}

impl Visitor for Collector {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        // A query's CTE bodies are walked first, in order: while the enclosing query has bodies left to enter,
        // the query entered now is the next one.
        let cte_index = match self.scopes.last_mut() {
            Some(outer) if outer.entered < outer.ctes.len() => {
                outer.entered += 1;
                Some(outer.entered - 1)
            }
            _ => None,
        };
        let (ctes, recursive) = match &query.with {
            Some(with) => (with.cte_tables.iter().map(|c| fold(&c.alias.name)).collect(), with.recursive),
            None => (Vec::new(), false),
        };
        self.scopes.push(CteScope { ctes, recursive, entered: 0, cte_index });
        ControlFlow::Continue(())
    }

    fn post_visit_query(&mut self, _query: &Query) -> ControlFlow<()> {
        self.scopes.pop();
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        match factor {
            TableFactor::Table { args: Some(_), .. } => self.function_next = true,
            TableFactor::Function { name, .. } => self.named(name, ObjectKind::Function),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_relation(&mut self, relation: &ObjectName) -> ControlFlow<()> {
        if std::mem::take(&mut self.function_next) {
            self.named(relation, ObjectKind::Function);
        } else if !self.is_cte(relation) {
            self.named(relation, ObjectKind::Relation);
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
        match expr {
            Expr::Function(f) => self.function(f),
            Expr::Cast { expr, data_type, .. } => self.cast(expr, data_type),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_statement(&mut self, st: &Statement) -> ControlFlow<()> {
        self.statement(st);
        ControlFlow::Continue(())
    }
}

/// Whether a `set_config(name, value, is_local)` call says `true` for `is_local` (its effect ends with the
/// transaction, so nothing is left on the connection).
fn transaction_local(f: &Function) -> bool {
    let FunctionArguments::List(list) = &f.args else { return false };
    matches!(
        list.args.get(2),
        Some(FunctionArg::Unnamed(FunctionArgExpr::Expr(Expr::Value(v)))) if matches!(v.value, Value::Boolean(true))
    )
}
