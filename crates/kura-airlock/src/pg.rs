//! The airlock's tables on PostgreSQL, for several `kura serve` nodes sharing one database: a
//! small pool of connections of the synchronous `postgres` client (as kura-audit and kura-store
//! use), and `Sql` for a connection. This is kura-store's `pg.rs` (see `db.rs` for why it is a
//! copy) with two differences: units of work are `Tx::Read` (one snapshot, `REPEATABLE READ
//! READ ONLY`) or `Tx::Write` (`READ COMMITTED` with row and advisory locks, see `store.rs`), and
//! the timeouts leave room for the work a release does while holding its locks.
//!
//! The synchronous client drives its own tokio runtime, which must not be started or dropped on
//! a thread that is already running async tasks (the server calls the airlock from its handlers).
//! So every use of a connection (connecting, statements, closing) runs on a short-lived scoped
//! thread when the caller is inside a runtime, and on the caller's thread otherwise.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::error::SqlState;
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls};

use crate::db::{postgres_placeholders, Arg, Cell, Row, Sql, Tx};
use crate::error::AirlockError;
use crate::schema;

/// Connections an airlock keeps at most: requests beyond wait for one to be free.
const MAX_CONNECTIONS: usize = 8;

/// How long a statement waits for a lock held by another node before it fails. A release holds
/// its review's row and its snapshot's ledger lock while it re-runs the rule pack and writes the
/// release files, which can take seconds for a large table.
const LOCK_TIMEOUT: Duration = Duration::from_secs(60);

/// The server ends a transaction left idle this long (a paused or hung node), releasing its
/// locks. Between two statements of a release the node checks the table and writes files.
const IDLE_IN_TRANSACTION: Duration = Duration::from_secs(300);

/// Attempts of a unit of work that PostgreSQL aborted for a deadlock or a serialization
/// failure; its statements were rolled back, so running it again is safe.
const ATTEMPTS: usize = 5;

/// A PostgreSQL error with its causes (its own text says little: "db error").
fn describe(e: &postgres::Error) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    message
}

/// A PostgreSQL error, naming the database, with its causes and SQLSTATE.
pub(crate) fn pg_error(label: &str, e: &postgres::Error) -> AirlockError {
    pg_error_with(label, e, describe(e))
}

fn pg_error_with(label: &str, e: &postgres::Error, message: String) -> AirlockError {
    AirlockError::Postgres {
        database: label.to_string(),
        code: e.code().map(|c| c.code().to_string()),
        message,
    }
}

fn retryable(e: &AirlockError) -> bool {
    let AirlockError::Postgres {
        code: Some(code), ..
    } = e
    else {
        return false;
    };
    code == SqlState::T_R_SERIALIZATION_FAILURE.code()
        || code == SqlState::T_R_DEADLOCK_DETECTED.code()
}

/// A pause before attempt `attempt + 1`: growing, with jitter so that two nodes that keep
/// colliding drift apart.
fn backoff(attempt: usize) -> Duration {
    let mut b = [0u8; 1];
    let jitter = getrandom::fill(&mut b).map_or(0, |()| u64::from(b[0] % 20));
    Duration::from_millis(10 * attempt as u64 + jitter)
}

/// `postgres://user@host:port/db` of a configuration: never the password.
fn label_of(config: &Config) -> String {
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(h)) => h.clone(),
        Some(Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_string(),
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    let user = config.get_user().unwrap_or("");
    let db = config.get_dbname().unwrap_or(user);
    format!("postgres://{user}@{host}:{port}/{db}")
}

/// The label of a URL, or a placeholder when it does not parse (never the URL itself: it may
/// hold a password).
pub(crate) fn label_of_url(url: &str) -> String {
    match url.parse::<Config>() {
        Ok(c) => label_of(&c),
        Err(_) => "<unparsable PostgreSQL URL>".to_string(),
    }
}

/// Runs `f` where the synchronous client may block: on a scoped thread when the caller is
/// inside a tokio runtime, else right here.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    if tokio::runtime::Handle::try_current().is_err() {
        return f();
    }
    std::thread::scope(|s| match s.spawn(f).join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    })
}

struct Slots {
    idle: Vec<Client>,
    open: usize,
}

