//! The store conformance testkit (feature `testkit`).
//!
//! Any [`Store`] — the [`MemoryStore`](crate::MemoryStore), the SQL stores,
//! a host's own — must pass [`run_all`]. Each rule of the store contracts
//! is also a separate `check_*` function, so a failing rule can be run on
//! its own.
//!
//! The checks are written for real databases:
//!
//! - every client id, user id, grant id and credential hash is fresh and
//!   random, so the checks can run against a shared, non-empty database,
//!   concurrently with other tests, any number of times, and each check
//!   deletes the clients it made at the end (which cascades);
//! - time is a manual clock: a base instant (now, truncated to whole
//!   seconds, since SQL stores may keep seconds only) plus explicit offsets,
//!   passed as `now` arguments. Records that must stay alive expire an hour
//!   or more after the real time, so a concurrent `purge_expired` elsewhere
//!   never removes them;
//! - concurrency needs no runtime: N calls are driven together by a small
//!   in-house `join_all`, so with a pooled SQL store they genuinely run at
//!   once on separate connections.
//!
//! A failed rule panics with a message naming it, like
//! `doorman testkit [code single use]: ...`.
//!
//! ```no_run
//! use std::sync::Arc;
//! use doorman::MemoryStore;
//!
//! async fn conformance() {
//!     doorman::testkit::run_all(Arc::new(MemoryStore::new())).await;
//! }
//! ```

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::OAuthError;
use crate::error::StoreError;
use crate::model::{
    Client, CodeRecord, CodeTake, Consent, GrantId, GrantRecord, GrantType, Rotation, TokenKind,
    TokenRecord, UserId,
};
use crate::scope::Scopes;
use crate::secret::{TokenHash, random_bytes, random_token};
use crate::store::{CodeIssuer, Redemption, Store};

mod flow;

pub use flow::check_no_plaintext_given;

/// How many callers race for one credential in the concurrency checks.
const RACERS: usize = 32;

/// Runs every check; panics with a clear message naming the failed rule.
///
/// The checks run one after another; each drives its own concurrent calls.
pub async fn run_all(store: Arc<dyn Store>) {
    let store_arc = store.clone();
    let store = &*store;
    check_clients(store).await;
    check_delete_client_cascade(store).await;
    check_code_single_use(store).await;
    check_redeem_code(store).await;
    check_grant_creation(store).await;
    check_rotation(store).await;
    check_concurrent_rotation(store).await;
    check_revocation(store).await;
    check_revocation_races(store).await;
    check_consents(store).await;
    check_revoke_consent(store).await;
    check_purge(store).await;
    check_hashes_only(store).await;
    check_no_plaintext_given(store_arc).await;
}

// ---------------------------------------------------------------------------
// Checks

/// Clients: create / get / update / delete round trip every field
/// (redirect URI order, scope, grant types, `trusted`, `released_claims`
/// `Some`/`None`, `secret_hash` `Some`/`None`, `created_at` to the second);
/// a duplicate create answers `Ok(false)` and changes nothing; update and
/// delete of an unknown id answer `Ok(false)`.
pub async fn check_clients(store: &dyn Store) {
    const R: &str = "client round trip";
    let base = base_time();
    let confidential = client_record(base);
    let mut public = client_record(base - TimeDelta::days(3));
    public.secret_hash = None;
    public.released_claims = None;
    public.trusted = false;
    public.scope = Scopes::empty();
    public.grant_types = vec![GrantType::AuthorizationCode];
    public.redirect_uris = vec!["http://127.0.0.1/cb".into()];

    for client in [&confidential, &public] {
        ensure_eq(
            R,
            "create_client of a new id",
            ok(R, store.create_client(client).await),
            true,
        );
        ensure_eq(
            R,
            "client() after create",
            ok(R, store.client(&client.client_id).await),
            Some(client.clone()),
        );
    }

    let mut impostor = confidential.clone();
    impostor.name = "Impostor".into();
    impostor.secret_hash = Some(random_hash());
    ensure_eq(
        R,
        "create_client of a taken id",
        ok(R, store.create_client(&impostor).await),
        false,
    );
    ensure_eq(
        R,
        "client() after a refused duplicate create",
        ok(R, store.client(&confidential.client_id).await),
        Some(confidential.clone()),
    );

    let mut updated = confidential.clone();
    updated.secret_hash = Some(random_hash());
    updated.name = "Renamed".into();
    updated.description = String::new();
    updated.redirect_uris = vec!["https://z.example/cb".into(), "https://a.example/cb".into()];
    updated.scope = scopes(&["profile"]);
    updated.trusted = false;
    updated.released_claims = Some(vec!["name".into()]);
    updated.grant_types = vec![GrantType::RefreshToken, GrantType::AuthorizationCode];
    ensure_eq(
        R,
        "update_client of a known id",
        ok(R, store.update_client(&updated).await),
        true,
    );
    ensure_eq(
        R,
        "client() after update",
        ok(R, store.client(&updated.client_id).await),
        Some(updated.clone()),
    );

    let mut stranger = client_record(base);
    ensure_eq(
        R,
        "update_client of an unknown id",
        ok(R, store.update_client(&stranger).await),
        false,
    );
    ensure_eq(
        R,
        "client() after refused update",
        ok(R, store.client(&stranger.client_id).await),
        None,
    );
    stranger.client_id = random_id("tk-none");
    ensure_eq(
        R,
        "delete_client of an unknown id",
        ok(R, store.delete_client(&stranger.client_id).await),
        false,
    );

    for client in [&confidential, &public] {
        ensure_eq(
            R,
            "delete_client of a known id",
            ok(R, store.delete_client(&client.client_id).await),
            true,
        );
        ensure_eq(
            R,
            "client() after delete",
            ok(R, store.client(&client.client_id).await),
            None,
        );
        ensure_eq(
            R,
            "second delete_client",
            ok(R, store.delete_client(&client.client_id).await),
            false,
        );
    }
}

