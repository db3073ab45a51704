//! A server over the memory store with a manual clock and a fake host,
//! driven at the `http::Request` level (no web server).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use doorman::redirect::form_encode;
use doorman::{
    AuthorizationServer, Balance, Balances, Claims, ClientRegistration, Config, ConfigBuilder,
    Endpoints, GrantType, ManualClock, MemoryStore, SecretChoice, ServerBuilder, Sessions,
    StoreError, UserClaims, UserId,
};
use http::{Request, Response};
use serde_json::Value;
use sha2::Digest;

pub const ISSUER: &str = "https://idp.example";
pub const REDIRECT: &str = "https://app.example/cb";

/// The logged-in user comes from an `x-user` header; the real host uses its session cookie.
pub struct HeaderSessions;

#[async_trait]
impl Sessions for HeaderSessions {
    async fn current_user(
        &self,
        parts: &http::request::Parts,
    ) -> Result<Option<UserId>, StoreError> {
        if parts.headers.contains_key("x-session-broken") {
            return Err(StoreError::message("session store down"));
        }
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

pub struct Users;

#[async_trait]
impl Claims for Users {
    async fn claims(&self, user: &UserId) -> Result<Option<UserClaims>, StoreError> {
        Ok(match user.as_str() {
            "alice" => Some(
                UserClaims::new()
                    .base("id", 1)
                    .base("status", 1)
                    .scoped("profile", "username", "alice")
                    .scoped("profile", "email", "alice@example.com"),
            ),
            "bob" => Some(
                UserClaims::new()
                    .base("id", 2)
                    .scoped("profile", "username", "bob"),
            ),
            _ => None,
        })
    }
}

#[async_trait]
impl Balances for Users {
    async fn balance(&self, user: &UserId) -> Result<Option<Balance>, StoreError> {
        Ok((user.as_str() == "alice").then(|| Balance {
            quota: 1_000_000,
            used_quota: 250_000,
            formatted: Balance::format_units(1_000_000, 250_000, 1000),
            topup_url: format!("{ISSUER}/topup"),
        }))
    }
}

pub struct Harness {
    pub server: AuthorizationServer,
    pub clock: Arc<ManualClock>,
    pub store: Arc<MemoryStore>,
}

pub fn config() -> ConfigBuilder {
    Config::builder(ISSUER)
        .endpoints(Endpoints::under("/api/oauth2"))
        .scope("profile", "See your username and email")
        .scope("balance", "See your balance")
        .scope("admin", "Administer")
}

pub fn harness() -> Harness {
    harness_with(config())
}

pub fn harness_with(config: ConfigBuilder) -> Harness {
    harness_hosted(config, |b| {
        b.claims(Arc::new(Users)).balances(Arc::new(Users))
    })
}

/// A harness over a fresh memory store and manual clock whose host parts
/// (claims, balances, wire profile) `host` sets on the builder.
pub fn harness_hosted(
    config: ConfigBuilder,
    host: impl FnOnce(ServerBuilder) -> ServerBuilder,
) -> Harness {
    let clock = Arc::new(ManualClock::starting_now());
    let store = Arc::new(MemoryStore::new());
    let builder =
        AuthorizationServer::builder(config.build(), store.clone(), Arc::new(HeaderSessions))
            .clock(clock.clone());
    Harness {
        server: host(builder).build(),
        clock,
        store,
    }
}

pub struct App {
    pub id: String,
    pub secret: Option<String>,
}

impl Harness {
    pub async fn app(&self, trusted: bool) -> App {
        self.app_with(|r| {
            r.trusted = trusted;
        })
        .await
    }

    pub async fn app_with(&self, f: impl FnOnce(&mut ClientRegistration)) -> App {
        let mut reg = ClientRegistration::new("Test App", vec![REDIRECT.to_owned()]);
        reg.scope = Some(doorman::Scopes::parse("profile balance").unwrap());
        reg.grant_types = Some(vec![
            GrantType::AuthorizationCode,
            GrantType::RefreshToken,
            GrantType::ClientCredentials,
        ]);
        f(&mut reg);
        if reg.secret == SecretChoice::Public {
            reg.grant_types = Some(vec![GrantType::AuthorizationCode, GrantType::RefreshToken]);
        }
        let r = self.server.register_client(reg).await.expect("registers");
        App {
            id: r.client.client_id,
            secret: r.client_secret.map(|s| s.secret().to_owned()),
        }
    }

    pub async fn authorize(&self, query: &str, user: Option<&str>) -> Response<Bytes> {
        let mut b = Request::get(format!("/api/oauth2/authorize?{query}"));
        if let Some(u) = user {
            b = b.header("x-user", u);
        }
        self.server.authorize(b.body(Bytes::new()).unwrap()).await
    }

    pub async fn post_consent(&self, fields: &[(String, String)], user: &str) -> Response<Bytes> {
        let body = serde_urlencoded::to_string(fields).unwrap();
        let req = Request::post("/api/oauth2/authorize")
            .header("x-user", user)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .unwrap();
        self.server.authorize(req).await
    }

    /// Runs authorize (trusted auto-approve or consent approve) and returns the code.
    pub async fn code(&self, app: &App, scope: &str, challenge: Option<&str>) -> String {
        let mut q = vec![
            ("response_type", "code".to_owned()),
            ("client_id", app.id.clone()),
            ("redirect_uri", REDIRECT.to_owned()),
            ("scope", scope.to_owned()),
            ("state", "xyz".to_owned()),
        ];
        if let Some(c) = challenge {
            q.push(("code_challenge", c.to_owned()));
            q.push(("code_challenge_method", "S256".to_owned()));
        }
        let res = self
            .authorize(&serde_urlencoded::to_string(&q).unwrap(), Some("alice"))
            .await;
        assert_eq!(res.status(), 200, "consent page expected");
        let fields = hidden_fields(&body_text(&res));
        let mut fields = fields;
        fields.push(("decision".into(), "approve".into()));
        let res = self.post_consent(&fields, "alice").await;
        let loc = location(&res);
        query_param(&loc, "code").expect("code in redirect")
    }

    pub async fn token(&self, pairs: &[(&str, &str)]) -> Response<Bytes> {
        let body = serde_urlencoded::to_string(pairs).unwrap();
        let req = Request::post("/api/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(body))
            .unwrap();
        self.server.token(req).await
    }

    pub async fn token_basic(
        &self,
        id: &str,
        secret: &str,
        pairs: &[(&str, &str)],
    ) -> Response<Bytes> {
        let body = serde_urlencoded::to_string(pairs).unwrap();
        let req = Request::post("/api/oauth2/token")
            .header("content-type", "application/x-www-form-urlencoded")
            .header("authorization", basic(id, secret))
            .body(Bytes::from(body))
            .unwrap();
        self.server.token(req).await
    }

    /// Exchanges a code with client_secret_post; returns the JSON body.
    pub async fn exchange(&self, app: &App, code: &str, verifier: Option<&str>) -> Response<Bytes> {
        let secret = app.secret.clone().unwrap_or_default();
        let mut p = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", REDIRECT),
            ("client_id", &app.id),
        ];
        if !secret.is_empty() {
            p.push(("client_secret", &secret));
        }
        if let Some(v) = verifier {
            p.push(("code_verifier", v));
        }
        self.token(&p).await
    }

    pub async fn get_bearer(&self, path: &str, token: &str) -> Response<Bytes> {
        let req = Request::get(path)
            .header("authorization", format!("Bearer {token}"))
            .body(Bytes::new())
            .unwrap();
        if path.contains("topup") {
            self.server.topup(req).await
        } else {
            self.server.userinfo(req).await
        }
    }

    pub async fn post_client(
        &self,
        path: &str,
        app: &App,
        pairs: &[(&str, &str)],
    ) -> Response<Bytes> {
        let secret = app.secret.clone().unwrap_or_default();
        let mut p: Vec<(&str, &str)> = vec![("client_id", &app.id), ("client_secret", &secret)];
        p.extend_from_slice(pairs);
        let req = Request::post(path)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(Bytes::from(serde_urlencoded::to_string(&p).unwrap()))
            .unwrap();
        if path.ends_with("revoke") {
            self.server.revoke(req).await
        } else {
            self.server.introspect(req).await
        }
    }
}

pub fn basic(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form_encode(id), form_encode(secret));
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

pub fn pkce_pair() -> (String, String) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".to_owned();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

pub fn json(res: &Response<Bytes>) -> Value {
    serde_json::from_slice(res.body()).unwrap_or_else(|_| panic!("not JSON: {}", body_text(res)))
}

pub fn body_text(res: &Response<Bytes>) -> String {
    String::from_utf8_lossy(res.body()).into_owned()
}

pub fn location(res: &Response<Bytes>) -> String {
    assert_eq!(
        res.status(),
        302,
        "expected a redirect, got {}: {}",
        res.status(),
        body_text(res)
    );
    res.headers()["location"].to_str().unwrap().to_owned()
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    serde_urlencoded::from_str::<Vec<(String, String)>>(q)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// The hidden inputs of the default consent page.
pub fn hidden_fields(html: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for part in html.split("<input type=\"hidden\" ").skip(1) {
        let name = between(part, "name=\"", "\"");
        let value = between(part, "value=\"", "\"");
        out.push((unescape(&name), unescape(&value)));
    }
    out
}

fn between(s: &str, a: &str, b: &str) -> String {
    let start = s.find(a).unwrap() + a.len();
    let end = s[start..].find(b).unwrap() + start;
    s[start..end].to_owned()
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&amp;", "&")
}

pub fn err_code(res: &Response<Bytes>) -> String {
    json(res)["error"].as_str().unwrap_or("").to_owned()
}
