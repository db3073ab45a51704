//! The demo provider without a web framework: the authorization server,
//! the host's data, and the host's routes as
//! `async fn(&Demo, http::Request<Bytes>) -> http::Response<Bytes>`
//! behind one dispatcher, so every adapter mounts the very same handlers.

use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use bytes::Bytes;
use chrono::TimeDelta;
use doorman::wire::{json_response, method_not_allowed};
use doorman::{AuthorizationServer, Config, Endpoints, Scopes};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::json;

use crate::account::{self, ACCOUNT_PATH, revoke_target};
use crate::config::DemoConfig;
use crate::developer;
use crate::error::DemoError;
use crate::login;
use crate::pages::{DemoPages, Lang, page};
use crate::storage::Storage;
use crate::users::{HostData, random_token};

/// Where the OAuth endpoints live (the contract's paths).
pub const OAUTH_PREFIX: &str = "/api/oauth2";

/// The demo provider: cheap to clone, shared by every request.
#[derive(Clone)]
pub struct Demo {
    inner: Arc<Inner>,
}

struct Inner {
    server: AuthorizationServer,
    host: Arc<HostData>,
    storage: Storage,
    dev_token: String,
}

impl std::fmt::Debug for Demo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Demo")
            .field("issuer", &self.issuer())
            .field("storage", &self.storage())
            .finish_non_exhaustive()
    }
}

/// One of the host's routes (everything but the OAuth endpoints the
/// adapter's router mounts).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostRoute {
    /// `GET /`.
    Home,
    /// `GET /login`.
    LoginPage,
    /// `POST /login`.
    Login,
    /// `POST /logout`.
    Logout,
    /// `GET /topup`.
    Topup,
    /// `POST /api/oauth_apps`.
    CreateApp,
    /// `POST /api/oauth2/register`.
    Register,
    /// `GET /account/authorizations`.
    Authorizations,
    /// `POST /account/authorizations/{client_id}/revoke`, with the
    /// client id as it appears in the path (percent-encoded).
    Revoke(String),
}

impl HostRoute {
    /// The route for a method and path: `None` for a path the host does
    /// not serve, `Some(Err(allow))` for a known path and another method.
    pub fn resolve(method: &Method, path: &str) -> Option<Result<HostRoute, &'static str>> {
        let get = method == Method::GET || method == Method::HEAD;
        let post = method == Method::POST;
        let (route, ok, allow) = match path {
            "/" => (HostRoute::Home, get, "GET, HEAD"),
            "/login" if post => (HostRoute::Login, true, "GET, HEAD, POST"),
            "/login" => (HostRoute::LoginPage, get, "GET, HEAD, POST"),
            "/logout" => (HostRoute::Logout, post, "POST"),
            "/topup" => (HostRoute::Topup, get, "GET, HEAD"),
            "/api/oauth_apps" => (HostRoute::CreateApp, post, "POST"),
            p if p == format!("{OAUTH_PREFIX}/register") => (HostRoute::Register, post, "POST"),
            ACCOUNT_PATH => (HostRoute::Authorizations, get, "GET, HEAD"),
            p => match revoke_target(p) {
                Some(id) => (HostRoute::Revoke(id.to_owned()), post, "POST"),
                None => return None,
            },
        };
        Some(if ok { Ok(route) } else { Err(allow) })
    }
}

/// 500 as a page, saying nothing about the cause (which is logged).
pub(crate) fn server_error_page(lang: Lang) -> Response<Bytes> {
    let body = format!(
        "<h1>{}</h1><p>{}</p>",
        lang.pick("Something went wrong", "出错了"),
        lang.pick("Please try again in a moment.", "请稍后重试。")
    );
    page(
        lang,
        StatusCode::INTERNAL_SERVER_ERROR,
        lang.pick("Error", "错误"),
        &body,
    )
}

fn form_key(stored: &str) -> Option<[u8; 32]> {
    URL_SAFE_NO_PAD.decode(stored).ok()?.try_into().ok()
}

