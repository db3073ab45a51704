//! Shared by the SQLite and PostgreSQL tests: databases, records, and the
//! child process of the multi-process redemption test.
#![allow(dead_code)]

use std::io::Write as _;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use chrono::{DateTime, TimeDelta, Utc};
use doorman::{
    Client, ClientStore, CodeIssuer, CodeRecord, CodeStore, CodeTake, GrantId, GrantRecord,
    GrantStore, GrantType, Redemption, Scopes, Store, StoreError, TokenHash, TokenKind,
    TokenRecord, TokenStore, UserId,
};
use doorman_sqlx::{SqlStore, SqlStoreOptions};

/// A fresh SQLite file under the temp dir; removed (with `-wal`, `-shm`) on drop.
pub struct TempDb {
    pub path: PathBuf,
}

impl TempDb {
    pub fn new(name: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "doorman-sqlx-{name}-{}-{}.db",
            std::process::id(),
            unique()
        ));
        let db = Self { path };
        db.remove();
        db
    }

    pub fn url(&self) -> String {
        format!("sqlite://{}", self.path.display())
    }

    /// The database file and its WAL, concatenated.
    pub fn raw_bytes(&self) -> Vec<u8> {
        let mut bytes = std::fs::read(&self.path).unwrap_or_default();
        bytes.extend(std::fs::read(self.sidecar("-wal")).unwrap_or_default());
        bytes
    }

    pub fn sidecar(&self, suffix: &str) -> PathBuf {
        let mut p = self.path.clone().into_os_string();
        p.push(suffix);
        p.into()
    }

    fn remove(&self) {
        for p in [
            self.path.clone(),
            self.sidecar("-wal"),
            self.sidecar("-shm"),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        self.remove();
    }
}

/// Random enough to keep names apart across tests, processes and runs.
pub fn unique() -> String {
    random_hash().to_hex()[..16].to_owned()
}

/// `DATABASE_URL`, or `None` after telling the terminal why the test is
/// skipped (straight to stderr: libtest would swallow `eprintln!`).
pub fn pg_url(test: &str) -> Option<String> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Some(url),
        _ => {
            let _ = writeln!(
                std::io::stderr(),
                "doorman-sqlx: PostgreSQL test `{test}` skipped: DATABASE_URL not set \
                 (set it to postgres://… to run it; .ci/run does)"
            );
            None
        }
    }
}

/// A PostgreSQL store with a pool small enough for many tests at once.
pub async fn pg_store(url: &str) -> SqlStore {
    SqlStore::connect_with(url, SqlStoreOptions::new().max_connections(12))
        .await
        .expect("connect to PostgreSQL")
}

/// A PostgreSQL database of the test's own, created on the server of
/// `url` and dropped by [`PrivateDb::drop_db`]: for tests that change the
/// schema or need a database no other test writes to. `None` (after
/// saying why on stderr) if the server refuses to create one.
pub struct PrivateDb {
    admin: SqlStore,
    name: String,
    /// The URL of the new database.
    pub url: String,
}

impl PrivateDb {
    pub async fn create(url: &str, test: &str) -> Option<Self> {
        let admin = pg_store(url).await;
        let name = format!(
            "doorman_{}_{}",
            test.replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
            unique()
        );
        let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(admin.pg_pool().expect("pg"))
            .await;
        if let Err(e) = created {
            let _ = writeln!(
                std::io::stderr(),
                "doorman-sqlx: PostgreSQL test `{test}` skipped: cannot create a database ({e})"
            );
            admin.close().await;
            return None;
        }
        let (base, query) = url
            .split_once('?')
            .map_or((url, None), |(b, q)| (b, Some(q)));
        let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
        let url = match query {
            Some(q) => format!("{base}/{name}?{q}"),
            None => format!("{base}/{name}"),
        };
        Some(Self { admin, name, url })
    }

    /// Drops the database, closing whatever is still connected to it.
    pub async fn drop_db(self) {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE {} WITH (FORCE)",
            self.name
        )))
        .execute(self.admin.pg_pool().expect("pg"))
        .await
        .expect("drop the test database");
        self.admin.close().await;
    }
}

