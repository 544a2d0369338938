//! Several `kura serve` nodes for end-to-end tests: one state directory (snapshot, keys, TLS
//! certificate, outputs and releases shared, as on a shared file system), one `database_url`
//! (PostgreSQL) for all of them, each node on its own loopback port. Built from `server.rs`'s
//! pieces; the first node starts alone (it creates the shared keys), the others together.

use std::path::Path;
use std::process::{Child, ExitStatus};

use crate::server::{https_client, prepare_state, spawn_serve, stop_child, Browser, Setup};

/// One node: its process (None once stopped or killed) and the origin it serves.
pub struct Node {
    pub origin: String,
    child: Option<Child>,
}

impl Node {
    /// The node's process id while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct Cluster {
    pub state: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

impl Cluster {
    /// `setup.database_url` must be set: nodes on a SQLite state directory would refuse to
    /// share its audit log.
    pub fn start(setup: Setup, nodes: usize) -> Cluster {
        assert!(
            setup.database_url.is_some(),
            "several nodes need a shared database"
        );
        let (state, config) = prepare_state(&setup);
        let listen = ["--listen", "127.0.0.1:0"];
        let (first, origin) = spawn_serve(&config, &listen);
        let mut started = vec![Node {
            origin,
            child: Some(first),
        }];
        let others: Vec<(Child, String)> = std::thread::scope(|s| {
            let handles: Vec<_> = (1..nodes)
                .map(|_| s.spawn(|| spawn_serve(&config, &listen)))
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        started.extend(others.into_iter().map(|(child, origin)| Node {
            origin,
            child: Some(child),
        }));
        Cluster {
            state,
            nodes: started,
        }
    }

    pub fn state_path(&self) -> &Path {
        self.state.path()
    }

    /// A client with its own cookie jar, trusting the nodes' (shared) certificate. Cookies go
    /// to every node (they are per host, not per port), as behind one load balancer.
    pub fn client(&self) -> reqwest::blocking::Client {
        https_client(self.state.path())
    }

    /// `client`'s session as seen through node `i` (its URLs and Origin).
    pub fn via(&self, client: &reqwest::blocking::Client, csrf: &str, i: usize) -> Browser {
        Browser {
            client: client.clone(),
            origin: self.nodes[i].origin.clone(),
            csrf: csrf.to_string(),
        }
    }

    /// SIGKILL: no shutdown, no final checkpoint, connections cut.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut child) = self.nodes[i].child.take() {
            // Already gone (killed by its process id) is fine: this reaps it.
            let _ = child.kill();
            child.wait().unwrap();
        }
    }

    /// SIGTERM and wait: the node drains and closes its audit log.
    pub fn stop(&mut self, i: usize) -> Option<ExitStatus> {
        self.nodes[i].child.take().map(|mut c| stop_child(&mut c))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut c) = node.child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
