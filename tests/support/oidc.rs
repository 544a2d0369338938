//! Launches the test OpenID provider (`tests/oidc/provider.mjs`, npm `oidc-provider` 9) for
//! sign-in tests: installs its npm packages once (`npm ci`, guarded by a lock file so parallel
//! tests install once), starts `node provider.mjs` on 127.0.0.2 with the given accounts and
//! client, waits for its `READY <issuer>` line, and kills it on drop. Uses only std + serde_json
//! so it can be compiled into any test crate (`#[path]`-included by `kura-identity`'s tests).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The host the provider binds to: another loopback address than the app's 127.0.0.1, so the
/// two are cross-site for the browser as in production.
pub const PROVIDER_HOST: &str = "127.0.0.2";
const READY_TIMEOUT: Duration = Duration::from_secs(60);
const INSTALL_LOCK_STALE: Duration = Duration::from_secs(600);

/// A user the provider knows. `id` is both the login name and the ID token's `sub`.
#[derive(Debug, Clone)]
pub struct TestAccount {
    pub id: String,
    pub password: String,
    pub name: String,
    pub email: String,
    /// Sent as the `kura_roles` claim in the ID token.
    pub roles: Vec<String>,
}

impl TestAccount {
    /// An account with a derived name and e-mail address.
    pub fn new(id: &str, password: &str, roles: &[&str]) -> Self {
        TestAccount {
            id: id.to_string(),
            password: password.to_string(),
            name: format!("Test user {id}"),
            email: format!("{id}@example.org"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }
}

/// The one static (confidential, PKCE-required) client registered at the provider.
#[derive(Debug, Clone)]
pub struct TestClient {
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uris: Vec<String>,
}

/// A running provider; killed when dropped.
pub struct TestProvider {
    /// The issuer, e.g. `http://127.0.0.2:40625` (no trailing slash).
    pub issuer: String,
    child: Child,
    _stdin: Option<ChildStdin>,
    stderr: Arc<Mutex<String>>,
    config_path: PathBuf,
}

impl TestProvider {
    /// Starts a provider on [`PROVIDER_HOST`] with a free port.
    pub fn start(accounts: &[TestAccount], client: &TestClient) -> std::io::Result<TestProvider> {
        Self::start_on(PROVIDER_HOST, 0, accounts, client)
    }

    /// Starts a provider on `host:port` (port 0: any free port).
    pub fn start_on(
        host: &str,
        port: u16,
        accounts: &[TestAccount],
        client: &TestClient,
    ) -> std::io::Result<TestProvider> {
        let dir = provider_dir()?;
        ensure_installed(&dir)?;
        let config_path = write_config(accounts, client)?;

        let mut child = Command::new("node")
            .arg("provider.mjs")
            .arg("--config")
            .arg(&config_path)
            .args([
                "--host",
                host,
                "--port",
                &port.to_string(),
                "--exit-with-stdin",
            ])
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| {
                let _ = std::fs::remove_file(&config_path);
                tool_error("node", e)
            })?;

        let stderr = Arc::new(Mutex::new(String::new()));
        if let Some(pipe) = child.stderr.take() {
            let sink = Arc::clone(&stderr);
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Ok(mut s) = sink.lock() {
                        s.push_str(&line);
                        s.push('\n');
                    }
                }
            });
        }
        let (tx, rx) = mpsc::channel();
        if let Some(pipe) = child.stdout.take() {
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if let Some(issuer) = line.strip_prefix("READY ") {
                        let _ = tx.send(issuer.trim().to_string());
                    }
                }
            });
        }
        let stdin = child.stdin.take();
        let mut provider = TestProvider {
            issuer: String::new(),
            child,
            _stdin: stdin,
            stderr,
            config_path,
        };
        match rx.recv_timeout(READY_TIMEOUT) {
            Ok(issuer) => {
                provider.issuer = issuer;
                Ok(provider)
            }
            Err(_) => {
                // Give the stderr reader a moment to collect the reason.
                std::thread::sleep(Duration::from_millis(200));
                let status = provider.child.try_wait().ok().flatten();
                Err(std::io::Error::other(format!(
                    "the test OpenID provider did not print READY within {} s (exit status: {:?}); its stderr:\n{}",
                    READY_TIMEOUT.as_secs(),
                    status,
                    provider.logs()
                )))
            }
        }
    }

    /// Everything the provider wrote to stderr so far (warnings, refused logins, errors).
    pub fn logs(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Replaces the provider's signing key set (`POST /__test/rotate`); the old key leaves the
    /// JWKS, so a relying party holding the old set must refresh. Returns the new key id.
    pub fn rotate_keys(&self) -> std::io::Result<String> {
        let authority = self
            .issuer
            .strip_prefix("http://")
            .ok_or_else(|| std::io::Error::other(format!("issuer {} is not http://", self.issuer)))?
            .trim_end_matches('/');
        let mut stream = TcpStream::connect(authority)?;
        stream.set_read_timeout(Some(Duration::from_secs(30)))?;
        write!(
            stream,
            "POST /__test/rotate HTTP/1.1\r\nHost: {authority}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        let mut response = String::new();
        stream.read_to_string(&mut response)?;
        let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
        if !head.starts_with("HTTP/1.1 200") {
            return Err(std::io::Error::other(format!(
                "key rotation failed: {head}\n{body}"
            )));
        }
        let json: serde_json::Value = serde_json::from_str(body.trim())
            .map_err(|e| std::io::Error::other(format!("key rotation answer {body:?}: {e}")))?;
        json["kid"]
            .as_str()
            .map(str::to_string)
            .ok_or_else(|| std::io::Error::other(format!("key rotation answer has no kid: {body}")))
    }
}

impl Drop for TestProvider {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.config_path);
    }
}

