//! The PostgreSQL backend. Every test needs `DATABASE_URL`
//! (`postgres://…`); without it each one says so on stderr and passes.
//! Tests share the database and run at the same time: every id is random.

mod common;

use std::sync::Arc;

use chrono::TimeDelta;
use doorman::{
    ClientStore, CodeStore, CodeTake, GrantStore, Rotation, Store, TokenKind, TokenStore, UserId,
};
use doorman_sqlx::{SqlStore, SqlStoreOptions};

use common::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conformance() {
    let Some(url) = pg_url("conformance") else {
        return;
    };
    let store = pg_store(&url).await;
    assert_eq!(store.backend_name(), "postgres");
    assert!(store.pg_pool().is_some() && store.sqlite_pool().is_none());
    doorman::testkit::run_all(Arc::new(store.clone())).await;
    store.close().await;
}

/// Two stores with separate pools on one database, as two app instances
/// behind a load balancer: a code issued through one is redeemed through
/// the other; of 32 concurrent redemptions split across both, one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_redeem_a_code_once() {
    let Some(url) = pg_url("two_instances_redeem_a_code_once") else {
        return;
    };
    let a = Arc::new(pg_store(&url).await);
    let b = Arc::new(pg_store(&url).await);
    let app = client(None);
    assert!(a.create_client(&app).await.expect("client"));
    let user = UserId::new("alice");

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
    assert!(a.delete_client(&app.client_id).await.expect("cleanup"));
    a.close().await;
    b.close().await;
}

/// Concurrent rotations of one refresh token through two instances:
/// exactly one rotates, the reuse revokes the grant, nothing survives.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_rotate_a_refresh_token_once() {
    let Some(url) = pg_url("two_instances_rotate_a_refresh_token_once") else {
        return;
    };
    let a = Arc::new(pg_store(&url).await);
    let b = Arc::new(pg_store(&url).await);
    let app = client(None);
    assert!(a.create_client(&app).await.expect("client"));
    let g = grant(&app, Some(&UserId::new("bob")));
    let r = token(
        &g,
        TokenKind::Refresh,
        random_hash(),
        Some(TimeDelta::days(1)),
    );
    assert!(
        a.create_grant(&g, std::slice::from_ref(&r))
            .await
            .expect("grant")
    );

    let mut tasks = tokio::task::JoinSet::new();
    let mut issued = Vec::new();
    for i in 0..16 {
        let store = if i % 2 == 0 {
            Arc::clone(&a)
        } else {
            Arc::clone(&b)
        };
        let new = vec![
            token(
                &g,
                TokenKind::Access,
                random_hash(),
                Some(TimeDelta::hours(1)),
            ),
            token(
                &g,
                TokenKind::Refresh,
                random_hash(),
                Some(TimeDelta::days(1)),
            ),
        ];
        issued.extend(new.clone());
        let old = r.hash;
        tasks.spawn(async move { store.rotate_refresh(&old, now(), now(), &new).await });
    }
    let (mut rotated, mut reused) = (0, 0);
    while let Some(res) = tasks.join_next().await {
        match res.expect("task").expect("rotate") {
            Rotation::Rotated => rotated += 1,
            Rotation::Reused => reused += 1,
            Rotation::Missing => {}
        }
    }
    assert_eq!(rotated, 1);
    assert!(reused >= 1);
    for t in issued.iter().chain([&r]) {
        assert_eq!(b.token(&t.hash).await.expect("token"), None);
    }
    assert!(a.delete_client(&app.client_id).await.expect("cleanup"));
    a.close().await;
    b.close().await;
}

/// The same code raced from 4 processes × 8 callers.
#[tokio::test]
async fn several_processes_redeem_a_code_once() {
    let Some(url) = pg_url("several_processes_redeem_a_code_once") else {
        return;
    };
    let store = pg_store(&url).await;
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let c = code(&app, &UserId::new("carol"), random_hash());
    store.put_code(&c).await.expect("put");
    let child_url = url.clone();
    let takes =
        tokio::task::spawn_blocking(move || race_take_code_in_processes(&child_url, c.hash, 4, 8))
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
    assert!(store.delete_client(&app.client_id).await.expect("cleanup"));
    store.close().await;
}

