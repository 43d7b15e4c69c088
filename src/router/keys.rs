//! Which rows a single-table statement is confined to by equality on a column (`WHERE token = $1`), for the
//! session cache's eviction by key (`crate::cache`): a write confined to `token = 'a'` leaves the cached reads of
//! `token = 'b'` alone. All sqlparser matching for it lives here; `analyze` calls `of`.

use sqlparser::ast::{
    AssignmentTarget, Expr, FromTable, Ident, ObjectNamePart, Query, SetExpr, Statement, TableFactor, TableObject,
    TableWithJoins, Value,
};

/// A value a column is compared with: a string literal as written (string literals are never shaped: the analysis
/// a text shares with others of its shape holds the text's own), or a parameter of the extended protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyValue {
    /// `'abc'`.
    Text(Box<str>),
    /// `$n` (1-based).
    Param(u16),
}

/// The equality conditions a statement on one table fixes its rows by.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keys {
    /// `column = value` conjuncts of the WHERE clause (SELECT, UPDATE, DELETE) at its top level, or the columns and
    /// values of an INSERT's single row; columns case-folded.
    pub equal: Vec<(String, KeyValue)>,
    /// Columns an UPDATE assigns: a key column among them moves rows from one key to another.
    pub assigned: Vec<String>,
}

impl Keys {
    /// The value `column` is fixed to, if it is.
    pub fn value_of(&self, column: &str) -> Option<&KeyValue> {
        self.equal.iter().find(|(c, _)| c == column).map(|(_, v)| v)
    }
}

/// The keys of a statement that reads or writes exactly one table and nothing else, `None` for anything else (a
/// join, a CTE, a set operation, several rows inserted, INSERT ... ON CONFLICT, which may change another row).
pub fn of(st: &Statement) -> Option<Keys> {
    match st {
        Statement::Query(q) => select(q),
        Statement::Update(u) => {
            if u.from.is_some() || !single(&u.table) {
                return None;
            }
            let mut keys = Keys::default();
            for a in &u.assignments {
                let names = match &a.target {
                    AssignmentTarget::ColumnName(n) => std::slice::from_ref(n),
                    AssignmentTarget::Tuple(names) => names.as_slice(),
                };
                keys.assigned.extend(names.iter().map(|n| last_part(&n.0)).collect::<Option<Vec<_>>>()?);
            }
            conjuncts(u.selection.as_ref()?, &mut keys.equal);
            Some(keys)
        }
        Statement::Delete(d) => {
            let tables = match &d.from {
                FromTable::WithFromKeyword(t) | FromTable::WithoutKeyword(t) => t,
            };
            if d.using.is_some() || !d.tables.is_empty() || tables.len() != 1 || !tables.iter().all(single) {
                return None;
            }
            let mut keys = Keys::default();
            conjuncts(d.selection.as_ref()?, &mut keys.equal);
            Some(keys)
        }
        Statement::Insert(i) => {
            if !matches!(i.table, TableObject::TableName(_)) || i.on.is_some() {
                return None;
            }
            let source = i.source.as_ref()?;
            if source.with.is_some() {
                return None;
            }
            let SetExpr::Values(values) = source.body.as_ref() else { return None };
            let [row] = values.rows.as_slice() else { return None };
            let row = &row.content;
            if i.columns.len() != row.len() {
                return None;
            }
            let mut keys = Keys::default();
            for (column, value) in i.columns.iter().zip(row) {
                if let (Some(c), Some(v)) = (last_part(&column.0), key_value(value)) {
                    keys.equal.push((c, v));
                }
            }
            Some(keys)
        }
        _ => None,
    }
}

/// A plain `SELECT ... FROM one_table WHERE ...`, without a subquery anywhere (one reading other rows of the
/// table, `NOT EXISTS (SELECT ... WHERE n.user_id = s.user_id)`, would make the reply depend on rows of other keys).
fn select(q: &Query) -> Option<Keys> {
    if q.with.is_some() || subqueries(q) > 0 {
        return None;
    }
    let SetExpr::Select(s) = q.body.as_ref() else { return None };
    let [from] = s.from.as_slice() else { return None };
    if !single(from) {
        return None;
    }
    let mut keys = Keys::default();
    conjuncts(s.selection.as_ref()?, &mut keys.equal);
    Some(keys)
}

/// The queries nested in `q` (subqueries, derived tables, CTE bodies).
fn subqueries(q: &Query) -> usize {
    use sqlparser::ast::{Visit, Visitor};
    use std::ops::ControlFlow;
    struct Count(usize);
    impl Visitor for Count {
        type Break = ();
        fn pre_visit_query(&mut self, _: &Query) -> ControlFlow<()> {
            self.0 += 1;
            ControlFlow::Continue(())
        }
    }
    let mut c = Count(0);
    let _ = q.visit(&mut c);
    c.0.saturating_sub(1)
}

/// One table, no joins.
fn single(t: &TableWithJoins) -> bool {
    t.joins.is_empty() && matches!(t.relation, TableFactor::Table { .. })
}

/// Gathers `column = value` from the top-level AND conjuncts of `e`.
fn conjuncts(e: &Expr, out: &mut Vec<(String, KeyValue)>) {
    let mut stack = vec![e];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Nested(inner) => stack.push(inner),
            Expr::BinaryOp { left, op: sqlparser::ast::BinaryOperator::And, right } => {
                stack.push(left);
                stack.push(right);
            }
            Expr::BinaryOp { left, op: sqlparser::ast::BinaryOperator::Eq, right } => {
                let pair = match (column(left), key_value(right)) {
                    (Some(c), Some(v)) => Some((c, v)),
                    _ => column(right).zip(key_value(left)),
                };
                out.extend(pair);
            }
            _ => {}
        }
    }
}

/// A column reference, case-folded: `col`, `t.col`, `s.t.col`.
fn column(e: &Expr) -> Option<String> {
    match e {
        Expr::Identifier(i) => Some(fold(i)),
        Expr::CompoundIdentifier(parts) if (2..=3).contains(&parts.len()) => parts.last().map(fold),
        Expr::Nested(inner) => column(inner),
        _ => None,
    }
}

/// A string literal or a parameter, also under a cast (`$1::text`).
fn key_value(e: &Expr) -> Option<KeyValue> {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) => Some(KeyValue::Text(s.as_str().into())),
            Value::Placeholder(p) => p.strip_prefix('$').and_then(|n| n.parse().ok()).filter(|&n| n > 0).map(KeyValue::Param),
            _ => None,
        },
        Expr::Cast { expr, .. } | Expr::Nested(expr) => key_value(expr),
        _ => None,
    }
}

fn last_part(parts: &[ObjectNamePart]) -> Option<String> {
    match parts.last()? {
        ObjectNamePart::Identifier(i) => Some(fold(i)),
        _ => None,
    }
}

fn fold(i: &Ident) -> String {
    super::analyze::fold(i)
}