/// `redeem_code` is all or nothing when the store fails: an issuer whose
/// tokens cannot be stored (one names another grant; one's hash is stored
/// already) gets the error, no grant and no token is written, and the code
/// is not consumed (a later redemption issues).
pub async fn check_redeem_code_store_errors_write_nothing(store: &SqlStore) {
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let user = UserId::new("erin");
    let c = code(&app, &user, random_hash());
    store.put_code(&c).await.expect("put");
    let mut g = grant(&app, Some(&user));
    g.id = c.grant_id.clone();

    // A token of another grant.
    let stray = token(
        &grant(&app, Some(&user)),
        TokenKind::Access,
        random_hash(),
        None,
    );
    let good = token(&g, TokenKind::Refresh, random_hash(), None);
    let err = store
        .redeem_code(
            &c.hash,
            now(),
            issuing(&g, vec![good.clone(), stray.clone()]),
        )
        .await
        .expect_err("a token of another grant");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    // A token hash that is stored already (by another grant).
    let other = grant(&app, None);
    let taken = token(&other, TokenKind::Access, random_hash(), None);
    assert!(
        store
            .create_grant(&other, std::slice::from_ref(&taken))
            .await
            .expect("other grant")
    );
    let mut clash = taken.clone();
    clash.grant_id = g.id.clone();
    let err = store
        .redeem_code(
            &c.hash,
            now(),
            issuing(&g, vec![good.clone(), clash.clone()]),
        )
        .await
        .expect_err("a token hash stored already");
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.token(&good.hash).await.expect("token"), None);
    assert_eq!(store.token(&stray.hash).await.expect("token"), None);
    assert_eq!(
        store.token(&taken.hash).await.expect("token"),
        Some(taken.clone()),
        "the clashing token is the other grant's, untouched"
    );

    // Nothing was written: the code redeems, the grant is created.
    let fresh = token(&g, TokenKind::Access, random_hash(), None);
    let issued = store
        .redeem_code(
            &c.hash,
            now(),
            issuing(&g, vec![fresh.clone(), good.clone()]),
        )
        .await
        .expect("redeem");
    assert!(matches!(issued, Redemption::Issued), "{issued:?}");
    assert_eq!(store.token(&fresh.hash).await.expect("token"), Some(fresh));
    assert_eq!(store.token(&good.hash).await.expect("token"), Some(good));
    assert!(
        !store.create_grant(&g, &[]).await.expect("again"),
        "the grant exists"
    );
    assert!(store.delete_client(&app.client_id).await.expect("cleanup"));
}

/// An issuer that grants `grant` with `tokens`, whatever the code.
pub fn issuing(grant: &GrantRecord, tokens: Vec<TokenRecord>) -> Arc<CodeIssuer> {
    let grant = grant.clone();
    Arc::new(move |_| Ok((grant.clone(), tokens.clone())))
}

/// Now, in whole seconds (what SQL stores keep).
pub fn now() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

pub fn scopes(s: &[&str]) -> Scopes {
    Scopes::from_tokens(s.iter().copied())
}

pub fn client(secret: Option<TokenHash>) -> Client {
    Client {
        client_id: format!("client-{}", unique()),
        secret_hash: secret,
        name: "Test App".into(),
        description: "made by doorman-sqlx tests".into(),
        redirect_uris: vec!["https://app.example/cb".into()],
        scope: scopes(&["profile", "balance"]),
        grant_types: vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ],
        trusted: false,
        released_claims: None,
        created_at: now(),
    }
}

