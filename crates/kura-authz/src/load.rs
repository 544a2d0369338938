//! Loading policies: the schema and every `*.cedar` file, from a directory or compiled in.
//! Each policy must carry a unique `@id`, which becomes its Cedar policy id (reported in every
//! decision). The whole set is validated against the schema in strict mode; warnings (e.g. a
//! policy that can never apply) are refused like errors, since a forbid that never applies is a
//! silent hole.

use std::collections::BTreeMap;
use std::path::Path;

use cedar_policy::{
    EntityId, EntityTypeName, EntityUid, PolicyId, PolicySet, Schema, ValidationMode, Validator,
};
use miette::Diagnostic;

use crate::error::AuthzError;
use crate::model::Action;

/// File name of the schema inside a policy directory.
pub const SCHEMA_FILE: &str = "kura.cedarschema";

/// The policy files compiled into the binary. A test checks this list matches the directory.
const BUILTIN_POLICIES: &[(&str, &str)] = &[
    (
        "membership.cedar",
        include_str!("../../../policies/authz/membership.cedar"),
    ),
    (
        "prohibitions.cedar",
        include_str!("../../../policies/authz/prohibitions.cedar"),
    ),
    (
        "roles.cedar",
        include_str!("../../../policies/authz/roles.cedar"),
    ),
];
const BUILTIN_SCHEMA: &str = include_str!("../../../policies/authz/kura.cedarschema");

/// A validated policy set, with the file each policy came from.
pub(crate) struct Loaded {
    pub(crate) schema: Schema,
    pub(crate) schema_text: String,
    pub(crate) policies: PolicySet,
    /// policy id -> (file name, policy text)
    pub(crate) sources: BTreeMap<String, (String, String)>,
}

pub(crate) fn builtin_sources() -> (&'static str, Vec<(String, String)>) {
    let files = BUILTIN_POLICIES
        .iter()
        .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
        .collect();
    (BUILTIN_SCHEMA, files)
}

/// Reads `kura.cedarschema` and every `*.cedar` in `dir` (sorted by name; other files ignored).
pub(crate) fn read_dir(dir: &Path) -> Result<(String, Vec<(String, String)>), AuthzError> {
    let io = |path: &Path, source| AuthzError::Io {
        path: path.to_owned(),
        source,
    };
    let schema_path = dir.join(SCHEMA_FILE);
    let schema = std::fs::read_to_string(&schema_path).map_err(|e| io(&schema_path, e))?;
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let path = entry.map_err(|e| io(dir, e))?.path();
        if path.extension().is_some_and(|ext| ext == "cedar") && path.is_file() {
            let text = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            files.push((name, text));
        }
    }
    if files.is_empty() {
        return Err(AuthzError::NoPolicies {
            dir: dir.to_owned(),
        });
    }
    files.sort();
    Ok((schema, files))
}

