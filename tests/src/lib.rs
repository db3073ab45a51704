//! Black-box test harness for `doorman-demo`.
//!
//! Every test starts the demo in-process on an ephemeral loopback port with
//! its own temporary SQLite file, and drives it only over real HTTP: with
//! `reqwest` (a "browser" with a cookie store and redirects off, and a plain
//! API client) and with the `oauth2` crate as an independent third-party
//! client. Nothing here touches the demo's or the library's internals, so the
//! same scenarios check every adapter.
//!
//! # Adapters
//!
//! A scenario is an `async fn scenario(env: &TestEnv)`; [`adapters!`] turns
//! a list of them into one `#[tokio::test]` per scenario and adapter, in a
//! module named after the adapter (`axum::scenario`, `actix::scenario`):
//! every scenario runs against both adapters, and a scenario that only
//! runs on one is a defect.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

pub use doorman_demo as demo;
use doorman_demo::{Adapter, DemoConfig, RunningDemo};
pub use reqwest::{StatusCode, Url};
use serde_json::Value;

/// Generates one `#[tokio::test]` per scenario and adapter.
///
/// ```ignore
/// async fn discovery(env: &TestEnv) { /* … */ }
/// async fn broken(env: &TestEnv) { /* … */ }
/// adapters!(discovery, #[ignore = "demo bug: …"] broken);
/// ```
///
/// expands to `mod axum { #[tokio::test] async fn discovery() … }` and the
/// same `mod actix { … }`. Each test starts its own demo on its own
/// temporary database and stops it afterwards.
#[macro_export]
macro_rules! adapters {
    ($($(#[$meta:meta])* $name:ident),* $(,)?) => {
        $crate::adapter_tests!(axum, Axum; $($(#[$meta])* $name),*);
        $crate::adapter_tests!(actix, Actix; $($(#[$meta])* $name),*);
    };
}

/// One adapter's module of tests; used by [`adapters!`].
#[doc(hidden)]
#[macro_export]
macro_rules! adapter_tests {
    ($module:ident, $variant:ident; $($(#[$meta:meta])* $name:ident),*) => {
        mod $module {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                $(#[$meta])*
                async fn $name() {
                    let env = $crate::TestEnv::start($crate::demo::Adapter::$variant).await;
                    super::$name(&env).await;
                    env.stop().await;
                }
            )*
        }
    };
}

/// The scope names the demo offers.
pub const SCOPES: &str = "profile balance";
/// A redirect URI for test apps; never visited (redirects are not followed).
pub const REDIRECT_URI: &str = "https://app.example/cb";
/// The demo's authorization endpoint path.
pub const AUTHORIZE: &str = "/api/oauth2/authorize";
/// The demo's token endpoint path.
pub const TOKEN: &str = "/api/oauth2/token";
/// The demo's userinfo endpoint path.
pub const USERINFO: &str = "/api/oauth2/userinfo";
/// The demo's top-up endpoint path.
pub const TOPUP: &str = "/api/oauth2/topup";
/// The demo's revocation endpoint path.
pub const REVOKE: &str = "/api/oauth2/revoke";
/// The demo's introspection endpoint path.
pub const INTROSPECT: &str = "/api/oauth2/introspect";
/// The demo's app-registration API path.
pub const OAUTH_APPS: &str = "/api/oauth_apps";
/// The demo's RFC 7591 registration endpoint path.
pub const REGISTER: &str = "/api/oauth2/register";
/// The demo's account page listing authorized apps.
pub const ACCOUNT_AUTHORIZATIONS: &str = "/account/authorizations";

/// A seeded user: `(username, password)`.
pub const ALICE: (&str, &str) = ("alice", "alice-password");
/// The other seeded user.
pub const BOB: (&str, &str) = ("bob", "bob-password");

/// A copy of an [`Adapter`] value (the demo's enum need not be `Clone`).
pub fn same_adapter(a: &Adapter) -> Adapter {
    match a {
        Adapter::Axum => Adapter::Axum,
        Adapter::Actix => Adapter::Actix,
    }
}

/// The adapter's name, for messages.
pub fn adapter_name(a: &Adapter) -> &'static str {
    match a {
        Adapter::Axum => "axum",
        Adapter::Actix => "actix",
    }
}

/// Where a test's data lives.
#[derive(Debug)]
pub enum Database {
    /// A temporary SQLite file, deleted (with its `-wal`, `-shm` and
    /// `-journal` companions) when dropped.
    TempSqlite(PathBuf),
    /// An external database (PostgreSQL), left as it is.
    External(String),
}

impl Database {
    /// A fresh, unique SQLite file under [`std::env::temp_dir`].
    pub fn temp_sqlite() -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = format!(
            "doorman-test-{}-{}-{nanos}.db",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        Self::TempSqlite(std::env::temp_dir().join(name))
    }

    /// The URL the demo connects to.
    pub fn url(&self) -> String {
        match self {
            Self::TempSqlite(path) => format!("sqlite://{}?mode=rwc", path.display()),
            Self::External(url) => url.clone(),
        }
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Self::TempSqlite(path) = self {
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                let _ = std::fs::remove_file(PathBuf::from(p));
            }
        }
    }
}

/// One running demo and the clients that talk to it.
///
/// Issuer and developer token stay the same across [`TestEnv::restart`].
pub struct TestEnv {
    // Field order matters: the demo stops before its database is deleted.
    running: tokio::sync::Mutex<Option<RunningDemo>>,
    api: Mutex<reqwest::Client>,
    adapter: Adapter,
    base_url: Mutex<String>,
    issuer: String,
    dev_token: String,
    db: Database,
}

impl std::fmt::Debug for TestEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestEnv")
            .field("adapter", &adapter_name(&self.adapter))
            .field("base_url", &self.base_url())
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

impl TestEnv {
    /// Starts the demo with `adapter` on a fresh temporary SQLite database.
    pub async fn start(adapter: Adapter) -> Self {
        Self::start_with(adapter, Database::temp_sqlite()).await
    }

    /// Starts the demo with `adapter` on `db`.
    pub async fn start_with(adapter: Adapter, db: Database) -> Self {
        Self::start_configured(adapter, db, None, None).await
    }

    /// Starts the demo with `adapter` on a fresh temporary SQLite database,
    /// with a fixed issuer and developer token, so that two demos (one per
    /// adapter) give the same answers to the same requests.
    pub async fn start_as(adapter: Adapter, issuer: &str, dev_token: &str) -> Self {
        Self::start_configured(
            adapter,
            Database::temp_sqlite(),
            Some(issuer.to_owned()),
            Some(dev_token.to_owned()),
        )
        .await
    }

    async fn start_configured(
        adapter: Adapter,
        db: Database,
        issuer: Option<String>,
        dev_token: Option<String>,
    ) -> Self {
        let mut config = DemoConfig::for_tests(db.url(), same_adapter(&adapter));
        config.issuer = issuer;
        config.dev_token = dev_token;
        let running = match doorman_demo::start(config).await {
            Ok(r) => r,
            Err(e) => panic!(
                "the demo ({}) did not start on {}: {e:?}",
                adapter_name(&adapter),
                db.url()
            ),
        };
        Self {
            base_url: Mutex::new(running.base_url.trim_end_matches('/').to_owned()),
            issuer: running.issuer.clone(),
            dev_token: running.dev_token.clone(),
            running: tokio::sync::Mutex::new(Some(running)),
            api: Mutex::new(plain_client()),
            adapter,
            db,
        }
    }

    /// Stops the demo; the temporary database is deleted afterwards.
    pub async fn stop(self) {
        if let Some(r) = self.running.lock().await.take() {
            r.shutdown().await;
        }
    }

    /// Shuts the demo down and starts it again on the same database, with
    /// the same issuer and developer token. It listens on a new port (the
    /// demo binds without `SO_REUSEADDR`, so the old one may be held by
    /// TIME_WAIT connections); [`TestEnv::url`] follows. Make new browsers
    /// afterwards: old ones hold cookies and connections for the old port.
    pub async fn restart(&self) {
        let mut slot = self.running.lock().await;
        if let Some(r) = slot.take() {
            r.shutdown().await;
        }
        let mut config = DemoConfig::for_tests(self.db.url(), same_adapter(&self.adapter));
        config.issuer = Some(self.issuer.clone());
        config.dev_token = Some(self.dev_token.clone());
        let running = match doorman_demo::start(config).await {
            Ok(r) => r,
            Err(e) => panic!("the demo did not restart on {}: {e:?}", self.db.url()),
        };
        assert_eq!(running.issuer, self.issuer, "issuer changed across restart");
        *self.base_url.lock().unwrap() = running.base_url.trim_end_matches('/').to_owned();
        *self.api.lock().unwrap() = plain_client();
        *slot = Some(running);
    }

    /// The adapter serving this demo.
    pub fn adapter(&self) -> &Adapter {
        &self.adapter
    }

    /// `http://127.0.0.1:<port>`, no trailing slash.
    pub fn base_url(&self) -> String {
        self.base_url.lock().unwrap().clone()
    }

    /// The issuer the demo reports.
    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The developer token for app registration.
    pub fn dev_token(&self) -> &str {
        &self.dev_token
    }

    /// `location` relative to this server: the base URL stripped if present.
    pub fn local(&self, location: &str) -> String {
        let base = self.base_url();
        match location.strip_prefix(base.as_str()) {
            Some("") => "/".to_owned(),
            Some(rest) if rest.starts_with('/') => rest.to_owned(),
            _ => location.to_owned(),
        }
    }

    /// An absolute URL for `path` (absolute URLs pass through).
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("http://") || path.starts_with("https://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base_url())
        }
    }

    /// A client without cookies, for API calls.
    pub fn api(&self) -> reqwest::Client {
        self.api.lock().unwrap().clone()
    }

    /// A fresh "browser": cookie store on, redirects off.
    pub fn browser(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    /// An HTTP client for the `oauth2` crate (reqwest 0.12), redirects off.
    pub fn oauth2_http(&self) -> oauth2::reqwest::Client {
        oauth2::reqwest::ClientBuilder::new()
            .redirect(oauth2::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(30))
            .build()
            .unwrap()
    }

    // ---- plain HTTP -------------------------------------------------------

    /// `GET path` with `client`.
    pub async fn get(&self, client: &reqwest::Client, path: &str) -> Resp {
        Resp::read(client.get(self.url(path)).send().await, "GET", path).await
    }

    /// `POST path` with a form body.
    pub async fn post_form(
        &self,
        client: &reqwest::Client,
        path: &str,
        form: &[(&str, &str)],
    ) -> Resp {
        Resp::read(
            client.post(self.url(path)).form(form).send().await,
            "POST",
            path,
        )
        .await
    }

    /// Sends a prepared request.
    pub async fn send(&self, request: reqwest::RequestBuilder, what: &str) -> Resp {
        Resp::read(request.send().await, what, "").await
    }

    // ---- login ------------------------------------------------------------

    /// `POST /login` with `browser`; answers the raw response.
    pub async fn post_login(
        &self,
        browser: &reqwest::Client,
        user: (&str, &str),
        return_to: &str,
    ) -> Resp {
        self.post_form(
            browser,
            "/login",
            &[
                ("username", user.0),
                ("password", user.1),
                ("return_to", return_to),
            ],
        )
        .await
    }

    /// A new browser logged in as `user` (asserts a 303 and a cookie).
    pub async fn login(&self, user: (&str, &str)) -> reqwest::Client {
        let browser = self.browser();
        let res = self.post_login(&browser, user, "/").await;
        assert_eq!(
            res.status,
            StatusCode::SEE_OTHER,
            "login as {} failed: {res}",
            user.0
        );
        assert!(!res.set_cookies().is_empty(), "login set no cookie: {res}");
        browser
    }

    // ---- app registration ---------------------------------------------------

    /// `POST /api/oauth_apps` with the developer token and a JSON body.
    pub async fn register_app_raw(&self, body: &Value) -> Resp {
        let req = self
            .api()
            .post(self.url(OAUTH_APPS))
            .bearer_auth(&self.dev_token)
            .json(body);
        self.send(req, "POST /api/oauth_apps").await
    }

    /// Registers an app and answers its credentials (asserts success).
    pub async fn register(&self, spec: AppSpec<'_>) -> App {
        let mut body = serde_json::json!({
            "name": spec.name,
            "description": "registered by doorman-tests",
            "redirect_uri": spec.redirect_uri,
        });
        if spec.auto_authorize {
            body["auto_authorize"] = Value::Bool(true);
        }
        if let Some(secret) = spec.client_secret {
            body["client_secret"] = Value::from(secret);
        }
        let res = self.register_app_raw(&body).await;
        assert_eq!(res.status, StatusCode::OK, "app registration failed: {res}");
        let v = res.json();
        assert_eq!(v["success"], true, "{res}");
        let data = &v["data"];
        App {
            id: data["id"].clone(),
            name: data["name"].as_str().unwrap_or_default().to_owned(),
            client_id: data["client_id"]
                .as_str()
                .expect("data.client_id")
                .to_owned(),
            client_secret: data["client_secret"]
                .as_str()
                .expect("data.client_secret")
                .to_owned(),
            redirect_uri: spec.redirect_uri.to_owned(),
        }
    }

    /// Registers an untrusted app named "Test App" redirecting to [`REDIRECT_URI`].
    pub async fn app(&self) -> App {
        self.register(AppSpec::new("Test App")).await
    }

    /// Registers a client through RFC 7591 (asserts 201); answers the body.
    pub async fn register_rfc7591(&self, body: &Value) -> Value {
        let req = self
            .api()
            .post(self.url(REGISTER))
            .bearer_auth(&self.dev_token)
            .json(body);
        let res = self.send(req, "POST /api/oauth2/register").await;
        assert_eq!(
            res.status,
            StatusCode::CREATED,
            "RFC 7591 registration failed: {res}"
        );
        res.json()
    }

    // ---- authorization ----------------------------------------------------

    /// The path and query of an authorization request (form-encoded).
    pub fn authorize_path(
        &self,
        app: &App,
        scope: &str,
        state: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let mut pairs = vec![
            ("response_type", "code"),
            ("client_id", app.client_id.as_str()),
            ("redirect_uri", app.redirect_uri.as_str()),
            ("scope", scope),
            ("state", state),
        ];
        pairs.extend_from_slice(extra);
        path_with_query(AUTHORIZE, &pairs)
    }

    /// Follows an authorization request as a logged-in browser: approves the
    /// consent page if one is shown, and answers the code. Checks `state` and
    /// `iss` on the redirect.
    pub async fn authorize_and_get_code(
        &self,
        browser: &reqwest::Client,
        app: &App,
        scope: &str,
        extra: &[(&str, &str)],
    ) -> String {
        let state = random_state();
        let path = self.authorize_path(app, scope, &state, extra);
        let res = self.get(browser, &path).await;
        let res = if res.status == StatusCode::OK {
            let form = ConsentForm::parse(&res);
            self.submit_consent(browser, &form, "approve").await
        } else {
            res
        };
        let location = res
            .redirect_location()
            .unwrap_or_else(|| panic!("no redirect with a code: {res}"));
        assert!(
            location.starts_with(&app.redirect_uri),
            "redirect to {location}, not {}",
            app.redirect_uri
        );
        assert_eq!(
            param(&location, "state").as_deref(),
            Some(state.as_str()),
            "state in {location}"
        );
        assert_eq!(
            param(&location, "iss").as_deref(),
            Some(self.issuer()),
            "iss in {location}"
        );
        param(&location, "code").unwrap_or_else(|| panic!("no code in {location}"))
    }

    /// Submits a consent form with `decision` (`approve`/`deny`).
    pub async fn submit_consent(
        &self,
        browser: &reqwest::Client,
        form: &ConsentForm,
        decision: &str,
    ) -> Resp {
        let mut fields: Vec<(&str, &str)> = form
            .fields
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        fields.push(("decision", decision));
        self.post_form(browser, &form.action, &fields).await
    }

    // ---- token endpoint ---------------------------------------------------

    /// A token request with `params` (form body) and client authentication `auth`.
    pub async fn token_request(&self, auth: ClientAuth<'_>, params: &[(&str, &str)]) -> Resp {
        self.client_post(TOKEN, auth, params).await
    }

    /// A client-authenticated form POST to `path`.
    pub async fn client_post(
        &self,
        path: &str,
        auth: ClientAuth<'_>,
        params: &[(&str, &str)],
    ) -> Resp {
        let mut form: Vec<(&str, &str)> = params.to_vec();
        let mut req = self.api().post(self.url(path));
        match auth {
            ClientAuth::Basic(id, secret) => {
                req = req.header("authorization", basic_header(id, secret))
            }
            ClientAuth::Post(id, secret) => {
                form.push(("client_id", id));
                form.push(("client_secret", secret));
            }
            ClientAuth::None => {}
        }
        self.send(req.form(&form), path).await
    }

    /// Exchanges `code` (client_secret_basic), asserting success.
    pub async fn exchange(&self, app: &App, code: &str, verifier: Option<&str>) -> Tokens {
        let mut params = vec![
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", app.redirect_uri.as_str()),
        ];
        if let Some(v) = verifier {
            params.push(("code_verifier", v));
        }
        Tokens::from_response(&self.token_request(app.basic(), &params).await)
    }

    /// Refreshes with `refresh_token` (client_secret_basic), optionally narrowing to `scope`.
    pub async fn refresh(&self, app: &App, refresh_token: &str, scope: Option<&str>) -> Resp {
        let mut params = vec![
            ("grant_type", "refresh_token"),
            ("refresh_token", refresh_token),
        ];
        if let Some(s) = scope {
            params.push(("scope", s));
        }
        self.token_request(app.basic(), &params).await
    }

    /// Registers an app, logs `user` in, authorizes `scope` (with PKCE) and
    /// exchanges the code.
    pub async fn tokens_for(&self, user: (&str, &str), scope: &str) -> (App, Tokens) {
        let app = self.app().await;
        let browser = self.login(user).await;
        let tokens = self.tokens_with(&browser, &app, scope).await;
        (app, tokens)
    }

    /// Authorizes `scope` for `app` in `browser` (with PKCE) and exchanges the code.
    pub async fn tokens_with(&self, browser: &reqwest::Client, app: &App, scope: &str) -> Tokens {
        let (verifier, challenge) = pkce_pair();
        let code = self
            .authorize_and_get_code(
                browser,
                app,
                scope,
                &[
                    ("code_challenge", challenge.as_str()),
                    ("code_challenge_method", "S256"),
                ],
            )
            .await;
        self.exchange(app, &code, Some(&verifier)).await
    }

    // ---- resources and token administration -------------------------------

    /// `GET path` with `Authorization: Bearer token`.
    pub async fn bearer_get(&self, path: &str, token: &str) -> Resp {
        self.send(self.api().get(self.url(path)).bearer_auth(token), path)
            .await
    }

    /// `GET /api/oauth2/userinfo` with `token`.
    pub async fn userinfo(&self, token: &str) -> Resp {
        self.bearer_get(USERINFO, token).await
    }

    /// Asserts that `token` no longer works at userinfo (401).
    pub async fn assert_revoked(&self, token: &str) {
        let res = self.userinfo(token).await;
        assert_eq!(
            res.status,
            StatusCode::UNAUTHORIZED,
            "token still works: {res}"
        );
    }

    /// Asserts that `token` works at userinfo (200).
    pub async fn assert_active(&self, token: &str) {
        let res = self.userinfo(token).await;
        assert_eq!(res.status, StatusCode::OK, "token does not work: {res}");
    }

    /// RFC 7009 revocation of `token` by `app` (client_secret_basic).
    pub async fn revoke(&self, app: &App, token: &str) -> Resp {
        self.client_post(REVOKE, app.basic(), &[("token", token)])
            .await
    }

    /// RFC 7662 introspection of `token` by `app` (client_secret_basic).
    pub async fn introspect(&self, app: &App, token: &str) -> Resp {
        self.client_post(INTROSPECT, app.basic(), &[("token", token)])
            .await
    }
}

/// What to register.
#[derive(Debug, Clone, Copy)]
pub struct AppSpec<'a> {
    /// Display name.
    pub name: &'a str,
    /// The one redirect URI.
    pub redirect_uri: &'a str,
    /// `auto_authorize` at registration (may skip the consent page).
    pub auto_authorize: bool,
    /// A chosen client secret.
    pub client_secret: Option<&'a str>,
}

impl<'a> AppSpec<'a> {
    /// An untrusted app redirecting to [`REDIRECT_URI`].
    pub fn new(name: &'a str) -> Self {
        Self {
            name,
            redirect_uri: REDIRECT_URI,
            auto_authorize: false,
            client_secret: None,
        }
    }

    /// With another redirect URI.
    pub fn redirect_uri(mut self, uri: &'a str) -> Self {
        self.redirect_uri = uri;
        self
    }

    /// Registered with `auto_authorize: true`.
    pub fn trusted(mut self) -> Self {
        self.auto_authorize = true;
        self
    }
}

/// A registered app.
#[derive(Debug, Clone)]
pub struct App {
    /// The `id` the registration API answered.
    pub id: Value,
    /// Its name.
    pub name: String,
    /// `client_id`.
    pub client_id: String,
    /// `client_secret`.
    pub client_secret: String,
    /// Its registered redirect URI.
    pub redirect_uri: String,
}

impl App {
    /// client_secret_basic with this app's credentials.
    pub fn basic(&self) -> ClientAuth<'_> {
        ClientAuth::Basic(&self.client_id, &self.client_secret)
    }

    /// client_secret_post with this app's credentials.
    pub fn post(&self) -> ClientAuth<'_> {
        ClientAuth::Post(&self.client_id, &self.client_secret)
    }

    /// An `oauth2` crate client for this app against `env`.
    pub fn oauth2_client(
        &self,
        env: &TestEnv,
        auth_type: oauth2::AuthType,
    ) -> oauth2::basic::BasicClient<
        oauth2::EndpointSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointNotSet,
        oauth2::EndpointSet,
    > {
        oauth2::basic::BasicClient::new(oauth2::ClientId::new(self.client_id.clone()))
            .set_client_secret(oauth2::ClientSecret::new(self.client_secret.clone()))
            .set_auth_uri(oauth2::AuthUrl::new(env.url(AUTHORIZE)).unwrap())
            .set_token_uri(oauth2::TokenUrl::new(env.url(TOKEN)).unwrap())
            .set_redirect_uri(oauth2::RedirectUrl::new(self.redirect_uri.clone()).unwrap())
            .set_auth_type(auth_type)
    }
}

/// How a client authenticates at the token, revocation and introspection endpoints.
#[derive(Debug, Clone, Copy)]
pub enum ClientAuth<'a> {
    /// `Authorization: Basic` (client_secret_basic).
    Basic(&'a str, &'a str),
    /// `client_id` and `client_secret` in the body (client_secret_post).
    Post(&'a str, &'a str),
    /// No client authentication.
    None,
}

/// The `Authorization: Basic` value for `id:secret` (RFC 6749 §2.3.1:
/// both form-encoded first).
pub fn basic_header(id: &str, secret: &str) -> String {
    let raw = format!("{}:{}", form_encode(id), form_encode(secret));
    format!("Basic {}", base64_encode(raw.as_bytes()))
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value.
pub fn form_encode(s: &str) -> String {
    let mut url = Url::parse("http://x/").unwrap();
    url.query_pairs_mut().append_pair("v", s);
    url.query()
        .unwrap_or("v=")
        .trim_start_matches("v=")
        .to_owned()
}

/// `path?k=v&…`, form-encoded.
pub fn path_with_query(path: &str, pairs: &[(&str, &str)]) -> String {
    let mut url = Url::parse("http://x/").unwrap().join(path).unwrap();
    url.query_pairs_mut().extend_pairs(pairs);
    format!("{}?{}", url.path(), url.query().unwrap_or(""))
}

/// A random `state` value.
pub fn random_state() -> String {
    oauth2::CsrfToken::new_random().secret().clone()
}

/// A PKCE pair `(verifier, S256 challenge)`.
pub fn pkce_pair() -> (String, String) {
    let (challenge, verifier) = oauth2::PkceCodeChallenge::new_random_sha256();
    (verifier.secret().clone(), challenge.as_str().to_owned())
}

/// The query (and fragment-free) parameters of a URL or relative reference.
pub fn query_params(location: &str) -> Vec<(String, String)> {
    let url = Url::parse("http://relative.invalid/")
        .unwrap()
        .join(location)
        .unwrap();
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The value of query parameter `name` in `location`, if present once or more.
pub fn param(location: &str, name: &str) -> Option<String> {
    query_params(location)
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Resp {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: reqwest::header::HeaderMap,
    /// Body as text (lossy).
    pub body: String,
    /// What was requested, for messages.
    pub what: String,
}

impl std::fmt::Display for Resp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let body: String = self.body.chars().take(2000).collect();
        write!(
            f,
            "{} -> {} {:?} {body}",
            self.what, self.status, self.headers
        )
    }
}

impl Resp {
    async fn read(res: reqwest::Result<reqwest::Response>, method: &str, path: &str) -> Self {
        let what = format!("{method} {path}");
        let res = res.unwrap_or_else(|e| panic!("{what}: request failed: {e:?}"));
        let status = res.status();
        let headers = res.headers().clone();
        let bytes = res
            .bytes()
            .await
            .unwrap_or_else(|e| panic!("{what}: reading the body failed: {e:?}"));
        Self {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            what,
        }
    }

    /// The body as JSON (panics with the response if it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {self}"))
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// `Location`, if any.
    pub fn location(&self) -> Option<String> {
        self.header("location")
    }

    /// `Location` of a 302 or 303 answer.
    pub fn redirect_location(&self) -> Option<String> {
        if self.status == StatusCode::FOUND || self.status == StatusCode::SEE_OTHER {
            self.location()
        } else {
            None
        }
    }

    /// The `name=value` parts of every `Set-Cookie`.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all("set-cookie")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .collect()
    }

    /// `error` of an OAuth JSON error body.
    pub fn oauth_error(&self) -> String {
        self.json()["error"]
            .as_str()
            .unwrap_or_else(|| panic!("no `error` in {self}"))
            .to_owned()
    }

    /// Asserts an OAuth error answer with `status` and `error`.
    pub fn assert_oauth_error(&self, status: StatusCode, error: &str) {
        assert_eq!(self.status, status, "{self}");
        assert_eq!(self.oauth_error(), error, "{self}");
    }
}

/// A successful token response.
#[derive(Debug, Clone)]
pub struct Tokens {
    /// `access_token`.
    pub access_token: String,
    /// `refresh_token`, if issued.
    pub refresh_token: Option<String>,
    /// `scope` (always echoed by the demo).
    pub scope: String,
    /// The whole body.
    pub raw: Value,
}

impl Tokens {
    /// Reads a token response, asserting 200, `Cache-Control: no-store`,
    /// `token_type: Bearer` and an echoed `scope`.
    pub fn from_response(res: &Resp) -> Self {
        assert_eq!(res.status, StatusCode::OK, "token request failed: {res}");
        assert_no_store(res);
        let raw = res.json();
        assert!(
            raw["token_type"]
                .as_str()
                .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
            "token_type: {res}"
        );
        Self {
            access_token: raw["access_token"]
                .as_str()
                .unwrap_or_else(|| panic!("no access_token: {res}"))
                .to_owned(),
            refresh_token: raw["refresh_token"].as_str().map(str::to_owned),
            scope: raw["scope"]
                .as_str()
                .unwrap_or_else(|| panic!("scope not echoed: {res}"))
                .to_owned(),
            raw,
        }
    }

    /// The refresh token (panics if none was issued).
    pub fn refresh(&self) -> &str {
        self.refresh_token
            .as_deref()
            .unwrap_or_else(|| panic!("no refresh_token in {}", self.raw))
    }
}

/// Whether `status` is 302 or 303, the redirects the contract allows.
pub fn is_redirect(status: StatusCode) -> bool {
    status == StatusCode::FOUND || status == StatusCode::SEE_OTHER
}

/// Asserts `Cache-Control: no-store`.
pub fn assert_no_store(res: &Resp) {
    let cc = res.header("cache-control").unwrap_or_default();
    assert!(
        cc.to_ascii_lowercase().contains("no-store"),
        "Cache-Control is {cc:?}: {res}"
    );
}

/// Splits space-separated scopes into a sorted list.
pub fn scope_set(s: &str) -> Vec<String> {
    let mut v: Vec<String> = s
        .split(' ')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect();
    v.sort();
    v
}

// ---- HTML ---------------------------------------------------------------

/// One HTML start tag: its name and attributes (values unescaped).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tag {
    /// Lower-case tag name.
    pub name: String,
    /// Attributes, names lower-cased, in order.
    pub attrs: Vec<(String, String)>,
    /// Byte offset of `<` in the page.
    pub at: usize,
}

impl Tag {
    /// The value of attribute `name`.
    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Every start tag named `name` in `html`, in order. A small tolerant
/// tokenizer, enough for the forms these tests read.
pub fn tags(html: &str, name: &str) -> Vec<Tag> {
    let lower = html.to_ascii_lowercase();
    let needle = format!("<{name}");
    let mut out = Vec::new();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&needle) {
        let start = from + i;
        let after = start + needle.len();
        from = after;
        // `<formx` is not `<form`.
        match lower.as_bytes().get(after) {
            Some(b) if b.is_ascii_whitespace() || *b == b'>' || *b == b'/' => {}
            _ => continue,
        }
        let (attrs, end) = parse_attrs(html, after);
        out.push(Tag {
            name: name.to_owned(),
            attrs,
            at: start,
        });
        from = end;
    }
    out
}

fn parse_attrs(html: &str, mut i: usize) -> (Vec<(String, String)>, usize) {
    let b = html.as_bytes();
    let mut attrs = Vec::new();
    loop {
        while i < b.len() && (b[i].is_ascii_whitespace() || b[i] == b'/') {
            i += 1;
        }
        if i >= b.len() || b[i] == b'>' {
            return (attrs, (i + 1).min(b.len()));
        }
        let ns = i;
        while i < b.len() && !b[i].is_ascii_whitespace() && !matches!(b[i], b'=' | b'>' | b'/') {
            i += 1;
        }
        let name = html[ns..i].to_ascii_lowercase();
        while i < b.len() && b[i].is_ascii_whitespace() {
            i += 1;
        }
        let mut value = String::new();
        if i < b.len() && b[i] == b'=' {
            i += 1;
            while i < b.len() && b[i].is_ascii_whitespace() {
                i += 1;
            }
            if i < b.len() && (b[i] == b'"' || b[i] == b'\'') {
                let q = b[i];
                let vs = i + 1;
                i = vs;
                while i < b.len() && b[i] != q {
                    i += 1;
                }
                value = unescape_html(&html[vs..i.min(b.len())]);
                i += 1;
            } else {
                let vs = i;
                while i < b.len() && !b[i].is_ascii_whitespace() && b[i] != b'>' {
                    i += 1;
                }
                value = unescape_html(&html[vs..i]);
            }
        }
        if !name.is_empty() {
            attrs.push((name, value));
        }
    }
}

/// Decodes the character references an HTML escaper produces.
pub fn unescape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    while let Some(i) = rest.find('&') {
        out.push_str(&rest[..i]);
        rest = &rest[i..];
        let Some(end) = rest.find(';').filter(|e| *e <= 10) else {
            out.push('&');
            rest = &rest[1..];
            continue;
        };
        let entity = &rest[1..end];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            e if e.starts_with("#x") || e.starts_with("#X") => u32::from_str_radix(&e[2..], 16)
                .ok()
                .and_then(char::from_u32),
            e if e.starts_with('#') => e[1..].parse().ok().and_then(char::from_u32),
            _ => None,
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[end + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// One `<form>`: its tag, hidden inputs and submit controls.
#[derive(Debug, Clone)]
pub struct Form {
    /// The `<form>` tag.
    pub tag: Tag,
    /// `(name, value)` of every `<input type="hidden">` inside.
    pub hidden: Vec<(String, String)>,
    /// Every submit control (`<button>` without a non-submit type, `<input type="submit">`).
    pub submits: Vec<Tag>,
}

/// The forms of a page.
pub fn forms(html: &str) -> Vec<Form> {
    let lower = html.to_ascii_lowercase();
    let inputs = tags(html, "input");
    let buttons = tags(html, "button");
    tags(html, "form")
        .into_iter()
        .map(|tag| {
            let end = lower[tag.at..]
                .find("</form")
                .map_or(html.len(), |e| tag.at + e);
            let inside = |t: &&Tag| t.at > tag.at && t.at < end;
            let hidden = inputs
                .iter()
                .filter(inside)
                .filter(|t| {
                    t.attr("type")
                        .is_some_and(|ty| ty.eq_ignore_ascii_case("hidden"))
                })
                .filter_map(|t| {
                    Some((
                        t.attr("name")?.to_owned(),
                        t.attr("value").unwrap_or("").to_owned(),
                    ))
                })
                .collect();
            let submits = buttons
                .iter()
                .filter(inside)
                .filter(|t| {
                    t.attr("type")
                        .is_none_or(|ty| ty.eq_ignore_ascii_case("submit"))
                })
                .chain(inputs.iter().filter(inside).filter(|t| {
                    t.attr("type")
                        .is_some_and(|ty| ty.eq_ignore_ascii_case("submit"))
                }))
                .cloned()
                .collect();
            Form {
                tag,
                hidden,
                submits,
            }
        })
        .collect()
}

/// The fields of a consent form that are OAuth request parameters; any
/// other hidden field is the form's anti-CSRF token.
pub const OAUTH_FORM_FIELDS: &[&str] = &[
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "auto_authorize",
];

/// A consent page's form, ready to submit.
#[derive(Debug, Clone)]
pub struct ConsentForm {
    /// Where it posts (a path or URL).
    pub action: String,
    /// Its hidden fields.
    pub fields: Vec<(String, String)>,
}

impl ConsentForm {
    /// Reads the one form of a consent page (asserts 200 and one POST form).
    pub fn parse(res: &Resp) -> Self {
        assert_eq!(res.status, StatusCode::OK, "expected a consent page: {res}");
        let fs = forms(&res.body);
        assert_eq!(
            fs.len(),
            1,
            "the consent page holds {} forms: {res}",
            fs.len()
        );
        let f = &fs[0];
        assert!(
            f.tag
                .attr("method")
                .is_some_and(|m| m.eq_ignore_ascii_case("post")),
            "consent form is not method=post: {res}"
        );
        // No action: the form posts to the page's own URL, the authorize endpoint.
        let action = match f.tag.attr("action") {
            Some(a) if !a.is_empty() => a.to_owned(),
            _ => AUTHORIZE.to_owned(),
        };
        Self {
            action,
            fields: f.hidden.clone(),
        }
    }

    /// The hidden fields that are not OAuth parameters (the anti-CSRF token).
    pub fn csrf_fields(&self) -> Vec<(String, String)> {
        self.fields
            .iter()
            .filter(|(k, _)| !OAUTH_FORM_FIELDS.contains(&k.as_str()))
            .cloned()
            .collect()
    }

    /// A copy with field `name` set to `value` (added if absent).
    pub fn with(&self, name: &str, value: &str) -> Self {
        let mut f = self.clone();
        match f.fields.iter_mut().find(|(k, _)| k == name) {
            Some(kv) => kv.1 = value.to_owned(),
            None => f.fields.push((name.to_owned(), value.to_owned())),
        }
        f
    }

    /// A copy without field `name`.
    pub fn without(&self, name: &str) -> Self {
        let mut f = self.clone();
        f.fields.retain(|(k, _)| k != name);
        f
    }
}

/// Alters a credential-like value so it no longer verifies but keeps its
/// shape. It changes a character well inside the value: the last character
/// of unpadded base64 carries padding bits a lenient decoder ignores.
pub fn tamper(value: &str) -> String {
    let mut chars: Vec<char> = value.chars().collect();
    if chars.is_empty() {
        return "A".to_owned();
    }
    let i = chars
        .len()
        .saturating_sub(5)
        .min(chars.len() / 2 + chars.len() / 4);
    chars[i] = if chars[i] == 'A' { 'B' } else { 'A' };
    chars.into_iter().collect()
}

fn plain_client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_forms() {
        let html = r#"<form method="POST" action="/a?x=1&amp;y=2"><input type="hidden" name="t" value="a&quot;b">
            <INPUT name=u type=hidden value='1'><button type="submit" name="decision" value="approve">A</button>
            <button name="decision" value="deny">D</button><button type="button">no</button></form><formx>"#;
        let fs = forms(html);
        assert_eq!(fs.len(), 1);
        assert_eq!(fs[0].tag.attr("action"), Some("/a?x=1&y=2"));
        assert_eq!(
            fs[0].hidden,
            vec![("t".into(), "a\"b".into()), ("u".into(), "1".into())]
        );
        assert_eq!(fs[0].submits.len(), 2);
    }

    #[test]
    fn encodes() {
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"abc"), "YWJj");
        assert_eq!(base64_encode(b"a"), "YQ==");
        assert_eq!(form_encode("a b/&"), "a+b%2F%26");
        assert_eq!(
            path_with_query("/p", &[("a", "x y"), ("b", "/")]),
            "/p?a=x+y&b=%2F"
        );
        assert_eq!(
            param("/cb?code=1&state=a+b", "state").as_deref(),
            Some("a b")
        );
        assert_eq!(
            unescape_html("&lt;a&gt; &#39;&#x27; &amp;amp; &bogus; &"),
            "<a> '' &amp; &bogus; &"
        );
    }
}
