//! The flow-level check: drive a whole server over the store through a
//! recording wrapper, then look for every credential the flow produced in
//! what the store was given.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use base64::Engine as _;
use bytes::Bytes;
use chrono::{DateTime, Utc};
use sha2::Digest as _;

use crate::host::Sessions;
use crate::model::{
    Client, CodeRecord, CodeTake, Consent, GrantId, GrantRecord, GrantType, Purged, Rotation,
    TokenRecord, UserId,
};
use crate::scope::Scopes;
use crate::secret::TokenHash;
use crate::server::{AuthorizationServer, ClientRegistration};
use crate::store::{ClientStore, CodeStore, GrantStore, Store, TokenStore};
use crate::{Config, StoreError};

/// Wraps a store and writes down, as `Debug` text, every argument it is given.
struct Recording {
    inner: Arc<dyn Store>,
    seen: Mutex<String>,
}

impl Recording {
    fn note(&self, what: std::fmt::Arguments<'_>) {
        let mut s = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        s.push_str(&what.to_string());
        s.push('\n');
    }
}

#[async_trait]
impl ClientStore for Recording {
    async fn client(&self, client_id: &str) -> Result<Option<Client>, StoreError> {
        self.note(format_args!("client {client_id:?}"));
        self.inner.client(client_id).await
    }
    async fn create_client(&self, client: &Client) -> Result<bool, StoreError> {
        let hash = client.secret_hash.map(|h| h.to_hex());
        self.note(format_args!("create_client {client:?} {hash:?}"));
        self.inner.create_client(client).await
    }
    async fn update_client(&self, client: &Client) -> Result<bool, StoreError> {
        self.note(format_args!("update_client {client:?}"));
        self.inner.update_client(client).await
    }
    async fn delete_client(&self, client_id: &str) -> Result<bool, StoreError> {
        self.note(format_args!("delete_client {client_id:?}"));
        self.inner.delete_client(client_id).await
    }
}

#[async_trait]
impl CodeStore for Recording {
    async fn put_code(&self, code: &CodeRecord) -> Result<(), StoreError> {
        self.note(format_args!("put_code {code:?} {}", code.hash.to_hex()));
        self.inner.put_code(code).await
    }
    async fn take_code(
        &self,
        hash: &TokenHash,
        now: DateTime<Utc>,
    ) -> Result<CodeTake, StoreError> {
        self.note(format_args!("take_code {}", hash.to_hex()));
        self.inner.take_code(hash, now).await
    }
}

#[async_trait]
impl GrantStore for Recording {
    async fn create_grant(
        &self,
        grant: &GrantRecord,
        tokens: &[TokenRecord],
    ) -> Result<bool, StoreError> {
        self.note(format_args!("create_grant {grant:?} {tokens:?}"));
        self.inner.create_grant(grant, tokens).await
    }
    async fn revoke_grant(&self, grant_id: &GrantId) -> Result<(), StoreError> {
        self.note(format_args!("revoke_grant {grant_id:?}"));
        self.inner.revoke_grant(grant_id).await
    }
    async fn consent(&self, user: &UserId, client_id: &str) -> Result<Option<Consent>, StoreError> {
        self.note(format_args!("consent {user:?} {client_id:?}"));
        self.inner.consent(user, client_id).await
    }
    async fn add_consent(
        &self,
        user: &UserId,
        client_id: &str,
        scope: &Scopes,
        now: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.note(format_args!("add_consent {user:?} {client_id:?} {scope:?}"));
        self.inner.add_consent(user, client_id, scope, now).await
    }
    async fn list_consents(&self, user: &UserId) -> Result<Vec<Consent>, StoreError> {
        self.note(format_args!("list_consents {user:?}"));
        self.inner.list_consents(user).await
    }
    async fn revoke_consent(&self, user: &UserId, client_id: &str) -> Result<bool, StoreError> {
        self.note(format_args!("revoke_consent {user:?} {client_id:?}"));
        self.inner.revoke_consent(user, client_id).await
    }
}

#[async_trait]
impl TokenStore for Recording {
    async fn token(&self, hash: &TokenHash) -> Result<Option<TokenRecord>, StoreError> {
        self.note(format_args!("token {}", hash.to_hex()));
        self.inner.token(hash).await
    }
    async fn rotate_refresh(
        &self,
        old: &TokenHash,
        now: DateTime<Utc>,
        access_valid_until: DateTime<Utc>,
        new_tokens: &[TokenRecord],
    ) -> Result<Rotation, StoreError> {
        self.note(format_args!(
            "rotate_refresh {} {new_tokens:?}",
            old.to_hex()
        ));
        self.inner
            .rotate_refresh(old, now, access_valid_until, new_tokens)
            .await
    }
    async fn delete_token(&self, hash: &TokenHash) -> Result<bool, StoreError> {
        self.note(format_args!("delete_token {}", hash.to_hex()));
        self.inner.delete_token(hash).await
    }
}

#[async_trait]
impl Store for Recording {
    async fn purge_expired(&self, now: DateTime<Utc>) -> Result<Purged, StoreError> {
        self.inner.purge_expired(now).await
    }
}

struct OneUser(UserId);

#[async_trait]
impl Sessions for OneUser {
    async fn current_user(&self, _: &http::request::Parts) -> Result<Option<UserId>, StoreError> {
        Ok(Some(self.0.clone()))
    }
    fn login_url(&self, _: &str) -> String {
        "/login".to_owned()
    }
}

