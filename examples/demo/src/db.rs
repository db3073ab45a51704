//! The host's own tables, next to the store's in the same database:
//! users, login sessions, numeric app ids and settings (the form key).
//!
//! Queries use `$1`-style placeholders, which both SQLite and PostgreSQL
//! accept, so each is written once; only the table definitions differ.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, RwLock};

use doorman::store::TokenStore as _;
use doorman::{MemoryStore, StoreError, TokenHash, TokenRecord, UserId};
use doorman_sqlx::rusqlite::OptionalExtension as _;
use doorman_sqlx::{SqlStore, UserJoin, UserRow};
use sqlx::{PgPool, Row as _, SqlitePool};

/// A pool on the database the store uses.
#[derive(Debug, Clone)]
pub enum Db {
    /// Embedded SQLite: the store's sqlx pool, and the store itself, whose
    /// own reading connections serve the hot reads (users, sessions)
    /// without sqlx's thread hand-off.
    Sqlite(SqlitePool, SqlStore),
    /// PostgreSQL, and the store on it.
    Postgres(PgPool, SqlStore),
    /// Process memory (`DATABASE_URL=memory:`, for benchmarks and trials):
    /// gone when the process ends. The OAuth store beside the tables, for
    /// the joined token-and-user read.
    Memory(Arc<RwLock<MemTables>>, Arc<MemoryStore>),
}

/// Runs the same code over whichever pool `$db` holds, or `$mem` over the
/// in-memory tables (a poisoned lock is a database error, not a panic).
macro_rules! on_pool {
    ($db:expr, |$pool:ident| $body:expr, |$tables:ident| $mem:expr) => {
        on_pool!(@ write, $db, |$pool| $body, |$tables| $mem)
    };
    (read $db:expr, |$pool:ident| $body:expr, |$tables:ident| $mem:expr) => {
        on_pool!(@ read, $db, |$pool| $body, |$tables| $mem)
    };
    (@ $lock:ident, $db:expr, |$pool:ident| $body:expr, |$tables:ident| $mem:expr) => {
        match $db {
            Db::Sqlite($pool, _) => $body,
            Db::Postgres($pool, _) => $body,
            Db::Memory(tables, _) => {
                #[allow(unused_mut)]
                let mut $tables = tables.$lock().map_err(|_| poisoned())?;
                Ok($mem)
            }
        }
    };
}

/// A user row by id (`$1`).
const USER_BY_ID: &str = "SELECT id, username, email, quota, used_quota, status, created_time FROM demo_users WHERE id = $1";

/// How a bearer token's row finds its user's row (the demo's user ids are
/// its integer keys): the user columns of [`USER_BY_ID`], in [`User`]'s
/// order, for [`Db::token_with_user`].
static USER_JOIN: LazyLock<UserJoin> = LazyLock::new(|| {
    UserJoin::on_integer_key(
        "demo_users u",
        "u.id",
        &[
            "u.id",
            "u.username",
            "u.email",
            "u.quota",
            "u.used_quota",
            "u.status",
            "u.created_time",
        ],
    )
});

/// The user id and name of a live session (`$1` the id hash, `$2` now).
const SESSION_USER: &str = "SELECT u.id, u.username FROM demo_sessions s JOIN demo_users u ON u.id = s.user_id \
     WHERE s.id_hash = $1 AND s.expires_at > $2";

/// A failed read on the store's own connection, as the pools' errors.
fn store_error(e: doorman::StoreError) -> sqlx::Error {
    sqlx::Error::Protocol(format!("reading SQLite: {e}"))
}

fn poisoned() -> sqlx::Error {
    sqlx::Error::Protocol("the in-memory tables' lock is poisoned".into())
}

/// The demo's tables in process memory.
#[derive(Debug, Default)]
pub struct MemTables {
    /// Users with their password hashes; a user's id is its index + 1.
    users: Vec<(User, String)>,
    user_ids: HashMap<String, i64>,
    /// Session id hash → (user id, expires at).
    sessions: HashMap<String, (i64, i64)>,
    apps: HashMap<String, i64>,
    settings: HashMap<String, String>,
}

impl MemTables {
    fn user(&self, id: i64) -> Option<&(User, String)> {
        let i = usize::try_from(id.checked_sub(1)?).ok()?;
        self.users.get(i)
    }
}

