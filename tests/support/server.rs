//! A real `kura serve` for end-to-end tests: a state directory with a snapshot built by the
//! real pipeline (synthetic registry -> `kura snapshot build`), accounts and projects, a
//! config file, the server process on a free port, and an HTTPS client that trusts the
//! server's generated certificate and keeps cookies like a browser.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::{kura, kura_bin, repo_root};

/// The password every test account gets.
pub const PASSWORD: &str = "correct horse battery staple 7";

/// A pseudonymised snapshot named `demo` (3,000 patients), built by the real pipeline once per
/// build of the `kura` binary and kept next to it (`<target>/debug/e2e-snapshot/<stamp>/`), so
/// test binaries and later runs reuse it and nothing piles up in /tmp.
pub fn snapshot_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let bin = kura_bin();
        let stamp = std::fs::metadata(&bin)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let root = bin.parent().unwrap().join("e2e-snapshot");
        let dir = root.join(stamp.to_string());
        if dir.join("demo.duckdb.manifest.json").is_file() {
            return dir;
        }
        // Older builds' snapshots are no longer used.
        if let Ok(entries) = std::fs::read_dir(&root) {
            for e in entries.flatten() {
                let building = e.file_name().to_string_lossy().starts_with("building-");
                if e.path() != dir && !building {
                    let _ = std::fs::remove_dir_all(e.path());
                }
            }
        }
        let work = root.join(format!("building-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).unwrap();
        let raw = work.join("raw");
        let out = kura(&[
            "registry",
            "generate",
            "--patients",
            "3000",
            "--seed",
            "7",
            "--out",
            raw.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let key = work.join("pseudonym.key");
        std::fs::write(&key, [7u8; 32]).unwrap();
        let snap = work.join("demo.duckdb");
        let policy = repo_root().join("policies/pseudonymise.toml");
        let out = kura(&[
            "snapshot",
            "build",
            "--raw",
            raw.to_str().unwrap(),
            "--policy",
            policy.to_str().unwrap(),
            "--key-file",
            key.to_str().unwrap(),
            "--out",
            snap.to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let _ = std::fs::remove_dir_all(&raw);
        // Another test binary may have finished first: then use its copy.
        if std::fs::rename(&work, &dir).is_err() {
            let _ = std::fs::remove_dir_all(&work);
        }
        dir
    })
}

/// What a test server holds before it starts.
pub struct Setup {
    /// (id, roles)
    pub accounts: Vec<(&'static str, Vec<&'static str>)>,
    pub projects: Vec<kura_store::Project>,
    /// (project, user, role, membership expiry)
    pub members: Vec<(&'static str, &'static str, &'static str, DateTime<Utc>)>,
    /// Extra lines for kura.toml.
    pub config: String,
    /// Port on 127.0.0.1 (0: any free port).
    pub port: u16,
    /// `database_url`: accounts, projects, airlock and audit log in this PostgreSQL (several
    /// nodes, `cluster.rs`); None: SQLite in the state directory.
    pub database_url: Option<String>,
}

impl Default for Setup {
    /// A researcher member of `p1`, a second researcher member of `p2`, two checkers, a
    /// supervisor and a steward.
    fn default() -> Self {
        let now = Utc::now();
        let year = now + chrono::Duration::days(365);
        Setup {
            accounts: vec![
                ("alice", vec!["researcher"]),
                ("bob", vec!["researcher"]),
                ("carol", vec!["checker"]),
                ("dave", vec!["checker"]),
                ("sue", vec!["supervisor"]),
                ("stu", vec!["steward"]),
            ],
            projects: vec![project("p1", now), project("p2", now)],
            members: vec![
                ("p1", "alice", "researcher", year),
                ("p2", "bob", "researcher", year),
            ],
            config: String::new(),
            port: 0,
            database_url: None,
        }
    }
}

/// A port on 127.0.0.1 that was free a moment ago (for a redirect URL registered before the
/// server starts).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A project on the `demo` snapshot granting a few columns of `nanbyo_forms` and every
/// column of `designated_diseases`, from yesterday for a year.
pub fn project(id: &str, now: DateTime<Utc>) -> kura_store::Project {
    kura_store::Project {
        id: id.into(),
        title: format!("Project {id}"),
        description: String::new(),
        snapshot: "demo".into(),
        tables: BTreeMap::from([
            (
                "nanbyo_forms".to_string(),
                ["research_id", "disease_no", "sex", "severity", "pref_code"]
                    .iter()
                    .map(|s| s.to_string())
                    .collect(),
            ),
            ("designated_diseases".to_string(), vec!["*".to_string()]),
        ]),
        starts: now - chrono::Duration::days(1),
        expires: now + chrono::Duration::days(365),
        created_by: "stu".into(),
        created_at: now,
    }
}

/// A project on the `demo` snapshot granting every column the trial-feasibility explorer reads
/// (all of `nanbyo_forms` and `nanbyo_treatments`), from yesterday for a year.
pub fn explorer_project(id: &str, now: DateTime<Utc>) -> kura_store::Project {
    kura_store::Project {
        tables: BTreeMap::from([
            ("nanbyo_forms".to_string(), vec!["*".to_string()]),
            ("nanbyo_treatments".to_string(), vec!["*".to_string()]),
        ]),
        ..project(id, now)
    }
}

pub struct TestServer {
    pub origin: String,
    pub state: tempfile::TempDir,
    child: Option<Child>,
}

impl TestServer {
    pub fn start(setup: Setup) -> TestServer {
        let (state, config) = prepare_state(&setup);
        let (child, origin) = spawn_serve(&config, &[]);
        TestServer {
            origin,
            state,
            child: Some(child),
        }
    }

    /// Serves a state directory that already holds everything, its `kura.toml` included (one
    /// restored from a backup).
    pub fn serve(state: tempfile::TempDir) -> TestServer {
        let (child, origin) = spawn_serve(&state.path().join("kura.toml"), &[]);
        TestServer {
            origin,
            state,
            child: Some(child),
        }
    }
}

/// A state directory with the test snapshot, the setup's accounts, projects and members (in
/// its SQLite file, or in `setup.database_url`), and `kura.toml`; returns it and the config.
pub fn prepare_state(setup: &Setup) -> (tempfile::TempDir, PathBuf) {
    let state = tempfile::tempdir().unwrap();
    let snaps = state.path().join("snapshots");
    std::fs::create_dir_all(&snaps).unwrap();
    for f in ["demo.duckdb", "demo.duckdb.manifest.json"] {
        std::fs::copy(snapshot_dir().join(f), snaps.join(f)).unwrap();
    }
    let store = kura_store::Store::open_at(&kura_store::StoreLocation::from_config(
        state.path(),
        setup.database_url.as_deref(),
    ))
    .unwrap();
    let hash = kura_identity::password::hash_password(PASSWORD).unwrap();
    for (id, roles) in &setup.accounts {
        let roles: Vec<String> = roles.iter().map(|r| r.to_string()).collect();
        store
            .create_account(
                &kura_store::NewAccount {
                    id,
                    name: &format!("Test {id}"),
                    roles: &roles,
                    password_hash: &hash,
                },
                Utc::now(),
            )
            .unwrap();
    }
    for p in &setup.projects {
        store.create_project(p).unwrap();
    }
    for (p, user, role, expires) in &setup.members {
        let m = kura_store::Member {
            user: user.to_string(),
            role: role.to_string(),
            expires: *expires,
        };
        store.set_member(p, &m).unwrap();
    }
    drop(store);
    let config = state.path().join("kura.toml");
    let database = match &setup.database_url {
        Some(url) => format!("database_url = \"{url}\"\n"),
        None => String::new(),
    };
    std::fs::write(
        &config,
        format!(
            "state_dir = \".\"\nlisten = \"127.0.0.1:{}\"\n{database}{}\n",
            setup.port, setup.config
        ),
    )
    .unwrap();
    (state, config)
}

/// Writes `text` to `config` and runs `kura serve` on it, a configuration that must be refused:
/// the process fails before serving anything (nothing on stdout). Returns its stderr.
pub fn serve_refused(config: &Path, text: &str) -> String {
    std::fs::write(config, text).unwrap();
    let out = Command::new(kura_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .env_remove("KURA_DATABASE_URL")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "started with {text:?}: {stderr}");
    assert!(out.stdout.is_empty(), "served with {text:?}");
    stderr
}

/// Starts `kura serve --config CONFIG EXTRA..` and waits for its ready line; returns the
/// process and the origin it serves.
pub fn spawn_serve(config: &Path, extra: &[&str]) -> (Child, String) {
    spawn_serve_with(config, extra, &[("KURA_LOG", "warn")], Stdio::inherit())
}

/// [`spawn_serve`] with extra environment (after the caller's KURA_DATABASE_URL and OTEL_*
/// variables are removed) and the server's stderr going to `stderr`.
pub fn spawn_serve_with(
    config: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
    stderr: Stdio,
) -> (Child, String) {
    let mut child = Command::new(kura_bin())
        .args(["serve", "--config", config.to_str().unwrap()])
        .args(extra)
        .env_remove("KURA_DATABASE_URL")
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_SERVICE_NAME")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if let Some(origin) = line.strip_prefix("kura: serving ") {
                let _ = tx.send(origin.to_string());
            }
        }
    });
    let origin = match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(o) => o,
        Err(_) => {
            let _ = child.kill();
            panic!("kura serve did not start within 60 s (see its stderr)");
        }
    };
    (child, origin)
}

