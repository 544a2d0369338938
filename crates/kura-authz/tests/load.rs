//! Loading policies: the shipped files are valid and the compiled-in copy matches them; broken
//! or unsafe policy files (syntax errors, unknown attributes or roles, missing or repeated ids,
//! policies that can never apply, a schema out of step with the code) are refused with an error
//! naming the file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use kura_authz::{Action, Authorizer, AuthzError, ProjectRole, Role, SCHEMA_FILE};

fn shipped_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/authz")
}

/// A temp copy of the shipped policy directory, plus `extra` files.
fn dir_with(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(shipped_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, tmp.path().join(path.file_name().unwrap())).unwrap();
    }
    for (name, text) in extra {
        std::fs::write(tmp.path().join(name), text).unwrap();
    }
    tmp
}

fn load_err(dir: &Path) -> String {
    let err = Authorizer::from_dir(dir).expect_err("policies must be refused");
    err.to_string()
}

#[test]
fn builtin_and_directory_agree() {
    let from_dir = Authorizer::from_dir(&shipped_dir()).unwrap();
    let builtin = Authorizer::builtin().unwrap();
    assert_eq!(builtin.policies(), from_dir.policies());
    assert_eq!(builtin.schema_text(), from_dir.schema_text());
    // Every rule in the docs is present by name.
    let ids: Vec<String> = builtin
        .policies()
        .into_iter()
        .map(|(id, _, _)| id)
        .collect();
    for id in [
        "forbid-inactive-account",
        "forbid-supervisor-writes",
        "forbid-self-review",
        "forbid-outside-project-window",
        "forbid-expired-membership",
        "forbid-non-member-work",
        "forbid-observer-work",
    ] {
        assert!(ids.iter().any(|i| i == id), "{id} missing from {ids:?}");
    }
}

#[test]
fn authorizer_can_be_shared_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Authorizer>();
}

#[test]
fn syntax_error_names_the_file_and_line() {
    let dir = dir_with(&[(
        "broken.cedar",
        "@id(\"ok\")\npermit (principal, action, resource)\nwhen { principal.active ;\n",
    )]);
    let msg = load_err(dir.path());
    assert!(msg.contains("broken.cedar"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
}

#[test]
fn unknown_attribute_is_refused_by_strict_validation() {
    let dir = dir_with(&[(
        "department.cedar",
        "@id(\"permit-cardiology\")\npermit (principal, action == Action::\"run_query\", resource)\n\
         when { principal.department == \"cardiology\" };\n",
    )]);
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, AuthzError::Validation { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("department.cedar"), "{msg}");
    assert!(msg.contains("permit-cardiology"), "{msg}");
    assert!(msg.contains("department"), "{msg}");
}

#[test]
fn misspelt_role_is_refused() {
    // Without enum validation this forbid would silently never match.
    let dir = dir_with(&[(
        "typo.cedar",
        "@id(\"forbid-typo\")\nforbid (principal in Role::\"stewart\", action, resource);\n",
    )]);
    let msg = load_err(dir.path());
    assert!(
        msg.contains("typo.cedar") && msg.contains("stewart"),
        "{msg}"
    );
}

#[test]
fn a_policy_that_can_never_apply_is_refused() {
    // review_output never applies to a Project: this forbid would protect nothing.
    let dir = dir_with(&[(
        "never.cedar",
        "@id(\"forbid-never\")\nforbid (principal, action == Action::\"review_output\", resource is Project);\n",
    )]);
    let msg = load_err(dir.path());
    assert!(msg.contains("never.cedar"), "{msg}");
}

#[test]
fn policies_need_unique_ids() {
    let dir = dir_with(&[(
        "anon.cedar",
        "permit (principal, action, resource) when { principal.active };\n",
    )]);
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, AuthzError::MissingId { .. }), "{err:?}");
    assert!(err.to_string().contains("anon.cedar"), "{err}");

    let dir = dir_with(&[(
        "again.cedar",
        "@id(\"forbid-self-review\")\nforbid (principal, action, resource) when { false };\n",
    )]);
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, AuthzError::DuplicateId { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("again.cedar") && msg.contains("prohibitions.cedar"),
        "{msg}"
    );
}

#[test]
fn templates_are_refused() {
    let dir = dir_with(&[(
        "template.cedar",
        "@id(\"t\")\npermit (principal == ?principal, action, resource);\n",
    )]);
    let msg = load_err(dir.path());
    assert!(msg.contains("template.cedar"), "{msg}");
}

#[test]
fn broken_or_missing_schema_is_refused() {
    let dir = dir_with(&[(SCHEMA_FILE, "entity User {\n  id: Strin,\n};\n")]);
    let msg = load_err(dir.path());
    assert!(msg.contains(SCHEMA_FILE), "{msg}");

    let dir = dir_with(&[]);
    std::fs::remove_file(dir.path().join(SCHEMA_FILE)).unwrap();
    let msg = load_err(dir.path());
    assert!(msg.contains(SCHEMA_FILE), "{msg}");
}

#[test]
fn schema_must_match_the_action_enum() {
    let shipped = std::fs::read_to_string(shipped_dir().join(SCHEMA_FILE)).unwrap();
    // Moving a write into the read group would exempt it from forbid-supervisor-writes.
    let moved = shipped.replace("action run_query in [write]", "action run_query in [read]");
    assert_ne!(moved, shipped);
    let dir = dir_with(&[(SCHEMA_FILE, &moved)]);
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, AuthzError::ActionMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("run_query"), "{err}");

    let extra = format!(
        "{shipped}\naction delete_everything in [write] appliesTo {{ principal: User, resource: System, context: Ctx }};\n"
    );
    let dir = dir_with(&[(SCHEMA_FILE, &extra)]);
    let err = Authorizer::from_dir(dir.path()).unwrap_err();
    assert!(matches!(err, AuthzError::ActionMismatch(_)), "{err:?}");
}

#[test]
fn empty_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::copy(
        shipped_dir().join(SCHEMA_FILE),
        tmp.path().join(SCHEMA_FILE),
    )
    .unwrap();
    let err = Authorizer::from_dir(tmp.path()).unwrap_err();
    assert!(matches!(err, AuthzError::NoPolicies { .. }), "{err:?}");
}

#[test]
fn names_round_trip() {
    for r in Role::ALL {
        assert_eq!(r.as_str().parse::<Role>().unwrap(), r);
    }
    for r in ProjectRole::ALL {
        assert_eq!(r.as_str().parse::<ProjectRole>().unwrap(), r);
    }
    for a in Action::ALL {
        assert_eq!(a.as_str().parse::<Action>().unwrap(), a);
    }
    assert!("admin".parse::<Role>().is_err());
    assert!("Steward".parse::<Role>().is_err());
    assert!("owner".parse::<ProjectRole>().is_err());
}
