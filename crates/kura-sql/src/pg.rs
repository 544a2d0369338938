//! PostgreSQL, for several `kura serve` nodes sharing one database: a small pool of connections
//! of the synchronous `postgres` client (as `kura-audit` uses), `Sql` for a connection, and
//! running a unit of work again when PostgreSQL aborted it for a deadlock or a serialization
//! failure.
//!
//! The synchronous client drives its own tokio runtime, which must not be started or dropped on
//! a thread that is already running async tasks (the server calls the crates from its handlers).
//! So every use of a connection (connecting, statements, closing) leaves the runtime first
//! (`off_runtime`).

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use postgres::config::{Host, SslMode};
use postgres::types::{ToSql, Type};
use postgres::{Client, Config, NoTls};

use crate::error::retryable;
use crate::{postgres_placeholders, Arg, Cell, Row, Sql, SqlError, SqlErrorCode, Tx};

/// Attempts of a unit of work that PostgreSQL aborted for a deadlock or a serialization
/// failure; its statements were rolled back, so running it again is safe.
const ATTEMPTS: usize = 5;

/// How a crate's pool connects, and the names its messages use.
#[derive(Debug, Clone)]
pub struct PgOptions {
    /// `application_name` of the connections (unless the URL sets one).
    pub application_name: &'static str,
    /// Connections kept at most: requests beyond wait for one to be free.
    pub max_connections: usize,
    /// How long a statement waits for a lock held by another node before it fails.
    pub lock_timeout: Duration,
    /// The server ends a transaction left idle this long (a paused or hung node), releasing its
    /// locks.
    pub idle_in_transaction: Duration,
    /// For messages: "the control-plane database", "the airlock's database".
    pub database: &'static str,
    /// For messages: "the control plane's PostgreSQL connection".
    pub connection: &'static str,
    /// For messages: "the control-plane tables".
    pub tables: &'static str,
}

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
fn pg_error(label: &str, e: &postgres::Error) -> SqlError {
    pg_error_with(label, e, describe(e))
}

fn pg_error_with(label: &str, e: &postgres::Error, message: String) -> SqlError {
    SqlError::Postgres {
        database: label.to_string(),
        code: e.code().map(|c| c.code().to_string()),
        message,
    }
}

/// A pause before attempt `attempt + 1`: growing, with jitter so that two nodes that keep
/// colliding drift apart.
fn backoff(attempt: usize) -> Duration {
    let mut b = [0u8; 1];
    let jitter = getrandom::fill(&mut b).map_or(0, |()| u64::from(b[0] % 20));
    Duration::from_millis(10 * attempt as u64 + jitter)
}

