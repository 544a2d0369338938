//! The statement gate against DuckDB's real parser output, in process (no worker): the rules
//! and the CTE scoping that decides whether a name is a CTE or a real table.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;

use kura_query::duck::Database;
use kura_query::gate::{check, GateError, Rule};
use kura_query::policy::FunctionPolicy;

fn gate(sql: &str) -> Result<(), GateError> {
    let (db, conn) = Database::open_in_memory(&[("threads", "1".into())]).unwrap();
    let granted: BTreeSet<String> = ["nanbyo_forms", "prefectures"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    check(
        &conn,
        &db,
        sql,
        &granted,
        &FunctionPolicy::builtin().unwrap(),
    )
}

fn rule(sql: &str) -> Rule {
    match gate(sql) {
        Err(GateError::Refused { rule, .. }) => rule,
        other => panic!("{sql}: expected a refusal, got {other:?}"),
    }
}

#[test]
fn cte_names_unlock_only_their_own_scope() {
    // A CTE shadowing a non-granted name is fine where it is visible...
    assert_eq!(
        gate("WITH shoman_forms AS (SELECT 1 AS x) SELECT * FROM shoman_forms"),
        Ok(())
    );
    // ...but a non-recursive CTE's body sees the real table, not itself.
    assert_eq!(
        rule("WITH shoman_forms AS (SELECT * FROM shoman_forms) SELECT * FROM shoman_forms"),
        Rule::TableNotGranted
    );
    // A CTE inside one subquery does not unlock the name in a sibling FROM.
    assert_eq!(
        rule(
            "SELECT * FROM (WITH shoman_forms AS (SELECT 1 AS x) SELECT * FROM shoman_forms) a, \
             shoman_forms"
        ),
        Rule::TableNotGranted
    );
    // An earlier CTE cannot see a later one (that name would be a table there).
    assert_eq!(
        rule("WITH a AS (SELECT * FROM b), b AS (SELECT 1 AS x) SELECT * FROM a"),
        Rule::TableNotGranted
    );
    assert_eq!(
        gate("WITH a AS (SELECT 1 AS x), b AS (SELECT * FROM a) SELECT * FROM b"),
        Ok(())
    );
    assert_eq!(
        gate(
            "WITH RECURSIVE r(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM r WHERE n < 3) \
             SELECT * FROM r"
        ),
        Ok(())
    );
}

#[test]
fn statement_count_comes_from_the_parser_not_the_first_statement() {
    assert_eq!(
        rule("SELECT 1; COPY (SELECT 1) TO '/tmp/x'"),
        Rule::OneStatement
    );
    assert_eq!(
        rule("SELECT ';' ; DROP VIEW nanbyo_forms"),
        Rule::OneStatement
    );
    assert_eq!(rule("SELECT 1; SELECT 2"), Rule::OneStatement);
    assert_eq!(rule("COPY (SELECT 1) TO '/tmp/x'"), Rule::ReadOnly);
    assert_eq!(
        rule("PIVOT nanbyo_forms ON severity USING count(*)"),
        Rule::ReadOnly
    );
    assert_eq!(rule("/* nothing */"), Rule::Empty);
}

#[test]
fn syntax_errors_carry_duckdbs_position() {
    match gate("SELECT 1 FROM nanbyo_forms WHERE") {
        Err(GateError::Syntax { message, position }) => {
            assert!(message.contains("syntax error"), "{message}");
            // "WHERE" starts at character 27 (0-based).
            assert_eq!(position, Some(27));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn functions_and_names() {
    assert_eq!(
        gate("SELECT count(*), [1, 2][1], {'a': 1} FROM nanbyo_forms"),
        Ok(())
    );
    assert_eq!(
        rule("SELECT system.main.count(*) FROM nanbyo_forms"),
        Rule::QualifiedName
    );
    assert_eq!(rule("SELECT 'HOME'.getenv()"), Rule::FunctionNotAllowed);
    assert_eq!(
        rule("SELECT * FROM glob('/*')"),
        Rule::TableFunctionNotAllowed
    );
    assert_eq!(
        rule("SELECT * FROM range(getenv('X'))"),
        Rule::FunctionNotAllowed
    );
    assert_eq!(rule("DESCRIBE shoman_forms"), Rule::TableNotGranted);
    assert_eq!(gate("DESCRIBE nanbyo_forms"), Ok(()));
    assert_eq!(rule("SHOW TABLES"), Rule::TableNotGranted);
    assert_eq!(rule("SELECT * FROM main.nanbyo_forms"), Rule::QualifiedName);
}

#[test]
fn arguments_of_allowed_table_functions_are_checked() {
    assert_eq!(
        rule("SELECT * FROM range(getenv('X'))"),
        Rule::FunctionNotAllowed
    );
    assert_eq!(
        rule("SELECT * FROM unnest((SELECT list(research_id) FROM shoman_forms))"),
        Rule::TableNotGranted
    );
    assert_eq!(
        rule("SELECT * FROM generate_series(1, (SELECT count(*) FROM read_csv('/etc/passwd')))"),
        Rule::TableFunctionNotAllowed
    );
}