fn seconds(name: &str, n: i64) -> Result<TimeDelta, DemoError> {
    TimeDelta::try_seconds(n)
        .filter(|d| *d > TimeDelta::zero())
        .ok_or_else(|| DemoError::Config(format!("{name} must be a positive number of seconds")))
}

impl Demo {
    /// Opens the database, creates the host's tables, loads (or creates)
    /// the shared form key, seeds alice and bob, and builds the server for
    /// `issuer`.
    pub async fn open(config: &DemoConfig, issuer: String) -> Result<Demo, DemoError> {
        let code_ttl = seconds("code TTL", config.code_ttl_secs)?;
        let access_ttl = seconds("access TTL", config.access_ttl_secs)?;
        let refresh_ttl = seconds("refresh TTL", config.refresh_ttl_secs)?;
        let storage = Storage::open(&config.database_url, config.sqlite_exclusive).await?;
        let opened = async {
            storage.db.migrate().await?;
            // Shared through the database, so consent forms and CSRF tokens
            // survive restarts and work across instances.
            let stored = storage
                .db
                .setting_or_insert("form_key", &random_token())
                .await?;
            let key = form_key(&stored)
                .ok_or_else(|| DemoError::Database("demo_settings.form_key is malformed".into()))?;
            let host = Arc::new(
                HostData::new(storage.db.clone(), issuer.trim_end_matches('/').to_owned()).await?,
            );
            host.seed().await?;
            Ok::<_, DemoError>((key, host))
        }
        .await;
        let (key, host) = match opened {
            Ok(x) => x,
            Err(e) => {
                storage.close().await;
                return Err(e);
            }
        };
        let oauth = Config::builder(issuer)
            .endpoints(Endpoints::under(OAUTH_PREFIX))
            .code_ttl(code_ttl)
            .access_ttl(Some(access_ttl))
            .refresh_ttl(Some(refresh_ttl))
            .allow_http_redirects(config.allow_http_redirects)
            .scope("profile", "See your username and email address")
            .scope(
                "balance",
                "See your quota, used quota and balance, and your top-up link",
            )
            .default_scope(Some(Scopes::from_tokens(["profile"])))
            .form_key(key)
            .build();
        let server = AuthorizationServer::builder(oauth, storage.store.clone(), host.clone())
            .claims(host.clone())
            .balances(host.clone())
            .pages(Arc::new(DemoPages(host.clone())))
            .build();
        let dev_token = config.dev_token.clone().unwrap_or_else(random_token);
        Ok(Demo {
            inner: Arc::new(Inner {
                server,
                host,
                storage,
                dev_token,
            }),
        })
    }

    /// The authorization server.
    pub fn server(&self) -> &AuthorizationServer {
        &self.inner.server
    }

    /// The issuer URL.
    pub fn issuer(&self) -> &str {
        &self.server().config().issuer
    }

    /// The storage in use, for people (no credentials).
    pub fn storage(&self) -> &str {
        &self.inner.storage.description
    }

    /// The developer token of the app-registration API.
    pub fn dev_token(&self) -> &str {
        &self.inner.dev_token
    }

    /// The largest request body an adapter should read (larger: 413 via
    /// [`AuthorizationServer::body_too_large`]).
    pub fn max_body_bytes(&self) -> usize {
        self.server().config().max_body_bytes
    }

    pub(crate) fn host(&self) -> &HostData {
        &self.inner.host
    }

    /// Answers a request for one of the host's routes ([`HostRoute`]);
    /// `None` if the path is not one of them. The body must already be
    /// read within [`Demo::max_body_bytes`].
    pub async fn handle_host_route(&self, request: Request<Bytes>) -> Option<Response<Bytes>> {
        let route = HostRoute::resolve(request.method(), request.uri().path())?;
        Some(self.dispatch(route, request).await)
    }

    /// Like [`Demo::handle_host_route`], answering [`Demo::not_found`]
    /// for other paths: what an adapter's fallback route calls.
    pub async fn respond(&self, request: Request<Bytes>) -> Response<Bytes> {
        match HostRoute::resolve(request.method(), request.uri().path()) {
            Some(route) => self.dispatch(route, request).await,
            None => self.not_found(&request),
        }
    }

