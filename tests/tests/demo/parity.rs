//! Adapter parity (issue 5): the axum and the actix-web demo, started with
//! the same issuer and developer token, get the same requests and must give
//! the same answers — status, every header but `date` (and hop-by-hop
//! `connection`), and the body, byte
//! for byte. Where an answer carries fresh random values (tokens, client
//! ids) the values are masked and everything else is still compared.

use doorman_tests::demo::Adapter;
use doorman_tests::*;
use serde_json::{Value, json};

const ISSUER: &str = "https://id.parity.example";
const DEV_TOKEN: &str = "parity-dev-token-0123456789abcdef0123456789";

/// The two demos, axum first.
struct Pair {
    axum: TestEnv,
    actix: TestEnv,
}

impl Pair {
    async fn start() -> Self {
        let (axum, actix) = tokio::join!(
            TestEnv::start_as(Adapter::Axum, ISSUER, DEV_TOKEN),
            TestEnv::start_as(Adapter::Actix, ISSUER, DEV_TOKEN),
        );
        Self { axum, actix }
    }

    async fn stop(self) {
        tokio::join!(self.axum.stop(), self.actix.stop());
    }

    /// Builds the same request against each demo and answers both responses.
    async fn both<F>(&self, what: &str, build: F) -> (Resp, Resp)
    where
        F: Fn(&TestEnv, reqwest::Client) -> reqwest::RequestBuilder,
    {
        let a = self
            .axum
            .send(build(&self.axum, self.axum.api()), what)
            .await;
        let b = self
            .actix
            .send(build(&self.actix, self.actix.api()), what)
            .await;
        (a, b)
    }

    /// Sends the same request to both and asserts identical answers.
    async fn same<F>(&self, what: &str, build: F) -> Resp
    where
        F: Fn(&TestEnv, reqwest::Client) -> reqwest::RequestBuilder,
    {
        let (a, b) = self.both(what, build).await;
        assert_identical(what, &a, &b);
        a
    }
}

/// Headers as sorted `name: value` lines, without `date` (the clock) and
/// `connection`: hop-by-hop connection management is the HTTP server's, not
/// the provider's (actix-web says `close` after refusing an unread
/// oversized body; hyper closes such a connection without saying so).
fn header_lines(r: &Resp) -> Vec<String> {
    let mut lines: Vec<String> = r
        .headers
        .iter()
        .filter(|(n, _)| !matches!(n.as_str(), "date" | "connection"))
        .map(|(n, v)| format!("{n}: {}", String::from_utf8_lossy(v.as_bytes())))
        .collect();
    lines.sort();
    lines
}

fn assert_identical(what: &str, a: &Resp, b: &Resp) {
    assert_eq!(a.status, b.status, "{what}: status\naxum:  {a}\nactix: {b}");
    assert_eq!(
        header_lines(a),
        header_lines(b),
        "{what}: headers\naxum:  {a}\nactix: {b}"
    );
    assert_eq!(a.body, b.body, "{what}: body\naxum:  {a}\nactix: {b}");
}

/// A JSON value with every string under `keys` replaced by `"<masked>"`.
fn masked(mut v: Value, keys: &[&str]) -> Value {
    if let Some(obj) = v.as_object_mut() {
        for key in keys {
            if let Some(field) = obj.get_mut(*key) {
                assert!(
                    field.is_string() || field.is_number(),
                    "{key} is not a scalar: {field}"
                );
                *field = json!("<masked>");
            }
        }
    }
    v
}

/// Same status and headers (but `date` and `content-length`), and the same
/// JSON once the random fields are masked.
fn assert_same_shape(what: &str, a: &Resp, b: &Resp, random: &[&str]) {
    assert_eq!(a.status, b.status, "{what}: status\naxum:  {a}\nactix: {b}");
    let strip = |r: &Resp| -> Vec<String> {
        header_lines(r)
            .into_iter()
            .filter(|l| !l.starts_with("content-length:"))
            .collect()
    };
    assert_eq!(
        strip(a),
        strip(b),
        "{what}: headers\naxum:  {a}\nactix: {b}"
    );
    assert_eq!(
        masked(a.json(), random),
        masked(b.json(), random),
        "{what}: body\naxum:  {a}\nactix: {b}"
    );
}

