//! Criterion benchmarks of whole requests through each adapter, in
//! process (no socket), beside the same request to the core: what
//! `doorman-axum` and `doorman-actix` add to a request — routing, the
//! conversions to and from the core's `http` types, the request's future
//! and its box — on one memory-store server.
//!
//! `cargo bench -p doorman-bench --bench adapters` (about a minute). The
//! core's other hot paths are `doorman`'s `hot_paths` bench; the load
//! benchmark over real HTTP is the `doorman-bench` binary. See
//! `BENCHMARKS.md`.
#![forbid(unsafe_code)]
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use actix_web::App;
use actix_web::rt::System;
use async_trait::async_trait;
use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use doorman::redirect::form_encode;
use doorman::{
    AuthorizationServer, Claims, ClientRegistration, Config, Endpoints, GrantType, MemoryStore,
    Scopes, Sessions, StoreError, UserClaims, UserId,
};
use http::{Request, StatusCode, header};
use tower::ServiceExt as _;

const REDIRECT: &str = "https://app.example/cb";
const USERINFO: &str = "/api/oauth2/userinfo";
const INTROSPECT: &str = "/api/oauth2/introspect";
const FORM: &str = "application/x-www-form-urlencoded";

/// Everyone is user 1 (the session is not what is measured).
struct OneUser;

#[async_trait]
impl Sessions for OneUser {
    async fn current_user(&self, _: &http::request::Parts) -> Result<Option<UserId>, StoreError> {
        Ok(Some(UserId::new("1")))
    }
    fn login_url(&self, return_to: &str) -> String {
        format!("/login?return_to={}", form_encode(return_to))
    }
}

#[async_trait]
impl Claims for OneUser {
    async fn claims(&self, user: &UserId) -> Result<Option<UserClaims>, StoreError> {
        Ok((user.as_str() == "1").then(|| {
            UserClaims::new()
                .base("id", 1)
                .scoped("profile", "username", "alice")
                .scoped("profile", "email", "alice@example.com")
        }))
    }
}

/// The server, a confidential client's `Authorization: Basic` value and
/// a user's access token, made through the real authorize and token calls.
struct Fixture {
    server: AuthorizationServer,
    basic: String,
    token: String,
}

async fn fixture() -> Fixture {
    let config = Config::builder("https://id.example")
        .endpoints(Endpoints::under("/api/oauth2"))
        .scope("profile", "See your profile")
        .build();
    let server =
        AuthorizationServer::builder(config, Arc::new(MemoryStore::new()), Arc::new(OneUser))
            .claims(Arc::new(OneUser))
            .build();
    let mut reg = ClientRegistration::new("Bench", vec![REDIRECT.to_owned()]);
    reg.trusted = true;
    reg.scope = Some(Scopes::parse("profile").unwrap());
    reg.grant_types = Some(vec![GrantType::AuthorizationCode]);
    let app = server.register_client(reg).await.unwrap();
    let id = app.client.client_id;
    let secret = app.client_secret.unwrap();
    let basic = format!(
        "Basic {}",
        STANDARD.encode(format!(
            "{}:{}",
            form_encode(&id),
            form_encode(secret.secret())
        ))
    );
    let query = format!(
        "response_type=code&client_id={}&redirect_uri={}&scope=profile&state=s&auto_authorize=true",
        form_encode(&id),
        form_encode(REDIRECT)
    );
    let res = server
        .authorize(
            Request::get(format!("/api/oauth2/authorize?{query}"))
                .body(Bytes::new())
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::FOUND);
    let location = res.headers()[header::LOCATION].to_str().unwrap();
    let code = location
        .split(['?', '&'])
        .find_map(|p| p.strip_prefix("code="))
        .unwrap_or_else(|| panic!("no code in {location}"));
    let body = format!(
        "grant_type=authorization_code&code={code}&redirect_uri={}",
        form_encode(REDIRECT)
    );
    let res = server
        .token(
            Request::post("/api/oauth2/token")
                .header(header::AUTHORIZATION, basic.as_str())
                .header(header::CONTENT_TYPE, FORM)
                .body(Bytes::from(body))
                .unwrap(),
        )
        .await;
    assert_eq!(res.status(), StatusCode::OK);
    let json: serde_json::Value = serde_json::from_slice(res.body()).unwrap();
    let token = json["access_token"].as_str().unwrap().to_owned();
    Fixture {
        server,
        basic,
        token,
    }
}