/// `postgres://user@host:port/db` of a configuration: never the password.
pub fn label_of(config: &Config) -> String {
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
pub fn label_of_url(url: &str) -> String {
    match url.parse::<Config>() {
        Ok(c) => label_of(&c),
        Err(_) => "<unparsable PostgreSQL URL>".to_string(),
    }
}

/// Runs `f` where the synchronous client may block. Outside a runtime: right here. On a worker
/// of a multi-threaded runtime (the server's handlers): here too, through `block_in_place`, which
/// first hands the worker's other tasks to another thread, so that a statement waiting for
/// PostgreSQL (a lock held by another node, a busy pool) never stalls the requests queued
/// behind it on this worker. A current-thread runtime cannot hand its tasks over: a scoped
/// thread runs `f` there.
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current().map(|h| h.runtime_flavor()) {
        Err(_) => return f(),
        Ok(RuntimeFlavor::MultiThread) => return tokio::task::block_in_place(f),
        Ok(_) => {}
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

/// A pool of connections to one PostgreSQL database.
pub struct Pg {
    config: Config,
    options: PgOptions,
    label: String,
    slots: Mutex<Slots>,
    freed: Condvar,
}

impl Pg {
    /// Connects (failing now if the database cannot be reached) and creates the tables with
    /// `schema`, on one connection.
    pub fn open(
        url: &str,
        options: PgOptions,
        schema: impl FnOnce(&mut Client) -> Result<(), postgres::Error> + Send,
    ) -> Result<Pg, SqlError> {
        let mut config: Config = url.parse().map_err(|e: postgres::Error| {
            SqlError::Config(format!(
                "{} URL is not a PostgreSQL connection string (postgres://user@host:port/db): {e}",
                options.database
            ))
        })?;
        if !matches!(config.get_ssl_mode(), SslMode::Disable | SslMode::Prefer) {
            return Err(SqlError::Config(format!(
                "{}: sslmode requires TLS, which {} does not support yet; connect through a \
                 Unix socket (host=/var/run/postgresql) or a private network",
                label_of(&config),
                options.connection
            )));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(Duration::from_secs(10));
        }
        if config.get_application_name().is_none() {
            config.application_name(options.application_name);
        }
        let pg = Pg {
            label: label_of(&config),
            config,
            options,
            slots: Mutex::new(Slots {
                idle: Vec::new(),
                open: 0,
            }),
            freed: Condvar::new(),
        };
        off_runtime(|| {
            let mut client = pg.acquire()?;
            let created = schema(&mut client).map_err(|e| {
                SqlError::Config(format!(
                    "{}: creating {}: {} (does the schema in the URL's search_path exist, and \
                     may this user create tables in it?)",
                    pg.label,
                    pg.options.tables,
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

    /// `postgres://user@host:port/db`, never the password: for messages.
    pub fn label(&self) -> &str {
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
    fn connect(&self) -> Result<Client, SqlError> {
        let connected = self.config.connect(NoTls).and_then(|mut client| {
            client
                // `client_min_messages`: the schema's `CREATE .. IF NOT EXISTS` would otherwise
                // log a NOTICE per existing table at every start of every node and command.
                .batch_execute(&format!(
                    "SET lock_timeout = {}; SET idle_in_transaction_session_timeout = {}; \
                     SET synchronous_commit = on; SET client_min_messages = warning;",
                    self.options.lock_timeout.as_millis(),
                    self.options.idle_in_transaction.as_millis()
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
    fn acquire(&self) -> Result<Client, SqlError> {
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
            if slots.open < self.options.max_connections.max(1) {
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

    /// Runs `f` on a pooled connection as `tx` says, rolled back if `f` fails. Deadlocks and
    /// serialization failures run `f` again, so `f` must leave nothing behind outside the
    /// database when it fails.
    pub fn run<T: Send, E: From<SqlError> + SqlErrorCode + Send>(
        &self,
        tx: Tx,
        mut f: impl FnMut(&mut dyn Sql) -> Result<T, E> + Send,
    ) -> Result<T, E> {
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
    fn once<T, E: From<SqlError>>(
        &self,
        client: &mut Client,
        tx: Tx,
        f: &mut impl FnMut(&mut dyn Sql) -> Result<T, E>,
    ) -> (Result<T, E>, bool) {
        let begin = match tx {
            Tx::Autocommit => None,
            // One snapshot for every statement: rows read together agree.
            Tx::Read => Some("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"),
            // Each statement sees what committed before it; the locks taken first (a row
            // `FOR UPDATE`, an advisory lock) make later statements see the other node's writes.
            Tx::Write => Some("BEGIN ISOLATION LEVEL READ COMMITTED"),
        };
        let Some(begin) = begin else {
            let result = f(&mut PgConn {
                client: &mut *client,
                label: &self.label,
                application: self.options.application_name,
            });
            let healthy = !client.is_closed();
            return (result, healthy);
        };
        if let Err(e) = client.batch_execute(begin) {
            return (Err(pg_error(&self.label, &e).into()), false);
        }
        let result = f(&mut PgConn {
            client: &mut *client,
            label: &self.label,
            application: self.options.application_name,
        });
        let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
        match (result, client.batch_execute(end)) {
            (Ok(v), Ok(())) => (Ok(v), true),
            (Err(e), Ok(())) => (Err(e), true),
            // A failed COMMIT may or may not have committed; the connection is not reused.
            (Ok(_), Err(e)) => (Err(pg_error(&self.label, &e).into()), false),
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
    /// The crate using the pool, for messages.
    application: &'a str,
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

/// Column `i` of `row` as `T`, NULL as `Cell::Null`.
fn cell<'r, T: postgres::types::FromSql<'r>>(
    row: &'r postgres::Row,
    i: usize,
    to_cell: impl FnOnce(T) -> Cell,
) -> Result<Cell, postgres::Error> {
    Ok(row.try_get::<_, Option<T>>(i)?.map_or(Cell::Null, to_cell))
}

impl PgConn<'_> {
    fn cells(&self, row: &postgres::Row) -> Result<Row, SqlError> {
        let mut cells = Vec::with_capacity(row.len());
        for (i, column) in row.columns().iter().enumerate() {
            let ty = column.type_();
            let got = if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
                cell(row, i, Cell::Text)
            } else if *ty == Type::INT8 {
                cell(row, i, Cell::Int)
            } else if *ty == Type::INT4 {
                cell(row, i, |n: i32| Cell::Int(n.into()))
            } else if *ty == Type::INT2 {
                cell(row, i, |n: i16| Cell::Int(n.into()))
            } else if *ty == Type::FLOAT8 {
                cell(row, i, Cell::Real)
            } else if *ty == Type::BOOL {
                cell(row, i, Cell::Bool)
            } else {
                return Err(SqlError::Corrupt {
                    what: "row",
                    why: format!(
                        "column {i} has type {ty}, which {} never uses",
                        self.application
                    ),
                });
            };
            cells.push(got.map_err(|e| pg_error(self.label, &e))?);
        }
        Ok(Row(cells))
    }
}

impl Sql for PgConn<'_> {
    fn execute(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<u64, SqlError> {
        self.client
            .execute_typed(&postgres_placeholders(sql), &typed(args))
            .map_err(|e| pg_error(self.label, &e))
    }

    fn query(&mut self, sql: &str, args: &[Arg<'_>]) -> Result<Vec<Row>, SqlError> {
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
    use crate::args;
    use crate::testing::{admin, PgSchema};

    fn options() -> PgOptions {
        PgOptions {
            application_name: "kura-sql-test",
            max_connections: 8,
            lock_timeout: Duration::from_secs(30),
            idle_in_transaction: Duration::from_secs(60),
            database: "the test database",
            connection: "the test's PostgreSQL connection",
            tables: "the test tables",
        }
    }

    /// Two transactions locking two rows in opposite orders deadlock for sure; PostgreSQL
    /// aborts one, which runs again and succeeds.
    #[test]
    fn a_deadlocked_transaction_runs_again() {
        let schema = PgSchema::new();
        let pg = Pg::open(&schema.url, options(), |c| {
            c.batch_execute(
                "CREATE TABLE t (id BIGINT PRIMARY KEY, v BIGINT NOT NULL);
                 INSERT INTO t VALUES (1, 0), (2, 0);",
            )
        })
        .unwrap();
        let barrier = Barrier::new(2);
        let attempts = AtomicUsize::new(0);
        let results: Vec<Result<(), SqlError>> = std::thread::scope(|s| {
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
        let sums: Vec<i64> = schema
            .client()
            .query("SELECT v FROM t ORDER BY id", &[])
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        drop(pg);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        assert!(
            attempts.load(Ordering::SeqCst) >= 3,
            "no transaction ran again"
        );
        assert_eq!(sums, vec![2, 2], "each transaction committed once");
    }

    #[test]
    fn tls_and_bad_urls_are_refused_without_the_password() {
        drop(admin());
        for url in [
            "postgres://kura:s3cret@127.0.0.1:1/kura?sslmode=require",
            "not a url at all = =",
        ] {
            let e = Pg::open(url, options(), |_| Ok(())).err().unwrap();
            assert!(matches!(e, SqlError::Config(_)), "{e:?}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
        assert_eq!(
            label_of_url("postgres://kura:s3cret@db:5433/k"),
            "postgres://kura@db:5433/k"
        );
    }
}