fn oversized_form() -> String {
    format!(
        "grant_type=client_credentials&pad={}",
        "a".repeat(70 * 1024)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapters_answer_the_same_bytes() {
    let pair = Pair::start().await;

    // Discovery.
    let meta = pair
        .same("GET metadata", |e, c| {
            c.get(e.url("/.well-known/oauth-authorization-server"))
        })
        .await;
    assert_eq!(meta.status, StatusCode::OK, "{meta}");
    assert_eq!(meta.json()["issuer"], ISSUER);

    // RFC 6750 answers of the bearer check.
    let r = pair
        .same("userinfo without a token", |e, c| c.get(e.url(USERINFO)))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r}");
    assert!(r.header("www-authenticate").is_some(), "{r}");
    let r = pair
        .same("userinfo with a bogus token", |e, c| {
            c.get(e.url(USERINFO)).bearer_auth("not-a-token")
        })
        .await;
    assert_bearer_error(&r, "invalid_token");
    pair.same("userinfo with two Authorization headers", |e, c| {
        c.get(e.url(USERINFO))
            .header("authorization", "Bearer a")
            .header("authorization", "Bearer b")
    })
    .await;
    pair.same("topup with Basic instead of Bearer", |e, c| {
        c.get(e.url(TOPUP))
            .header("authorization", "Basic Zm9vOmJhcg==")
    })
    .await;

    // Token endpoint errors.
    let cases: &[(&str, &str, Option<&str>)] = &[
        ("empty form", "", None),
        ("unknown grant type", "grant_type=password", None),
        (
            "duplicate parameter",
            "grant_type=client_credentials&grant_type=client_credentials",
            None,
        ),
        (
            "bad Basic credentials",
            "grant_type=client_credentials",
            Some("Basic bm9ib2R5Om5vdGhpbmc="),
        ),
        (
            "malformed Basic",
            "grant_type=client_credentials",
            Some("Basic !!!"),
        ),
        (
            "unknown client (post)",
            "grant_type=client_credentials&client_id=nobody&client_secret=x",
            None,
        ),
        (
            "bad code",
            "grant_type=authorization_code&code=nope&client_id=nobody&client_secret=x",
            None,
        ),
    ];
    for (what, body, auth) in cases {
        let r = pair
            .same(what, |e, c| {
                let mut req = c
                    .post(e.url(TOKEN))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(*body);
                if let Some(auth) = auth {
                    req = req.header("authorization", *auth);
                }
                req
            })
            .await;
        assert!(r.status.is_client_error(), "{what}: {r}");
        assert_eq!(
            r.header("cache-control").as_deref(),
            Some("no-store"),
            "{what}: {r}"
        );
    }
    let r = pair
        .same("token with an unsupported content type", |e, c| {
            c.post(e.url(TOKEN))
                .header("content-type", "text/plain")
                .body("grant_type=client_credentials")
        })
        .await;
    assert!(r.status.is_client_error(), "{r}");
    let r = pair
        .same("token with a malformed JSON body", |e, c| {
            c.post(e.url(TOKEN))
                .header("content-type", "application/json")
                .body("{\"grant_type\":")
        })
        .await;
    assert!(r.status.is_client_error(), "{r}");

    // Body limit and methods.
    for path in [TOKEN, INTROSPECT, REVOKE, AUTHORIZE] {
        let r = pair
            .same(&format!("oversized body to {path}"), |e, c| {
                c.post(e.url(path))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(oversized_form())
            })
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE, "{path}: {r}");
    }
    for (method, path) in [
        (reqwest::Method::GET, TOKEN),
        (reqwest::Method::PUT, AUTHORIZE),
        (reqwest::Method::DELETE, USERINFO),
        (reqwest::Method::GET, INTROSPECT),
    ] {
        let r = pair
            .same(&format!("{method} {path}"), |e, c| {
                c.request(method.clone(), e.url(path))
            })
            .await;
        assert_eq!(
            r.status,
            StatusCode::METHOD_NOT_ALLOWED,
            "{method} {path}: {r}"
        );
    }

    // Introspection and revocation without a client.
    for path in [INTROSPECT, REVOKE] {
        let r = pair
            .same(&format!("{path} without client auth"), |e, c| {
                c.post(e.url(path)).form(&[("token", "x")])
            })
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{path}: {r}");
    }

    // Authorization errors shown as pages, in both languages.
    for lang in ["en", "zh-CN,zh;q=0.9"] {
        for (what, query) in [
            (
                "unknown client",
                "?response_type=code&client_id=nobody&redirect_uri=https%3A%2F%2Fapp.example%2Fcb&state=s",
            ),
            ("no parameters", ""),
        ] {
            let r = pair
                .same(&format!("authorize, {what}, {lang}"), |e, c| {
                    c.get(e.url(&format!("{AUTHORIZE}{query}")))
                        .header("accept-language", lang)
                })
                .await;
            assert_eq!(r.status, StatusCode::BAD_REQUEST, "{what}: {r}");
            assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
        }
    }

    // The host's own routes (shared host code; the adapters only carry them).
    pair.same("login page", |e, c| {
        c.get(e.url("/login?return_to=%2Faccount%2Fauthorizations"))
    })
    .await;
    pair.same("account page logged out", |e, c| {
        c.get(e.url(ACCOUNT_AUTHORIZATIONS))
    })
    .await;
    pair.same("unknown path", |e, c| c.get(e.url("/no/such/path")))
        .await;
    pair.same("registration without the developer token", |e, c| {
        c.post(e.url(OAUTH_APPS)).json(&json!({"name": "x"}))
    })
    .await;
    pair.same("registration with invalid input", |e, c| {
        c.post(e.url(OAUTH_APPS))
            .bearer_auth(DEV_TOKEN)
            .json(&json!({"name": "", "redirect_uri": 7}))
    })
    .await;
    pair.same("RFC 7591 registration with a bad redirect URI", |e, c| {
        c.post(e.url(REGISTER))
            .bearer_auth(DEV_TOKEN)
            .json(&json!({"redirect_uris": ["http://evil.example/cb#frag"]}))
    })
    .await;

    // Successful answers carry random values: same shape, masked values.
    let (apps_a, apps_b) = tokio::join!(pair.axum.app(), pair.actix.app());
    let cc = |e: &TestEnv, app: &App, c: reqwest::Client| {
        c.post(e.url(TOKEN))
            .header(
                "authorization",
                basic_header(&app.client_id, &app.client_secret),
            )
            .form(&[("grant_type", "client_credentials"), ("scope", "balance")])
    };
    let a = pair
        .axum
        .send(cc(&pair.axum, &apps_a, pair.axum.api()), "cc")
        .await;
    let b = pair
        .actix
        .send(cc(&pair.actix, &apps_b, pair.actix.api()), "cc")
        .await;
    assert_eq!(a.status, StatusCode::OK, "{a}");
    assert_same_shape("client_credentials", &a, &b, &["access_token"]);
    let (cc_a, cc_b) = (
        a.json()["access_token"].as_str().unwrap().to_owned(),
        b.json()["access_token"].as_str().unwrap().to_owned(),
    );
    // A token without a user on userinfo: 403, the same bytes.
    let a = pair.axum.userinfo(&cc_a).await;
    let b = pair.actix.userinfo(&cc_b).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a}");
    assert_identical("userinfo with a client_credentials token", &a, &b);
    // Introspection of a live token: same shape.
    let a = pair.axum.introspect(&apps_a, &cc_a).await;
    let b = pair.actix.introspect(&apps_b, &cc_b).await;
    assert_eq!(a.json()["active"], true, "{a}");
    assert_same_shape(
        "introspection",
        &a,
        &b,
        &["client_id", "exp", "iat", "sub", "jti"],
    );
    // Revocation, then the revoked token everywhere: identical.
    let a = pair.axum.revoke(&apps_a, &cc_a).await;
    let b = pair.actix.revoke(&apps_b, &cc_b).await;
    assert_identical("revocation", &a, &b);
    let a = pair.axum.introspect(&apps_a, &cc_a).await;
    let b = pair.actix.introspect(&apps_b, &cc_b).await;
    assert_eq!(a.json(), json!({"active": false}), "{a}");
    assert_identical("introspection of a revoked token", &a, &b);
    let a = pair.axum.bearer_get(TOPUP, &cc_a).await;
    let b = pair.actix.bearer_get(TOPUP, &cc_b).await;
    assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{a}");
    assert_bearer_error(&a, "invalid_token");
    assert_identical("topup with a revoked token", &a, &b);

    // A user's token with `profile` only: userinfo the same (but for the
    // creation time of the seeded user), topup 403 insufficient_scope.
    let ((_, ta), (_, tb)) = tokio::join!(
        pair.axum.tokens_for(ALICE, "profile"),
        pair.actix.tokens_for(ALICE, "profile"),
    );
    let a = pair.axum.userinfo(&ta.access_token).await;
    let b = pair.actix.userinfo(&tb.access_token).await;
    assert_eq!(a.status, StatusCode::OK, "{a}");
    assert_same_shape("userinfo, profile", &a, &b, &["created_time"]);
    let a = pair.axum.bearer_get(TOPUP, &ta.access_token).await;
    let b = pair.actix.bearer_get(TOPUP, &tb.access_token).await;
    assert_eq!(a.status, StatusCode::FORBIDDEN, "{a}");
    assert_bearer_error(&a, "insufficient_scope");
    assert_identical("topup without the balance scope", &a, &b);

    pair.stop().await;
}

/// Asserts a `WWW-Authenticate` naming RFC 6750's `error`.
fn assert_bearer_error(r: &Resp, error: &str) {
    let h = r.header("www-authenticate").unwrap_or_default();
    assert!(h.contains(&format!("error=\"{error}\"")), "{r}");
}
