//! One worker process as the engine sees it: started with an empty environment and three pipes,
//! its frames read by a thread into a bounded channel, waited on with a deadline, killed when it
//! overstays, and reaped off the caller's path once it has answered.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::engine::CancelHandle;
use crate::error::QueryError;
use crate::protocol::{read_frame, WorkerSetup, TAG_READY};

/// How often a waiting engine looks at the clock and the cancel flag.
const POLL: Duration = Duration::from_millis(20);

enum Msg {
    Frame(u8, Vec<u8>),
    End(Option<String>),
}

/// A running worker. Dropping it kills the process and removes its temp directory.
pub struct Worker {
    child: Child,
    frames: mpsc::Receiver<Msg>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// The worker said it is confined, DuckDB is open and it waits for the query.
    ready: bool,
    _temp: tempfile::TempDir,
}

/// Starts `exe args` as a worker for `setup` (minus the temp dir, which is created here in
/// `temp_root`) and sends it the setup line.
pub fn spawn(
    exe: &Path,
    args: &[std::ffi::OsString],
    temp_root: &Path,
    mut setup: WorkerSetup,
) -> Result<Worker, QueryError> {
    let temp = tempfile::Builder::new()
        .prefix("kura-query-")
        .tempdir_in(temp_root)
        .map_err(|e| {
            QueryError::Setup(format!(
                "creating a temp directory in {}: {e}",
                temp_root.display()
            ))
        })?;
    setup.temp_dir = temp.path().to_path_buf();
    let mut cmd = Command::new(exe);
    cmd.args(args);
    // No environment, no inherited descriptors besides the three pipes (std opens every fd
    // close-on-exec, and the worker closes anything >= 3 it still finds).
    cmd.env_clear()
        .current_dir(temp.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().map_err(|source| QueryError::Spawn {
        exe: exe.to_path_buf(),
        source,
    })?;
    let (tx, rx) = mpsc::sync_channel::<Msg>(64);
    let stdout = child.stdout.take();
    std::thread::spawn(move || {
        let Some(mut out) = stdout else {
            let _ = tx.send(Msg::End(Some("no stdout pipe".into())));
            return;
        };
        loop {
            let msg = match read_frame(&mut out) {
                Ok(Some((tag, payload))) => Msg::Frame(tag, payload),
                Ok(None) => Msg::End(None),
                Err(e) => Msg::End(Some(e.to_string())),
            };
            let end = matches!(msg, Msg::End(_));
            if tx.send(msg).is_err() || end {
                return;
            }
        }
    });
    let stderr = child.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            // Keep the head only: a worker printing forever must not grow the server.
            let mut buf = Vec::new();
            let _ = (&mut err).take(16 * 1024).read_to_end(&mut buf);
            let _ = std::io::copy(&mut err, &mut std::io::sink());
            String::from_utf8_lossy(&buf).into_owned()
        })
    });
    let mut worker = Worker {
        child,
        frames: rx,
        stderr,
        ready: false,
        _temp: temp,
    };
    worker.send(&setup)?;
    Ok(worker)
}