pub fn code(client: &Client, user: &UserId, hash: TokenHash) -> CodeRecord {
    CodeRecord {
        hash,
        grant_id: GrantId::generate(),
        client_id: client.client_id.clone(),
        user_id: user.clone(),
        redirect_uri: "https://app.example/cb".into(),
        redirect_uri_explicit: true,
        scope: scopes(&["profile"]),
        code_challenge: Some("E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into()),
        issued_at: now(),
        expires_at: now() + TimeDelta::minutes(10),
    }
}

pub fn grant(client: &Client, user: Option<&UserId>) -> GrantRecord {
    GrantRecord {
        id: GrantId::generate(),
        client_id: client.client_id.clone(),
        user_id: user.cloned(),
        scope: scopes(&["profile"]),
        created_at: now(),
    }
}

pub fn token(
    grant: &GrantRecord,
    kind: TokenKind,
    hash: TokenHash,
    expires_in: Option<TimeDelta>,
) -> TokenRecord {
    TokenRecord {
        hash,
        kind,
        grant_id: grant.id.clone(),
        client_id: grant.client_id.clone(),
        user_id: grant.user_id.clone(),
        scope: grant.scope.clone(),
        issued_at: now(),
        expires_at: expires_in.map(|d| now() + d),
        consumed_at: None,
    }
}

/// A grant of `app` for `user` with one access token, valid for an hour,
/// stored in `store`.
pub async fn live_token(
    store: &SqlStore,
    app: &Client,
    user: Option<&UserId>,
) -> (GrantRecord, TokenRecord) {
    let g = grant(app, user);
    let t = token(
        &g,
        TokenKind::Access,
        random_hash(),
        Some(TimeDelta::hours(1)),
    );
    assert!(
        store
            .create_grant(&g, std::slice::from_ref(&t))
            .await
            .expect("grant")
    );
    (g, t)
}

pub fn random_hash() -> TokenHash {
    doorman::AccessToken::generate().hash()
}

/// Counts of `take_code` outcomes.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Takes {
    pub taken: usize,
    pub replayed: usize,
    pub missing: usize,
}

impl Takes {
    pub fn add(&mut self, t: &CodeTake) {
        match t {
            CodeTake::Taken(_) => self.taken += 1,
            CodeTake::Replayed(_) => self.replayed += 1,
            CodeTake::Missing => self.missing += 1,
        }
    }

    fn merge(&mut self, o: Takes) {
        self.taken += o.taken;
        self.replayed += o.replayed;
        self.missing += o.missing;
    }
}

/// `racers` concurrent `take_code(hash)` calls, spread round-robin over `stores`.
pub async fn race_take_code(stores: &[Arc<SqlStore>], hash: TokenHash, racers: usize) -> Takes {
    let mut tasks = tokio::task::JoinSet::new();
    let start = Arc::new(tokio::sync::Barrier::new(racers));
    for i in 0..racers {
        let store = Arc::clone(&stores[i % stores.len()]);
        let start = Arc::clone(&start);
        tasks.spawn(async move {
            start.wait().await;
            store.take_code(&hash, Utc::now()).await
        });
    }
    let mut takes = Takes::default();
    while let Some(r) = tasks.join_next().await {
        takes.add(&r.expect("task").expect("take_code"));
    }
    takes
}

// ---------------------------------------------------------------------------
// Several processes

const CHILD_URL: &str = "DOORMAN_SQLX_CHILD_URL";
const CHILD_HASH: &str = "DOORMAN_SQLX_CHILD_HASH";
const CHILD_START: &str = "DOORMAN_SQLX_CHILD_START_MS";
const CHILD_RACERS: &str = "DOORMAN_SQLX_CHILD_RACERS";
const CHILD_LINE: &str = "doorman-sqlx-child";

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// This test binary, set to run only the ignored child test `name`, its
/// output captured.
fn child_test(name: &str) -> Command {
    let exe = std::env::current_exe().expect("test binary path");
    let mut cmd = Command::new(exe);
    cmd.args([
        "--exact",
        name,
        "--ignored",
        "--nocapture",
        "--test-threads=1",
    ])
    .stdout(std::process::Stdio::piped());
    cmd
}

