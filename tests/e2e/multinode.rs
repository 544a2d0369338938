#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Several `kura serve` nodes on one PostgreSQL (issue 8): three nodes on loopback share a
//! state directory and a database (a schema of this test's own). Researchers and checkers work
//! through all three at once (each step of a round on another node: sign-in, queries, staging,
//! context, submission, two blind approvals and the release). The node holding the audit
//! log's signing lease is SIGKILLed mid-load and the work goes on through the other two. Then
//! the log verifies (also against a checkpoint saved before the kill: one history), every
//! event a client was answered for is in it, the indices have no gap, and the checkpoints form
//! one chain whose signing moved to another node.
//!
//! Also: SQLite stays the default and a second node on it is refused; a wrong or unreachable
//! `database_url` stops the start with a message naming it, never the password.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::Utc;
use kura_e2e::cluster::Cluster;
use kura_e2e::server::{project, serve_refused, Browser, Setup, TestServer, PASSWORD};
use kura_e2e::{kura, kura_bin};
use kura_sql::testing::PgSchema;
use serde_json::{json, Value};

const BY_PREFECTURE: &str =
    "SELECT pref_code AS \"dim:prefecture\", count(DISTINCT research_id) AS \"count:patients\" \
     FROM nanbyo_forms GROUP BY pref_code ORDER BY pref_code";
const BY_SEVERITY: &str =
    "SELECT severity, count(*) AS n FROM nanbyo_forms GROUP BY severity ORDER BY severity";

/// Something a client was answered for: it must be in the log.
#[derive(Debug, Clone)]
enum Ack {
    SignIn {
        user: String,
    },
    Query {
        id: String,
    },
    Staged {
        output: String,
    },
    /// Context set or submission (`export.requested`).
    Requested {
        output: String,
    },
    Vote {
        output: String,
        checker: String,
    },
    Released {
        output: String,
    },
}

/// What the driving threads share with the test.
struct Load {
    nodes: usize,
    dead: Vec<AtomicBool>,
    stop: AtomicBool,
    acks: Mutex<Vec<Ack>>,
    /// Answers from a live node that were not what the step expects.
    errors: Mutex<Vec<String>>,
    /// Rounds abandoned because their node died under them.
    lost: AtomicUsize,
    released: AtomicUsize,
}

/// Why a round stopped early.
enum Stop {
    /// The node it was talking to died (its answer never came): not an error.
    NodeDied,
    Error(String),
}

impl Load {
    fn live(&self) -> Vec<usize> {
        (0..self.nodes)
            .filter(|&i| !self.dead[i].load(Ordering::SeqCst))
            .collect()
    }

    fn ack(&self, a: Ack) {
        self.acks.lock().unwrap().push(a);
    }
}

/// One driving thread's view of the cluster.
struct Driver<'a> {
    cluster: &'a Cluster,
    load: &'a Load,
}

