//! Criterion micro-benchmarks of the core's hot paths, with no web server:
//! credential generation and hashing, request parsing, bearer validation
//! against the memory store, and whole endpoint calls at the
//! `http::Request` level (code exchange, client credentials,
//! introspection, userinfo, authorize), and the memory store's purge of
//! one user's many expired grants.
//!
//! `cargo bench -p doorman --bench hot_paths` (about a minute). The load
//! benchmark over real HTTP is `doorman-bench`; see `BENCHMARKS.md`.
#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use chrono::{DateTime, TimeDelta, Utc};
use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use doorman::redirect::form_encode;
use doorman::wire::Params;
use doorman::{
    AccessToken, AuthorizationServer, Balance, Balances, Claims, ClientRegistration, Config,
    Endpoints, GrantId, GrantRecord, GrantStore, GrantType, MemoryStore, Scopes, Sessions, Store,
    StoreError, TokenHash, TokenKind, TokenRecord, UserClaims, UserId,
};
use http::{Request, Response};
use sha2::Digest as _;

const ISSUER: &str = "https://idp.example";
const REDIRECT: &str = "https://app.example/cb";

/// The logged-in user comes from a header (a host would read its cookie).
struct HeaderSessions;

#[async_trait]
impl Sessions for HeaderSessions {
    async fn current_user(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(parts
            .headers
            .get("x-user")
            .and_then(|v| v.to_str().ok())
            .map(UserId::new))
    }

    fn login_url(&self, return_to: &str) -> String {
        format!("/login?return_to={}", form_encode(return_to))
    }
}

/// One user, answered from memory: the host's cost is not measured here.
struct Users;

#[async_trait]
impl Claims for Users {
    async fn claims(&self, user: &UserId) -> Result<Option<UserClaims>, StoreError> {
        Ok((user.as_str() == "1").then(|| {
            UserClaims::new()
                .base("id", 1)
                .scoped("profile", "username", "alice")
                .scoped("profile", "email", "alice@example.com")
        }))
    }
}

#[async_trait]
impl Balances for Users {
    async fn balance(&self, user: &UserId) -> Result<Option<Balance>, StoreError> {
        Ok((user.as_str() == "1").then(|| Balance {
            quota: 1_000_000,
            used_quota: 250_000,
            formatted: Balance::format_units(1_000_000, 250_000, 1000),
            topup_url: format!("{ISSUER}/topup"),
        }))
    }
}

/// A server over a memory store with one trusted confidential client.
struct Fixture {
    server: AuthorizationServer,
    client_id: String,
    basic: String,
}

fn basic(id: &str, secret: &str) -> String {
    format!(
        "Basic {}",
        STANDARD.encode(format!("{}:{}", form_encode(id), form_encode(secret)))
    )
}

async fn fixture() -> Fixture {
    let config = Config::builder(ISSUER)
        .endpoints(Endpoints::under("/api/oauth2"))
        .scope("profile", "See your username and email")
        .scope("balance", "See your balance")
        .build();
    let server = AuthorizationServer::builder(
        config,
        Arc::new(MemoryStore::new()),
        Arc::new(HeaderSessions),
    )
    .claims(Arc::new(Users))
    .balances(Arc::new(Users))
    .build();
    let mut reg = ClientRegistration::new("Bench App", vec![REDIRECT.to_owned()]);
    reg.trusted = true;
    reg.scope = Some(Scopes::parse("profile balance").unwrap());
    reg.grant_types = Some(vec![
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ]);
    let app = server.register_client(reg).await.unwrap();
    let secret = app.client_secret.unwrap();
    let client_id = app.client.client_id;
    Fixture {
        basic: basic(&client_id, secret.secret()),
        client_id,
        server,
    }
}