/// The same two requests, to the core's endpoints and through each
/// adapter. Each path is checked to answer 2xx once, before it is timed
/// (the loops' own checks are debug-only).
fn adapters(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let f = rt.block_on(fixture());
    let bearer = format!("Bearer {}", f.token);
    let introspect = format!("token={}", f.token);

    rt.block_on(async {
        let req = Request::post(INTROSPECT)
            .header(header::AUTHORIZATION, f.basic.as_str())
            .header(header::CONTENT_TYPE, FORM)
            .body(Bytes::from(introspect.clone()))
            .unwrap();
        assert!(f.server.introspect(req).await.status().is_success());
    });
    let mut g = c.benchmark_group("core");
    g.bench_function("userinfo", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::get(USERINFO)
                .header(header::AUTHORIZATION, bearer.as_str())
                .body(Bytes::new())
                .unwrap();
            let res = f.server.userinfo(req).await;
            debug_assert!(res.status().is_success());
            black_box(res);
        });
    });
    g.bench_function("introspection", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::post(INTROSPECT)
                .header(header::AUTHORIZATION, f.basic.as_str())
                .header(header::CONTENT_TYPE, FORM)
                .body(Bytes::from(introspect.clone()))
                .unwrap();
            let res = f.server.introspect(req).await;
            debug_assert!(res.status().is_success());
            black_box(res);
        });
    });
    g.finish();

    // What the framework costs with no OAuth work: the same route answering
    // the core's userinfo answer, stored once.
    let constant = rt.block_on(async {
        let req = Request::get(USERINFO)
            .header(header::AUTHORIZATION, bearer.as_str())
            .body(Bytes::new())
            .unwrap();
        f.server.userinfo(req).await
    });
    assert!(constant.status().is_success());

    let router: axum::Router = doorman_axum::router(f.server.clone());
    let bare: axum::Router = {
        let constant = constant.clone();
        axum::Router::new().route(
            USERINFO,
            axum::routing::get(move || {
                let constant = constant.clone();
                async move { constant.map(Body::from) }
            }),
        )
    };
    rt.block_on(async {
        for (path, auth, body) in [
            (USERINFO, bearer.as_str(), None),
            (INTROSPECT, f.basic.as_str(), Some(introspect.clone())),
        ] {
            let req = match body {
                None => Request::get(path)
                    .header(header::AUTHORIZATION, auth)
                    .body(Body::empty()),
                Some(form) => Request::post(path)
                    .header(header::AUTHORIZATION, auth)
                    .header(header::CONTENT_TYPE, FORM)
                    .body(Body::from(form)),
            };
            let res = router.clone().oneshot(req.unwrap()).await.unwrap();
            assert!(res.status().is_success(), "axum {path}: {}", res.status());
        }
    });
    let mut g = c.benchmark_group("axum");
    g.bench_function("constant", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::get(USERINFO)
                .header(header::AUTHORIZATION, bearer.as_str())
                .body(Body::empty())
                .unwrap();
            let res = bare.clone().oneshot(req).await.unwrap();
            debug_assert!(res.status().is_success());
            black_box(res);
        });
    });
    g.bench_function("userinfo", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::get(USERINFO)
                .header(header::AUTHORIZATION, bearer.as_str())
                .body(Body::empty())
                .unwrap();
            let res = router.clone().oneshot(req).await.unwrap();
            debug_assert!(res.status().is_success());
            black_box(res);
        });
    });
    g.bench_function("introspection", |b| {
        b.to_async(&rt).iter(|| async {
            let req = Request::post(INTROSPECT)
                .header(header::AUTHORIZATION, f.basic.as_str())
                .header(header::CONTENT_TYPE, FORM)
                .body(Body::from(introspect.clone()))
                .unwrap();
            let res = router.clone().oneshot(req).await.unwrap();
            debug_assert!(res.status().is_success());
            black_box(res);
        });
    });
    g.finish();

    // actix-web's services live on its own single-threaded system.
    let system = System::new();
    let app = system.block_on(actix_web::test::init_service(
        App::new().configure(doorman_actix::configure(f.server.clone())),
    ));
    let bare = system.block_on(actix_web::test::init_service(App::new().route(
        USERINFO,
        actix_web::web::get().to(move || {
            let constant = constant.clone();
            async move { doorman_actix::into_response(constant) }
        }),
    )));
    system.block_on(async {
        let userinfo = actix_web::test::TestRequest::get()
            .uri(USERINFO)
            .insert_header(("authorization", bearer.as_str()));
        let introspection = actix_web::test::TestRequest::post()
            .uri(INTROSPECT)
            .insert_header(("authorization", f.basic.as_str()))
            .insert_header(("content-type", FORM))
            .set_payload(introspect.clone());
        for req in [userinfo, introspection] {
            let res = actix_web::test::call_service(&app, req.to_request()).await;
            assert!(res.status().is_success(), "actix: {}", res.status());
        }
    });
    let mut g = c.benchmark_group("actix");
    g.bench_function("constant", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let req = actix_web::test::TestRequest::get()
                        .uri(USERINFO)
                        .insert_header(("authorization", bearer.as_str()))
                        .to_request();
                    let res = actix_web::test::call_service(&bare, req).await;
                    debug_assert!(res.status().is_success());
                    black_box(res);
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("userinfo", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let req = actix_web::test::TestRequest::get()
                        .uri(USERINFO)
                        .insert_header(("authorization", bearer.as_str()))
                        .to_request();
                    let res = actix_web::test::call_service(&app, req).await;
                    debug_assert!(res.status().is_success());
                    black_box(res);
                }
                start.elapsed()
            })
        });
    });
    g.bench_function("introspection", |b| {
        b.iter_custom(|iters| {
            system.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    let req = actix_web::test::TestRequest::post()
                        .uri(INTROSPECT)
                        .insert_header(("authorization", f.basic.as_str()))
                        .insert_header(("content-type", FORM))
                        .set_payload(introspect.clone())
                        .to_request();
                    let res = actix_web::test::call_service(&app, req).await;
                    debug_assert!(res.status().is_success());
                    black_box(res);
                }
                start.elapsed()
            })
        });
    });
    g.finish();
}

criterion_group!(benches, adapters);
criterion_main!(benches);