impl Driver<'_> {
    /// Node `k`-th of the live ones (rotating).
    fn node(&self, k: usize) -> usize {
        let live = self.load.live();
        live[k % live.len()]
    }

    /// A transport error from a node marked dead is its death; anything else is an error.
    fn died(&self, node: usize, what: &str, e: reqwest::Error) -> Stop {
        if self.load.dead[node].load(Ordering::SeqCst) {
            Stop::NodeDied
        } else {
            Stop::Error(format!(
                "{what} on live node {node}: no answer: {e} (its stderr is above)"
            ))
        }
    }

    fn expect(
        &self,
        node: usize,
        what: &str,
        got: reqwest::Result<(u16, Value)>,
        want: u16,
    ) -> Result<Value, Stop> {
        match got {
            Err(e) => Err(self.died(node, what, e)),
            Ok((status, body)) if status == want => Ok(body),
            Ok((status, body)) => {
                // A node killed after it wrote the status line cannot happen with JSON bodies
                // this small; treat any other answer of a live node as an error.
                if self.load.dead[node].load(Ordering::SeqCst) {
                    Err(Stop::NodeDied)
                } else {
                    Err(Stop::Error(format!(
                        "{what} on node {node}: {status} (wanted {want}): {body}"
                    )))
                }
            }
        }
    }

    /// Signs `user` in on `node`; returns the client (its cookie works on every node) and
    /// the CSRF token.
    fn sign_in(
        &self,
        user: &str,
        node: usize,
    ) -> Result<(reqwest::blocking::Client, String), Stop> {
        let client = self.cluster.client();
        let b = self.cluster.via(&client, "", node);
        let body = self.expect(
            node,
            &format!("sign-in of {user}"),
            b.try_login(user, PASSWORD),
            200,
        )?;
        self.load.ack(Ack::SignIn {
            user: user.to_string(),
        });
        Ok((client, body["csrf_token"].as_str().unwrap().to_string()))
    }

    fn call(
        &self,
        (client, csrf): &(reqwest::blocking::Client, String),
        node: usize,
        method: &str,
        path: &str,
        body: Option<Value>,
        want: u16,
    ) -> Result<Value, Stop> {
        let b: Browser = self.cluster.via(client, csrf, node);
        self.expect(
            node,
            &format!("{method} {path}"),
            b.try_send(method, path, body),
            want,
        )
    }

    /// One researcher's round, each step on the next live node: sign in, two queries, stage
    /// one, describe and submit it, two checkers approve it (the second vote releases it), a
    /// supervisor reads the log.
    fn round(&self, researcher: &str, pid: &str, k: usize) -> Result<(), Stop> {
        let me = self.sign_in(researcher, self.node(k))?;
        let n = self.node(k + 1);
        let result = self.call(
            &me,
            n,
            "POST",
            &format!("/api/v1/projects/{pid}/queries"),
            Some(json!({"sql": BY_PREFECTURE})),
            200,
        )?;
        let qid = result["id"].as_str().unwrap().to_string();
        self.load.ack(Ack::Query { id: qid.clone() });
        let other = self.call(
            &me,
            self.node(k + 2),
            "POST",
            &format!("/api/v1/projects/{pid}/queries"),
            Some(json!({"sql": BY_SEVERITY})),
            200,
        )?;
        self.load.ack(Ack::Query {
            id: other["id"].as_str().unwrap().to_string(),
        });
        // Staged on another node than the one that ran it: the result is in the shared state.
        let output = self.call(
            &me,
            self.node(k + 2),
            "POST",
            &format!("/api/v1/projects/{pid}/outputs"),
            Some(json!({"query_id": qid, "title": format!("Patients by prefecture {k}")})),
            201,
        )?;
        let oid = output["id"].as_str().unwrap().to_string();
        self.load.ack(Ack::Staged {
            output: oid.clone(),
        });
        let base = format!("/api/v1/projects/{pid}/outputs/{oid}");
        self.call(
            &me,
            self.node(k),
            "PUT",
            &format!("{base}/context"),
            Some(json!({"description": "Patients by prefecture of residence",
                        "denominators": "All patients with a consenting form",
                        "method": "count(DISTINCT research_id) by pref_code"})),
            200,
        )?;
        self.load.ack(Ack::Requested {
            output: oid.clone(),
        });
        let submitted = self.call(
            &me,
            self.node(k + 1),
            "POST",
            &format!("{base}/submit"),
            Some(json!({})),
            200,
        )?;
        if submitted["state"] != "submitted" {
            return Err(Stop::Error(format!("submission of {oid}: {submitted}")));
        }
        self.load.ack(Ack::Requested {
            output: oid.clone(),
        });
        for (i, checker) in ["carol", "dave"].into_iter().enumerate() {
            let node = self.node(k + 2 + i);
            let session = self.sign_in(checker, node)?;
            let vote = self.call(
                &session,
                self.node(k + 3 + i),
                "POST",
                &format!("{base}/votes"),
                Some(json!({"decision": "approve"})),
                200,
            )?;
            self.load.ack(Ack::Vote {
                output: oid.clone(),
                checker: checker.to_string(),
            });
            let want = if i == 0 { "submitted" } else { "released" };
            if vote["state"] != want {
                return Err(Stop::Error(format!(
                    "{checker}'s vote on {oid}: state {} (wanted {want})",
                    vote["state"]
                )));
            }
        }
        self.load.ack(Ack::Released {
            output: oid.clone(),
        });
        self.load.released.fetch_add(1, Ordering::SeqCst);
        // A supervisor reads the shared log through yet another node.
        let sue = self.sign_in("sue", self.node(k + 1))?;
        let node = self.node(k + 2);
        let found = self.call(
            &sue,
            node,
            "GET",
            &format!("/api/v1/audit/entries?type=output.staged&project={pid}"),
            None,
            200,
        )?;
        let listed = found["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["objects"][0] == format!("output:{oid}"));
        if !listed {
            return Err(Stop::Error(format!(
                "node {node}'s audit search misses output.staged of {oid}: {found}"
            )));
        }
        Ok(())
    }

    fn run(&self, researcher: &str, pid: &str, offset: usize) {
        let mut k = offset;
        while !self.load.stop.load(Ordering::SeqCst) {
            match self.round(researcher, pid, k) {
                Ok(()) => {}
                Err(Stop::NodeDied) => {
                    self.load.lost.fetch_add(1, Ordering::SeqCst);
                }
                Err(Stop::Error(e)) => {
                    self.load.errors.lock().unwrap().push(e);
                    return;
                }
            }
            k += 1;
        }
    }
}

