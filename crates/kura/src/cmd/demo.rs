//! `kura demo`: Kura's main job on embedded defaults, under one state directory. It generates a
//! synthetic raw extract, builds a pseudonymised snapshot, creates the demo accounts (passwords
//! printed once) and projects, and serves the web UI over HTTPS. `--no-serve` instead runs
//! sample queries through the sandbox (each audited) and verifies the audit log. A second run
//! reuses whatever the first one built.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};
use kura_audit::{AuditLog, AuditOptions, AuditSink, Event, EventKind};
use kura_query::arrow::util::pretty::pretty_format_batches;
use kura_query::{EngineConfig, ProjectScope, QueryEngine, QueryRequest};

use super::database::{describe_audit, describe_store};

#[derive(clap::Args)]
pub struct Args {
    /// State directory holding everything the demo builds.
    #[arg(long, default_value = "state")]
    state: PathBuf,
    /// Patients in the synthetic registries.
    #[arg(long, default_value_t = 100_000)]
    patients: u64,
    /// Seed of the synthetic registries.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Pseudonymisation policy for the snapshot.
    #[arg(long, default_value = "policies/pseudonymise.toml")]
    policy: PathBuf,
    /// Address to serve on.
    #[arg(long, default_value = "127.0.0.1:8443")]
    listen: std::net::SocketAddr,
    /// Run the sample queries from the command line and exit instead of serving.
    #[arg(long)]
    no_serve: bool,
    /// Accounts, projects, airlock and audit log in a shared PostgreSQL instead of the state
    /// directory's SQLite file.
    #[command(flatten)]
    db: super::database::DatabaseArgs,
}

const DEMO_PROJECT: &str = "demo-feasibility";
const DEMO_USER: &str = "researcher@demo";
const OPERATOR: &str = "kura-demo";