pub(crate) struct Pg {
    config: Config,
    label: String,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl Pg {
    /// Connects (failing now if the database cannot be reached) and creates the tables.
    pub(crate) fn open(url: &str) -> Result<Pg, AirlockError> {
        let mut config: Config = url.parse().map_err(|e: postgres::Error| {
            AirlockError::Config(format!(
                "the airlock's database URL is not a PostgreSQL connection string \
                 (postgres://user@host:port/db): {e}"
            ))
        })?;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(AirlockError::Config(format!(
                "{}: sslmode requires TLS, which the airlock's PostgreSQL connection does not \
                 support yet; connect through a Unix socket (host=/var/run/postgresql) or a \
                 private network",
                label_of(&config)
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name("kura-airlock");
        }
        let pg = Pg {
            label: label_of(&config),
            config,
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        };
        off_runtime(|| {
            let mut client = pg.acquire()?;
            let created = schema::ensure_postgres(&mut client).map_err(|e| {
                AirlockError::Config(format!(
                    "{}: creating the airlock's tables: {} (does the schema in the URL's \
                     search_path exist, and may this user create tables in it?)",
                    pg.label,
                    describe(&e)
                ))
            });
            if created.is_ok() {
                pg.put_back(client);
            } else {
                pg.discard(client);
            }
            created
        })?;
        Ok(pg)
    }

    pub(crate) fn label(&self) -> &str {
        &self.label
    }

    fn slots(&self) -> MutexGuard<'_, Slots> {
        // The slots are a list and a count, updated in single steps: a panic elsewhere cannot
        // leave them half-changed.
        match self.slots.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    /// A new connection in a slot the caller has reserved (`open` counted), which is released
    /// if connecting fails.
    fn connect(&self) -> Result<Client, AirlockError> {
        let connected = self.config.connect(NoTls).and_then(|mut client| {
            client
                .batch_execute(&format!(
                    "SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}; \
                     SET synchronous_commit = on;",
                    LOCK_TIMEOUT.as_millis(),
                    IDLE_IN_TRANSACTION.as_millis()
                ))
                .map(|()| client)
        });
        connected.map_err(|e| {
            self.release_slot();
            let message = format!(
                "cannot connect: {} (is PostgreSQL running there, and does the URL name the \
                 right user and database?)",
                describe(&e)
            );
            pg_error_with(&self.label, &e, message)
        })
    }

    fn release_slot(&self) {
        let mut slots = self.slots();
        slots.open = slots.open.saturating_sub(1);
        drop(slots);
        self.freed.notify_one();
    }

    /// A free connection, a new one if fewer than the maximum are open, else waits.
    fn acquire(&self) -> Result<Client, AirlockError> {
        let mut slots = self.slots();
        loop {
            if let Some(client) = slots.idle.pop() {
                if !client.is_closed() {
                    return Ok(client);
                }
                drop(slots);
                self.discard(client);
                slots = self.slots();
                continue;
            }
            if slots.open < MAX_CONNECTIONS {
                slots.open += 1;
                drop(slots);
                return self.connect();
            }
            slots = match self.freed.wait(slots) {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
        }
    }

    fn put_back(&self, client: Client) {
        if client.is_closed() {
            self.discard(client);
            return;
        }
        self.slots().idle.push(client);
        self.freed.notify_one();
    }

    /// Closes a connection whose state is unknown (an error inside a transaction, a lost
    /// server): the server rolls back whatever it had open.
    fn discard(&self, client: Client) {
        drop(client);
        self.release_slot();
    }

    /// Runs `f` on a pooled connection in one transaction, rolled back if `f` fails.
    /// Deadlocks and serialization failures run `f` again, so `f` must leave nothing behind
    /// outside the database when it fails.
    pub(crate) fn run<T: Send>(
        &self,
        tx: Tx,
        mut f: impl FnMut(&mut dyn Sql) -> Result<T, AirlockError> + Send,
    ) -> Result<T, AirlockError> {
        off_runtime(|| {
            let mut attempt = 1;
            loop {
                let mut client = self.acquire()?;
                let (result, healthy) = self.once(&mut client, tx, &mut f);
                if healthy {
                    self.put_back(client);
                } else {
                    self.discard(client);
                }
                match result {
                    Err(e) if retryable(&e) && attempt < ATTEMPTS => {
                        // The other transaction usually still needs a moment to take the lock it
                        // was waiting for; running again at once can deadlock with it again.
                        std::thread::sleep(backoff(attempt));
                        attempt += 1;
                    }
                    other => return other,
                }
            }
        })
    }

    /// One attempt; also says whether the connection can be used again.
    fn once<T>(
        &self,
        client: &mut Client,
        tx: Tx,
        f: &mut impl FnMut(&mut dyn Sql) -> Result<T, AirlockError>,
    ) -> (Result<T, AirlockError>, bool) {
        let begin = match tx {
            // One snapshot for every statement: a review's row, rounds and votes agree.
            Tx::Read => "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY",
            // Each statement sees what committed before it; the locks taken first (the review's
            // row, the snapshot's ledger) make later statements see the other node's writes.
            Tx::Write => "BEGIN ISOLATION LEVEL READ COMMITTED",
        };
        if let Err(e) = client.batch_execute(begin) {
            return (Err(pg_error(&self.label, &e)), false);
        }
        let mut conn = PgConn {
            client: &mut *client,
            label: &self.label,
        };
        let result = f(&mut conn);
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match (result, client.batch_execute(end)) {
            (Ok(v), Ok(())) => (Ok(v), true),
            (Err(e), Ok(())) => (Err(e), true),
            // A failed COMMIT may or may not have committed; the connection is not reused.
            (Ok(_), Err(e)) => (Err(pg_error(&self.label, &e)), false),
            (Err(e), Err(_)) => (Err(e), false),
        }
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        let idle = std::mem::take(&mut self.slots().idle);
        // Closing a connection stops its runtime: not on an async thread either.
        off_runtime(move || drop(idle));
    }
}

/// One PostgreSQL connection as `Sql`.
struct PgConn<'a> {
    client: &'a mut Client,
    label: &'a str,
}

fn typed<'a>(args: &'a [Arg<'a>]) -> Vec<(&'a (dyn ToSql + Sync), Type)> {
    args.iter()
        .map(|a| match a {
            Arg::Text(t) => (t as &(dyn ToSql + Sync), Type::TEXT),
            Arg::Int(n) => (n as &(dyn ToSql + Sync), Type::INT8),
            Arg::Real(x) => (x as &(dyn ToSql + Sync), Type::FLOAT8),
        })
        .collect()
}

impl PgConn<'_> {
    fn cells(&self, row: &postgres::Row) -> Result<Row, AirlockError> {
        let bad = |e: postgres::Error| pg_error(self.label, &e);
        let mut cells = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let ty = column.type_();
            let cell = if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
                row.try_get::<_, Option<String>>(i)
                    .map_err(bad)?
                    .map_or(Cell::Null, Cell::Text)
            } else if *ty == Type::INT8 {
                row.try_get::<_, Option<i64>>(i)
                    .map_err(bad)?
                    .map_or(Cell::Null, Cell::Int)
            } else if *ty == Type::INT4 {
                row.try_get::<_, Option<i32>>(i)
                    .map_err(bad)?
                    .map_or(Cell::Null, |n| Cell::Int(n.into()))
            } else if *ty == Type::INT2 {
                row.try_get::<_, Option<i16>>(i)
                    .map_err(bad)?
                    .map_or(Cell::Null, |n| Cell::Int(n.into()))
            } else if *ty == Type::FLOAT8 {
                row.try_get::<_, Option<f64>>(i)
                    .map_err(bad)?
                    .map_or(Cell::Null, Cell::Real)
            } else if *ty == Type::BOOL {
                row.try_get::<_, Option<bool>>(i)
                    .map_err(bad)?
                    .map_or(Cell::Null, Cell::Bool)
            } else {
                return Err(AirlockError::Corrupt {
                    what: "row",
                    why: format!("column {i} has type {ty}, which the airlock never uses"),
                });
            };
            cells.push(cell);
        }
        Ok(Row(cells))
    }
}

