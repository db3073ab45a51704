//! Criterion benchmarks of whole requests through each adapter, in
//! process (no socket), beside the same request to the core's `handle`: what
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
use actix_web::test::TestRequest;
use async_trait::async_trait;
use axum::body::Body;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use doorman::redirect::form_encode;
use doorman::server::Endpoint;
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

/// The server and the requests' credentials: a confidential client's
/// `Authorization: Basic` value and a user's access token, made through the
/// real authorize and token calls.
async fn fixture() -> (AuthorizationServer, Requests) {
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
    let requests = Requests {
        bearer: format!("Bearer {token}"),
        basic,
        form: format!("token={token}"),
    };
    (server, requests)
}

/// One of the two requests every row sends.
#[derive(Clone, Copy)]
enum Call {
    Userinfo,
    Introspection,
}

/// What the requests carry: the user's bearer header, the client's Basic
/// header and the introspection form.
struct Requests {
    bearer: String,
    basic: String,
    form: String,
}

impl Requests {
    /// `call` in `http` 1 types, for the core (`Bytes`) and axum (`Body`).
    fn http<B: From<String> + Default>(&self, call: Call) -> Request<B> {
        match call {
            Call::Userinfo => Request::get(USERINFO)
                .header(header::AUTHORIZATION, self.bearer.as_str())
                .body(B::default()),
            Call::Introspection => Request::post(INTROSPECT)
                .header(header::AUTHORIZATION, self.basic.as_str())
                .header(header::CONTENT_TYPE, FORM)
                .body(B::from(self.form.clone())),
        }
        .unwrap()
    }

    /// `call` for actix-web's test service.
    fn actix(&self, call: Call) -> TestRequest {
        match call {
            Call::Userinfo => TestRequest::get()
                .uri(USERINFO)
                .insert_header(("authorization", self.bearer.as_str())),
            Call::Introspection => TestRequest::post()
                .uri(INTROSPECT)
                .insert_header(("authorization", self.basic.as_str()))
                .insert_header(("content-type", FORM))
                .set_payload(self.form.clone()),
        }
    }
}

/// The rows of one framework: its constant route, then the two requests
/// through the adapter.
const ROWS: [(&str, Call); 3] = [
    ("constant", Call::Userinfo),
    ("userinfo", Call::Userinfo),
    ("introspection", Call::Introspection),
];

/// The same two requests, to the core's `handle` and through each
/// adapter. Each path is checked to answer 2xx once, before it is timed
/// (the loops' own checks are debug-only).
fn adapters(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (server, r) = rt.block_on(fixture());

    let mut g = c.benchmark_group("core");
    for (name, call, endpoint) in [
        ("userinfo", Call::Userinfo, Endpoint::Userinfo),
        ("introspection", Call::Introspection, Endpoint::Introspect),
    ] {
        let res = rt.block_on(server.handle(endpoint, r.http(call)));
        assert!(res.status().is_success(), "core {name}: {}", res.status());
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let res = server.handle(endpoint, r.http(call)).await;
                debug_assert!(res.status().is_success());
                black_box(res);
            });
        });
    }
    g.finish();

    // What the framework costs with no OAuth work: the same route answering
    // the core's userinfo answer, stored once.
    let constant = rt.block_on(server.userinfo(r.http(Call::Userinfo)));

    let adapter: axum::Router = doorman_axum::router(server.clone());
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
    let mut g = c.benchmark_group("axum");
    for (name, call) in ROWS {
        let router = if name == "constant" { &bare } else { &adapter };
        let res = rt
            .block_on(router.clone().oneshot(r.http::<Body>(call)))
            .unwrap();
        assert!(res.status().is_success(), "axum {name}: {}", res.status());
        g.bench_function(name, |b| {
            b.to_async(&rt).iter(|| async {
                let res = router.clone().oneshot(r.http::<Body>(call)).await.unwrap();
                debug_assert!(res.status().is_success());
                black_box(res);
            });
        });
    }
    g.finish();

    // actix-web's services live on its own single-threaded system.
    let system = System::new();
    let adapter = system.block_on(actix_web::test::init_service(
        App::new().configure(doorman_actix::configure(server.clone())),
    ));
    let bare = system.block_on(actix_web::test::init_service(App::new().route(
        USERINFO,
        actix_web::web::get().to(move || {
            let constant = constant.clone();
            async move { doorman_actix::into_response(constant) }
        }),
    )));
    let mut g = c.benchmark_group("actix");
    for (name, call) in ROWS {
        let app = if name == "constant" { &bare } else { &adapter };
        let res = system.block_on(actix_web::test::call_service(
            app,
            r.actix(call).to_request(),
        ));
        assert!(res.status().is_success(), "actix {name}: {}", res.status());
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                system.block_on(async {
                    let start = Instant::now();
                    for _ in 0..iters {
                        let res =
                            actix_web::test::call_service(app, r.actix(call).to_request()).await;
                        debug_assert!(res.status().is_success());
                        black_box(res);
                    }
                    start.elapsed()
                })
            });
        });
    }
    g.finish();
}

criterion_group!(benches, adapters);
criterion_main!(benches);