/// Tokens outlive the store that wrote them: close it, connect again.
#[tokio::test]
async fn tokens_survive_a_reconnect() {
    let Some(url) = pg_url("tokens_survive_a_reconnect") else {
        return;
    };
    let app = client(None);
    let g = grant(&app, None);
    let t = token(&g, TokenKind::Access, random_hash(), None);
    let stored = {
        let store = pg_store(&url).await;
        assert!(store.create_client(&app).await.expect("client"));
        assert!(
            store
                .create_grant(&g, std::slice::from_ref(&t))
                .await
                .expect("grant")
        );
        let stored = store.token(&t.hash).await.expect("token");
        store.close().await;
        stored
    };
    assert_eq!(stored.as_ref(), Some(&t));
    let store = pg_store(&url).await;
    assert_eq!(store.token(&t.hash).await.expect("token"), stored);
    assert!(store.delete_client(&app.client_id).await.expect("cleanup"));
    store.close().await;
}

/// Instances starting at once on an empty database: one applies the
/// migrations under the advisory lock, the others wait and find them done.
/// Runs in a database of its own, created and dropped here.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_first_connects_migrate_once() {
    let Some(url) = pg_url("concurrent_first_connects_migrate_once") else {
        return;
    };
    let Some(db) = PrivateDb::create(&url, "migrate").await else {
        return;
    };
    let fresh = db.url.clone();

    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..6 {
        let fresh = fresh.clone();
        tasks.spawn(async move {
            SqlStore::connect_with(&fresh, SqlStoreOptions::new().max_connections(2)).await
        });
    }
    let mut stores = Vec::new();
    while let Some(r) = tasks.join_next().await {
        stores.push(r.expect("task").expect("every concurrent connect succeeds"));
    }
    let check = &stores[0];
    assert_eq!(
        check.schema_version().await.expect("version"),
        SqlStore::SCHEMA_VERSION
    );
    let rows: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM doorman_migrations")
        .fetch_one(check.pg_pool().expect("pg"))
        .await
        .expect("count");
    assert_eq!(rows, SqlStore::SCHEMA_VERSION);
    for s in &stores {
        s.close().await;
    }
    db.drop_db().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redeem_code_store_errors_write_nothing() {
    let Some(url) = pg_url("redeem_code_store_errors_write_nothing") else {
        return;
    };
    let store = pg_store(&url).await;
    check_redeem_code_store_errors_write_nothing(&store).await;
    store.close().await;
}