/// `tests/oidc` of the workspace: `KURA_TEST_OIDC_DIR`, or found above the including crate.
pub fn provider_dir() -> std::io::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("KURA_TEST_OIDC_DIR") {
        return Ok(PathBuf::from(dir));
    }
    let start = Path::new(env!("CARGO_MANIFEST_DIR"));
    start
        .ancestors()
        .map(|a| a.join("tests").join("oidc"))
        .find(|d| d.join("provider.mjs").is_file())
        .ok_or_else(|| {
            std::io::Error::other(format!(
                "tests/oidc/provider.mjs not found above {}; set KURA_TEST_OIDC_DIR",
                start.display()
            ))
        })
}

fn tool_error(tool: &str, e: std::io::Error) -> std::io::Error {
    if e.kind() == std::io::ErrorKind::NotFound {
        std::io::Error::new(
            e.kind(),
            format!(
                "`{tool}` was not found on PATH: the OpenID Connect tests run a real provider \
                 (tests/oidc, npm oidc-provider) and need Node.js 20 or later with npm installed"
            ),
        )
    } else {
        std::io::Error::new(e.kind(), format!("cannot run `{tool}`: {e}"))
    }
}

fn installed(dir: &Path) -> bool {
    dir.join("node_modules/oidc-provider/package.json")
        .is_file()
}

/// Runs `npm ci` once if `node_modules` is missing. An in-process mutex serialises threads; a
/// lock file created with `create_new` serialises processes (stale after 10 minutes).
fn ensure_installed(dir: &Path) -> std::io::Result<()> {
    static IN_PROCESS: Mutex<()> = Mutex::new(());
    if installed(dir) {
        return Ok(());
    }
    let _guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
    let lock = dir.join(".npm-install.lock");
    let started = Instant::now();
    loop {
        if installed(dir) {
            return Ok(());
        }
        match std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&lock)
        {
            Ok(_) => break,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                let age = std::fs::metadata(&lock)
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_some_and(|a| a > INSTALL_LOCK_STALE) {
                    let _ = std::fs::remove_file(&lock);
                } else if started.elapsed() > INSTALL_LOCK_STALE {
                    return Err(std::io::Error::other(format!(
                        "gave up waiting for another npm install in {} (remove {} if none runs)",
                        dir.display(),
                        lock.display()
                    )));
                } else {
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
            Err(e) => return Err(e),
        }
    }
    let result = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(dir)
        .output();
    let _ = std::fs::remove_file(&lock);
    let output = result.map_err(|e| tool_error("npm", e))?;
    if !output.status.success() || !installed(dir) {
        return Err(std::io::Error::other(format!(
            "`npm ci` in {} failed ({}):\n{}{}",
            dir.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )));
    }
    Ok(())
}

fn write_config(accounts: &[TestAccount], client: &TestClient) -> std::io::Result<PathBuf> {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let config = serde_json::json!({
        "client": {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "redirect_uris": client.redirect_uris,
        },
        "accounts": accounts.iter().map(|a| serde_json::json!({
            "id": a.id,
            "password": a.password,
            "name": a.name,
            "email": a.email,
            "kura_roles": a.roles,
        })).collect::<Vec<_>>(),
    });
    let path = std::env::temp_dir().join(format!(
        "kura-test-oidc-{}-{}.json",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(
        &path,
        serde_json::to_vec_pretty(&config).map_err(std::io::Error::other)?,
    )?;
    Ok(path)
}