/// A client with its own cookie jar that trusts only the certificate of the server(s) on
/// `state` (nodes sharing a state directory serve the same one).
pub fn https_client(state: &Path) -> reqwest::blocking::Client {
    let pem = std::fs::read(state.join("tls/cert.pem")).unwrap();
    reqwest::blocking::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&pem).unwrap())
        .tls_built_in_root_certs(false)
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(120))
        .build()
        .unwrap()
}

/// Sends SIGTERM and waits (at most 60 s) for the process to end.
pub fn stop_child(child: &mut Child) -> std::process::ExitStatus {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).status();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("kura serve did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// A client with its own cookie jar that trusts only this server's certificate.
    pub fn client(&self) -> reqwest::blocking::Client {
        https_client(self.state.path())
    }

    /// Signs in with a local account.
    pub fn sign_in(&self, user: &str) -> Browser {
        let b = Browser {
            client: self.client(),
            origin: self.origin.clone(),
            csrf: String::new(),
        };
        let (status, body) = b.login(user, PASSWORD);
        assert_eq!(status, 200, "sign-in of {user}: {body}");
        Browser {
            csrf: body["csrf_token"].as_str().unwrap().to_string(),
            ..b
        }
    }

    /// One local sign-in attempt from a fresh browser: (status, body).
    pub fn sign_in_attempt(&self, user: &str, password: &str) -> (u16, Value) {
        Browser {
            client: self.client(),
            origin: self.origin.clone(),
            csrf: String::new(),
        }
        .login(user, password)
    }

    /// Every audit entry so far (`kura audit search --json`), as JSON objects.
    pub fn audit_entries(&self) -> Vec<Value> {
        let out = kura(&[
            "audit",
            "search",
            "--state",
            self.state.path().to_str().unwrap(),
            "--json",
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Entries of one type.
    pub fn audit_of(&self, kind: &str) -> Vec<Value> {
        self.audit_entries()
            .into_iter()
            .filter(|e| e["type"] == kind)
            .collect()
    }

    /// Stops with SIGTERM (graceful) and returns the exit status.
    pub fn stop(&mut self) -> std::process::ExitStatus {
        stop_child(&mut self.child.take().unwrap())
    }

    /// The `kura serve` process's resident memory in MiB (`VmRSS`).
    pub fn rss_mib(&self) -> f64 {
        let pid = self.child.as_ref().expect("the server runs").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS in /proc/<pid>/status");
        kib / 1024.0
    }
}

impl TestServer {
    /// Stops gracefully (exit 0), then `kura audit verify` must find the log intact.
    pub fn stop_and_verify_audit(&mut self) {
        let status = self.stop();
        assert!(status.success(), "graceful stop: {status:?}");
        let out = kura(&[
            "audit",
            "verify",
            "--state",
            self.state.path().to_str().unwrap(),
        ]);
        assert!(
            out.status.success(),
            "audit verify: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A signed-in (or not yet) HTTP client with its cookie jar and CSRF token.
pub struct Browser {
    pub client: reqwest::blocking::Client,
    pub origin: String,
    pub csrf: String,
}

impl Browser {
    pub fn login(&self, user: &str, password: &str) -> (u16, Value) {
        self.try_login(user, password).unwrap()
    }

    /// `login`, with a transport error (a node that died) as Err.
    pub fn try_login(&self, user: &str, password: &str) -> reqwest::Result<(u16, Value)> {
        let r = self
            .client
            .post(format!("{}/api/v1/session", self.origin))
            .header("origin", &self.origin)
            .header("x-kura-csrf", "login")
            .json(&json!({"username": user, "password": password}))
            .send()?;
        Ok(answer(r))
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        answer(
            self.client
                .get(format!("{}{path}", self.origin))
                .send()
                .unwrap(),
        )
    }

    /// A state-changing request with this session's CSRF token and our Origin.
    pub fn send(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        self.try_send(method, path, body).unwrap()
    }

    /// `send` (or a GET), with a transport error (a node that died) as Err.
    pub fn try_send(
        &self,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> reqwest::Result<(u16, Value)> {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut rb = self
            .client
            .request(method, format!("{}{path}", self.origin))
            .header("origin", &self.origin)
            .header("x-kura-csrf", &self.csrf);
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        Ok(answer(rb.send()?))
    }

    pub fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.send("POST", path, Some(body))
    }

    /// Runs a query in a project; returns (status, body).
    pub fn query(&self, project: &str, sql: &str) -> (u16, Value) {
        self.post(
            &format!("/api/v1/projects/{project}/queries"),
            json!({"sql": sql}),
        )
    }
}

/// Status and JSON body (Null when the body is empty or not JSON).
pub fn answer(r: reqwest::blocking::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}