impl Worker {
    pub fn send(&mut self, msg: &impl serde::Serialize) -> Result<(), QueryError> {
        let mut line = serde_json::to_vec(msg).map_err(|e| QueryError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let Some(stdin) = self.child.stdin.as_mut() else {
            return Err(QueryError::Protocol("worker stdin already closed".into()));
        };
        // A worker that died early closes its stdin: that is a crash, reported when reading.
        let _ = stdin.write_all(&line).and_then(|()| stdin.flush());
        Ok(())
    }

    /// The next frame other than "ready", or why there is none: timeout and cancellation kill
    /// the worker, a closed pipe is a crash.
    pub fn next(
        &mut self,
        deadline: Instant,
        cancel: &CancelHandle,
        timeout: Duration,
    ) -> Result<(u8, Vec<u8>), QueryError> {
        loop {
            if cancel.is_cancelled() {
                self.kill();
                return Err(QueryError::Cancelled);
            }
            let now = Instant::now();
            if now >= deadline {
                self.kill();
                return Err(QueryError::Timeout(timeout));
            }
            match self.frames.recv_timeout(POLL.min(deadline - now)) {
                Ok(Msg::Frame(TAG_READY, _)) => self.ready = true,
                Ok(Msg::Frame(tag, payload)) => return Ok((tag, payload)),
                Ok(Msg::End(problem)) => return Err(self.crashed(problem)),
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(self.crashed(None)),
            }
        }
    }

    /// Waits until the worker reports it is ready for its query. `false` if it is not within
    /// `within` or sent anything else (its answer then waits in the channel: a spare is only
    /// ever asked this before it has a query, so anything else means it failed).
    pub fn wait_ready(&mut self, within: Duration) -> bool {
        let until = Instant::now() + within;
        while !self.ready {
            let now = Instant::now();
            if now >= until {
                return false;
            }
            match self.frames.recv_timeout(until - now) {
                Ok(Msg::Frame(TAG_READY, _)) => self.ready = true,
                _ => return false,
            }
        }
        true
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether no spilled data remains in the worker's private temp directory: every entry is
    /// an empty regular file (DuckDB keeps a zero-length `duckdb_temp_<pid>_<n>_owner` marker
    /// once it has spilled); unreadable counts as not empty.
    pub fn temp_dir_is_empty(&self) -> bool {
        let Ok(entries) = std::fs::read_dir(self._temp.path()) else {
            return false;
        };
        entries.into_iter().all(|e| {
            e.and_then(|e| e.metadata())
                .is_ok_and(|m| m.is_file() && m.len() == 0)
        })
    }

    /// Whether the worker has sent nothing beyond what was read (a "ready" is taken note of):
    /// an idle worker that talks out of turn is not given a query.
    pub fn nothing_pending(&mut self) -> bool {
        loop {
            match self.frames.try_recv() {
                Ok(Msg::Frame(TAG_READY, _)) if !self.ready => self.ready = true,
                Err(mpsc::TryRecvError::Empty) => return true,
                _ => return false,
            }
        }
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    fn crashed(&mut self, problem: Option<String>) -> QueryError {
        // The pipe closed: the process is exiting; give it a moment, then make sure.
        let status = match wait_bounded(&mut self.child, Duration::from_secs(2)) {
            Some(s) => describe_status(s),
            None => {
                self.kill();
                "did not exit after closing its output; killed".into()
            }
        };
        let mut stderr = self
            .stderr
            .take()
            .and_then(|h| h.join().ok())
            .unwrap_or_default();
        if let Some(p) = problem {
            stderr = format!("{p}; {stderr}");
        }
        QueryError::WorkerCrashed {
            status,
            stderr: stderr.trim().to_string(),
        }
    }

    /// The worker sent its last frame (or is not to get another query): let it exit (DuckDB's teardown takes a few
    /// milliseconds) on a background thread, killed if it lingers; the temp dir goes with it.
    pub fn finish(mut self) {
        drop(self.child.stdin.take());
        std::thread::spawn(move || {
            if wait_bounded(&mut self.child, Duration::from_secs(2)).is_none() {
                self.kill();
            }
        });
    }

    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Worker {
    fn drop(&mut self) {
        if self.is_running() {
            self.kill();
        }
    }
}

fn wait_bounded(child: &mut Child, within: Duration) -> Option<std::process::ExitStatus> {
    let until = Instant::now() + within;
    loop {
        match child.try_wait() {
            Ok(Some(s)) => return Some(s),
            Ok(None) if Instant::now() < until => std::thread::sleep(Duration::from_millis(2)),
            _ => return None,
        }
    }
}

fn describe_status(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(libc::SIGXCPU)) => "killed by SIGXCPU: CPU-time limit reached".into(),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// The snapshot path as Landlock will see it: symlinks resolved so the rule names the real
/// inode.
pub fn canonical_snapshot(snapshot: &Path) -> Result<PathBuf, QueryError> {
    snapshot
        .canonicalize()
        .map_err(|source| QueryError::Snapshot {
            path: snapshot.to_path_buf(),
            source,
        })
}