/// What a child test printed after [`CHILD_LINE`], trimmed; panics if it
/// failed or reported nothing.
fn child_report(out: &std::process::Output) -> String {
    assert!(out.status.success(), "child failed: {out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    // libtest prints `test … ... ` first, on the same line.
    stdout
        .lines()
        .find_map(|l| l.split_once(CHILD_LINE))
        .expect("child reported")
        .1
        .trim()
        .to_owned()
}

/// Runs `processes` copies of this test binary, each racing `racers`
/// `take_code(hash)` calls against `url` at the same instant; sums their outcomes.
pub fn race_take_code_in_processes(
    url: &str,
    hash: TokenHash,
    processes: usize,
    racers: usize,
) -> Takes {
    // Far enough ahead for every child to start and connect first.
    let start = unix_ms() + 1500;
    let children: Vec<_> = (0..processes)
        .map(|_| {
            child_test("common::child_take_code")
                .env(CHILD_URL, url)
                .env(CHILD_HASH, hash.to_hex())
                .env(CHILD_START, start.to_string())
                .env(CHILD_RACERS, racers.to_string())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut total = Takes::default();
    for child in children {
        let out = child.wait_with_output().expect("child output");
        let line = child_report(&out);
        let n: Vec<usize> = line
            .split_whitespace()
            .take(3)
            .map(|x| x.parse().expect("count"))
            .collect();
        total.merge(Takes {
            taken: n[0],
            replayed: n[1],
            missing: n[2],
        });
    }
    total
}

/// The child side of [`race_take_code_in_processes`]; does nothing unless
/// started by it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "run as a child process by the multi-process tests"]
async fn child_take_code() {
    let (Ok(url), Ok(hash), Ok(start), Ok(racers)) = (
        std::env::var(CHILD_URL),
        std::env::var(CHILD_HASH),
        std::env::var(CHILD_START),
        std::env::var(CHILD_RACERS),
    ) else {
        return;
    };
    let hash = TokenHash::from_hex(&hash).expect("hash");
    let start: u128 = start.parse().expect("start");
    let racers: usize = racers.parse().expect("racers");
    let store = Arc::new(
        SqlStore::connect_with(&url, SqlStoreOptions::new().max_connections(4))
            .await
            .expect("child connects"),
    );
    let wait = start.saturating_sub(unix_ms());
    tokio::time::sleep(Duration::from_millis(u64::try_from(wait).unwrap_or(0))).await;
    let takes = race_take_code(&[store], hash, racers).await;
    println!(
        "{CHILD_LINE} {} {} {}",
        takes.taken, takes.replayed, takes.missing
    );
}

const PROBE_URL: &str = "DOORMAN_SQLX_PROBE_URL";
const PROBE_EXCLUSIVE: &str = "DOORMAN_SQLX_PROBE_EXCLUSIVE";

/// Whether another process could open a store on `url` (with
/// [`SqlStoreOptions::sqlite_exclusive`] set to `exclusive`, a 300 ms busy
/// timeout) and read and write through it: `Ok(())`, or what it got.
pub fn open_in_another_process(url: &str, exclusive: bool) -> Result<(), String> {
    let out = child_test("common::child_open_store")
        .env(PROBE_URL, url)
        .env(PROBE_EXCLUSIVE, if exclusive { "1" } else { "0" })
        .output()
        .expect("run child");
    let line = child_report(&out);
    match line.as_str() {
        "ok" => Ok(()),
        _ => Err(line),
    }
}

/// The child side of [`open_in_another_process`]; does nothing unless
/// started by it.
#[tokio::test]
#[ignore = "run as a child process by the exclusive-file tests"]
async fn child_open_store() {
    let (Ok(url), Ok(exclusive)) = (std::env::var(PROBE_URL), std::env::var(PROBE_EXCLUSIVE))
    else {
        return;
    };
    let options = SqlStoreOptions::new()
        .busy_timeout(Duration::from_millis(300))
        .sqlite_exclusive(exclusive == "1");
    let outcome = match SqlStore::connect_with(&url, options).await {
        Err(e) => format!("connect: {e}"),
        Ok(store) => {
            let app = client(None);
            let used = match store.client(&app.client_id).await {
                Err(e) => format!("read: {e}"),
                Ok(_) => match store.create_client(&app).await {
                    Err(e) => format!("write: {e}"),
                    Ok(_) => "ok".to_owned(),
                },
            };
            store.close().await;
            used
        }
    };
    println!("{CHILD_LINE} {outcome}");
}

/// `SqlStore::token_with_user` against a host table created beside the
/// store's (its DDL given per backend, `{t}` standing for its name): the
/// record is the one `token` reads, the row is the user's when it
/// matches, and nothing else comes back as a user. `pg`: PostgreSQL's
/// answers (`true` for a boolean, an error for a cast of a non-integer).
pub async fn check_token_with_user(store: &SqlStore, ddl: &str, pg: bool) {
    use doorman_sqlx::UserJoin;
    use serde_json::{Value, json};

    let table = format!("host_users_{}", unique());
    let ddl = ddl.replace("{t}", &table);
    let insert = format!(
        "INSERT INTO {table} (id, handle, name, credit, ratio, active, note) VALUES \
         (42, 'ada', 'Ada', 9000000000, 0.5, TRUE, NULL), (7, 'bob', 'Bob', -1, 2.0, FALSE, 'x')"
    );
    for sql in [ddl, insert] {
        let sql = sqlx::AssertSqlSafe(sql);
        match (store.sqlite_pool(), store.pg_pool()) {
            (Some(pool), _) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            (_, Some(pool)) => sqlx::raw_sql(sql).execute(pool).await.map(|_| ()),
            _ => unreachable!("a SqlStore has one pool"),
        }
        .expect("host table");
    }
    let join = UserJoin::on_integer_key(
        &format!("{table} u"),
        "u.id",
        &[
            "u.name", "u.credit", "u.ratio", "u.active", "u.note", "u.id * 2",
        ],
    );

    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let ada = UserId::new("42");
    let gone = UserId::new("99");
    let mut tokens = Vec::new();
    for user in [Some(&ada), Some(&gone), None] {
        let (_, t) = live_token(store, &app, user).await;
        tokens.push(t);
    }

    let (record, row) = store
        .token_with_user(&tokens[0].hash, &join)
        .await
        .expect("read")
        .expect("the token is there");
    assert_eq!(record, tokens[0]);
    assert_eq!(
        Some(&record),
        store.token(&tokens[0].hash).await.expect("token").as_ref()
    );
    let row = row.expect("Ada's row matched");
    assert_eq!(row.str(0).expect("name"), "Ada");
    assert_eq!(row.i64(1).expect("credit"), 9_000_000_000);
    assert_eq!(
        row.clone().into_values(),
        vec![
            json!("Ada"),
            json!(9_000_000_000_i64),
            json!(0.5),
            if pg { json!(true) } else { json!(1) },
            Value::Null,
            json!(84)
        ]
    );
    assert!(row.i64(0).is_err() && row.str(1).is_err());
    assert_eq!(row.get(99), &Value::Null);

    // A user whose row is gone, and a token without a user: no row.
    for t in &tokens[1..] {
        let (record, row) = store
            .token_with_user(&t.hash, &join)
            .await
            .expect("read")
            .expect("the token is there");
        assert_eq!((&record, row), (t, None));
    }
    // Ids that only look like Ada's: SQLite's cast reads "42abc" as 42,
    // PostgreSQL's refuses it; neither lets a near-miss become Ada.
    for (id, fails_on_pg) in [
        ("42abc", true),
        ("042", false),
        ("+42", false),
        (" 42", false),
    ] {
        let (_, t) = live_token(store, &app, Some(&UserId::new(id))).await;
        match store.token_with_user(&t.hash, &join).await {
            Ok(Some((record, row))) => {
                assert!(!(pg && fails_on_pg), "{id:?} was read on PostgreSQL");
                assert_eq!((&record, row), (&t, None), "{id:?}");
            }
            Ok(None) => panic!("{id:?}: the token is there"),
            Err(e) => assert!(pg && fails_on_pg, "{id:?}: {e}"),
        }
    }

    // A text key matches exactly.
    let by_handle = UserJoin::on_text_key(&format!("{table} u"), "u.handle", &["u.name"]);
    for (id, name) in [("ada", Some("Ada")), ("Ada", None), ("ada ", None)] {
        let (_, t) = live_token(store, &app, Some(&UserId::new(id))).await;
        let (_, row) = store
            .token_with_user(&t.hash, &by_handle)
            .await
            .expect("read")
            .expect("the token is there");
        assert_eq!(
            row.map(|r| r.str(0).expect("name").to_owned()).as_deref(),
            name,
            "{id:?}"
        );
    }

    // A column of a type with no JSON form is an error that says to cast
    // it, not a guess.
    let blob = if pg {
        "CAST(u.name AS BYTEA)"
    } else {
        "CAST(u.name AS BLOB)"
    };
    let bytes = UserJoin::on_integer_key(&format!("{table} u"), "u.id", &["u.name", blob]);
    let e = store
        .token_with_user(&tokens[0].hash, &bytes)
        .await
        .expect_err("a byte string has no JSON form");
    assert!(
        e.to_string().contains("user column 1") && e.to_string().contains("cast it"),
        "{e}"
    );

    // No token: nothing, not Bob's row.
    assert_eq!(
        store
            .token_with_user(&random_hash(), &join)
            .await
            .expect("read"),
        None
    );
    assert!(store.delete_client(&app.client_id).await.expect("cleanup"));
}