/// The key of the user `user` names: the demo's user ids are its keys
/// written out, so `"042"` or `"+42"` name no user, as in the joined read.
pub(crate) fn user_key(user: &UserId) -> Option<i64> {
    let s = user.as_str();
    let digits = s.strip_prefix('-').unwrap_or(s);
    // Written out, a key has no sign but `-`, and no leading zero but "0".
    let canonical = digits.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && (!digits.starts_with('0') || s == "0");
    if !canonical {
        return None;
    }
    s.parse::<i64>().ok()
}

/// A user row.
#[derive(Clone)]
pub struct User {
    /// Primary key, shown to clients as the numeric `id`.
    pub id: i64,
    /// Login name.
    pub username: String,
    /// Email address.
    pub email: String,
    /// Credit bought or granted, in thousandths of a unit.
    pub quota: i64,
    /// Credit spent.
    pub used_quota: i64,
    /// 1: active.
    pub status: i64,
    /// Registration time, Unix seconds.
    pub created_time: i64,
}

/// A user from [`USER_JOIN`]'s columns.
fn user_of(row: &UserRow) -> Result<User, StoreError> {
    Ok(User {
        id: row.i64(0)?,
        username: row.str(1)?.to_owned(),
        email: row.str(2)?.to_owned(),
        quota: row.i64(3)?,
        used_quota: row.i64(4)?,
        status: row.i64(5)?,
        created_time: row.i64(6)?,
    })
}