/// `kura audit ...` on the test's database, given through the environment (as an operator
/// would set it once), not the flag.
fn audit_cli(state: &Path, url: &str, args: &[&str]) -> std::process::Output {
    Command::new(kura_bin())
        .arg("audit")
        .args(args)
        .args(["--state", state.to_str().unwrap()])
        .env("KURA_DATABASE_URL", url)
        .output()
        .unwrap()
}

fn wait_for(what: &str, limit: Duration, load: &Load, done: impl Fn() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        let errors = load.errors.lock().unwrap().clone();
        assert!(
            errors.is_empty(),
            "errors while waiting for {what}: {errors:#?}"
        );
        assert!(Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn three_nodes_lose_nothing_acknowledged_when_the_signing_node_is_killed() {
    let schema = PgSchema::new();
    let now = Utc::now();
    let year = now + chrono::Duration::days(365);
    let mut cluster = Cluster::start(
        Setup {
            accounts: vec![
                ("alice", vec!["researcher"]),
                ("bob", vec!["researcher"]),
                ("erin", vec!["researcher"]),
                ("carol", vec!["checker"]),
                ("dave", vec!["checker"]),
                ("sue", vec!["supervisor"]),
            ],
            projects: vec![project("p1", now), project("p2", now)],
            members: vec![
                ("p1", "alice", "researcher", year),
                ("p1", "erin", "researcher", year),
                ("p2", "bob", "researcher", year),
            ],
            database_url: Some(schema.url.clone()),
            ..Setup::default()
        },
        3,
    );
    let state = cluster.state_path().to_path_buf();
    let load = Load {
        nodes: cluster.nodes.len(),
        dead: (0..cluster.nodes.len())
            .map(|_| AtomicBool::new(false))
            .collect(),
        stop: AtomicBool::new(false),
        acks: Mutex::new(Vec::new()),
        errors: Mutex::new(Vec::new()),
        lost: AtomicUsize::new(0),
        released: AtomicUsize::new(0),
    };
    let mut db = schema.client();

    let driver = Driver {
        cluster: &cluster,
        load: &load,
    };
    let driver = &driver;
    let (victim, victim_pid, trusted, killed_at) = std::thread::scope(|s| {
        for (i, (who, pid)) in [("alice", "p1"), ("bob", "p2"), ("erin", "p1")]
            .into_iter()
            .enumerate()
        {
            s.spawn(move || driver.run(who, pid, i));
        }
        wait_for(
            "10 releases before the kill",
            Duration::from_secs(300),
            &load,
            || load.released.load(Ordering::SeqCst) >= 10,
        );

        // A checkpoint saved now: whatever happens next must extend it.
        let out = audit_cli(&state, &schema.url, &["checkpoint"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let trusted = String::from_utf8(out.stdout).unwrap();

        // Kill the node that signs checkpoints, so that signing has to move.
        let holder: Option<String> = db
            .query_one("SELECT holder FROM audit_lease", &[])
            .unwrap()
            .get(0);
        let holder = holder.expect("a node holds the signing lease");
        let pid: u32 = holder.split('/').nth(1).unwrap().parse().unwrap();
        let victim = cluster
            .nodes
            .iter()
            .position(|n| n.pid() == Some(pid))
            .unwrap_or_else(|| panic!("the lease holder {holder} is none of the nodes"));
        load.dead[victim].store(true, Ordering::SeqCst);
        // The cluster is borrowed by the drivers: kill the process by its id.
        let status = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
        let killed_at = Instant::now();
        let before = load.released.load(Ordering::SeqCst);

        // Keep going on the other two, past the lease's expiry (10 s), so that another node
        // takes the lease and signs.
        wait_for(
            "3 more releases and the lease's expiry after the kill",
            Duration::from_secs(300),
            &load,
            || {
                load.released.load(Ordering::SeqCst) >= before + 3
                    && killed_at.elapsed() > Duration::from_secs(15)
            },
        );
        load.stop.store(true, Ordering::SeqCst);
        (victim, pid, trusted, killed_at)
    });
    let errors = load.errors.lock().unwrap().clone();
    assert!(errors.is_empty(), "errors from live nodes: {errors:#?}");
    cluster.kill(victim); // reaps the process killed above
    eprintln!(
        "multinode: {} releases, {} rounds lost with node {victim}, {:?} of load after the kill",
        load.released.load(Ordering::SeqCst),
        load.lost.load(Ordering::SeqCst),
        killed_at.elapsed()
    );

    // "Verify now" in the console of a surviving node reads the shared log.
    let live = load.live();
    let client = cluster.client();
    let sue = cluster.via(&client, "", live[0]);
    let (status, body) = sue.login("sue", PASSWORD);
    assert_eq!(status, 200, "{body}");
    let sue = cluster.via(&client, body["csrf_token"].as_str().unwrap(), live[1]);
    let (status, verified) = sue.post("/api/v1/audit/verify", json!({}));
    assert_eq!(status, 200, "{verified}");
    assert_eq!(verified["intact"], true, "{verified}");

    for i in live {
        let status = cluster.stop(i).unwrap();
        assert!(status.success(), "graceful stop of node {i}: {status:?}");
    }

    // The log verifies and extends the checkpoint saved before the kill: one history.
    let trusted_file = state.join("trusted-checkpoint.txt");
    std::fs::write(&trusted_file, &trusted).unwrap();
    let out = kura(&[
        "audit",
        "verify",
        "--state",
        state.to_str().unwrap(),
        "--database-url",
        &schema.url,
        "--trusted-checkpoint",
        trusted_file.to_str().unwrap(),
    ]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "audit verify: {said}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        said.contains("OK: ") && said.contains("PostgreSQL postgres://"),
        "says which database it verified: {said}"
    );

    // No gaps: indices 0..n, as many as the verifier counted.
    let out = audit_cli(&state, &schema.url, &["search", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entries: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let indices: Vec<u64> = entries
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(
        indices,
        (0..entries.len() as u64).collect::<Vec<_>>(),
        "gap or duplicate"
    );
    let out = kura(&[
        "audit",
        "verify",
        "--state",
        state.to_str().unwrap(),
        "--database-url",
        &schema.url,
        "--json",
    ]);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["entries"], entries.len() as u64, "{report}");

    // Every acknowledged event is there.
    let acks = load.acks.lock().unwrap().clone();
    check_acknowledged(&acks, &entries);

    // One checkpoint history: sizes increase (the table's key), terms never go back, each term
    // is one node's; the killed holder's term ended and another node's followed; the last
    // checkpoint covers the whole log (the nodes' final checkpoints at their graceful stop).
    let rows = db
        .query(
            "SELECT size, term, signer FROM audit_checkpoints ORDER BY size",
            &[],
        )
        .unwrap();
    let checkpoints: Vec<(i64, i64, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    assert_eq!(report["checkpoints"], checkpoints.len() as u64);
    let mut signers: BTreeMap<i64, BTreeSet<String>> = BTreeMap::new();
    for w in checkpoints.windows(2) {
        assert!(w[0].0 < w[1].0 && w[0].1 <= w[1].1, "{w:?}");
    }
    for (_, term, signer) in &checkpoints {
        signers.entry(*term).or_default().insert(signer.clone());
    }
    assert!(
        signers.values().all(|s| s.len() == 1),
        "one signer per term: {signers:?}"
    );
    eprintln!(
        "multinode: {} entries, {} checkpoints, signers by term {signers:?}",
        entries.len(),
        checkpoints.len()
    );
    let last = checkpoints.last().unwrap();
    assert_eq!(
        last.0,
        entries.len() as i64,
        "the last checkpoint covers every entry"
    );
    let killed = format!("/{victim_pid}/");
    assert!(
        checkpoints.iter().any(|c| c.2.contains(&killed)),
        "the killed node signed before it died: {signers:?}"
    );
    assert!(
        !last.2.contains(&killed),
        "signing moved to another node after the kill: {signers:?}"
    );
}

/// Each acknowledged event has its entries, in order where order matters.
fn check_acknowledged(acks: &[Ack], entries: &[Value]) {
    let of = |kind: &str, object: &str| -> Vec<&Value> {
        entries
            .iter()
            .filter(|e| {
                e["type"] == kind
                    && e["objects"]
                        .as_array()
                        .is_some_and(|o| o.iter().any(|x| x.as_str() == Some(object)))
            })
            .collect()
    };
    let mut sign_ins: BTreeMap<&str, usize> = BTreeMap::new();
    let mut requested: BTreeMap<&str, usize> = BTreeMap::new();
    for ack in acks {
        match ack {
            Ack::SignIn { user } => *sign_ins.entry(user).or_default() += 1,
            Ack::Query { id } => {
                let object = format!("query:{id}");
                let submitted = of("query.submitted", &object);
                let completed = of("query.completed", &object);
                assert_eq!(
                    (submitted.len(), completed.len()),
                    (1, 1),
                    "query {id} answered but not in the log once"
                );
                assert!(
                    submitted[0]["index"].as_u64() < completed[0]["index"].as_u64(),
                    "query {id} audited before it ran"
                );
            }
            Ack::Staged { output } => {
                assert_eq!(of("output.staged", &format!("output:{output}")).len(), 1);
            }
            Ack::Requested { output } => *requested.entry(output).or_default() += 1,
            Ack::Vote { output, checker } => {
                let votes = of("review.decision", &format!("output:{output}"));
                assert!(
                    votes.iter().any(|v| v["actor"] == checker.as_str()),
                    "{checker}'s vote on {output}"
                );
            }
            Ack::Released { output } => {
                let released = of("output.released", &format!("output:{output}"));
                let phases: Vec<&Value> = released.iter().map(|e| &e["payload"]["phase"]).collect();
                assert_eq!(
                    phases,
                    [&json!("requested"), &json!("released")],
                    "{output}"
                );
            }
        }
    }
    for (user, n) in sign_ins {
        let logged = entries
            .iter()
            .filter(|e| e["type"] == "signin" && e["actor"] == user)
            .count();
        assert!(
            logged >= n,
            "{user}: {n} sign-ins answered, {logged} in the log"
        );
    }
    for (output, n) in requested {
        let logged = of("export.requested", &format!("output:{output}")).len();
        assert!(
            logged >= n,
            "{output}: {n} requests answered, {logged} in the log"
        );
    }
}

#[test]
fn sqlite_stays_the_default_and_takes_one_node() {
    let mut server = TestServer::start(Setup::default());
    server.sign_in("alice");
    let state = server.state.path().to_path_buf();
    assert!(state.join("kura.sqlite").is_file());
    assert_eq!(
        server.audit_of("signin").len(),
        1,
        "the sign-in is in the state directory's log"
    );
    // A second node on the same state directory: the SQLite log has one writer.
    let out = Command::new(kura_bin())
        .args([
            "serve",
            "--config",
            state.join("kura.toml").to_str().unwrap(),
        ])
        .args(["--listen", "127.0.0.1:0"])
        .env_remove("KURA_DATABASE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a second node started: {said}");
    assert!(said.contains("locked"), "{said}");
    server.stop_and_verify_audit();
}

#[test]
fn a_wrong_or_unreachable_database_url_stops_the_start_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    for (url, named) in [
        ("mysql://kura:s3cret@127.0.0.1/kura", "database_url"),
        (
            "postgres://kura:s3cret@127.0.0.1:1/kura",
            "postgres://kura@127.0.0.1:1/kura",
        ),
    ] {
        let said = serve_refused(
            &dir.path().join("kura.toml"),
            &format!("state_dir = \"state\"\nlisten = \"127.0.0.1:0\"\ndatabase_url = \"{url}\"\n"),
        );
        assert!(said.contains(named), "{url}: {said}");
        assert!(
            !said.contains("s3cret"),
            "{url}: the password is shown: {said}"
        );
    }
    // The flag and the environment are checked the same way.
    let out = Command::new(kura_bin())
        .args(["audit", "verify", "--state", dir.path().to_str().unwrap()])
        .env("KURA_DATABASE_URL", "sqlite://kura:s3cret@x/y")
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{said}");
    assert!(
        said.contains("KURA_DATABASE_URL") && !said.contains("s3cret"),
        "{said}"
    );
}