/// A code exchange is one transaction, and a grant's tokens one statement:
/// triggers (in a database of the test's own) log the transaction id of
/// every code consumed and grant inserted, and of every `INSERT` statement
/// on the tokens table.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_code_exchange_is_one_transaction_and_one_token_insert() {
    let Some(url) = pg_url("a_code_exchange_is_one_transaction_and_one_token_insert") else {
        return;
    };
    let Some(db) = PrivateDb::create(&url, "xact").await else {
        return;
    };
    let store = pg_store(&db.url).await;
    let pool = store.pg_pool().expect("pg").clone();
    sqlx::raw_sql(
        "CREATE TABLE xact_log (seq BIGSERIAL PRIMARY KEY, tbl TEXT NOT NULL, xid XID8 NOT NULL);
         CREATE FUNCTION log_xact() RETURNS trigger LANGUAGE plpgsql AS $$
         BEGIN
             INSERT INTO xact_log (tbl, xid) VALUES (TG_TABLE_NAME, pg_current_xact_id());
             RETURN NULL;
         END $$;
         CREATE TRIGGER log_codes AFTER UPDATE ON doorman_codes
             FOR EACH ROW EXECUTE FUNCTION log_xact();
         CREATE TRIGGER log_grants AFTER INSERT ON doorman_grants
             FOR EACH ROW EXECUTE FUNCTION log_xact();
         CREATE TRIGGER log_tokens AFTER INSERT ON doorman_tokens
             FOR EACH STATEMENT EXECUTE FUNCTION log_xact();",
    )
    .execute(&pool)
    .await
    .expect("triggers");
    let log = || async {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT tbl, xid::text FROM xact_log ORDER BY seq")
                .fetch_all(&pool)
                .await
                .expect("log");
        sqlx::query("DELETE FROM xact_log")
            .execute(&pool)
            .await
            .expect("clear");
        rows
    };
    let app = client(None);
    assert!(store.create_client(&app).await.expect("client"));
    let user = UserId::new("frank");

    // Issued: the code, the grant and both tokens in one transaction.
    let c = code(&app, &user, random_hash());
    store.put_code(&c).await.expect("put");
    let mut g = grant(&app, Some(&user));
    g.id = c.grant_id.clone();
    let tokens = vec![
        token(
            &g,
            TokenKind::Access,
            random_hash(),
            Some(TimeDelta::hours(1)),
        ),
        token(&g, TokenKind::Refresh, random_hash(), None),
    ];
    let issued = store
        .redeem_code(&c.hash, now(), issuing(&g, tokens.clone()))
        .await
        .expect("redeem");
    assert!(matches!(issued, doorman::Redemption::Issued), "{issued:?}");
    let rows = log().await;
    let tables: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tables,
        ["doorman_codes", "doorman_grants", "doorman_tokens"]
    );
    assert!(
        rows.iter().all(|(_, x)| *x == rows[0].1),
        "one transaction: {rows:?}"
    );

    // Refused: the consumption alone.
    let refused = code(&app, &user, random_hash());
    store.put_code(&refused).await.expect("put");
    let answer = store
        .redeem_code(
            &refused.hash,
            now(),
            Arc::new(|_: &doorman::CodeRecord| Err(doorman::OAuthError::invalid_grant("no"))),
        )
        .await
        .expect("redeem");
    assert!(
        matches!(answer, doorman::Redemption::Refused(_)),
        "{answer:?}"
    );
    let rows = log().await;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0].0, "doorman_codes");

    // create_grant and rotate_refresh: one token statement each.
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
    assert!(store.create_grant(&g, &first).await.expect("grant"));
    let next = [
        token(
            &g,
            TokenKind::Access,
            random_hash(),
            Some(TimeDelta::hours(1)),
        ),
        token(&g, TokenKind::Refresh, random_hash(), None),
    ];
    assert_eq!(
        store
            .rotate_refresh(&r.hash, now(), now() + TimeDelta::minutes(1), &next)
            .await
            .expect("rotate"),
        Rotation::Rotated
    );
    for t in first.iter().chain(&next) {
        assert!(store.token(&t.hash).await.expect("token").is_some());
    }
    let rows = log().await;
    let tables: Vec<&str> = rows.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(
        tables,
        ["doorman_grants", "doorman_tokens", "doorman_tokens"]
    );
    assert_eq!(rows[0].1, rows[1].1, "create_grant is one transaction");
    assert_ne!(rows[1].1, rows[2].1);

    store.close().await;
    db.drop_db().await;
}

/// The joined read of a token and the host's user row, in one statement.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_token_and_its_users_row_are_read_in_one_statement() {
    let Some(url) = pg_url("a_token_and_its_users_row_are_read_in_one_statement") else {
        return;
    };
    let store = pg_store(&url).await;
    check_token_with_user(
        &store,
        "CREATE TABLE {t} (id BIGINT PRIMARY KEY, handle TEXT NOT NULL UNIQUE, name TEXT NOT NULL, credit BIGINT NOT NULL, \
         ratio DOUBLE PRECISION NOT NULL, active BOOLEAN NOT NULL, note VARCHAR(20))",
        true,
    )
    .await;
    store.close().await;
}