impl std::fmt::Debug for User {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("User")
            .field("id", &self.id)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

const SQLITE_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS demo_users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        username TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        quota BIGINT NOT NULL,
        used_quota BIGINT NOT NULL,
        status BIGINT NOT NULL,
        created_time BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS demo_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES demo_users(id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS demo_sessions_expires ON demo_sessions (expires_at)",
    "CREATE TABLE IF NOT EXISTS demo_apps (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        client_id TEXT NOT NULL UNIQUE,
        created_time BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS demo_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

const POSTGRES_SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS demo_users (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        username TEXT NOT NULL UNIQUE,
        email TEXT NOT NULL,
        password_hash TEXT NOT NULL,
        quota BIGINT NOT NULL,
        used_quota BIGINT NOT NULL,
        status BIGINT NOT NULL,
        created_time BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS demo_sessions (
        id_hash TEXT PRIMARY KEY,
        user_id BIGINT NOT NULL REFERENCES demo_users(id) ON DELETE CASCADE,
        created_at BIGINT NOT NULL,
        expires_at BIGINT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS demo_sessions_expires ON demo_sessions (expires_at)",
    "CREATE TABLE IF NOT EXISTS demo_apps (
        id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
        client_id TEXT NOT NULL UNIQUE,
        created_time BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS demo_settings (name TEXT PRIMARY KEY, value TEXT NOT NULL)",
];

/// Any number for the PostgreSQL advisory lock that serialises the demo's
/// migrations when several instances start on one database.
const MIGRATION_LOCK: i64 = 0x646f_6f72_6d61_6e01;

impl Db {
    /// Empty tables in process memory, beside `store`.
    pub fn memory(store: Arc<MemoryStore>) -> Self {
        Db::Memory(Arc::new(RwLock::new(MemTables::default())), store)
    }

    /// Creates the demo's tables if they are missing.
    pub async fn migrate(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Memory(..) => Ok(()),
            Db::Sqlite(pool, _) => {
                let mut tx = pool.begin().await?;
                for stmt in SQLITE_SCHEMA {
                    sqlx::query(*stmt).execute(&mut *tx).await?;
                }
                tx.commit().await
            }
            Db::Postgres(pool, _) => {
                // Concurrent `CREATE TABLE IF NOT EXISTS` can collide in PostgreSQL's catalog.
                let mut tx = pool.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(MIGRATION_LOCK)
                    .execute(&mut *tx)
                    .await?;
                for stmt in POSTGRES_SCHEMA {
                    sqlx::query(*stmt).execute(&mut *tx).await?;
                }
                tx.commit().await
            }
        }
    }

    /// A setting, inserted with `initial` unless it exists (first writer
    /// wins, so instances sharing the database agree on it).
    pub async fn setting_or_insert(
        &self,
        name: &str,
        initial: &str,
    ) -> Result<String, sqlx::Error> {
        on_pool!(
            self,
            |pool| {
                sqlx::query("INSERT INTO demo_settings (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING")
                .bind(name)
                .bind(initial)
                .execute(pool)
                .await?;
                sqlx::query("SELECT value FROM demo_settings WHERE name = $1")
                    .bind(name)
                    .fetch_one(pool)
                    .await?
                    .try_get::<String, _>("value")
            },
            |t| t
                .settings
                .entry(name.to_owned())
                .or_insert_with(|| initial.to_owned())
                .clone()
        )
    }

    /// Whether a user with this name exists.
    pub async fn user_exists(&self, username: &str) -> Result<bool, sqlx::Error> {
        on_pool!(read self, |pool| {
            Ok(sqlx::query("SELECT 1 FROM demo_users WHERE username = $1")
                .bind(username)
                .fetch_optional(pool)
                .await?
                .is_some())
        }, |t| t.user_ids.contains_key(username))
    }

    /// Inserts a user unless one with the same name exists.
    pub async fn insert_user(&self, user: &User, password_hash: &str) -> Result<(), sqlx::Error> {
        on_pool!(
            self,
            |pool| {
                sqlx::query(
                "INSERT INTO demo_users (username, email, password_hash, quota, used_quota, status, created_time)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (username) DO NOTHING",
            )
            .bind(&user.username)
            .bind(&user.email)
            .bind(password_hash)
            .bind(user.quota)
            .bind(user.used_quota)
            .bind(user.status)
            .bind(user.created_time)
            .execute(pool)
            .await
            .map(|_| ())
            },
            |t| {
                if !t.user_ids.contains_key(&user.username) {
                    let id = i64::try_from(t.users.len()).unwrap_or(i64::MAX - 1) + 1;
                    t.user_ids.insert(user.username.clone(), id);
                    t.users
                        .push((User { id, ..user.clone() }, password_hash.to_owned()));
                }
            }
        )
    }

    /// A bearer token and its user's row: in one statement by the SQL
    /// store, or from the two in-memory maps. `Ok(None)` when no token is
    /// stored under `hash`; no row when the token has no user or the user
    /// is gone.
    pub async fn token_with_user(
        &self,
        hash: &TokenHash,
    ) -> Result<Option<(TokenRecord, Option<User>)>, StoreError> {
        let store = match self {
            Db::Sqlite(_, store) | Db::Postgres(_, store) => store,
            Db::Memory(_, store) => {
                let Some(token) = store.token(hash).await? else {
                    return Ok(None);
                };
                let user = match token.user_id.as_ref().and_then(user_key) {
                    Some(id) => self.user(id).await.map_err(StoreError::backend)?,
                    None => None,
                };
                return Ok(Some((token, user)));
            }
        };
        let Some((token, row)) = store.token_with_user(hash, &USER_JOIN).await? else {
            return Ok(None);
        };
        Ok(Some((token, row.map(|r| user_of(&r)).transpose()?)))
    }

    /// A user by id.
    pub async fn user(&self, id: i64) -> Result<Option<User>, sqlx::Error> {
        if let Db::Sqlite(_, store) = self
            && let Some(found) = store.sqlite_read(|conn| {
                conn.prepare_cached(USER_BY_ID)?
                    .query_row([id], |row| {
                        Ok(User {
                            id: row.get(0)?,
                            username: row.get(1)?,
                            email: row.get(2)?,
                            quota: row.get(3)?,
                            used_quota: row.get(4)?,
                            status: row.get(5)?,
                            created_time: row.get(6)?,
                        })
                    })
                    .optional()
            })
        {
            return found.map_err(store_error);
        }
        on_pool!(read self, |pool| {
            match sqlx::query(USER_BY_ID).bind(id).fetch_optional(pool).await? {
                Some(row) => Ok(Some(User {
                    id: row.try_get("id")?,
                    username: row.try_get("username")?,
                    email: row.try_get("email")?,
                    quota: row.try_get("quota")?,
                    used_quota: row.try_get("used_quota")?,
                    status: row.try_get("status")?,
                    created_time: row.try_get("created_time")?,
                })),
                None => Ok(None),
            }
        }, |t| t.user(id).map(|(u, _)| u.clone()))
    }

    /// A user's id and password hash, by name.
    pub async fn password_hash(
        &self,
        username: &str,
    ) -> Result<Option<(i64, String)>, sqlx::Error> {
        on_pool!(read self, |pool| {
            match sqlx::query("SELECT id, password_hash FROM demo_users WHERE username = $1")
                .bind(username)
                .fetch_optional(pool)
                .await?
            {
                Some(row) => Ok(Some((row.try_get("id")?, row.try_get("password_hash")?))),
                None => Ok(None),
            }
        }, |t| t
            .user_ids
            .get(username)
            .and_then(|id| t.user(*id))
            .map(|(u, hash)| (u.id, hash.clone())))
    }

    /// Stores a login session under the hash of its cookie value.
    pub async fn create_session(
        &self,
        id_hash: &str,
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<(), sqlx::Error> {
        on_pool!(
            self,
            |pool| {
                sqlx::query("INSERT INTO demo_sessions (id_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
                .bind(id_hash)
                .bind(user_id)
                .bind(now)
                .bind(expires_at)
                .execute(pool)
                .await
                .map(|_| ())
            },
            |t| {
                let _ = now;
                t.sessions.insert(id_hash.to_owned(), (user_id, expires_at));
            }
        )
    }

    /// The user id and name of a live session.
    pub async fn session_user(
        &self,
        id_hash: &str,
        now: i64,
    ) -> Result<Option<(i64, String)>, sqlx::Error> {
        if let Db::Sqlite(_, store) = self
            && let Some(found) = store.sqlite_read(|conn| {
                conn.prepare_cached(SESSION_USER)?
                    .query_row((id_hash, now), |row| Ok((row.get(0)?, row.get(1)?)))
                    .optional()
            })
        {
            return found.map_err(store_error);
        }
        on_pool!(read self, |pool| {
            match sqlx::query(SESSION_USER)
            .bind(id_hash)
            .bind(now)
            .fetch_optional(pool)
            .await?
            {
                Some(row) => Ok(Some((row.try_get("id")?, row.try_get("username")?))),
                None => Ok(None),
            }
        }, |t| match t.sessions.get(id_hash) {
            Some((user_id, expires_at)) if *expires_at > now => {
                t.user(*user_id).map(|(u, _)| (u.id, u.username.clone()))
            }
            _ => None,
        })
    }

    /// Ends a session.
    pub async fn delete_session(&self, id_hash: &str) -> Result<(), sqlx::Error> {
        on_pool!(
            self,
            |pool| {
                sqlx::query("DELETE FROM demo_sessions WHERE id_hash = $1")
                    .bind(id_hash)
                    .execute(pool)
                    .await
                    .map(|_| ())
            },
            |t| {
                t.sessions.remove(id_hash);
            }
        )
    }

    /// Deletes expired sessions; answers how many.
    pub async fn purge_sessions(&self, now: i64) -> Result<u64, sqlx::Error> {
        on_pool!(
            self,
            |pool| {
                sqlx::query("DELETE FROM demo_sessions WHERE expires_at <= $1")
                    .bind(now)
                    .execute(pool)
                    .await
                    .map(|r| r.rows_affected())
            },
            |t| {
                let before = t.sessions.len();
                t.sessions.retain(|_, (_, expires_at)| *expires_at > now);
                (before - t.sessions.len()) as u64
            }
        )
    }

    /// Gives a registered client its numeric id.
    pub async fn insert_app(&self, client_id: &str, created_time: i64) -> Result<i64, sqlx::Error> {
        on_pool!(
            self,
            |pool| {
                sqlx::query(
                    "INSERT INTO demo_apps (client_id, created_time) VALUES ($1, $2) RETURNING id",
                )
                .bind(client_id)
                .bind(created_time)
                .fetch_one(pool)
                .await?
                .try_get::<i64, _>("id")
            },
            |t| {
                let _ = created_time;
                let id = i64::try_from(t.apps.len()).unwrap_or(i64::MAX - 1) + 1;
                *t.apps.entry(client_id.to_owned()).or_insert(id)
            }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_id_names_a_key_only_written_exactly() {
        assert_eq!(user_key(&UserId::new("42")), Some(42));
        assert_eq!(user_key(&UserId::new("-7")), Some(-7));
        assert_eq!(user_key(&UserId::new("0")), Some(0));
        let min = i64::MIN.to_string();
        assert_eq!(user_key(&UserId::new(min)), Some(i64::MIN));
        for near in [
            "042",
            "+42",
            " 42",
            "42 ",
            "42abc",
            "",
            "4.2e1",
            "-0",
            "-042",
            "00",
            "-",
            "+",
            "9223372036854775808",
        ] {
            assert_eq!(user_key(&UserId::new(near)), None, "{near:?}");
        }
        // Exactly the ids that are a key written out.
        for n in [
            -1_000_001_i64,
            -10,
            -1,
            0,
            1,
            9,
            10,
            99,
            100,
            123_456,
            i64::MAX,
        ] {
            for id in [
                n.to_string(),
                format!("0{n}"),
                format!("+{n}"),
                format!("{n}0"),
            ] {
                let written = id.parse::<i64>().ok().filter(|k| k.to_string() == id);
                assert_eq!(user_key(&UserId::new(id.clone())), written, "{id:?}");
            }
        }
    }
}