/// `delete_client` takes the client's codes, grants (with or without a
/// user), tokens and consents with it, and nothing of another client.
pub async fn check_delete_client_cascade(store: &dyn Store) {
    const R: &str = "delete_client cascade";
    let base = base_time();
    let doomed = fresh_client(store, R, base).await;
    let other = fresh_client(store, R, base).await;
    let user = random_user();

    let code = code_record(&doomed, &user, base);
    ok(R, store.put_code(&code).await);
    let (_, user_tokens) = fresh_grant(store, R, &doomed, Some(&user), base).await;
    let (_, app_tokens) = fresh_grant(store, R, &doomed, None, base).await;
    ok(
        R,
        store
            .add_consent(&user, &doomed.client_id, &scopes(&["profile"]), base)
            .await,
    );
    let (_, kept_tokens) = fresh_grant(store, R, &other, Some(&user), base).await;
    ok(
        R,
        store
            .add_consent(&user, &other.client_id, &scopes(&["profile"]), base)
            .await,
    );

    ensure_eq(
        R,
        "delete_client",
        ok(R, store.delete_client(&doomed.client_id).await),
        true,
    );
    for t in user_tokens.iter().chain(&app_tokens) {
        ensure_eq(
            R,
            "a token of the deleted client",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    ensure(
        R,
        !matches!(
            ok(R, store.take_code(&code.hash, base).await),
            CodeTake::Taken(_)
        ),
        "an unused code of the deleted client can still be taken",
    );
    ensure_eq(
        R,
        "consent to the deleted client",
        ok(R, store.consent(&user, &doomed.client_id).await),
        None,
    );
    for t in &kept_tokens {
        ensure_eq(
            R,
            "a token of another client",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }
    ensure(
        R,
        ok(R, store.consent(&user, &other.client_id).await).is_some(),
        "the consent to another client is gone",
    );
    cleanup(store, R, &[&other]).await;
}

/// Codes are single-use under concurrency: of 32 concurrent `take_code`
/// calls on one code exactly one gets `Taken` with the record exactly as
/// put, the others `Replayed` with its grant id, as does every later call.
/// An unknown hash is `Missing`; an expired but unused code is still
/// `Taken` (expiry is the engine's decision).
pub async fn check_code_single_use(store: &dyn Store) {
    const R: &str = "code single use";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    let user = random_user();

    let code = code_record(&client, &user, base);
    ok(R, store.put_code(&code).await);
    let results = join_all(
        (0..RACERS)
            .map(|_| store.take_code(&code.hash, base))
            .collect(),
    )
    .await;
    let mut taken = 0;
    for r in results {
        match ok(R, r) {
            CodeTake::Taken(rec) => {
                taken += 1;
                ensure_eq(R, "the taken code record", rec, code.clone());
            }
            CodeTake::Replayed(g) => {
                ensure_eq(R, "grant id of a replayed code", g, code.grant_id.clone())
            }
            CodeTake::Missing => fail(R, "a racing take_code of a stored code answered Missing"),
        }
    }
    ensure_eq(
        R,
        "how many of 32 concurrent take_code calls got Taken",
        taken,
        1,
    );
    ensure_eq(
        R,
        "take_code after the race",
        ok(
            R,
            store
                .take_code(&code.hash, base + TimeDelta::seconds(5))
                .await,
        ),
        CodeTake::Replayed(code.grant_id.clone()),
    );
    ensure_eq(
        R,
        "take_code of an unknown hash",
        ok(R, store.take_code(&random_hash(), base).await),
        CodeTake::Missing,
    );

    // Past its expiry by the `now` given, but never used: still handed out.
    let mut plain = code_record(&client, &user, base);
    plain.code_challenge = None;
    plain.redirect_uri_explicit = false;
    plain.scope = Scopes::empty();
    ok(R, store.put_code(&plain).await);
    let late = plain.expires_at + TimeDelta::hours(1);
    ensure_eq(
        R,
        "take_code of an expired, unused code",
        ok(R, store.take_code(&plain.hash, late).await),
        CodeTake::Taken(plain.clone()),
    );
    ensure_eq(
        R,
        "take_code of it again",
        ok(R, store.take_code(&plain.hash, late).await),
        CodeTake::Replayed(plain.grant_id.clone()),
    );
    cleanup(store, R, &[&client]).await;
}

/// `redeem_code` (the code exchange in one step): of 32 concurrent
/// redemptions of one code exactly one is `Issued`, its issuer was called
/// exactly once with the stored record, and exactly its tokens are stored;
/// the others are `Replayed` with the code's grant id. An issuer's refusal
/// comes back as `Refused`, stores nothing and still consumes the code. A
/// code whose grant id was revoked first is `Revoked`, storing nothing. An
/// unknown hash is `Missing` without calling the issuer.
pub async fn check_redeem_code(store: &dyn Store) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    const R: &str = "redeem code";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    let user = random_user();
    let grant_of = move |code: &CodeRecord| GrantRecord {
        id: code.grant_id.clone(),
        client_id: code.client_id.clone(),
        user_id: Some(code.user_id.clone()),
        scope: code.scope.clone(),
        created_at: base,
    };
    // An issuer granting `tokens`, counting its calls in `calls`.
    let granting = |tokens: &Vec<TokenRecord>, calls: &Arc<AtomicUsize>| -> Arc<CodeIssuer> {
        let (tokens, calls) = (tokens.clone(), Arc::clone(calls));
        Arc::new(move |rec: &CodeRecord| {
            calls.fetch_add(1, Ordering::SeqCst);
            Ok((grant_of(rec), tokens.clone()))
        })
    };

    // The race.
    let code = code_record(&client, &user, base);
    ok(R, store.put_code(&code).await);
    let calls = Arc::new(AtomicUsize::new(0));
    let per_racer: Vec<Vec<TokenRecord>> = (0..RACERS)
        .map(|_| grant_tokens(&grant_of(&code), base))
        .collect();
    let issuers: Vec<Arc<CodeIssuer>> = per_racer
        .iter()
        .map(|tokens| {
            let (calls, code, tokens) = (Arc::clone(&calls), code.clone(), tokens.clone());
            Arc::new(move |rec: &CodeRecord| {
                calls.fetch_add(1, Ordering::SeqCst);
                if *rec != code {
                    return Err(OAuthError::invalid_grant("testkit: unexpected record"));
                }
                Ok((grant_of(rec), tokens.clone()))
            }) as Arc<CodeIssuer>
        })
        .collect();
    let results = join_all(
        issuers
            .into_iter()
            .map(|issue| store.redeem_code(&code.hash, base, issue))
            .collect(),
    )
    .await;
    let mut winners = Vec::new();
    for (i, r) in results.into_iter().enumerate() {
        match ok(R, r) {
            Redemption::Issued => winners.push(i),
            Redemption::Replayed(g) => {
                ensure_eq(R, "grant id of a replayed code", g, code.grant_id.clone())
            }
            other => fail(R, &format!("a racing redeem_code answered {other:?}")),
        }
    }
    ensure_eq(
        R,
        "how many of 32 concurrent redeem_code calls got Issued",
        winners.len(),
        1,
    );
    ensure_eq(
        R,
        "how many times the issuer was called",
        calls.load(Ordering::SeqCst),
        1,
    );
    for (i, tokens) in per_racer.iter().enumerate() {
        for t in tokens {
            let want = (winners.first() == Some(&i)).then(|| t.clone());
            ensure_eq(
                R,
                "token() of a racer's token",
                ok(R, store.token(&t.hash).await),
                want,
            );
        }
    }

    // A refusal consumes the code and stores nothing.
    let refused = code_record(&client, &user, base);
    ok(R, store.put_code(&refused).await);
    let tokens = grant_tokens(&grant_of(&refused), base);
    let answer = ok(
        R,
        store
            .redeem_code(
                &refused.hash,
                base,
                Arc::new(|_: &CodeRecord| Err(OAuthError::invalid_grant("testkit: refused"))),
            )
            .await,
    );
    ensure(
        R,
        matches!(&answer, Redemption::Refused(e) if e.description == "testkit: refused"),
        &format!("an issuer's refusal came back as {answer:?}"),
    );
    let called = Arc::new(AtomicUsize::new(0));
    let again = ok(
        R,
        store
            .redeem_code(&refused.hash, base, granting(&tokens, &called))
            .await,
    );
    ensure(
        R,
        matches!(&again, Redemption::Replayed(g) if *g == refused.grant_id),
        &format!("redeem_code of a refused (consumed) code answered {again:?}"),
    );
    ensure_eq(
        R,
        "issuer calls for a consumed code",
        called.load(Ordering::SeqCst),
        0,
    );
    for t in &tokens {
        ensure_eq(
            R,
            "a token after a refusal",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }

    // A grant id revoked first (a concurrent replay) stores nothing.
    let unborn = code_record(&client, &user, base);
    ok(R, store.put_code(&unborn).await);
    ok(R, store.revoke_grant(&unborn.grant_id).await);
    let tokens = grant_tokens(&grant_of(&unborn), base);
    let unused = Arc::new(AtomicUsize::new(0));
    let answer = ok(
        R,
        store
            .redeem_code(&unborn.hash, base, granting(&tokens, &unused))
            .await,
    );
    ensure(
        R,
        matches!(answer, Redemption::Revoked),
        &format!("redeem_code of a code whose grant was revoked answered {answer:?}"),
    );
    for t in &tokens {
        ensure_eq(
            R,
            "a token of a revoked grant id",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }

    // Unknown.
    let called = Arc::new(AtomicUsize::new(0));
    let answer = ok(
        R,
        store
            .redeem_code(&random_hash(), base, granting(&Vec::new(), &called))
            .await,
    );
    ensure(
        R,
        matches!(answer, Redemption::Missing),
        &format!("redeem_code of an unknown hash answered {answer:?}"),
    );
    ensure_eq(
        R,
        "issuer calls for an unknown code",
        called.load(Ordering::SeqCst),
        0,
    );
    cleanup(store, R, &[&client]).await;
}

/// `create_grant` stores the grant and its tokens together, and `token()`
/// returns them exactly; a second `create_grant` with the same id answers
/// `Ok(false)` and stores none of its tokens; so does one after
/// `revoke_grant` of that id, also when the id was never created.
pub async fn check_grant_creation(store: &dyn Store) {
    const R: &str = "grant creation";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    let user = random_user();

    // A user grant with an access and a refresh token, and a client-credentials
    // grant whose token never expires.
    let (grant, tokens) = fresh_grant(store, R, &client, Some(&user), base).await;
    let (_, app_tokens) = fresh_grant(store, R, &client, None, base).await;
    for t in tokens.iter().chain(&app_tokens) {
        ensure_eq(
            R,
            "token() of a created token",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }

    let again = grant_tokens(&grant, base);
    ensure_eq(
        R,
        "create_grant with an existing id",
        ok(R, store.create_grant(&grant, &again).await),
        false,
    );
    for t in &again {
        ensure_eq(
            R,
            "a token of a refused create_grant",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    for t in &tokens {
        ensure_eq(
            R,
            "a token after a refused duplicate create_grant",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }

    anchor_code(store, R, &client, &grant.id).await;
    ok(R, store.revoke_grant(&grant.id).await);
    let after = grant_tokens(&grant, base);
    ensure_eq(
        R,
        "create_grant of a revoked id",
        ok(R, store.create_grant(&grant, &after).await),
        false,
    );
    for t in tokens.iter().chain(&after) {
        ensure_eq(
            R,
            "a token of a revoked grant",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }

    // A replayed code revokes its grant id before the grant exists.
    let unborn = grant_record(&client, Some(&user), base);
    anchor_code(store, R, &client, &unborn.id).await;
    ok(R, store.revoke_grant(&unborn.id).await);
    let unborn_tokens = grant_tokens(&unborn, base);
    ensure_eq(
        R,
        "create_grant of an id revoked before creation",
        ok(R, store.create_grant(&unborn, &unborn_tokens).await),
        false,
    );
    for t in &unborn_tokens {
        ensure_eq(
            R,
            "a token of a grant revoked before creation",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    cleanup(store, R, &[&client]).await;
}

/// Refresh rotation: `Rotated` marks the old token used at `now`, caps the
/// grant's earlier access tokens at `access_valid_until` (or removes or
/// expires them when that is not after `now`), leaves other grants alone
/// and stores the new tokens as given; rotating a used token again answers
/// `Reused` and removes every token of the grant, new ones included, and
/// the grant id can no longer be created; an unknown token is `Missing`.
pub async fn check_rotation(store: &dyn Store) {
    const R: &str = "refresh rotation";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    let user = random_user();
    let grant = grant_record(&client, Some(&user), base);
    anchor_code(store, R, &client, &grant.id).await;
    let g = &grant;
    let a_never = token_record(g, TokenKind::Access, base, None);
    let a_long = token_record(g, TokenKind::Access, base, Some(base + TimeDelta::hours(2)));
    let a_short = token_record(
        g,
        TokenKind::Access,
        base,
        Some(base + TimeDelta::seconds(30)),
    );
    let r1 = token_record(
        g,
        TokenKind::Refresh,
        base,
        Some(base + TimeDelta::days(30)),
    );
    let first = [a_never.clone(), a_long.clone(), a_short.clone(), r1.clone()];
    ensure_eq(
        R,
        "create_grant",
        ok(R, store.create_grant(g, &first).await),
        true,
    );
    let (_, bystanders) = fresh_grant(store, R, &client, Some(&user), base).await;

    let t1 = base + TimeDelta::seconds(10);
    let cap = t1 + TimeDelta::seconds(60);
    let a2 = token_record(g, TokenKind::Access, t1, Some(t1 + TimeDelta::hours(1)));
    let r2 = token_record(g, TokenKind::Refresh, t1, Some(t1 + TimeDelta::days(30)));
    let second = [a2.clone(), r2.clone()];
    ensure_eq(
        R,
        "rotate_refresh of an unused token",
        ok(R, store.rotate_refresh(&r1.hash, t1, cap, &second).await),
        Rotation::Rotated,
    );

    let mut used = r1.clone();
    used.consumed_at = Some(t1);
    ensure_eq(
        R,
        "the rotated refresh token (consumed_at = now)",
        ok(R, store.token(&r1.hash).await),
        Some(used),
    );
    for (old, want) in [
        (&a_never, cap),
        (&a_long, cap),
        (&a_short, base + TimeDelta::seconds(30)),
    ] {
        let mut capped = old.clone();
        capped.expires_at = Some(want);
        ensure_eq(
            R,
            "an earlier access token, capped at min(expiry, access_valid_until)",
            ok(R, store.token(&old.hash).await),
            Some(capped),
        );
    }
    for t in second.iter().chain(&bystanders) {
        ensure_eq(
            R,
            "a new token, or another grant's token, after rotation",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }

    // A cap not after `now`: the earlier access tokens die at once.
    let t2 = t1 + TimeDelta::seconds(10);
    let a3 = token_record(g, TokenKind::Access, t2, Some(t2 + TimeDelta::hours(1)));
    let r3 = token_record(g, TokenKind::Refresh, t2, None);
    let third = [a3.clone(), r3.clone()];
    ensure_eq(
        R,
        "rotate_refresh with access_valid_until = now",
        ok(R, store.rotate_refresh(&r2.hash, t2, t2, &third).await),
        Rotation::Rotated,
    );
    for old in [&a_never, &a_long, &a_short, &a2] {
        if let Some(t) = ok(R, store.token(&old.hash).await) {
            ensure(
                R,
                t.is_expired(t2),
                "an earlier access token outlived a cap at now",
            );
        }
    }
    for t in &third {
        ensure_eq(
            R,
            "a new token after rotation",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }

    // Reuse of r1: the whole grant goes, the newest tokens too.
    let t3 = t2 + TimeDelta::seconds(10);
    let replay = [
        token_record(g, TokenKind::Access, t3, Some(t3 + TimeDelta::hours(1))),
        token_record(g, TokenKind::Refresh, t3, None),
    ];
    ensure_eq(
        R,
        "rotate_refresh of a used token",
        ok(R, store.rotate_refresh(&r1.hash, t3, t3, &replay).await),
        Rotation::Reused,
    );
    for t in first.iter().chain(&second).chain(&third).chain(&replay) {
        ensure_eq(
            R,
            "a token of a grant revoked by refresh reuse",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    for t in &bystanders {
        ensure_eq(
            R,
            "another grant's token after a reuse",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }
    ensure_eq(
        R,
        "create_grant of a grant revoked by reuse",
        ok(R, store.create_grant(g, &[]).await),
        false,
    );
    ensure_eq(
        R,
        "rotate_refresh of a revoked token",
        ok(R, store.rotate_refresh(&r3.hash, t3, t3, &[]).await),
        Rotation::Missing,
    );
    ensure_eq(
        R,
        "rotate_refresh of an unknown token",
        ok(R, store.rotate_refresh(&random_hash(), t3, t3, &[]).await),
        Rotation::Missing,
    );
    cleanup(store, R, &[&client]).await;
}

/// Of 32 concurrent rotations of one refresh token exactly one is
/// `Rotated`; the others are `Reused` (at least one) or, once that reuse
/// has revoked the grant, `Missing`. Afterwards (RFC 9700 §4.14.2) no
/// token of the grant survives — not even the winner's new ones.
pub async fn check_concurrent_rotation(store: &dyn Store) {
    const R: &str = "concurrent rotation";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    let user = random_user();
    let (grant, tokens) = fresh_grant(store, R, &client, Some(&user), base).await;
    let Some(old) = tokens.iter().find(|t| t.kind == TokenKind::Refresh) else {
        fail(R, "fresh_grant made no refresh token")
    };
    let now = base + TimeDelta::seconds(1);
    let news: Vec<Vec<TokenRecord>> = (0..RACERS).map(|_| grant_tokens(&grant, now)).collect();
    let results = join_all(
        news.iter()
            .map(|n| store.rotate_refresh(&old.hash, now, now, n))
            .collect(),
    )
    .await;
    let (mut rotated, mut reused) = (0, 0);
    for r in results {
        match ok(R, r) {
            Rotation::Rotated => rotated += 1,
            Rotation::Reused => reused += 1,
            Rotation::Missing => {}
        }
    }
    ensure_eq(
        R,
        "how many of 32 concurrent rotations got Rotated",
        rotated,
        1,
    );
    ensure(
        R,
        reused >= 1,
        "no concurrent rotation saw the reuse (all others answered Missing)",
    );
    for t in tokens.iter().chain(news.iter().flatten()) {
        ensure_eq(
            R,
            "a token of the grant after concurrent reuse",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    cleanup(store, R, &[&client]).await;
}

/// `revoke_grant` removes every token of the grant and nothing else, and
/// may be repeated; `delete_token` removes exactly one token and answers
/// whether it existed.
pub async fn check_revocation(store: &dyn Store) {
    const R: &str = "revocation cascade";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    let user = random_user();
    let (g1, mut t1) = fresh_grant(store, R, &client, Some(&user), base).await;
    // A third token, as after a rotation.
    let extra = [token_record(
        &g1,
        TokenKind::Access,
        base,
        Some(base + TimeDelta::hours(3)),
    )];
    ensure_eq(
        R,
        "rotate_refresh",
        ok(
            R,
            store
                .rotate_refresh(&t1[1].hash, base, base + TimeDelta::hours(5), &extra)
                .await,
        ),
        Rotation::Rotated,
    );
    t1.extend(extra);
    let (_, t2) = fresh_grant(store, R, &client, Some(&user), base).await;

    ok(R, store.revoke_grant(&g1.id).await);
    for t in &t1 {
        ensure_eq(
            R,
            "a token of a revoked grant",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    for t in &t2 {
        ensure_eq(
            R,
            "another grant's token after revoke_grant",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }
    ok(R, store.revoke_grant(&g1.id).await);

    ensure_eq(
        R,
        "delete_token of a stored token",
        ok(R, store.delete_token(&t2[0].hash).await),
        true,
    );
    ensure_eq(
        R,
        "token() after delete_token",
        ok(R, store.token(&t2[0].hash).await),
        None,
    );
    ensure_eq(
        R,
        "the grant's other token after delete_token",
        ok(R, store.token(&t2[1].hash).await),
        Some(t2[1].clone()),
    );
    ensure_eq(
        R,
        "delete_token again",
        ok(R, store.delete_token(&t2[0].hash).await),
        false,
    );
    ensure_eq(
        R,
        "delete_token of an unknown hash",
        ok(R, store.delete_token(&random_hash()).await),
        false,
    );
    cleanup(store, R, &[&client]).await;
}

/// `revoke_grant` does not race with `rotate_refresh` or `create_grant`:
/// run concurrently, whichever commits first, no token of the grant
/// survives (the rotation's new tokens and the creation's tokens
/// included).
pub async fn check_revocation_races(store: &dyn Store) {
    const R: &str = "revocation races";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    let user = random_user();
    for round in 0..8 {
        let (grant, tokens) = fresh_grant(store, R, &client, Some(&user), base).await;
        anchor_code(store, R, &client, &grant.id).await;
        let new = grant_tokens(&grant, base);
        let mut both: Vec<BoxFuture<'_, ()>> = vec![
            Box::pin(async {
                ok(
                    R,
                    store
                        .rotate_refresh(&tokens[1].hash, base, base + TimeDelta::hours(2), &new)
                        .await,
                );
            }),
            Box::pin(async { ok(R, store.revoke_grant(&grant.id).await) }),
        ];
        // Alternate who is polled first, for stores that finish on first poll.
        if round % 2 == 1 {
            both.reverse();
        }
        join_all(both).await;
        for t in tokens.iter().chain(&new) {
            ensure_eq(
                R,
                "a token after revoke_grant raced rotate_refresh",
                ok(R, store.token(&t.hash).await),
                None,
            );
        }

        let grant = grant_record(&client, Some(&user), base);
        anchor_code(store, R, &client, &grant.id).await;
        let tokens = grant_tokens(&grant, base);
        let mut both: Vec<BoxFuture<'_, ()>> = vec![
            Box::pin(async {
                ok(R, store.create_grant(&grant, &tokens).await);
            }),
            Box::pin(async { ok(R, store.revoke_grant(&grant.id).await) }),
        ];
        if round % 2 == 1 {
            both.reverse();
        }
        join_all(both).await;
        for t in &tokens {
            ensure_eq(
                R,
                "a token after revoke_grant raced create_grant",
                ok(R, store.token(&t.hash).await),
                None,
            );
        }
        ensure_eq(
            R,
            "create_grant after revoke_grant",
            ok(R, store.create_grant(&grant, &tokens).await),
            false,
        );
    }
    cleanup(store, R, &[&client]).await;
}

/// Consents add up: scopes are the union over `add_consent` calls,
/// `granted_at` stays the first approval, `updated_at` follows the latest;
/// `consent` and `list_consents` see exactly the user's own consents,
/// oldest first.
pub async fn check_consents(store: &dyn Store) {
    const R: &str = "consents";
    let base = base_time();
    let c1 = fresh_client(store, R, base).await;
    let c2 = fresh_client(store, R, base).await;
    let (alice, bob) = (random_user(), random_user());

    ensure_eq(
        R,
        "consent() before any approval",
        ok(R, store.consent(&alice, &c1.client_id).await),
        None,
    );
    ensure_eq(
        R,
        "list_consents of a user without any",
        ok(R, store.list_consents(&alice).await),
        vec![],
    );

    // c2 is approved later than c1 but stored first.
    let t0 = base;
    ok(
        R,
        store
            .add_consent(
                &alice,
                &c2.client_id,
                &scopes(&["email"]),
                t0 + TimeDelta::seconds(30),
            )
            .await,
    );
    ok(
        R,
        store
            .add_consent(&alice, &c1.client_id, &scopes(&["balance", "profile"]), t0)
            .await,
    );
    ok(
        R,
        store
            .add_consent(
                &alice,
                &c1.client_id,
                &scopes(&["email", "profile"]),
                t0 + TimeDelta::seconds(60),
            )
            .await,
    );
    ok(
        R,
        store
            .add_consent(&bob, &c1.client_id, &scopes(&["openid"]), t0)
            .await,
    );

    let alice_c1 = Consent {
        user_id: alice.clone(),
        client_id: c1.client_id.clone(),
        scope: scopes(&["balance", "email", "profile"]),
        granted_at: t0,
        updated_at: t0 + TimeDelta::seconds(60),
    };
    let alice_c2 = Consent {
        user_id: alice.clone(),
        client_id: c2.client_id.clone(),
        scope: scopes(&["email"]),
        granted_at: t0 + TimeDelta::seconds(30),
        updated_at: t0 + TimeDelta::seconds(30),
    };
    let bob_c1 = Consent {
        user_id: bob.clone(),
        client_id: c1.client_id.clone(),
        scope: scopes(&["openid"]),
        granted_at: t0,
        updated_at: t0,
    };
    ensure_eq(
        R,
        "consent() after two approvals (union of scopes)",
        ok(R, store.consent(&alice, &c1.client_id).await),
        Some(alice_c1.clone()),
    );
    ensure_eq(
        R,
        "list_consents (exactly the user's, oldest first)",
        ok(R, store.list_consents(&alice).await),
        vec![alice_c1, alice_c2],
    );
    ensure_eq(
        R,
        "list_consents of another user",
        ok(R, store.list_consents(&bob).await),
        vec![bob_c1],
    );
    ensure_eq(
        R,
        "consent() of a user for a client they never approved",
        ok(R, store.consent(&bob, &c2.client_id).await),
        None,
    );
    cleanup(store, R, &[&c1, &c2]).await;
}

/// `revoke_consent(user, client)` deletes that consent and every token of
/// every grant of that user to that client, and the user's unused codes
/// for it; the same user's other clients and other users of that client
/// keep everything. It answers `true` if a consent or a grant existed
/// (also a grant without a consent), `false` otherwise.
pub async fn check_revoke_consent(store: &dyn Store) {
    const R: &str = "revoke_consent";
    let base = base_time();
    let c1 = fresh_client(store, R, base).await;
    let c2 = fresh_client(store, R, base).await;
    let (alice, bob) = (random_user(), random_user());
    let profile = scopes(&["profile"]);

    ok(
        R,
        store
            .add_consent(&alice, &c1.client_id, &profile, base)
            .await,
    );
    let (_, mut doomed) = fresh_grant(store, R, &c1, Some(&alice), base).await;
    let (_, second) = fresh_grant(store, R, &c1, Some(&alice), base).await;
    doomed.extend(second);
    let code = code_record(&c1, &alice, base);
    ok(R, store.put_code(&code).await);

    ok(
        R,
        store
            .add_consent(&alice, &c2.client_id, &profile, base)
            .await,
    );
    let (_, alice_c2) = fresh_grant(store, R, &c2, Some(&alice), base).await;
    ok(
        R,
        store.add_consent(&bob, &c1.client_id, &profile, base).await,
    );
    let (_, bob_c1) = fresh_grant(store, R, &c1, Some(&bob), base).await;
    let bob_code = code_record(&c1, &bob, base);
    ok(R, store.put_code(&bob_code).await);

    ensure_eq(
        R,
        "revoke_consent of an existing consent",
        ok(R, store.revoke_consent(&alice, &c1.client_id).await),
        true,
    );
    ensure_eq(
        R,
        "consent() after revoke_consent",
        ok(R, store.consent(&alice, &c1.client_id).await),
        None,
    );
    for t in &doomed {
        ensure_eq(
            R,
            "a token of a grant under the revoked consent",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    ensure(
        R,
        !matches!(
            ok(R, store.take_code(&code.hash, base).await),
            CodeTake::Taken(_)
        ),
        "an unused code under the revoked consent can still be taken",
    );
    for t in alice_c2.iter().chain(&bob_c1) {
        ensure_eq(
            R,
            "a token of another (user, client) pair",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }
    ensure(
        R,
        ok(R, store.consent(&alice, &c2.client_id).await).is_some(),
        "the user's consent to another client is gone",
    );
    ensure(
        R,
        ok(R, store.consent(&bob, &c1.client_id).await).is_some(),
        "another user's consent to the client is gone",
    );
    ensure(
        R,
        matches!(
            ok(R, store.take_code(&bob_code.hash, base).await),
            CodeTake::Taken(_)
        ),
        "another user's code for the client was not handed out",
    );
    ensure_eq(
        R,
        "revoke_consent when nothing is left",
        ok(R, store.revoke_consent(&alice, &c1.client_id).await),
        false,
    );

    // A grant without a consent (e.g. a trusted client's one-click login).
    let carol = random_user();
    let (_, carol_tokens) = fresh_grant(store, R, &c2, Some(&carol), base).await;
    ensure_eq(
        R,
        "revoke_consent of a grant without consent",
        ok(R, store.revoke_consent(&carol, &c2.client_id).await),
        true,
    );
    for t in &carol_tokens {
        ensure_eq(
            R,
            "a token of a grant without consent, after revoke_consent",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    ensure_eq(
        R,
        "revoke_consent of a stranger",
        ok(R, store.revoke_consent(&random_user(), &c1.client_id).await),
        false,
    );
    cleanup(store, R, &[&c1, &c2]).await;
}

/// `purge_expired(now)` deletes codes (used or not) and tokens (used
/// refresh tokens included) that expired before `now`, and grants left
/// with no token and no code; live and never-expiring records stay, and so
/// does a grant a live code refers to. The counts are at least what this
/// check expired (a shared database may hold more).
///
/// `now` is the real time here, so that the purge cannot touch records of
/// tests running at the same time. (Another purge running at the same
/// moment could take this check's expired records first and lower the
/// counts it sees.)
pub async fn check_purge(store: &dyn Store) {
    const R: &str = "purge";
    let now = base_time();
    let past = now - TimeDelta::hours(1);
    let future = now + TimeDelta::hours(1);
    let client = fresh_client(store, R, now).await;
    let user = random_user();

    // Codes: unused expired, used expired, unused live, used live.
    let mut codes = Vec::new();
    for (expires, take) in [(past, false), (past, true), (future, false), (future, true)] {
        let mut c = code_record(&client, &user, past - TimeDelta::hours(1));
        c.expires_at = expires;
        ok(R, store.put_code(&c).await);
        if take {
            ensure(
                R,
                matches!(
                    ok(R, store.take_code(&c.hash, past).await),
                    CodeTake::Taken(_)
                ),
                "take_code of a new code",
            );
        }
        codes.push(c);
    }

    // g1 keeps live tokens; its expired access token and its used, expired
    // refresh token go. All are stored at once, already in that state: a
    // token stored expired and rotated afterwards could be taken by a
    // concurrent purge on a shared store in between.
    let early = now - TimeDelta::hours(3);
    let g1 = grant_record(&client, Some(&user), early);
    let a_old = token_record(&g1, TokenKind::Access, early, Some(past));
    let r_old = TokenRecord {
        consumed_at: Some(early),
        ..token_record(&g1, TokenKind::Refresh, early, Some(past))
    };
    let a_live = token_record(&g1, TokenKind::Access, early, Some(future));
    let r_never = token_record(&g1, TokenKind::Refresh, early, None);
    let live = [a_live.clone(), r_never.clone()];
    ensure_eq(
        R,
        "create_grant",
        ok(
            R,
            store
                .create_grant(&g1, &[a_old.clone(), r_old.clone(), a_live, r_never])
                .await,
        ),
        true,
    );
    // A used refresh token that is still live stays too.
    let g4 = grant_record(&client, Some(&user), early);
    let r_used_live = token_record(&g4, TokenKind::Refresh, early, Some(future));
    ensure_eq(
        R,
        "create_grant",
        ok(
            R,
            store
                .create_grant(&g4, std::slice::from_ref(&r_used_live))
                .await,
        ),
        true,
    );
    let g4_next = [token_record(&g4, TokenKind::Refresh, early, None)];
    ensure_eq(
        R,
        "rotate_refresh",
        ok(
            R,
            store
                .rotate_refresh(&r_used_live.hash, early, future, &g4_next)
                .await,
        ),
        Rotation::Rotated,
    );
    let Some(r_used_live) = ok(R, store.token(&r_used_live.hash).await) else {
        fail(R, "a rotated refresh token vanished")
    };

    // g2: every token expired and no code: the grant goes.
    let g2 = grant_record(&client, Some(&user), early);
    let g2_tokens = [token_record(&g2, TokenKind::Access, early, Some(past))];
    ensure_eq(
        R,
        "create_grant",
        ok(R, store.create_grant(&g2, &g2_tokens).await),
        true,
    );
    // g3: every token expired, but a live code refers to it: it stays.
    // The code comes first, as the engine's code precedes its grant: a
    // purge that collected the live codes' grant ids before the code was
    // stored may otherwise drop a grant created before it started.
    let g3 = grant_record(&client, Some(&user), early);
    let mut g3_code = code_record(&client, &user, early);
    g3_code.grant_id = g3.id.clone();
    g3_code.expires_at = future;
    ok(R, store.put_code(&g3_code).await);
    let g3_tokens = [token_record(&g3, TokenKind::Access, early, Some(past))];
    ensure_eq(
        R,
        "create_grant",
        ok(R, store.create_grant(&g3, &g3_tokens).await),
        true,
    );

    // The counts are not asserted: on a shared database a concurrent purge
    // may remove this check's rows first. What is gone and what stays is.
    ok(R, store.purge_expired(now).await);

    ensure_eq(
        R,
        "an expired unused code after purge",
        ok(R, store.take_code(&codes[0].hash, now).await),
        CodeTake::Missing,
    );
    ensure_eq(
        R,
        "an expired used code after purge",
        ok(R, store.take_code(&codes[1].hash, now).await),
        CodeTake::Missing,
    );
    ensure_eq(
        R,
        "a live unused code after purge",
        ok(R, store.take_code(&codes[2].hash, now).await),
        CodeTake::Taken(codes[2].clone()),
    );
    ensure_eq(
        R,
        "a live used code after purge",
        ok(R, store.take_code(&codes[3].hash, now).await),
        CodeTake::Replayed(codes[3].grant_id.clone()),
    );
    for t in [&a_old, &r_old, &g2_tokens[0], &g3_tokens[0]] {
        ensure_eq(
            R,
            "an expired token after purge",
            ok(R, store.token(&t.hash).await),
            None,
        );
    }
    for t in live.iter().chain(&g4_next).chain([&r_used_live]) {
        ensure_eq(
            R,
            "a live or never-expiring token after purge",
            ok(R, store.token(&t.hash).await),
            Some(t.clone()),
        );
    }
    ensure_eq(
        R,
        "create_grant of a purged (emptied) grant id",
        ok(R, store.create_grant(&g2, &[]).await),
        true,
    );
    ensure_eq(
        R,
        "create_grant of an emptied grant a live code refers to",
        ok(R, store.create_grant(&g3, &[]).await),
        false,
    );
    cleanup(store, R, &[&client]).await;
}

/// The store keys credentials by their SHA-256 [`TokenHash`] and nothing
/// else: a record put under `TokenHash::of(plaintext)` comes back under
/// exactly that hash, with that hash in it; hashes differing in the first
/// or last byte, or the hash of the hash's hex form, find nothing (and
/// consume nothing); a client's `secret_hash` round-trips as given.
pub async fn check_hashes_only(store: &dyn Store) {
    const R: &str = "hashes only";
    let base = base_time();
    let client = fresh_client(store, R, base).await;
    ensure_eq(
        R,
        "the stored client's secret hash",
        ok(R, store.client(&client.client_id).await).and_then(|c| c.secret_hash),
        client.secret_hash,
    );
    let user = random_user();

    let plaintext = random_token();
    let hash = TokenHash::of(&plaintext);
    let grant = grant_record(&client, Some(&user), base);
    let mut access = token_record(
        &grant,
        TokenKind::Access,
        base,
        Some(base + TimeDelta::hours(1)),
    );
    access.hash = hash;
    ensure_eq(
        R,
        "create_grant",
        ok(
            R,
            store
                .create_grant(&grant, std::slice::from_ref(&access))
                .await,
        ),
        true,
    );
    let Some(back) = ok(R, store.token(&TokenHash::of(&plaintext)).await) else {
        fail(R, "token() by TokenHash::of(plaintext) found nothing")
    };
    ensure_eq(R, "the hash inside the stored token", back.hash, hash);
    for near in near_misses(&hash) {
        ensure_eq(
            R,
            "token() by a different hash",
            ok(R, store.token(&near).await),
            None,
        );
    }

    let code_plaintext = random_token();
    let mut code = code_record(&client, &user, base);
    code.hash = TokenHash::of(&code_plaintext);
    ok(R, store.put_code(&code).await);
    for near in near_misses(&code.hash) {
        ensure_eq(
            R,
            "take_code by a different hash",
            ok(R, store.take_code(&near, base).await),
            CodeTake::Missing,
        );
    }
    ensure_eq(
        R,
        "take_code by TokenHash::of(plaintext)",
        ok(
            R,
            store.take_code(&TokenHash::of(&code_plaintext), base).await,
        ),
        CodeTake::Taken(code.clone()),
    );
    cleanup(store, R, &[&client]).await;
}

// ---------------------------------------------------------------------------
// Concurrency without a runtime

/// A boxed future, as `async_trait` methods return them.
type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Polls every future until all are done; their outputs in order. No
/// runtime needed: the caller's executor wakes this task whenever any of
/// them can make progress.
async fn join_all<'a, T>(futures: Vec<BoxFuture<'a, T>>) -> Vec<T> {
    let mut pending: Vec<Option<BoxFuture<'a, T>>> = futures.into_iter().map(Some).collect();
    let mut done: Vec<Option<T>> = pending.iter().map(|_| None).collect();
    std::future::poll_fn(move |cx| {
        let mut all = true;
        for (slot, out) in pending.iter_mut().zip(done.iter_mut()) {
            if let Some(f) = slot {
                match f.as_mut().poll(cx) {
                    Poll::Ready(v) => {
                        *out = Some(v);
                        *slot = None;
                    }
                    Poll::Pending => all = false,
                }
            }
        }
        if all {
            Poll::Ready(done.drain(..).flatten().collect())
        } else {
            Poll::Pending
        }
    })
    .await
}

// ---------------------------------------------------------------------------
// Fixtures

/// The manual clock's base: now, in whole seconds.
fn base_time() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp(now.timestamp(), 0).unwrap_or(now)
}

fn random_id(prefix: &str) -> String {
    let mut b = [0u8; 12];
    random_bytes(&mut b);
    let mut s = String::with_capacity(prefix.len() + 25);
    s.push_str(prefix);
    s.push('-');
    for x in b {
        s.push_str(&format!("{x:02x}"));
    }
    s
}

fn random_user() -> UserId {
    UserId(random_id("tk-user"))
}

fn random_hash() -> TokenHash {
    TokenHash::of(&random_token())
}

fn scopes(s: &[&str]) -> Scopes {
    Scopes::from_tokens(s.iter().copied())
}

/// Hashes a sloppy store might confuse with `h`.
fn near_misses(h: &TokenHash) -> [TokenHash; 3] {
    let mut first = *h;
    first.0[0] ^= 1;
    let mut last = *h;
    last.0[31] ^= 0x80;
    [first, last, TokenHash::of(&h.to_hex())]
}

fn client_record(created_at: DateTime<Utc>) -> Client {
    Client {
        client_id: random_id("tk-client"),
        secret_hash: Some(random_hash()),
        name: "Testkit App".into(),
        description: "A client made by the doorman store testkit".into(),
        // Deliberately not sorted: the order must survive.
        redirect_uris: vec![
            "https://b.example/cb".into(),
            "https://a.example/cb?x=1".into(),
        ],
        scope: scopes(&["balance", "email", "profile"]),
        grant_types: vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ],
        trusted: true,
        released_claims: Some(vec!["name".into(), "email".into()]),
        created_at,
    }
}

async fn fresh_client(store: &dyn Store, rule: &str, base: DateTime<Utc>) -> Client {
    let client = client_record(base);
    ensure_eq(
        rule,
        "create_client of a fresh id",
        ok(rule, store.create_client(&client).await),
        true,
    );
    client
}

/// Deletes the clients a check made (cascading to everything under them).
async fn cleanup(store: &dyn Store, rule: &str, clients: &[&Client]) {
    for c in clients {
        ensure_eq(
            rule,
            "delete_client at the end of the check",
            ok(rule, store.delete_client(&c.client_id).await),
            true,
        );
    }
}

/// A code issued at `base`, live for an hour.
fn code_record(client: &Client, user: &UserId, base: DateTime<Utc>) -> CodeRecord {
    CodeRecord {
        hash: random_hash(),
        grant_id: GrantId::generate(),
        client_id: client.client_id.clone(),
        user_id: user.clone(),
        redirect_uri: "https://b.example/cb".into(),
        redirect_uri_explicit: true,
        scope: scopes(&["balance", "profile"]),
        code_challenge: Some(random_token()),
        issued_at: base,
        expires_at: base + TimeDelta::hours(1) + TimeDelta::minutes(10),
    }
}

/// Puts a live code that refers to `grant_id`, as every grant id the engine
/// revokes before or after creation comes from a code. The store keeps a
/// revoked marker only while a code refers to it (see
/// [`Store::purge_expired`]), so without this a `purge_expired` running
/// concurrently on a shared store could rightly drop the marker that a
/// check is about to test.
async fn anchor_code(store: &dyn Store, rule: &str, client: &Client, grant_id: &GrantId) {
    let code = CodeRecord {
        grant_id: grant_id.clone(),
        ..code_record(client, &random_user(), base_time())
    };
    ok(rule, store.put_code(&code).await);
}

fn grant_record(client: &Client, user: Option<&UserId>, base: DateTime<Utc>) -> GrantRecord {
    GrantRecord {
        id: GrantId::generate(),
        client_id: client.client_id.clone(),
        user_id: user.cloned(),
        scope: scopes(&["balance", "profile"]),
        created_at: base,
    }
}

fn token_record(
    grant: &GrantRecord,
    kind: TokenKind,
    issued_at: DateTime<Utc>,
    expires_at: Option<DateTime<Utc>>,
) -> TokenRecord {
    TokenRecord {
        hash: random_hash(),
        kind,
        grant_id: grant.id.clone(),
        client_id: grant.client_id.clone(),
        user_id: grant.user_id.clone(),
        scope: grant.scope.clone(),
        issued_at,
        expires_at,
        consumed_at: None,
    }
}

/// An access token live for two hours and, for a user grant, a refresh
/// token live for 30 days; a client-credentials grant gets one access
/// token that never expires.
fn grant_tokens(grant: &GrantRecord, base: DateTime<Utc>) -> Vec<TokenRecord> {
    if grant.user_id.is_none() {
        return vec![token_record(grant, TokenKind::Access, base, None)];
    }
    vec![
        token_record(
            grant,
            TokenKind::Access,
            base,
            Some(base + TimeDelta::hours(2)),
        ),
        token_record(
            grant,
            TokenKind::Refresh,
            base,
            Some(base + TimeDelta::days(30)),
        ),
    ]
}

async fn fresh_grant(
    store: &dyn Store,
    rule: &str,
    client: &Client,
    user: Option<&UserId>,
    base: DateTime<Utc>,
) -> (GrantRecord, Vec<TokenRecord>) {
    let grant = grant_record(client, user, base);
    let tokens = grant_tokens(&grant, base);
    ensure_eq(
        rule,
        "create_grant of a fresh id",
        ok(rule, store.create_grant(&grant, &tokens).await),
        true,
    );
    (grant, tokens)
}

// ---------------------------------------------------------------------------
// Assertions

fn fail(rule: &str, msg: &str) -> ! {
    panic!("doorman testkit [{rule}]: {msg}")
}

fn ensure(rule: &str, cond: bool, msg: &str) {
    if !cond {
        fail(rule, msg);
    }
}

fn ensure_eq<T: PartialEq + Debug>(rule: &str, what: &str, got: T, want: T) {
    if got != want {
        fail(rule, &format!("{what}:\n  got:  {got:?}\n  want: {want:?}"));
    }
}

fn ok<T>(rule: &str, r: Result<T, StoreError>) -> T {
    r.unwrap_or_else(|e| fail(rule, &format!("store call failed: {e}")))
}
