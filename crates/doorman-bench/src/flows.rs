//! What the benchmark does to the demo: the one-time setup (a trusted app,
//! a logged-in session) and each measure as a [`Work`].

use std::sync::atomic::{AtomicI64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::header;
use rand::Rng as _;
use sha2::{Digest as _, Sha256};

use crate::client::{Conn, Reply, Template};
use crate::load::{Step, Work};

/// The registered redirect URI: loopback, never contacted (the client
/// reads the code from the `Location` header).
pub const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";
/// What every authorization asks for.
pub const SCOPE: &str = "profile balance";
const TOKEN_PATH: &str = "/api/oauth2/token";
const USERINFO_PATH: &str = "/api/oauth2/userinfo";
const INTROSPECT_PATH: &str = "/api/oauth2/introspect";

/// A trusted app and a logged-in browser session at the demo.
#[derive(Clone, Debug)]
pub struct Setup {
    /// The app's `client_id`.
    pub client_id: String,
    /// `Authorization: Basic …` for the app.
    pub basic: String,
    /// `Cookie:` of alice's session.
    pub cookie: String,
}

fn form(pairs: &[(&str, &str)]) -> Result<String, String> {
    serde_urlencoded::to_string(pairs).map_err(|e| e.to_string())
}

fn expect_2xx(reply: &Reply) -> Result<(), String> {
    if reply.status.is_success() {
        Ok(())
    } else {
        Err(reply.describe())
    }
}

/// A PKCE pair (RFC 7636): a fresh 256-bit verifier and its S256 challenge.
pub fn pkce() -> (String, String) {
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let verifier = URL_SAFE_NO_PAD.encode(raw);
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()));
    (verifier, challenge)
}

impl Setup {
    /// Registers a trusted (`auto_authorize`) app with the developer
    /// token and logs alice in.
    pub async fn new(conn: &mut Conn, dev_token: &str) -> Result<Self, String> {
        let body = serde_json::json!({
            "name": "doorman-bench",
            "description": "load benchmark",
            "redirect_uri": REDIRECT_URI,
            "auto_authorize": true,
        });
        let reg = Template::post_json("/api/oauth_apps", &body)?
            .header(header::AUTHORIZATION, &format!("Bearer {dev_token}"))?;
        let reply = conn.send(&reg).await?;
        expect_2xx(&reply).map_err(|e| format!("app registration: {e}"))?;
        let json = reply.json()?;
        let data = &json["data"];
        let (Some(client_id), Some(secret)) =
            (data["client_id"].as_str(), data["client_secret"].as_str())
        else {
            return Err(format!("app registration answered {json}"));
        };
        let basic = format!(
            "Basic {}",
            STANDARD.encode(format!(
                "{}:{}",
                doorman_encode(client_id),
                doorman_encode(secret)
            ))
        );
        let login = Template::post_form(
            "/login",
            form(&[
                ("username", "alice"),
                ("password", "alice-password"),
                ("return_to", "/"),
            ])?,
        )?;
        let reply = conn.send(&login).await?;
        let cookie = reply
            .header(header::SET_COOKIE)
            .and_then(|c| c.split(';').next())
            .filter(|_| reply.status.is_redirection())
            .ok_or_else(|| format!("login: {}", reply.describe()))?
            .to_owned();
        Ok(Self {
            client_id: client_id.to_owned(),
            basic,
            cookie,
        })
    }

    /// The authorize request of the browser flow, for a PKCE challenge.
    pub fn authorize(&self, challenge: &str) -> Result<Template, String> {
        let query = form(&[
            ("response_type", "code"),
            ("client_id", &self.client_id),
            ("redirect_uri", REDIRECT_URI),
            ("scope", SCOPE),
            ("state", "bench"),
            ("code_challenge", challenge),
            ("code_challenge_method", "S256"),
            ("auto_authorize", "true"),
        ])?;
        Template::get(&format!("/api/oauth2/authorize?{query}"))?
            .header(header::COOKIE, &self.cookie)
    }

    /// Runs the authorize step; answers the code.
    pub async fn code(&self, conn: &mut Conn, challenge: &str) -> Result<String, String> {
        let reply = conn.send(&self.authorize(challenge)?).await?;
        if reply.status != http::StatusCode::FOUND && reply.status != http::StatusCode::SEE_OTHER {
            return Err(format!("authorize: {}", reply.describe()));
        }
        let location = reply.header(header::LOCATION).unwrap_or_default();
        let query = location.split_once('?').map_or("", |(_, q)| q);
        serde_urlencoded::from_str::<Vec<(String, String)>>(query)
            .ok()
            .and_then(|q| q.into_iter().find(|(k, _)| k == "code"))
            .map(|(_, v)| v)
            .ok_or_else(|| format!("authorize redirected without a code: {location}"))
    }

    /// The code exchange request.
    pub fn exchange(&self, code: &str, verifier: &str) -> Result<Template, String> {
        Template::post_form(
            TOKEN_PATH,
            form(&[
                ("grant_type", "authorization_code"),
                ("code", code),
                ("redirect_uri", REDIRECT_URI),
                ("code_verifier", verifier),
            ])?,
        )?
        .header(header::AUTHORIZATION, &self.basic)
    }