fn pkce() -> (String, String) {
    let verifier = AccessToken::generate().secret().to_owned();
    let challenge = URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

fn form_post(path: &str, auth: &str, pairs: &[(&str, &str)]) -> Request<Bytes> {
    Request::post(path)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("authorization", auth)
        .body(Bytes::from(serde_urlencoded::to_string(pairs).unwrap()))
        .unwrap()
}

fn ok(res: &Response<Bytes>) {
    assert!(
        res.status().is_success() || res.status() == 302,
        "{}: {}",
        res.status(),
        String::from_utf8_lossy(res.body())
    );
}

impl Fixture {
    fn authorize_request(&self, challenge: &str) -> Request<Bytes> {
        let query = serde_urlencoded::to_string([
            ("response_type", "code"),
            ("client_id", self.client_id.as_str()),
            ("redirect_uri", REDIRECT),
            ("scope", "profile balance"),
            ("state", "bench"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("auto_authorize", "true"),
        ])
        .unwrap();
        Request::get(format!("/api/oauth2/authorize?{query}"))
            .header("x-user", "1")
            .body(Bytes::new())
            .unwrap()
    }

    /// A fresh code and its verifier, through the real authorize call.
    async fn code(&self) -> (String, String) {
        let (verifier, challenge) = pkce();
        let res = self
            .server
            .authorize(self.authorize_request(&challenge))
            .await;
        assert_eq!(res.status(), 302);
        let location = res.headers()["location"].to_str().unwrap();
        let query = location.split_once('?').unwrap().1;
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query).unwrap();
        let code = pairs.into_iter().find(|(k, _)| k == "code").unwrap().1;
        (code, verifier)
    }

    fn exchange_request(&self, code: &str, verifier: &str) -> Request<Bytes> {
        form_post(
            "/api/oauth2/token",
            &self.basic,
            &[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT),
                ("code_verifier", verifier),
            ],
        )
    }

    async fn access_token(&self) -> String {
        let (code, verifier) = self.code().await;
        let res = self
            .server
            .token(self.exchange_request(&code, &verifier))
            .await;
        ok(&res);
        let json: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
        json["access_token"].as_str().unwrap().to_owned()
    }
}

fn credentials(c: &mut Criterion) {
    let mut g = c.benchmark_group("credentials");
    g.bench_function("generate_and_hash", |b| {
        b.iter(|| black_box(AccessToken::generate().hash()));
    });
    let token = AccessToken::generate();
    g.bench_function("hash_presented", |b| {
        b.iter(|| black_box(TokenHash::of(black_box(token.secret()))));
    });
    g.finish();
}

fn balance(c: &mut Criterion) {
    let mut g = c.benchmark_group("balance");
    // What every userinfo answer with the balance scope formats.
    g.bench_function("format_units", |b| {
        b.iter(|| {
            black_box(Balance::format_units(
                black_box(1_000_000),
                black_box(250_123),
                black_box(1000),
            ))
        });
    });
    g.finish();
}

fn parsing(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    let (verifier, _) = pkce();
    let code = AccessToken::generate();
    let body = serde_urlencoded::to_string([
        ("grant_type", "authorization_code"),
        ("code", code.secret()),
        ("redirect_uri", REDIRECT),
        ("code_verifier", verifier.as_str()),
    ])
    .unwrap();
    g.bench_function("token_form", |b| {
        b.iter(|| black_box(Params::from_form(black_box(body.as_bytes())).unwrap()));
    });
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", "client_0123456789abcdef"),
        ("redirect_uri", REDIRECT),
        ("scope", "profile balance"),
        ("state", "af0ifjsldkj"),
        (
            "code_challenge",
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        ),
        ("code_challenge_method", "S256"),
    ])
    .unwrap();
    g.bench_function("authorize_query", |b| {
        b.iter(|| black_box(Params::from_query(Some(black_box(&query))).unwrap()));
    });
    // The worst a client may send the token endpoint: a body at the
    // default 64 KiB limit of distinct short names, read and checked for
    // repeats as every POST endpoint does.
    let mut hostile = String::new();
    let mut i = 0;
    while hostile.len() < 64 * 1024 - 16 {
        hostile.push_str(&format!("{i:x}=&"));
        i += 1;
    }
    g.bench_function("hostile_form_64k", |b| {
        b.iter(|| {
            let p = Params::from_form(black_box(hostile.as_bytes())).unwrap();
            black_box(p.reject_repeats().is_ok())
        });
    });
    g.finish();
}

