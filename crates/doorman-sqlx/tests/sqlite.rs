//! The SQLite backend: conformance, files, restarts, concurrency, secrecy.

mod common;

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::TimeDelta;
use doorman::{
    AccessToken, AuthorizationCode, ClientSecret, ClientStore, CodeStore, CodeTake, GrantStore,
    RefreshToken, Rotation, Store, TokenHash, TokenKind, TokenStore, UserId,
};
use doorman_sqlx::{SqlStore, SqlStoreOptions};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_a_file() {
    let db = TempDb::new("conformance");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    doorman::testkit::run_all(Arc::new(store.clone())).await;
    store.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_on_an_exclusive_file() {
    let db = TempDb::new("conformance-excl");
    let options = SqlStoreOptions::new().sqlite_exclusive(true);
    let store = SqlStore::connect_with(&db.url(), options)
        .await
        .expect("connect");
    doorman::testkit::run_all(Arc::new(store.clone())).await;
    store.close().await;
}

/// A store with `sqlite_exclusive` owns its file: while it is open no
/// other process can use the file, shared or exclusive, and the store
/// itself (the host's pool and reads included) works as usual, its WAL
/// index in memory (no `-shm` file). Once it is closed, other processes
/// can open the file again. And no process can take a file exclusively
/// while a store in another process has it open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exclusive_file_belongs_to_one_process() {
    let db = TempDb::new("exclusive");
    let url = db.url();
    let options = SqlStoreOptions::new().sqlite_exclusive(true);
    let store = SqlStore::connect_with(&url, options)
        .await
        .expect("connect");
    let app = client(None);
    assert!(store.create_client(&app).await.expect("create"));
    for exclusive in [false, true] {
        let url = url.clone();
        let other = tokio::task::spawn_blocking(move || open_in_another_process(&url, exclusive))
            .await
            .expect("child");
        let refused = other.expect_err("another process used an exclusive store's file");
        assert!(refused.contains("locked"), "{refused}");
    }
    let found = store.client(&app.client_id).await.expect("read");
    assert_eq!(found.map(|c| c.client_id), Some(app.client_id.clone()));
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM doorman_clients")
        .fetch_one(store.sqlite_pool().expect("pool"))
        .await
        .expect("host query");
    assert_eq!(n, 1);
    let read: i64 = store
        .sqlite_read(|c| c.query_row("SELECT count(*) FROM doorman_clients", [], |r| r.get(0)))
        .expect("on a file")
        .expect("host read");
    assert_eq!(read, 1);
    assert!(!db.sidecar("-shm").exists(), "the WAL index is in memory");
    store.close().await;

    let shared = SqlStore::connect(&url).await.expect("reopen shared");
    let u = url.clone();
    let refused = tokio::task::spawn_blocking(move || open_in_another_process(&u, true))
        .await
        .expect("child")
        .expect_err("a process took a shared store's file exclusively");
    assert!(refused.contains("locked"), "{refused}");
    shared.close().await;
    let u = url.clone();
    tokio::task::spawn_blocking(move || open_in_another_process(&u, true))
        .await
        .expect("child")
        .expect("a closed file is free again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance_in_memory() {
    let store = SqlStore::connect("sqlite::memory:").await.expect("connect");
    doorman::testkit::run_all(Arc::new(store)).await;
}

#[tokio::test]
async fn file_is_created_in_wal_mode_with_a_busy_timeout() {
    let db = TempDb::new("pragmas");
    let store = SqlStore::connect(&db.url())
        .await
        .expect("connect creates the file");
    assert!(db.path.exists());
    assert_eq!(store.backend_name(), "sqlite");
    assert!(store.pg_pool().is_none());
    let pool = store.sqlite_pool().expect("sqlite pool");
    let mode: String = sqlx::query_scalar("PRAGMA journal_mode")
        .fetch_one(pool)
        .await
        .expect("journal_mode");
    assert_eq!(mode, "wal");
    let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(pool)
        .await
        .expect("busy_timeout");
    assert!(timeout >= 5000, "busy_timeout = {timeout} ms");
    let sync: i64 = sqlx::query_scalar("PRAGMA synchronous")
        .fetch_one(pool)
        .await
        .expect("synchronous");
    assert_eq!(sync, 1, "synchronous = NORMAL");
    store.close().await;
}

#[tokio::test]
async fn mode_rwc_creates_and_mode_rw_refuses_a_missing_file() {
    let db = TempDb::new("modes");
    let refused = SqlStore::connect(&format!("{}?mode=rw", db.url())).await;
    assert!(refused.is_err(), "mode=rw must not create the file");
    let store = SqlStore::connect(&format!("{}?mode=rwc", db.url()))
        .await
        .expect("mode=rwc creates");
    store.close().await;
    assert!(db.path.exists());
}

#[tokio::test]
async fn unsupported_urls_are_refused_without_echoing_them() {
    for url in ["mysql://root:hunter2@db/x", "hunter2", "postgres:/hunter2"] {
        let err = SqlStore::connect(url).await.expect_err(url);
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[tokio::test]
async fn migrations_are_versioned_and_idempotent() {
    let db = TempDb::new("migrate");
    for _ in 0..3 {
        let store = SqlStore::connect(&db.url()).await.expect("connect");
        assert_eq!(
            store.schema_version().await.expect("version"),
            SqlStore::SCHEMA_VERSION
        );
        let pool = store.sqlite_pool().expect("sqlite");
        let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM doorman_migrations")
            .fetch_one(pool)
            .await
            .expect("count");
        assert_eq!(rows, SqlStore::SCHEMA_VERSION);
        store.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_connects_migrate_once() {
    let db = TempDb::new("migrate-race");
    let url = db.url();
    let mut tasks = tokio::task::JoinSet::new();
    // Racing to create the file and switch it to WAL, too.
    for _ in 0..12 {
        let url = url.clone();
        tasks.spawn(async move { SqlStore::connect(&url).await });
    }
    while let Some(r) = tasks.join_next().await {
        let store = r.expect("task").expect("every concurrent connect succeeds");
        assert_eq!(
            store.schema_version().await.expect("version"),
            SqlStore::SCHEMA_VERSION
        );
        store.close().await;
    }
}

#[tokio::test]
async fn an_edited_migration_is_refused() {
    let db = TempDb::new("edited");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    let pool = store.sqlite_pool().expect("sqlite");
    sqlx::query("UPDATE doorman_migrations SET checksum = X'00' WHERE version = 1")
        .execute(pool)
        .await
        .expect("edit");
    store.close().await;
    let err = SqlStore::connect(&db.url())
        .await
        .expect_err("checksum mismatch");
    assert!(err.to_string().contains("migration 1"), "{err}");
}

/// Close the store, reopen the file: every token validates as before, and
/// codes, clients and consents are as they were.
#[tokio::test]
async fn tokens_survive_a_restart() {
    let db = TempDb::new("restart");
    let user = UserId::new("alice");
    let app = client(Some(ClientSecret::generate().hash()));
    let g = grant(&app, Some(&user));
    let access = token(
        &g,
        TokenKind::Access,
        random_hash(),
        Some(TimeDelta::hours(1)),
    );
    let refresh = token(
        &g,
        TokenKind::Refresh,
        random_hash(),
        Some(TimeDelta::days(30)),
    );
    let cc = grant(&app, None);
    let forever = token(&cc, TokenKind::Access, random_hash(), None);
    let rotated = [
        token(
            &g,
            TokenKind::Access,
            random_hash(),
            Some(TimeDelta::hours(1)),
        ),
        token(&g, TokenKind::Refresh, random_hash(), None),
    ];
    let used_code = code(&app, &user, random_hash());
    let fresh_code = code(&app, &user, random_hash());

    let before = {
        let store = SqlStore::connect(&db.url()).await.expect("connect");
        assert!(store.create_client(&app).await.expect("client"));
        assert!(
            store
                .create_grant(&g, &[access.clone(), refresh.clone()])
                .await
                .expect("grant")
        );
        assert!(
            store
                .create_grant(&cc, std::slice::from_ref(&forever))
                .await
                .expect("cc grant")
        );
        let t = now();
        assert_eq!(
            store
                .rotate_refresh(&refresh.hash, t, t + TimeDelta::minutes(1), &rotated)
                .await
                .expect("rotate"),
            Rotation::Rotated
        );
        store.put_code(&used_code).await.expect("code");
        store.put_code(&fresh_code).await.expect("code");
        assert!(matches!(
            store.take_code(&used_code.hash, t).await.expect("take"),
            CodeTake::Taken(_)
        ));
        store
            .add_consent(&user, &app.client_id, &scopes(&["profile"]), t)
            .await
            .expect("consent");
        let mut before = Vec::new();
        for t in [&access, &refresh, &forever, &rotated[0], &rotated[1]] {
            before.push(store.token(&t.hash).await.expect("token").expect("stored"));
        }
        let consent = store.consent(&user, &app.client_id).await.expect("consent");
        store.close().await;
        assert!(
            store.token(&access.hash).await.is_err(),
            "a closed store answers nothing"
        );
        (before, consent)
    };

    let store = SqlStore::connect(&db.url()).await.expect("reopen");
    for t in &before.0 {
        assert_eq!(
            store.token(&t.hash).await.expect("token").as_ref(),
            Some(t),
            "after restart"
        );
    }
    assert!(before.0[1].consumed_at.is_some());
    assert_eq!(
        store.client(&app.client_id).await.expect("client"),
        Some(app.clone())
    );
    assert_eq!(
        store.consent(&user, &app.client_id).await.expect("consent"),
        before.1
    );
    assert_eq!(
        store.take_code(&used_code.hash, now()).await.expect("take"),
        CodeTake::Replayed(used_code.grant_id.clone())
    );
    assert_eq!(
        store
            .take_code(&fresh_code.hash, now())
            .await
            .expect("take"),
        CodeTake::Taken(fresh_code.clone())
    );
    // The used refresh token is still remembered as used.
    assert_eq!(
        store
            .rotate_refresh(&refresh.hash, now(), now(), &[])
            .await
            .expect("reuse"),
        Rotation::Reused
    );
    assert_eq!(store.token(&rotated[1].hash).await.expect("token"), None);
    assert_eq!(
        store.token(&forever.hash).await.expect("token").as_ref(),
        Some(&before.0[2])
    );
    store.close().await;
}

/// Only hashes reach the file: after issuing a client secret, a code and
/// tokens (and rotating, redeeming), the raw database and WAL bytes hold
/// none of the plaintexts in any usual encoding, but do hold their hashes.
#[tokio::test]
async fn nothing_secret_is_written_to_the_file() {
    let db = TempDb::new("secrets");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    let secret = ClientSecret::generate();
    let code_value = AuthorizationCode::generate();
    let access = AccessToken::generate();
    let refresh = RefreshToken::generate();
    let access2 = AccessToken::generate();
    let refresh2 = RefreshToken::generate();

    let app = client(Some(secret.hash()));
    assert!(store.create_client(&app).await.expect("client"));
    let user = UserId::new("bob");
    let c = code(&app, &user, code_value.hash());
    store.put_code(&c).await.expect("put");
    assert!(matches!(
        store
            .take_code(&code_value.hash(), now())
            .await
            .expect("take"),
        CodeTake::Taken(_)
    ));
    let mut g = grant(&app, Some(&user));
    g.id = c.grant_id.clone();
    let first = [
        token(
            &g,
            TokenKind::Access,
            access.hash(),
            Some(TimeDelta::hours(1)),
        ),
        token(
            &g,
            TokenKind::Refresh,
            refresh.hash(),
            Some(TimeDelta::days(30)),
        ),
    ];
    assert!(store.create_grant(&g, &first).await.expect("grant"));
    let second = [
        token(
            &g,
            TokenKind::Access,
            access2.hash(),
            Some(TimeDelta::hours(1)),
        ),
        token(
            &g,
            TokenKind::Refresh,
            refresh2.hash(),
            Some(TimeDelta::days(30)),
        ),
    ];
    assert_eq!(
        store
            .rotate_refresh(
                &refresh.hash(),
                now(),
                now() + TimeDelta::minutes(1),
                &second
            )
            .await
            .expect("rotate"),
        Rotation::Rotated
    );

    let plaintexts = [
        secret.secret().to_owned(),
        code_value.secret().to_owned(),
        access.secret().to_owned(),
        refresh.secret().to_owned(),
        access2.secret().to_owned(),
        refresh2.secret().to_owned(),
    ];
    let hashes = [
        secret.hash(),
        code_value.hash(),
        access.hash(),
        refresh.hash(),
        access2.hash(),
        refresh2.hash(),
    ];
    let check = |when: &str| {
        let raw = db.raw_bytes();
        assert!(!raw.is_empty());
        for (plain, hash) in plaintexts.iter().zip(&hashes) {
            let random = URL_SAFE_NO_PAD
                .decode(plain.trim_start_matches("secret_"))
                .expect("base64url credential");
            let forms: [Vec<u8>; 6] = [
                plain.as_bytes().to_vec(),
                random.clone(),
                hex(&random).into_bytes(),
                hex(&random).to_uppercase().into_bytes(),
                STANDARD.encode(&random).into_bytes(),
                hash.to_hex().into_bytes(), // stored as bytes, not as text
            ];
            for form in &forms {
                assert!(
                    !contains(&raw, form),
                    "{when}: a form of a credential is in the file"
                );
            }
            assert!(
                contains(&raw, &hash.0),
                "{when}: the hash of a credential is not in the file"
            );
        }
    };
    check("open (database + WAL)");
    store.close().await;
    check("closed (checkpointed)");
}

/// The same after a full flow through the engine (registration with a
/// generated secret, one-click authorization with PKCE, code exchange,
/// refresh, client credentials, revocation — the testkit's flow check):
/// none of the credentials it issued is in the database file or its WAL,
/// in plaintext or any usual encoding; the hashes of those still stored are.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_secret_is_written_to_the_file_in_a_full_flow() {
    let db = TempDb::new("flow-secrets");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    // [secret, code, PKCE verifier, access1, refresh1, access2, refresh2, access3 (revoked)]
    let plaintexts = doorman::testkit::check_no_plaintext_given(Arc::new(store.clone())).await;
    assert_eq!(plaintexts.len(), 8);
    let check = |when: &str| {
        let raw = db.raw_bytes();
        for plain in &plaintexts {
            let mut forms = vec![
                plain.as_bytes().to_vec(),
                hex(plain.as_bytes()).into_bytes(),
                STANDARD.encode(plain.as_bytes()).into_bytes(),
                TokenHash::of(plain).to_hex().into_bytes(),
                TokenHash::of_token(plain).to_hex().into_bytes(),
            ];
            if let Ok(raw) = URL_SAFE_NO_PAD.decode(plain.trim_start_matches("secret_")) {
                // The whole decoded value, and its 256 random bits alone
                // (a located credential opens with 6 bytes of issue time,
                // which its key does carry: that part is not secret).
                let random = raw[raw.len().saturating_sub(32)..].to_vec();
                for value in [raw, random] {
                    forms.push(hex(&value).into_bytes());
                    forms.push(STANDARD.encode(&value).into_bytes());
                    forms.push(value);
                }
            }
            for form in &forms {
                assert!(
                    !contains(&raw, form),
                    "{when}: a form of an issued credential is in the file"
                );
            }
        }
        // Stored (as hashes): the client secret, the used code, the used
        // first refresh token, the second access and refresh tokens.
        for i in [0, 1, 4, 5, 6] {
            let key = if i == 0 {
                TokenHash::of(&plaintexts[i])
            } else {
                TokenHash::of_token(&plaintexts[i])
            };
            assert!(
                contains(&raw, &key.0),
                "{when}: credential {i}'s hash is not in the file"
            );
        }
    };
    check("open (database + WAL)");
    store.close().await;
    check("closed (checkpointed)");
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Two stores (two pools, as two processes would have) on one file: a
/// code put through one is redeemed through the other, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_stores_on_one_file_redeem_a_code_once() {
    let db = TempDb::new("two-pools");
    let a = Arc::new(SqlStore::connect(&db.url()).await.expect("a"));
    let b = Arc::new(SqlStore::connect(&db.url()).await.expect("b"));
    let app = client(None);
    assert!(a.create_client(&app).await.expect("client"));
    let user = UserId::new("carol");

    let c = code(&app, &user, random_hash());
    a.put_code(&c).await.expect("put");
    assert_eq!(
        b.take_code(&c.hash, now()).await.expect("take"),
        CodeTake::Taken(c.clone())
    );
    assert_eq!(
        a.take_code(&c.hash, now()).await.expect("take"),
        CodeTake::Replayed(c.grant_id.clone())
    );

    for _ in 0..5 {
        let c = code(&app, &user, random_hash());
        a.put_code(&c).await.expect("put");
        let takes = race_take_code(&[Arc::clone(&a), Arc::clone(&b)], c.hash, 32).await;
        assert_eq!(
            takes,
            Takes {
                taken: 1,
                replayed: 31,
                missing: 0
            }
        );
    }
    a.close().await;
    b.close().await;
}

/// The same across processes: 4 processes × 8 concurrent redemptions.
#[tokio::test]
async fn several_processes_redeem_a_code_once() {
    let db = TempDb::new("processes");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let c = code(&app, &UserId::new("dave"), random_hash());
    store.put_code(&c).await.expect("put");
    let url = db.url();
    let takes =
        tokio::task::spawn_blocking(move || race_take_code_in_processes(&url, c.hash, 4, 8))
            .await
            .expect("children");
    assert_eq!(
        takes,
        Takes {
            taken: 1,
            replayed: 31,
            missing: 0
        }
    );
    store.close().await;
}

/// A burst of concurrent writes from two pools queues on the write lock:
/// nothing fails with `database is locked`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_burst_of_concurrent_writes_queues_instead_of_failing() {
    let db = TempDb::new("burst");
    let opts = || SqlStoreOptions::new().max_connections(16);
    let a = Arc::new(SqlStore::connect_with(&db.url(), opts()).await.expect("a"));
    let b = Arc::new(SqlStore::connect_with(&db.url(), opts()).await.expect("b"));
    let app = client(None);
    assert!(a.create_client(&app).await.expect("client"));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let app = app.clone();
        tasks.spawn(async move {
            let user = UserId::new(format!("user-{i}"));
            let g = grant(&app, Some(&user));
            let r = token(&g, TokenKind::Refresh, random_hash(), None);
            let first = [
                token(
                    &g,
                    TokenKind::Access,
                    random_hash(),
                    Some(TimeDelta::hours(1)),
                ),
                r.clone(),
            ];
            assert!(
                store
                    .create_grant(&g, &first)
                    .await
                    .expect("create_grant under load")
            );
            let next = [token(
                &g,
                TokenKind::Access,
                random_hash(),
                Some(TimeDelta::hours(1)),
            )];
            let rotated = store
                .rotate_refresh(&r.hash, now(), now(), &next)
                .await
                .expect("rotate under load");
            assert_eq!(rotated, Rotation::Rotated);
            store
                .add_consent(&user, &app.client_id, &scopes(&["profile"]), now())
                .await
                .expect("consent");
            let c = code(&app, &user, random_hash());
            store.put_code(&c).await.expect("put_code under load");
            assert!(matches!(
                store.take_code(&c.hash, now()).await.expect("take"),
                CodeTake::Taken(_)
            ));
            if i % 3 == 0 {
                store.revoke_grant(&g.id).await.expect("revoke under load");
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("every write succeeds");
    }
    let purged = a
        .purge_expired(now() + TimeDelta::days(1))
        .await
        .expect("purge");
    // Every code; the second access token of each grant not revoked (a
    // third of them were, with their tokens).
    assert!(purged.codes >= 200 && purged.tokens >= 133, "{purged:?}");
    assert!(a.delete_client(&app.client_id).await.expect("delete"));
    a.close().await;
    b.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeem_code_store_errors_write_nothing() {
    let db = TempDb::new("redeem-errors");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    check_redeem_code_store_errors_write_nothing(&store).await;
    store.close().await;
}

/// Writes queue in the process instead of racing for SQLite's write lock:
/// with the busy timeout at zero, any write that met a held lock would
/// fail at once with `database is locked` — yet a burst of 240 concurrent
/// writes of every kind (with reads between them) on one store all
/// succeed, so none of them ever waited in SQLite's busy handler.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_of_one_store_never_meet_the_busy_handler() {
    let db = TempDb::new("no-busy");
    let store = Arc::new(
        SqlStore::connect_with(
            &db.url(),
            SqlStoreOptions::new()
                .max_connections(8)
                .busy_timeout(std::time::Duration::ZERO),
        )
        .await
        .expect("connect"),
    );
    let timeout: i64 = sqlx::query_scalar("PRAGMA busy_timeout")
        .fetch_one(store.sqlite_pool().expect("sqlite"))
        .await
        .expect("busy_timeout");
    assert_eq!(timeout, 0, "the test needs a zero busy timeout");
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let start = Arc::new(tokio::sync::Barrier::new(240));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..240 {
        let store = Arc::clone(&store);
        let app = app.clone();
        let start = Arc::clone(&start);
        tasks.spawn(async move { mixed_writes(&store, &app, i, &start).await });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("every write succeeds with a zero busy timeout");
    }
    assert!(store.delete_client(&app.client_id).await.expect("delete"));
    store.close().await;
}

/// A write cancelled anywhere (its future dropped after 1, 2, … polls,
/// as a dropped request would) leaves no transaction open and nothing
/// half-written: with the busy timeout at zero, the next writes succeed
/// at once, and the cancelled grant is then there with both its tokens or
/// not at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_write_leaves_nothing_open() {
    let db = TempDb::new("cancel");
    let store = zero_busy_timeout(&db).await;
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let user = UserId::new("grace");
    let mut dropped = 0;
    for polls in 1..=60 {
        let g = grant(&app, Some(&user));
        let a = token(&g, TokenKind::Access, random_hash(), None);
        let r = token(&g, TokenKind::Refresh, random_hash(), None);
        let tokens = [a.clone(), r.clone()];
        dropped += usize::from(!poll_then_drop(store.create_grant(&g, &tokens), polls).await);
        // The next writes: they wait for whatever the cancelled one left.
        let c = code(&app, &user, random_hash());
        store
            .put_code(&c)
            .await
            .expect("put_code after a cancelled write");
        let next = grant(&app, None);
        assert!(
            store
                .create_grant(
                    &next,
                    &[token(&next, TokenKind::Access, random_hash(), None)]
                )
                .await
                .expect("create_grant after a cancelled write")
        );
        match (
            store.token(&a.hash).await.expect("token"),
            store.token(&r.hash).await.expect("token"),
        ) {
            (Some(x), Some(y)) if x == a && y == r => {}
            (None, None) => {}
            other => panic!("a cancelled create_grant left {other:?}"),
        }
    }
    assert!(dropped > 0, "no write was cancelled");
    store.close().await;
}

/// The same for `redeem_code`, whose issuer runs inside the transaction:
/// a redemption cancelled anywhere leaves no transaction open, and either
/// the code used with the grant's tokens stored, or the code still
/// redeemable and no token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_redemption_leaves_nothing_open() {
    let db = TempDb::new("cancel-redeem");
    let store = zero_busy_timeout(&db).await;
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let user = UserId::new("heidi");
    let mut dropped = 0;
    for polls in 1..=60 {
        let c = code(&app, &user, random_hash());
        store.put_code(&c).await.expect("put_code");
        let mut g = grant(&app, Some(&user));
        g.id = c.grant_id.clone();
        let a = token(&g, TokenKind::Access, random_hash(), None);
        let r = token(&g, TokenKind::Refresh, random_hash(), None);
        let tokens = vec![a.clone(), r.clone()];
        dropped += usize::from(
            !poll_then_drop(
                store.redeem_code(&c.hash, now(), issuing(&g, tokens)),
                polls,
            )
            .await,
        );
        // The next writes: they wait for whatever the cancelled one left.
        let next = grant(&app, None);
        assert!(
            store
                .create_grant(
                    &next,
                    &[token(&next, TokenKind::Access, random_hash(), None)]
                )
                .await
                .expect("create_grant after a cancelled redemption")
        );
        let stored = (
            store.token(&a.hash).await.expect("token"),
            store.token(&r.hash).await.expect("token"),
        );
        let take = store.take_code(&c.hash, now()).await.expect("take_code");
        match (stored, take) {
            ((Some(x), Some(y)), CodeTake::Replayed(id)) if x == a && y == r && id == g.id => {}
            ((None, None), CodeTake::Taken(_)) => {}
            other => panic!("a cancelled redeem_code left {other:?}"),
        }
    }
    assert!(dropped > 0, "no redemption was cancelled");
    store.close().await;
}

/// A store on `db` whose SQLite busy timeout is zero: a write that finds
/// the database locked fails at once instead of waiting.
async fn zero_busy_timeout(db: &TempDb) -> SqlStore {
    SqlStore::connect_with(
        &db.url(),
        SqlStoreOptions::new().busy_timeout(std::time::Duration::ZERO),
    )
    .await
    .expect("connect")
}

/// Polls `write` up to `polls` times (yielding between polls, so its I/O
/// makes progress) and drops it unfinished, as a dropped request would:
/// whether it finished first.
async fn poll_then_drop<F: std::future::Future>(write: F, polls: usize) -> bool {
    use std::task::Poll;
    let mut write = std::pin::pin!(write);
    for _ in 0..polls {
        let poll = std::future::poll_fn(|cx| Poll::Ready(write.as_mut().poll(cx))).await;
        if poll.is_ready() {
            return true;
        }
        tokio::task::yield_now().await;
    }
    false
}

/// One of the writers of [`writes_of_one_store_never_meet_the_busy_handler`]:
/// every kind of store write, and reads of what it wrote.
async fn mixed_writes(
    store: &SqlStore,
    app: &doorman::Client,
    i: usize,
    start: &tokio::sync::Barrier,
) {
    let user = UserId::new(format!("user-{i}"));
    start.wait().await;
    match i % 4 {
        0 => {
            let other = client(None);
            assert!(store.create_client(&other).await.expect("create_client"));
            assert!(store.update_client(&other).await.expect("update_client"));
            assert!(
                store
                    .delete_client(&other.client_id)
                    .await
                    .expect("delete_client")
            );
        }
        1 => {
            let g = grant(app, Some(&user));
            let r = token(&g, TokenKind::Refresh, random_hash(), None);
            let a = token(
                &g,
                TokenKind::Access,
                random_hash(),
                Some(TimeDelta::hours(1)),
            );
            assert!(
                store
                    .create_grant(&g, &[a.clone(), r.clone()])
                    .await
                    .expect("create_grant")
            );
            assert_eq!(store.token(&a.hash).await.expect("token"), Some(a.clone()));
            let next = [token(
                &g,
                TokenKind::Access,
                random_hash(),
                Some(TimeDelta::hours(1)),
            )];
            assert_eq!(
                store
                    .rotate_refresh(&r.hash, now(), now(), &next)
                    .await
                    .expect("rotate_refresh"),
                Rotation::Rotated
            );
            assert!(
                store
                    .delete_token(&next[0].hash)
                    .await
                    .expect("delete_token")
            );
            store.revoke_grant(&g.id).await.expect("revoke_grant");
        }
        2 => {
            let c = code(app, &user, random_hash());
            store.put_code(&c).await.expect("put_code");
            let mut g = grant(app, Some(&user));
            g.id = c.grant_id.clone();
            let t = token(
                &g,
                TokenKind::Access,
                random_hash(),
                Some(TimeDelta::hours(1)),
            );
            let issued = store
                .redeem_code(&c.hash, now(), issuing(&g, vec![t.clone()]))
                .await
                .expect("redeem_code");
            assert!(matches!(issued, doorman::Redemption::Issued), "{issued:?}");
            assert_eq!(store.token(&t.hash).await.expect("token"), Some(t.clone()));
            let c = code(app, &user, random_hash());
            store.put_code(&c).await.expect("put_code");
            assert!(matches!(
                store.take_code(&c.hash, now()).await.expect("take_code"),
                CodeTake::Taken(_)
            ));
        }
        _ => {
            store
                .add_consent(&user, &app.client_id, &scopes(&["profile"]), now())
                .await
                .expect("add_consent");
            assert!(
                store
                    .consent(&user, &app.client_id)
                    .await
                    .expect("consent")
                    .is_some()
            );
            assert!(
                store
                    .revoke_consent(&user, &app.client_id)
                    .await
                    .expect("revoke_consent")
            );
            store
                .purge_expired(now() - TimeDelta::days(1))
                .await
                .expect("purge_expired");
        }
    }
}

/// Writes that commit together (the writer takes every queued write into
/// one transaction) fail alone: of 96 concurrent `create_grant`s, those
/// whose token hash is stored already get `Conflict` and leave nothing —
/// not even their grant row, which a retry then creates — while all the
/// others, committed in the same transactions, are stored whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_failing_write_in_a_group_commit_undoes_only_itself() {
    let db = TempDb::new("group");
    let store = Arc::new(SqlStore::connect(&db.url()).await.expect("connect"));
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let taken = {
        let g = grant(&app, None);
        let t = token(&g, TokenKind::Access, random_hash(), None);
        assert!(
            store
                .create_grant(&g, std::slice::from_ref(&t))
                .await
                .expect("grant")
        );
        t
    };
    let start = Arc::new(tokio::sync::Barrier::new(96));
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..96 {
        let (store, app, start, taken) = (store.clone(), app.clone(), start.clone(), taken.clone());
        tasks.spawn(async move {
            let g = grant(&app, None);
            let good = token(&g, TokenKind::Access, random_hash(), None);
            let mut tokens = vec![good.clone()];
            if i % 4 == 0 {
                let mut clash = taken.clone();
                clash.grant_id = g.id.clone();
                tokens.push(clash);
            }
            start.wait().await;
            let result = store.create_grant(&g, &tokens).await;
            (i, g, good, result)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (i, g, good, result) = joined.expect("task");
        let stored = store.token(&good.hash).await.expect("token");
        if i % 4 == 0 {
            assert!(
                matches!(result, Err(doorman::StoreError::Conflict(_))),
                "{i}: {result:?}"
            );
            assert_eq!(stored, None, "{i}: a failed write left its first token");
            assert!(
                store.create_grant(&g, &[]).await.expect("retry"),
                "{i}: a failed write left its grant row"
            );
        } else {
            assert!(
                result.expect("a good write in a group with a failing one"),
                "{i}"
            );
            assert_eq!(stored, Some(good), "{i}");
        }
    }
    assert_eq!(store.token(&taken.hash).await.expect("token"), Some(taken));
    store.close().await;
}

/// The host reads its own tables on the store's connections to a file;
/// a store that does not drive SQLite directly says so (`None`); after
/// `close`, reads and writes fail instead of hanging.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_reads_and_a_closed_store() {
    let db = TempDb::new("host-read");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let name = store.sqlite_read(|conn| {
        conn.query_row(
            "SELECT name FROM doorman_clients WHERE client_id = ?1",
            [&app.client_id],
            |row| row.get::<_, String>(0),
        )
    });
    assert_eq!(name.transpose().expect("read"), Some(app.name.clone()));
    // The host's read connection is read-only: a write fails and leaves
    // nothing.
    let write = store.sqlite_read(|conn| {
        conn.execute(
            "UPDATE doorman_clients SET name = 'changed' WHERE client_id = ?1",
            [&app.client_id],
        )
    });
    assert!(
        write.expect("a file store").is_err(),
        "a write through sqlite_read"
    );
    assert_eq!(
        store
            .client(&app.client_id)
            .await
            .expect("client")
            .map(|c| c.name),
        Some(app.name.clone())
    );
    // No memory map on the reading connections: with writes going on,
    // SQLite unmaps a connection's whole mapping at every read that sees
    // a new commit (see `pragmas` in native.rs).
    let mmap =
        store.sqlite_read(|conn| conn.query_row("PRAGMA mmap_size", [], |r| r.get::<_, i64>(0)));
    assert_eq!(mmap.transpose().expect("pragma"), Some(0));
    let memory = SqlStore::connect("sqlite::memory:").await.expect("memory");
    assert!(memory.sqlite_read(|_| Ok(())).is_none());

    store.close().await;
    assert!(store.client(&app.client_id).await.is_err());
    assert!(store.create_client(&client(None)).await.is_err());
    assert!(
        store
            .sqlite_read(|_| Ok(()))
            .expect("still a file store")
            .is_err()
    );
}

/// A purge larger than one step (the store purges a SQLite file in steps
/// of a few thousand rows, so other writes are not held up for seconds)
/// still removes everything expired and nothing else: 4500 grants whose
/// only token expired go, with their tokens and codes; grants with a live
/// token, or with a code that has not expired, stay.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_purge_in_many_steps_removes_exactly_what_expired() {
    let db = TempDb::new("purge-steps");
    let store = Arc::new(SqlStore::connect(&db.url()).await.expect("connect"));
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let user = UserId::new("ivan");
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..4500 {
        let (store, app) = (store.clone(), app.clone());
        tasks.spawn(async move {
            let g = grant(&app, None);
            let t = token(
                &g,
                TokenKind::Access,
                random_hash(),
                Some(TimeDelta::seconds(-10)),
            );
            assert!(store.create_grant(&g, &[t]).await.expect("expired grant"));
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("task");
    }
    let (live, live_token) = common::live_token(&store, &app, Some(&user)).await;
    let pending = code(&app, &user, random_hash());
    store.put_code(&pending).await.expect("code");
    store.revoke_grant(&pending.grant_id).await.expect("marker");

    let purged = store.purge_expired(now()).await.expect("purge");
    assert_eq!(
        (purged.tokens, purged.grants, purged.codes),
        (4500, 4500, 0)
    );
    assert_eq!(
        store.token(&live_token.hash).await.expect("token"),
        Some(live_token)
    );
    assert!(
        !store.create_grant(&live, &[]).await.expect("live grant"),
        "the live grant stays"
    );
    assert!(
        !store
            .create_grant(&grant_with_id(&app, &pending.grant_id), &[])
            .await
            .expect("marker"),
        "the revoked marker of an unexpired code stays"
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM doorman_grants")
        .fetch_one(store.sqlite_pool().expect("sqlite"))
        .await
        .expect("count");
    assert_eq!(rows, 2, "the live grant and the marker");
    assert_eq!(
        store.purge_expired(now()).await.expect("again"),
        doorman::Purged::default()
    );
    store.close().await;
}

fn grant_with_id(app: &doorman::Client, id: &doorman::GrantId) -> doorman::GrantRecord {
    let mut g = grant(app, None);
    g.id = id.clone();
    g
}

const HOST_USERS_SQLITE: &str = "CREATE TABLE {t} (id INTEGER PRIMARY KEY, handle TEXT NOT NULL UNIQUE, name TEXT NOT NULL, \
     credit INTEGER NOT NULL, ratio REAL NOT NULL, active BOOLEAN NOT NULL, note TEXT)";

/// The joined read on a file (the store's own connections) and on
/// `:memory:` (the sqlx pool).
#[tokio::test]
async fn a_token_and_its_users_row_are_read_in_one_statement() {
    let db = TempDb::new("joined");
    let file = SqlStore::connect(&db.url()).await.expect("connect");
    assert!(
        file.sqlite_read(|_| Ok(())).is_some(),
        "the file is driven directly"
    );
    check_token_with_user(&file, HOST_USERS_SQLITE, false).await;
    file.close().await;

    let memory = SqlStore::connect("sqlite::memory:").await.expect("connect");
    assert!(
        memory.sqlite_read(|_| Ok(())).is_none(),
        "`:memory:` is on the pool"
    );
    check_token_with_user(&memory, HOST_USERS_SQLITE, false).await;
}

/// SQLite finds the token by its key and the user by the table's rowid:
/// no scan of either table.
#[tokio::test]
async fn the_joined_read_uses_both_keys() {
    let db = TempDb::new("joined-plan");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    let pool = store.sqlite_pool().expect("sqlite");
    sqlx::raw_sql(sqlx::AssertSqlSafe(
        HOST_USERS_SQLITE.replace("{t}", "host_users"),
    ))
    .execute(pool)
    .await
    .expect("host table");
    let join = doorman_sqlx::UserJoin::on_integer_key("host_users u", "u.id", &["u.name"]);
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "EXPLAIN QUERY PLAN {}",
        join.sql()
    )))
    .bind(&[0_u8; 32][..])
    .fetch_all(pool)
    .await
    .expect("plan");
    let plan: Vec<String> = rows
        .iter()
        .map(|r| sqlx::Row::try_get::<String, _>(r, "detail").expect("detail"))
        .collect();
    assert_eq!(plan.len(), 2, "{plan:?}");
    assert!(
        plan[0].starts_with("SEARCH t USING PRIMARY KEY (hash=?)"),
        "{plan:?}"
    );
    assert!(
        plan[1].starts_with("SEARCH u USING INTEGER PRIMARY KEY (rowid=?)"),
        "{plan:?}"
    );
    store.close().await;
}

/// Writes of another connection to a store's file (another process's, or
/// the host's own) while the store has it open, shared. The store keeps
/// one connection in a read transaction that reads nothing (its keeper,
/// see `Keeper` in native.rs), here on the snapshot of its own last
/// commit:
///
/// - the other connection's checkpoint copies its frames and truncates
///   the WAL (`TRUNCATE`: no reader may be left in it) within seconds
///   while the store neither reads nor commits: the keeper moves out of
///   its way on its own (every second), or it would never finish;
/// - a token deleted by the other connection is gone for the store's
///   next read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_connection_s_writes_are_checkpointed_and_read() {
    let db = TempDb::new("keeper");
    let store = SqlStore::connect(&db.url()).await.expect("connect");
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let user = UserId::new("dave");
    let (_, token) = live_token(&store, &app, Some(&user)).await;
    assert!(store.token(&token.hash).await.expect("read").is_some());
    // The store's checkpoint thread runs after its commits.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;

    let path = db.path.clone();
    let copied = tokio::task::spawn_blocking(move || {
        let other = rusqlite::Connection::open(path).expect("open");
        let deleted = other
            .execute(
                "DELETE FROM doorman_tokens WHERE hash = ?1",
                [token.hash.0.as_slice()],
            )
            .expect("delete");
        assert_eq!(deleted, 1);
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(10) {
            let busy: i64 = other
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .expect("checkpoint");
            if busy == 0 {
                return Ok(started.elapsed());
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        Err(started.elapsed())
    })
    .await
    .expect("other connection");
    assert!(
        copied.is_ok(),
        "the other connection's checkpoint never finished: {copied:?}"
    );
    assert!(
        store.token(&token.hash).await.expect("read").is_none(),
        "the store read a snapshot from before the delete"
    );
    assert!(store.client(&app.client_id).await.expect("read").is_some());
    store.close().await;
}