    /// Exchanges a code; answers the access token.
    pub async fn access_token(
        &self,
        conn: &mut Conn,
        code: &str,
        verifier: &str,
    ) -> Result<String, String> {
        let reply = conn.send(&self.exchange(code, verifier)?).await?;
        expect_2xx(&reply).map_err(|e| format!("token: {e}"))?;
        reply.json()?["access_token"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("no access_token: {}", reply.describe()))
    }

    /// A fresh user access token through the whole flow.
    pub async fn user_token(&self, conn: &mut Conn) -> Result<String, String> {
        let (verifier, challenge) = pkce();
        let code = self.code(conn, &challenge).await?;
        self.access_token(conn, &code, &verifier).await
    }

    /// `GET userinfo` with a bearer token.
    pub fn userinfo(token: &str) -> Result<Template, String> {
        Template::get(USERINFO_PATH)?.header(header::AUTHORIZATION, &format!("Bearer {token}"))
    }

    /// A `client_credentials` token request.
    pub fn client_credentials(&self) -> Result<Template, String> {
        Template::post_form(
            TOKEN_PATH,
            form(&[("grant_type", "client_credentials"), ("scope", SCOPE)])?,
        )?
        .header(header::AUTHORIZATION, &self.basic)
    }

    /// An introspection request for `token`.
    pub fn introspect(&self, token: &str) -> Result<Template, String> {
        Template::post_form(
            INTROSPECT_PATH,
            form(&[("token", token), ("token_type_hint", "access_token")])?,
        )?
        .header(header::AUTHORIZATION, &self.basic)
    }
}

/// RFC 6749 §2.3.1: id and secret are form-encoded before Basic.
fn doorman_encode(s: &str) -> String {
    serde_urlencoded::to_string([("", s)])
        .map(|p| p.trim_start_matches('=').to_owned())
        .unwrap_or_default()
}

/// The same request over and over; 2xx or the measure fails.
pub struct Fixed(pub Template);

impl Work for Fixed {
    async fn step(&self, conn: &mut Conn) -> Step {
        match conn.send(&self.0).await {
            Ok(r) if r.status.is_success() => Step::Ok,
            Ok(r) => Step::Failed(r.describe()),
            Err(e) => Step::Failed(e),
        }
    }
}

/// Mints codes through the real authorize flow until `remaining` is spent.
pub struct Mint {
    setup: Setup,
    remaining: AtomicI64,
    codes: Mutex<Vec<(String, String)>>,
}

impl Mint {
    /// A minter of `n` codes.
    pub fn new(setup: Setup, n: usize) -> Self {
        Self {
            setup,
            remaining: AtomicI64::new(i64::try_from(n).unwrap_or(i64::MAX)),
            codes: Mutex::new(Vec::with_capacity(n)),
        }
    }

    /// The (code, verifier) pairs minted.
    pub fn into_codes(self) -> Vec<(String, String)> {
        self.codes
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

impl Work for Mint {
    async fn step(&self, conn: &mut Conn) -> Step {
        if self.remaining.fetch_sub(1, Ordering::Relaxed) <= 0 {
            return Step::Exhausted;
        }
        let (verifier, challenge) = pkce();
        match self.setup.code(conn, &challenge).await {
            Ok(code) => {
                self.codes
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((code, verifier));
                Step::Ok
            }
            Err(e) => Step::Failed(e),
        }
    }
}

/// Exchanges each pre-minted code exactly once.
pub struct Exchange {
    setup: Setup,
    codes: Vec<(String, String)>,
    next: AtomicUsize,
}

impl Exchange {
    /// Over `codes`.
    pub fn new(setup: Setup, codes: Vec<(String, String)>) -> Self {
        Self {
            setup,
            codes,
            next: AtomicUsize::new(0),
        }
    }
}

impl Work for Exchange {
    async fn step(&self, conn: &mut Conn) -> Step {
        let Some((code, verifier)) = self.codes.get(self.next.fetch_add(1, Ordering::Relaxed))
        else {
            return Step::Exhausted;
        };
        let template = match self.setup.exchange(code, verifier) {
            Ok(t) => t,
            Err(e) => return Step::Failed(e),
        };
        match conn.send(&template).await {
            Ok(r) if r.status.is_success() => Step::Ok,
            Ok(r) => Step::Failed(r.describe()),
            Err(e) => Step::Failed(e),
        }
    }
}

/// The browser flow end to end: authorize → code → token → userinfo.
pub struct Flow(pub Setup);

impl Work for Flow {
    async fn step(&self, conn: &mut Conn) -> Step {
        let flow = async {
            let token = self.0.user_token(conn).await?;
            let reply = conn.send(&Setup::userinfo(&token)?).await?;
            expect_2xx(&reply).map_err(|e| format!("userinfo: {e}"))
        };
        match flow.await {
            Ok(()) => Step::Ok,
            Err(e) => Step::Failed(e),
        }
    }
}