fn form(path: &str, pairs: &[(&str, &str)]) -> http::Request<Bytes> {
    let body = serde_urlencoded::to_string(pairs).unwrap_or_default();
    let mut req = http::Request::new(Bytes::from(body));
    *req.method_mut() = http::Method::POST;
    if let Ok(uri) = path.parse() {
        *req.uri_mut() = uri;
    }
    req.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-www-form-urlencoded"),
    );
    req
}

fn json_field(res: &http::Response<Bytes>, name: &str) -> String {
    let v: serde_json::Value = serde_json::from_slice(res.body()).unwrap_or_default();
    v[name]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no `{name}` in {v}"))
}

/// Drives a full flow — registration with a generated secret, a trusted
/// one-click authorization with PKCE, the code exchange, a refresh, a
/// client-credentials issue and a revocation — through a server over
/// `store`, recording every argument the store receives. Then asserts
/// that none of the credentials the flow produced (client secret, code,
/// PKCE verifier, access and refresh tokens) was ever handed to the
/// store in plaintext, nor in hex or base64, and that their SHA-256
/// hashes were. Returns the plaintexts, so a SQL store's test can also
/// search its raw files for them.
pub async fn check_no_plaintext_given(store: Arc<dyn Store>) -> Vec<String> {
    let recording = Arc::new(Recording {
        inner: store,
        seen: Mutex::new(String::new()),
    });
    let user = UserId::new(format!("user-{}", GrantId::generate().as_str()));
    let config = Config::builder("https://testkit.example")
        .scope("profile", "profile")
        .build();
    let server =
        AuthorizationServer::builder(config, recording.clone(), Arc::new(OneUser(user))).build();

    let mut reg = ClientRegistration::new("testkit", vec!["https://client.example/cb".to_owned()]);
    reg.trusted = true;
    reg.grant_types = Some(vec![
        GrantType::AuthorizationCode,
        GrantType::RefreshToken,
        GrantType::ClientCredentials,
    ]);
    let registered = server
        .register_client(reg)
        .await
        .unwrap_or_else(|e| panic!("registration failed: {e}"));
    let client_id = registered.client.client_id.clone();
    let secret = registered
        .client_secret
        .map(|s| s.secret().to_owned())
        .unwrap_or_default();

    let verifier = crate::secret::random_token();
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let query = serde_urlencoded::to_string([
        ("response_type", "code"),
        ("client_id", client_id.as_str()),
        ("redirect_uri", "https://client.example/cb"),
        ("scope", "profile"),
        ("state", "s"),
        ("code_challenge", challenge.as_str()),
        ("code_challenge_method", "S256"),
        ("auto_authorize", "true"),
    ])
    .unwrap_or_default();
    let mut req = http::Request::new(Bytes::new());
    if let Ok(uri) = format!("/oauth2/authorize?{query}").parse() {
        *req.uri_mut() = uri;
    }
    let res = server.authorize(req).await;
    let location = res
        .headers()
        .get("location")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let code = serde_urlencoded::from_str::<Vec<(String, String)>>(
        location.split_once('?').map_or("", |x| x.1),
    )
    .unwrap_or_default()
    .into_iter()
    .find(|(k, _)| k == "code")
    .map(|(_, v)| v)
    .unwrap_or_else(|| panic!("authorization did not issue a code: {location}"));

    let res = server
        .token(form(
            "/oauth2/token",
            &[
                ("grant_type", "authorization_code"),
                ("code", &code),
                ("redirect_uri", "https://client.example/cb"),
                ("code_verifier", &verifier),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        ))
        .await;
    let access1 = json_field(&res, "access_token");
    let refresh1 = json_field(&res, "refresh_token");
    let res = server
        .token(form(
            "/oauth2/token",
            &[
                ("grant_type", "refresh_token"),
                ("refresh_token", &refresh1),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        ))
        .await;
    let access2 = json_field(&res, "access_token");
    let refresh2 = json_field(&res, "refresh_token");
    let res = server
        .token(form(
            "/oauth2/token",
            &[
                ("grant_type", "client_credentials"),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        ))
        .await;
    let access3 = json_field(&res, "access_token");
    let _ = server
        .revoke(form(
            "/oauth2/revoke",
            &[
                ("token", &access3),
                ("client_id", &client_id),
                ("client_secret", &secret),
            ],
        ))
        .await;

    let seen = recording
        .seen
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    let plaintexts = vec![
        secret, code, verifier, access1, refresh1, access2, refresh2, access3,
    ];
    for p in &plaintexts {
        assert!(!p.is_empty(), "the flow produced an empty credential");
        let forms = [
            p.clone(),
            hex(p.as_bytes()),
            base64::engine::general_purpose::STANDARD.encode(p.as_bytes()),
        ];
        for f in forms {
            assert!(
                !seen.contains(&f),
                "no plaintext at rest: a credential reached the store unhashed"
            );
        }
    }
    // The client secret and the code reached the store as their keys.
    let keys = [
        TokenHash::of(&plaintexts[0]),
        TokenHash::of_token(&plaintexts[1]),
    ];
    for key in keys {
        assert!(
            seen.contains(&key.to_hex()),
            "credentials must reach the store as their TokenHash keys"
        );
    }
    plaintexts
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
