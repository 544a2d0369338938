//! Escape attempts the confined worker makes on itself in self-test mode: each is a syscall a
//! compromised DuckDB could issue (open a file, a socket, a process), not SQL.

use std::io::Write;

use crate::protocol::WorkerSetup;
use crate::worker::Probe;

fn probe(name: &str, result: Result<String, std::io::Error>) -> Probe {
    match result {
        Ok(detail) => Probe {
            name: name.into(),
            succeeded: true,
            detail,
        },
        Err(e) => Probe {
            name: name.into(),
            succeeded: false,
            detail: e.to_string(),
        },
    }
}

pub fn run_all(setup: &WorkerSetup) -> Vec<Probe> {
    let outside = std::env::temp_dir().join(format!("kura-escape-{}", std::process::id()));
    vec![
        probe(
            "read_snapshot",
            std::fs::File::open(&setup.snapshot).map(|_| "opened".into()),
        ),
        probe(
            "write_temp_dir",
            std::fs::File::create(setup.temp_dir.join("probe"))
                .and_then(|mut f| f.write_all(b"x"))
                .map(|()| "written".into()),
        ),
        probe(
            "spawn_thread",
            std::thread::spawn(|| 1)
                .join()
                .map(|_| "joined".to_string())
                .map_err(|_| std::io::Error::other("thread panicked")),
        ),
        probe(
            "read_etc_passwd",
            std::fs::read("/etc/passwd").map(|b| format!("{} bytes", b.len())),
        ),
        probe(
            "read_proc_self_environ",
            std::fs::read("/proc/self/environ").map(|b| format!("{} bytes", b.len())),
        ),
        probe(
            "list_snapshot_dir",
            setup
                .snapshot
                .parent()
                .map(std::fs::read_dir)
                .unwrap_or_else(|| Err(std::io::Error::other("no parent")))
                .map(|d| format!("{} entries", d.count())),
        ),
        probe(
            "write_outside_temp_dir",
            std::fs::write(&outside, b"x").map(|()| outside.display().to_string()),
        ),
        probe(
            "tcp_connect",
            std::net::TcpStream::connect("127.0.0.1:9").map(|_| "connected".into()),
        ),
        probe(
            "udp_bind",
            std::net::UdpSocket::bind("127.0.0.1:0").map(|_| "bound".into()),
        ),
        probe(
            "unix_socket",
            std::os::unix::net::UnixDatagram::unbound().map(|_| "created".into()),
        ),
        probe(
            "spawn_process",
            std::process::Command::new("/bin/true")
                .status()
                .map(|s| format!("ran: {s}")),
        ),
    ]
}