    async fn dispatch(
        &self,
        route: Result<HostRoute, &'static str>,
        request: Request<Bytes>,
    ) -> Response<Bytes> {
        let route = match route {
            Ok(r) => r,
            Err(allow) => return self.method_not_allowed(request.uri().path(), allow),
        };
        match route {
            HostRoute::Home => login::home(self, request).await,
            HostRoute::LoginPage => login::login_page(self, request).await,
            HostRoute::Login => login::login(self, request).await,
            HostRoute::Logout => login::logout(self, request).await,
            HostRoute::Topup => login::topup_page(self, request).await,
            HostRoute::CreateApp => developer::create_app(self, request).await,
            HostRoute::Register => developer::register(self, request).await,
            HostRoute::Authorizations => account::authorizations_page(self, request).await,
            HostRoute::Revoke(id) => account::revoke(self, request, &id).await,
        }
    }

    fn method_not_allowed(&self, path: &str, allow: &'static str) -> Response<Bytes> {
        let mut res = if path.starts_with(OAUTH_PREFIX) {
            return method_not_allowed(self.server().profile(), allow);
        } else if path.starts_with("/api/") {
            json_response(
                StatusCode::METHOD_NOT_ALLOWED,
                &json!({ "success": false, "message": format!("this endpoint takes {allow}") }),
            )
        } else {
            page(
                Lang::En,
                StatusCode::METHOD_NOT_ALLOWED,
                "Method not allowed",
                "<h1>Method not allowed</h1>",
            )
        };
        res.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static(allow));
        res
    }

    /// 404 for a path nobody serves: JSON under `/api/`, a page elsewhere.
    pub fn not_found(&self, request: &Request<Bytes>) -> Response<Bytes> {
        if request.uri().path().starts_with("/api/") {
            return json_response(
                StatusCode::NOT_FOUND,
                &json!({ "success": false, "message": "not found" }),
            );
        }
        let lang = Lang::of(request.headers());
        let body = format!(
            "<h1>{}</h1><p><a href=\"/\">{}</a></p>",
            lang.pick("Page not found", "页面不存在"),
            lang.pick("Home", "首页")
        );
        page(
            lang,
            StatusCode::NOT_FOUND,
            lang.pick("Not found", "页面不存在"),
            &body,
        )
    }

    /// Deletes expired codes, tokens, grants and login sessions.
    pub async fn purge(&self) {
        match self.server().purge_expired().await {
            Ok(p) if p.codes + p.tokens + p.grants > 0 => {
                tracing::info!(
                    codes = p.codes,
                    tokens = p.tokens,
                    grants = p.grants,
                    "purged expired credentials"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge of expired credentials failed"),
        }
        match self
            .host()
            .db
            .purge_sessions(chrono::Utc::now().timestamp())
            .await
        {
            Ok(n) if n > 0 => tracing::info!(sessions = n, "purged expired login sessions"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "purge of expired sessions failed"),
        }
    }

    /// Closes the database pools (after the server stopped).
    pub async fn close(&self) {
        self.inner.storage.close().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_table() {
        let r = |m: Method, p: &str| HostRoute::resolve(&m, p);
        assert_eq!(r(Method::GET, "/"), Some(Ok(HostRoute::Home)));
        assert_eq!(r(Method::GET, "/login"), Some(Ok(HostRoute::LoginPage)));
        assert_eq!(r(Method::POST, "/login"), Some(Ok(HostRoute::Login)));
        assert_eq!(r(Method::GET, "/logout"), Some(Err("POST")));
        assert_eq!(
            r(Method::POST, "/api/oauth2/register"),
            Some(Ok(HostRoute::Register))
        );
        assert_eq!(
            r(Method::POST, "/account/authorizations/client_1/revoke"),
            Some(Ok(HostRoute::Revoke("client_1".into())))
        );
        assert_eq!(r(Method::GET, "/api/oauth2/token"), None);
        assert_eq!(r(Method::GET, "/nope"), None);
    }

    #[test]
    fn form_keys_round_trip() {
        let k = random_token();
        assert!(form_key(&k).is_some());
        assert!(form_key("short").is_none());
    }
}