impl Sql for PgConn<'_> {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, AirlockError> {
        self.client
            .execute_typed(&postgres_placeholders(sql), &typed(args))
            .map_err(|e| pg_error(self.label, &e))
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, AirlockError> {
        let rows = self
            .client
            .query_typed(&postgres_placeholders(sql), &typed(args))
            .map_err(|e| pg_error(self.label, &e))?;
        rows.iter().map(|r| self.cells(r)).collect()
    }

    fn is_postgres(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Barrier;

    use super::*;
    use crate::db::args;

    /// Two transactions locking two rows in opposite orders deadlock for sure; PostgreSQL
    /// aborts one, which runs again and succeeds.
    #[test]
    fn a_deadlocked_transaction_runs_again() {
        let base = std::env::var("KURA_TEST_POSTGRES_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_string());
        let mut admin = Client::connect(&base, NoTls).unwrap_or_else(|e| {
            panic!("this test needs PostgreSQL at {base} (KURA_TEST_POSTGRES_URL): {e}")
        });
        let schema = format!("kura_airlock_unit_{}", std::process::id());
        admin
            .batch_execute(&format!(
                "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema};
                 CREATE TABLE {schema}.t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
                 INSERT INTO {schema}.t VALUES (1, 0), (2, 0);"
            ))
            .unwrap();
        let sep = if base.contains('?') { '&' } else { '?' };
        let pg = Pg::open(&format!("{base}{sep}options=-c%20search_path%3D{schema}")).unwrap();
        let barrier = Barrier::new(2);
        let attempts = AtomicUsize::new(0);
        let results: Vec<Result<(), AirlockError>> = std::thread::scope(|s| {
            let handles: Vec<_> = [(1i64, 2i64), (2, 1)]
                .into_iter()
                .map(|(first, second)| {
                    let (pg, barrier, attempts) = (&pg, &barrier, &attempts);
                    s.spawn(move || {
                        let mut mine = 0;
                        pg.run(Tx::Write, |c| {
                            mine += 1;
                            attempts.fetch_add(1, Ordering::SeqCst);
                            c.execute("UPDATE t SET v = v + 1 WHERE id = ?1", args![first])?;
                            if mine == 1 {
                                barrier.wait();
                            }
                            c.execute("UPDATE t SET v = v + 1 WHERE id = ?1", args![second])?;
                            Ok(())
                        })
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let sums: Vec<i64> = admin
            .query(&format!("SELECT v FROM {schema}.t ORDER BY id"), &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(pg);
        admin
            .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
            .unwrap();
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(
            attempts.load(Ordering::SeqCst) >= 3,
            "no transaction ran again"
        );
        assert_eq!(sums, vec![2, 2], "each transaction committed once");
    }
}