/// Sample questions a pharma feasibility team asks first.
const SAMPLE_QUERIES: &[(&str, &str)] = &[
    (
        "Patients by designated disease (top 10)",
        "SELECT f.disease_no, d.name_ja, count(DISTINCT f.research_id) AS patients \
         FROM nanbyo_forms f JOIN designated_diseases d ON d.no = f.disease_no \
         GROUP BY ALL ORDER BY patients DESC LIMIT 10",
    ),
    (
        "Myasthenia gravis (11) patients by severity in the latest fiscal year",
        "SELECT severity, count(DISTINCT research_id) AS patients FROM nanbyo_forms \
         WHERE disease_no = 11 AND form_year = (SELECT max(form_year) FROM nanbyo_forms) \
         GROUP BY severity ORDER BY severity",
    ),
    (
        "Transition care: 小慢 children who appear later in 難病",
        "SELECT count(DISTINCT s.research_id) AS transition_patients \
         FROM shoman_forms s JOIN nanbyo_forms n USING (research_id)",
    ),
];

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    std::fs::create_dir_all(&args.state)
        .with_context(|| format!("creating the state directory {}", args.state.display()))?;
    let audit_at = args.db.audit_location(&args.state)?;
    let store_at = args.db.store_location(&args.state)?;
    let audit = AuditLog::open_at(&audit_at, AuditOptions::default())
        .with_context(|| format!("opening the audit log in {}", describe_audit(&audit_at)))?;
    if args.db.url()?.is_some() {
        eprintln!(
            "demo: accounts, projects and the audit log in {}",
            describe_store(&store_at)
        );
    }

    let raw = args.state.join("raw");
    if !raw.join(kura_registry::NANBYO_FORMS).exists() {
        eprintln!(
            "demo: generating {} synthetic patients into {}",
            args.patients,
            raw.display()
        );
        let options = kura_registry::GenerateOptions {
            patients: args.patients,
            seed: args.seed,
            out: raw.clone(),
        };
        kura_registry::generate(&options, &mut |_| {})
            .with_context(|| format!("generating the raw extract in {}", raw.display()))?;
    }

    let key_file = args.state.join("keys").join("pseudonym.key");
    ensure_key(&key_file)?;

    let snapshot = args.state.join("snapshots").join("demo.duckdb");
    if !snapshot.exists() {
        if !args.policy.exists() {
            bail!(
                "the pseudonymisation policy {} does not exist: run the demo from the repository \
                 root or pass --policy",
                args.policy.display()
            );
        }
        let out_dir = snapshot.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(out_dir)
            .with_context(|| format!("creating {}", out_dir.display()))?;
        eprintln!(
            "demo: building the pseudonymised snapshot {}",
            snapshot.display()
        );
        let options = kura_snapshot::BuildOptions {
            raw_dir: raw.clone(),
            policy: args.policy.clone(),
            key_file: key_file.clone(),
            out: snapshot.clone(),
            release_id: Some(format!("demo-seed-{}", args.seed)),
        };
        // The build is recorded before it publishes anything, like every other action.
        audit.append(
            Event::new(EventKind::SnapshotBuilt, OPERATOR)
                .object(snapshot.display().to_string())
                .payload(serde_json::json!({ "raw": raw.display().to_string(), "policy": args.policy.display().to_string() })),
        )?;
        let summary = kura_snapshot::build(&options, &mut |_| {})
            .with_context(|| format!("building {}", snapshot.display()))?;
        eprintln!(
            "demo: snapshot sha256 {} ({} rows read in {:.1} s)",
            summary.manifest.database.sha256, summary.rows_read, summary.seconds
        );
    }

    seed_accounts_and_projects(&args.state, &store_at, &audit)?;
    if !args.no_serve {
        audit.close()?;
        let mut config = kura_server::ServerConfig {
            state_dir: args.state.clone(),
            listen: args.listen,
            ..kura_server::ServerConfig::default()
        };
        args.db.apply(&mut config)?;
        println!(
            "\nOpen https://{} (self-signed certificate: accept it once).",
            args.listen
        );
        return super::serve::serve(config);
    }

    let scope = demo_scope(&args.state)?;
    let engine = QueryEngine::new(EngineConfig::from_current_exe()?)?;
    for (title, sql) in SAMPLE_QUERIES {
        println!("\n## {title}\n{sql}\n");
        let request = QueryRequest {
            sql,
            project: &scope,
            user: DEMO_USER,
            session: None,
            snapshot: &snapshot,
            snapshot_sha256: None,
            id: None,
            limits: None,
        };
        let result = engine
            .run(&request, &audit)
            .with_context(|| format!("running the sample query {title:?}"))?;
        println!("{}", pretty_format_batches(&result.batches)?);
        println!(
            "{} rows, {} ms, result sha256 {}",
            result.outcome.rows,
            result.outcome.duration.as_millis(),
            result.outcome.sha256
        );
    }
    audit.close()?;

    let report = kura_audit::verify::verify_at(&audit_at, None, None)?;
    println!(
        "\naudit log ({}): {} entries, {} signed checkpoints, {}",
        describe_audit(&audit_at),
        report.entries,
        report.checkpoints,
        if report.intact() {
            "intact"
        } else {
            "NOT INTACT"
        }
    );
    if let Some(checkpoint) = &report.latest_checkpoint {
        println!("latest checkpoint:\n{checkpoint}");
    }
    let kura = std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "kura".to_string());
    let state = args.state.display();
    let snap = snapshot.display();
    // The URL may hold a password: the hint names the variable, never the value.
    let db = if args.db.url()?.is_some() {
        format!(" --database-url \"${}\"", super::database::URL_ENV)
    } else {
        String::new()
    };
    println!("\nTry next:");
    println!("  {kura} query --state {state}{db} --snapshot {snap} --project {DEMO_PROJECT} --user you \"SELECT count(*) FROM nanbyo_forms\"");
    println!("  {kura} audit search --state {state}{db}");
    println!("  {kura} audit verify --state {state}{db}");
    Ok(if report.intact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Demo accounts: (id, name, roles).
const DEMO_ACCOUNTS: &[(&str, &str, &[&str])] = &[
    (
        "researcher",
        "山田 花子 (研究者 / researcher)",
        &["researcher"],
    ),
    (
        "checker1",
        "佐藤 一郎 (出力チェック / output checker)",
        &["checker"],
    ),
    (
        "checker2",
        "鈴木 次郎 (出力チェック / output checker)",
        &["checker"],
    ),
    (
        "supervisor",
        "高橋 三奈 (監督者 / supervisor)",
        &["supervisor"],
    ),
    (
        "steward",
        "田中 四郎 (データ管理者 / data steward)",
        &["steward"],
    ),
];

/// Creates the demo accounts and projects that do not exist yet (each creation audited first)
/// and prints the new accounts' passwords, which are stored only as argon2id hashes.
fn seed_accounts_and_projects(
    state: &Path,
    store_at: &kura_store::StoreLocation,
    audit: &AuditLog,
) -> anyhow::Result<()> {
    let store = kura_store::Store::open_at(store_at)
        .with_context(|| format!("opening the accounts in {}", describe_store(store_at)))?;
    let now = chrono::Utc::now();
    let mut printed = false;
    for (id, name, roles) in DEMO_ACCOUNTS {
        if store.account(id)?.is_some() {
            continue;
        }
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        let password = kura_identity::password::generate_password()?;
        let hash = kura_identity::password::hash_password(&password)?;
        audit.append(
            Event::new(EventKind::AdminAction, OPERATOR)
                .object(format!("account:{id}"))
                .payload(serde_json::json!({"action": "account.create", "id": id, "roles": roles})),
        )?;
        store.create_account(
            &kura_store::NewAccount {
                id,
                name,
                roles: &roles,
                password_hash: &hash,
            },
            now,
        )?;
        if !printed {
            println!(
                "\nDemo accounts (passwords are shown this once; only their hashes are kept):"
            );
            printed = true;
        }
        println!("  {id:<11} {password}   {name}");
    }
    if !printed {
        println!(
            "\nDemo accounts exist already (their passwords were printed by the first run; \
             `kura account reset-password --state {}{} --id researcher` prints a new one).",
            state.display(),
            match store_at {
                kura_store::StoreLocation::State(_) => String::new(),
                kura_store::StoreLocation::Postgres(_) =>
                    format!(" --database-url \"${}\"", super::database::URL_ENV),
            }
        );
    }
    for project in demo_projects(now) {
        if store.project(&project.id)?.is_some() {
            continue;
        }
        audit.append(
            Event::new(EventKind::AdminAction, OPERATOR)
                .project(project.id.clone())
                .object(format!("project:{}", project.id))
                .payload(serde_json::json!({"action": "project.create", "project": project})),
        )?;
        store.create_project(&project)?;
        let member = kura_store::Member {
            user: "researcher".into(),
            role: "researcher".into(),
            expires: project.expires,
        };
        audit.append(
            Event::new(EventKind::AdminAction, OPERATOR)
                .project(project.id.clone())
                .object("member:researcher")
                .payload(serde_json::json!({"action": "member.set", "member": member})),
        )?;
        store.set_member(&project.id, &member)?;
    }
    Ok(())
}

fn demo_projects(now: chrono::DateTime<chrono::Utc>) -> Vec<kura_store::Project> {
    let all = |tables: &[&str]| {
        tables
            .iter()
            .map(|t| (t.to_string(), vec!["*".to_string()]))
            .collect::<std::collections::BTreeMap<_, _>>()
    };
    let mut feasibility = all(&["designated_diseases", "prefectures"]);
    feasibility.insert(
        "nanbyo_forms".into(),
        [
            "research_id",
            "disease_no",
            "form_year",
            "sex",
            "age_band",
            "pref_code",
            "severity",
            "diagnosis_category",
            "institution_key",
            "certified",
        ]
        .iter()
        .map(|c| c.to_string())
        .collect(),
    );
    let project = |id: &str, title: &str, description: &str, tables| kura_store::Project {
        id: id.into(),
        title: title.into(),
        description: description.into(),
        snapshot: "demo".into(),
        tables,
        starts: now - chrono::Duration::days(1),
        expires: now + chrono::Duration::days(365),
        created_by: OPERATOR.into(),
        created_at: now,
    };
    vec![
        project(
            DEMO_PROJECT,
            "治験実施可能性調査 / Trial feasibility (demo)",
            "Patients by disease, severity, region and institution; no dates, no labs.",
            feasibility,
        ),
        project(
            "demo-transition",
            "移行期医療研究 / Transition care research (demo)",
            "小慢 children who later appear in 難病: every table of the snapshot.",
            all(&[
                "nanbyo_forms",
                "nanbyo_treatments",
                "shoman_forms",
                "institutions",
                "designated_diseases",
                "prefectures",
            ]),
        ),
    ]
}

/// Creates a random 32-byte pseudonymisation key (mode 0600) unless one exists.
fn ensure_key(path: &Path) -> anyhow::Result<()> {
    if path.exists() {
        return Ok(());
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut key = [0u8; 32];
    getrandom::fill(&mut key).map_err(|e| anyhow::anyhow!("no randomness for the key: {e}"))?;
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating the key file {}", path.display()))?;
    file.write_all(&key)?;
    file.sync_all()?;
    Ok(())
}

/// The demo project's grant: every snapshot table, every column, for a year.
fn demo_scope(state: &Path) -> anyhow::Result<ProjectScope> {
    let path = ProjectScope::default_path(state, DEMO_PROJECT);
    if !path.exists() {
        let dir = path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let expires =
            (chrono::Utc::now() + chrono::Duration::days(365)).format("%Y-%m-%dT00:00:00Z");
        let text = format!(
            "name = \"{DEMO_PROJECT}\"\nsnapshot = \"demo\"\nexpires = \"{expires}\"\n\n[tables]\n\
             nanbyo_forms = [\"*\"]\nnanbyo_treatments = [\"*\"]\nshoman_forms = [\"*\"]\n\
             institutions = [\"*\"]\ndesignated_diseases = [\"*\"]\nprefectures = [\"*\"]\n"
        );
        std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ProjectScope::load(&path, DEMO_PROJECT)?)
}