fn endpoints(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = Arc::new(rt.block_on(fixture()));
    let token = rt.block_on(f.access_token());
    // Other tokens in the store, so lookups do not hit a near-empty map.
    rt.block_on(async {
        for _ in 0..2_000 {
            f.access_token().await;
        }
    });

    let mut g = c.benchmark_group("memory_store");
    g.bench_function("validate_token", |b| {
        b.to_async(&rt).iter(|| async {
            black_box(f.server.validate_token(&token, None).await.unwrap());
        });
    });
    let bearer = format!("Bearer {token}");
    g.bench_function("userinfo_request", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::get("/api/oauth2/userinfo")
                .header("authorization", bearer.as_str())
                .body(Bytes::new())
                .unwrap();
            let res = f.server.userinfo(req).await;
            debug_assert!(res.status().is_success());
            black_box(res);
        });
    });
    g.bench_function("introspection_request", |b| {
        b.to_async(&rt).iter(|| async {
            let req = form_post(
                "/api/oauth2/introspect",
                &f.basic,
                &[("token", token.as_str())],
            );
            black_box(f.server.introspect(req).await);
        });
    });
    g.bench_function("client_credentials_request", |b| {
        b.to_async(&rt).iter(|| async {
            let req = form_post(
                "/api/oauth2/token",
                &f.basic,
                &[("grant_type", "client_credentials"), ("scope", "profile")],
            );
            black_box(f.server.token(req).await);
        });
    });
    g.bench_function("authorize_request", |b| {
        b.to_async(&rt).iter(|| async {
            let (_, challenge) = pkce();
            black_box(f.server.authorize(f.authorize_request(&challenge)).await);
        });
    });
    // Each iteration redeems a fresh code; minting it is not timed.
    g.bench_function("code_exchange_request", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let f = f.clone();
            async move {
                let mut codes = Vec::with_capacity(iters as usize);
                for _ in 0..iters {
                    codes.push(f.code().await);
                }
                let started = Instant::now();
                for (code, verifier) in &codes {
                    let res = f.server.token(f.exchange_request(code, verifier)).await;
                    debug_assert!(res.status().is_success());
                    black_box(res);
                }
                started.elapsed()
            }
        });
    });
    g.finish();
}

/// Grants of one user to one app purged at once (finding M1 in
/// `BENCHMARKS.md`: the purge used to be quadratic in this number).
const PURGED_GRANTS: usize = 50_000;

/// A store holding `n` grants of one user to one client, each with one
/// access token that expires an hour after `t0`.
async fn expired_grants(n: usize, t0: DateTime<Utc>) -> MemoryStore {
    let store = MemoryStore::new();
    for _ in 0..n {
        let grant = GrantRecord {
            id: GrantId::generate(),
            client_id: "app".to_owned(),
            user_id: Some(UserId::new("1")),
            scope: Scopes::parse("profile").unwrap(),
            created_at: t0,
        };
        let token = TokenRecord {
            hash: AccessToken::generate().hash(),
            kind: TokenKind::Access,
            grant_id: grant.id.clone(),
            client_id: grant.client_id.clone(),
            user_id: grant.user_id.clone(),
            scope: grant.scope.clone(),
            issued_at: t0,
            expires_at: Some(t0 + TimeDelta::hours(1)),
            consumed_at: None,
        };
        assert!(store.create_grant(&grant, &[token]).await.unwrap());
    }
    store
}

fn purge(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let t0 = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
    let mut g = c.benchmark_group("memory_store");
    g.sample_size(10).sampling_mode(SamplingMode::Flat);
    // Only the purge is timed, not filling the store or dropping it.
    g.bench_function(
        format!("purge_{}k_grants_one_user", PURGED_GRANTS / 1000),
        |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let store = rt.block_on(expired_grants(PURGED_GRANTS, t0));
                    let started = Instant::now();
                    let purged = rt
                        .block_on(store.purge_expired(t0 + TimeDelta::hours(2)))
                        .unwrap();
                    total += started.elapsed();
                    assert_eq!(purged.grants, PURGED_GRANTS as u64);
                }
                total
            });
        },
    );
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = credentials, balance, parsing, endpoints, purge
}
criterion_main!(benches);
