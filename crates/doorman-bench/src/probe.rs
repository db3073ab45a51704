//! Looking at the machine and the databases: load average, row counts,
//! PostgreSQL's transaction counter.

use sqlx::Connection as _;
use sqlx::postgres::PgConnection;
use sqlx::sqlite::SqliteConnection;

/// `/proc/loadavg`'s first three numbers.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|| "?".into())
}

/// One line about the machine: cores, memory, kernel.
pub fn machine() -> String {
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let mem_kib: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|v| v.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_else(|| "?".into());
    format!(
        "{cores} cores ({cpu}), {:.1} GiB RAM",
        mem_kib as f64 / 1024.0 / 1024.0
    )
}

/// Row counts of the store's credential tables.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rows {
    /// `doorman_codes`.
    pub codes: i64,
    /// `doorman_tokens`.
    pub tokens: i64,
    /// `doorman_grants`.
    pub grants: i64,
}

const COUNT: &str = "SELECT (SELECT COUNT(*) FROM doorman_codes), \
     (SELECT COUNT(*) FROM doorman_tokens), (SELECT COUNT(*) FROM doorman_grants)";

/// Row counts in an SQLite file (opened read-only beside the demo).
pub async fn sqlite_rows(path: &str) -> Result<Rows, String> {
    let mut c = SqliteConnection::connect(&format!("sqlite://{path}?mode=ro"))
        .await
        .map_err(|e| e.to_string())?;
    let (codes, tokens, grants): (i64, i64, i64) = sqlx::query_as(COUNT)
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(Rows {
        codes,
        tokens,
        grants,
    })
}

/// Row counts in PostgreSQL.
pub async fn pg_rows(url: &str) -> Result<Rows, String> {
    let mut c = PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let (codes, tokens, grants): (i64, i64, i64) = sqlx::query_as(COUNT)
        .fetch_one(&mut c)
        .await
        .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(Rows {
        codes,
        tokens,
        grants,
    })
}

/// Transactions (commits + rollbacks) PostgreSQL has counted in this
/// database. Outside an explicit transaction every statement is one, so
/// the difference over N requests is their round trips to the database.
/// Backends report their counters when idle, at most once a second and at
/// the latest after 10 s: wait 11 s after the load before reading.
pub async fn pg_xacts(url: &str) -> Result<i64, String> {
    let mut c = PgConnection::connect(url)
        .await
        .map_err(|e| e.to_string())?;
    let n: i64 = sqlx::query_scalar(
        "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(&mut c)
    .await
    .map_err(|e| e.to_string())?;
    let _ = c.close().await;
    Ok(n)
}