/// Parses, renames by `@id`, and validates. `files` are (file name, text).
pub(crate) fn compile(schema_text: &str, files: &[(String, String)]) -> Result<Loaded, AuthzError> {
    let (schema, _warnings) =
        Schema::from_cedarschema_str(schema_text).map_err(|e| AuthzError::Schema {
            file: SCHEMA_FILE.to_owned(),
            message: describe(&e, schema_text),
        })?;
    check_actions(&schema)?;

    let mut policies = PolicySet::new();
    let mut sources: BTreeMap<String, (String, String)> = BTreeMap::new();
    for (file, text) in files {
        let parsed: PolicySet =
            text.parse()
                .map_err(|e: cedar_policy::ParseErrors| AuthzError::Parse {
                    file: file.clone(),
                    message: e
                        .iter()
                        .map(|err| describe(err, text))
                        .collect::<Vec<_>>()
                        .join("; "),
                })?;
        if let Some(t) = parsed.templates().next() {
            return Err(AuthzError::Template {
                file: file.clone(),
                id: t.id().to_string(),
            });
        }
        // Default ids are "policy0", "policy1", ... in file order; sort so errors name the first.
        let mut in_file: Vec<_> = parsed.policies().collect();
        in_file.sort_by_key(|p| default_index(p.id()));
        for policy in in_file {
            let policy_text = policy.to_cedar().unwrap_or_else(|| policy.to_string());
            let Some(id) = policy.annotation("id").filter(|id| !id.trim().is_empty()) else {
                let first_line = policy_text.lines().next().unwrap_or_default().trim();
                return Err(AuthzError::MissingId {
                    file: file.clone(),
                    location: format!(
                        "position {} (starting {first_line:?})",
                        default_index(policy.id()).saturating_add(1)
                    ),
                });
            };
            if let Some((first_file, _)) = sources.get(id) {
                return Err(AuthzError::DuplicateId {
                    file: file.clone(),
                    id: id.to_owned(),
                    first_file: first_file.clone(),
                });
            }
            let renamed = policy.new_id(PolicyId::new(id));
            sources.insert(id.to_owned(), (file.clone(), policy_text));
            policies.add(renamed).map_err(|e| AuthzError::DuplicateId {
                file: file.clone(),
                id: format!("{id} ({e})"),
                first_file: file.clone(),
            })?;
        }
    }

    let result = Validator::new(schema.clone()).validate(&policies, ValidationMode::Strict);
    let problem = result
        .validation_errors()
        .map(|e| (e.policy_id().to_string(), e as &dyn Diagnostic))
        .chain(
            result
                .validation_warnings()
                .map(|w| (w.policy_id().to_string(), w as &dyn Diagnostic)),
        )
        .next();
    if let Some((id, diag)) = problem {
        let (file, text) = sources
            .get(&id)
            .map(|(f, _)| {
                let text = files
                    .iter()
                    .find(|(name, _)| name == f)
                    .map(|(_, t)| t.as_str())
                    .unwrap_or_default();
                (f.clone(), text)
            })
            .unwrap_or_default();
        return Err(AuthzError::Validation {
            file,
            id,
            message: describe(diag, text),
        });
    }
    Ok(Loaded {
        schema,
        schema_text: schema_text.to_owned(),
        policies,
        sources,
    })
}

/// The Rust `Action` enum and the schema must name the same actions, with `is_write` matching
/// membership of the `write` group; otherwise a Rust-side check and a policy could disagree.
fn check_actions(schema: &Schema) -> Result<(), AuthzError> {
    let mismatch = |m: String| AuthzError::ActionMismatch(m);
    let actions = schema
        .action_entities()
        .map_err(|e| mismatch(e.to_string()))?;
    let uid = |id: &str| -> Result<EntityUid, AuthzError> {
        let ty: EntityTypeName = "Action"
            .parse()
            .map_err(|e: cedar_policy::ParseErrors| mismatch(e.to_string()))?;
        Ok(EntityUid::from_type_name_and_id(ty, EntityId::new(id)))
    };
    let (read, write) = (uid("read")?, uid("write")?);
    for action in Action::ALL {
        let a = uid(action.as_str())?;
        if actions.get(&a).is_none() {
            return Err(mismatch(format!(
                "action {:?} is not declared in the schema",
                action.as_str()
            )));
        }
        let (in_read, in_write) = (
            actions.is_ancestor_of(&read, &a),
            actions.is_ancestor_of(&write, &a),
        );
        if in_write != action.is_write() || in_read == action.is_write() {
            return Err(mismatch(format!(
                "action {:?} must be in exactly the {} group",
                action.as_str(),
                if action.is_write() { "write" } else { "read" }
            )));
        }
    }
    let known = Action::ALL.len() + 2;
    let declared = schema.actions().count();
    if declared != known {
        return Err(mismatch(format!(
            "the schema declares {declared} actions (groups included) but Kura knows {known}"
        )));
    }
    Ok(())
}

fn default_index(id: &PolicyId) -> usize {
    id.to_string()
        .strip_prefix("policy")
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// The error's message, its help, and the line and column of its first label in `text`.
fn describe(diag: &dyn Diagnostic, text: &str) -> String {
    let mut out = diag.to_string();
    if let Some(offset) = diag
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|l| l.offset())
    {
        let before = text.get(..offset.min(text.len())).unwrap_or_default();
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        out = format!("line {line}, column {column}: {out}");
    }
    if let Some(help) = diag.help() {
        out = format!("{out} (help: {help})");
    }
    out
}
