//! The host's users and login sessions, and what the core asks of them:
//! who is logged in ([`Sessions`]), a user's claims ([`Claims`]) and
//! balance ([`Balances`]).
//!
//! Passwords are argon2id hashes (default parameters). A session is a
//! 256-bit random cookie value; the database keeps only its SHA-256.

use std::collections::HashMap;
use std::sync::RwLock;

use argon2::password_hash::{PasswordHash, SaltString};
use argon2::{Argon2, PasswordHasher as _, PasswordVerifier as _};
use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use doorman::redirect::form_encode;
use doorman::{
    Balance, Balances, Claims, Sessions, StoreError, TokenClaims, TokenHash, UserClaims, UserId,
};
use http::{HeaderMap, HeaderValue};
use rand::Rng as _;

use crate::db::{Db, User, user_key};
use crate::error::DemoError;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "doorman_demo_session";

/// How long a login lasts.
const SESSION_TTL_SECS: i64 = 12 * 3600;

/// The longest password considered (longer ones simply fail).
const MAX_PASSWORD_BYTES: usize = 1024;

/// The seeded users: name, password, email, quota, used quota.
pub const SEED_USERS: &[(&str, &str, &str, i64, i64)] = &[
    (
        "alice",
        "alice-password",
        "alice@example.com",
        1_000_000,
        250_000,
    ),
    ("bob", "bob-password", "bob@example.com", 500_000, 0),
];

/// The host's data, shared by its routes and the core's callbacks.
pub(crate) struct HostData {
    pub(crate) db: Db,
    /// The top-up page's URL (under the issuer).
    topup_url: String,
    secure_cookies: bool,
    /// User id → username, for the consent page (which the core renders
    /// synchronously). Filled on every session lookup.
    usernames: RwLock<HashMap<String, String>>,
    /// A hash to verify against when the user does not exist, so a wrong
    /// username takes as long as a wrong password.
    dummy_hash: String,
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// 256 random bits, base64url.
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

fn hash_password(password: &str) -> Result<String, DemoError> {
    let mut salt = [0u8; 16];
    rand::rng().fill_bytes(&mut salt);
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| DemoError::Database(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| DemoError::Database(format!("password hash: {e}")))
}

fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// Argon2 takes tens of milliseconds of CPU: keep it off the async workers.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Option<T> {
    tokio::task::spawn_blocking(f).await.ok()
}

/// The value of the session cookie, if the request carries one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, value)| *name == SESSION_COOKIE && !value.is_empty())
        .map(|(_, value)| value)
}

fn backend(e: sqlx::Error) -> StoreError {
    StoreError::backend(e)
}

impl HostData {
    /// Prepares the host side over `db`; hashes the dummy password once.
    pub(crate) async fn new(db: Db, issuer: String) -> Result<Self, DemoError> {
        let dummy_hash = blocking(|| hash_password("not-a-real-password"))
            .await
            .ok_or_else(|| DemoError::Database("password hashing task failed".into()))??;
        Ok(Self {
            db,
            secure_cookies: issuer.starts_with("https://"),
            topup_url: format!("{issuer}/topup"),
            usernames: RwLock::new(HashMap::new()),
            dummy_hash,
        })
    }

    /// Creates the seeded users that do not exist yet (safe to run from
    /// several instances at once).
    pub(crate) async fn seed(&self) -> Result<(), DemoError> {
        for &(username, password, email, quota, used_quota) in SEED_USERS {
            if self.db.user_exists(username).await? {
                continue;
            }
            let hash = blocking(move || hash_password(password))
                .await
                .ok_or_else(|| DemoError::Database("password hashing task failed".into()))??;
            let user = User {
                id: 0,
                username: username.to_owned(),
                email: email.to_owned(),
                quota,
                used_quota,
                status: 1,
                created_time: now(),
            };
            self.db.insert_user(&user, &hash).await?;
        }
        Ok(())
    }

    /// The logged-in user (id, name) of a request, from its session cookie.
    pub(crate) async fn current(
        &self,
        headers: &HeaderMap,
    ) -> Result<Option<(i64, String)>, sqlx::Error> {
        let Some(cookie) = session_cookie(headers) else {
            return Ok(None);
        };
        let found = self
            .db
            .session_user(&TokenHash::of(cookie).to_hex(), now())
            .await?;
        if let Some((id, name)) = &found {
            self.remember_username(*id, name);
        }
        Ok(found)
    }

    fn remember_username(&self, id: i64, name: &str) {
        let key = id.to_string();
        if self
            .usernames
            .read()
            .is_ok_and(|m| m.get(&key).is_some_and(|n| n == name))
        {
            return;
        }
        if let Ok(mut m) = self.usernames.write() {
            // A demo has few users; bound the map anyway.
            if m.len() >= 10_000 {
                m.clear();
            }
            m.insert(key, name.to_owned());
        }
    }

    /// The name of a user seen logged in recently.
    pub(crate) fn cached_username(&self, user: &UserId) -> Option<String> {
        self.usernames
            .read()
            .ok()
            .and_then(|m| m.get(user.as_str()).cloned())
    }

    /// Checks a username and password; on success starts a session and
    /// answers the cookie value to set.
    pub(crate) async fn login(
        &self,
        username: &str,
        password: &str,
    ) -> Result<Option<String>, sqlx::Error> {
        let found = if username.is_empty() || username.len() > 200 {
            None
        } else {
            self.db.password_hash(username).await?
        };
        let (user_id, hash) = match found {
            Some((id, hash)) => (Some(id), hash),
            None => (None, self.dummy_hash.clone()),
        };
        let password = password.to_owned();
        let ok = password.len() <= MAX_PASSWORD_BYTES
            && blocking(move || verify_password(&hash, &password))
                .await
                .unwrap_or(false);
        let (true, Some(user_id)) = (ok, user_id) else {
            return Ok(None);
        };
        let cookie = random_token();
        let now = now();
        self.db
            .create_session(
                &TokenHash::of(&cookie).to_hex(),
                user_id,
                now,
                now + SESSION_TTL_SECS,
            )
            .await?;
        Ok(Some(cookie))
    }

    /// Ends the request's session, if any.
    pub(crate) async fn logout(&self, headers: &HeaderMap) -> Result<(), sqlx::Error> {
        match session_cookie(headers) {
            Some(cookie) => {
                self.db
                    .delete_session(&TokenHash::of(cookie).to_hex())
                    .await
            }
            None => Ok(()),
        }
    }

    /// `Set-Cookie` for a new session.
    pub(crate) fn session_cookie_header(&self, value: &str) -> Option<HeaderValue> {
        let secure = if self.secure_cookies { "; Secure" } else { "" };
        HeaderValue::from_str(&format!(
            "{SESSION_COOKIE}={value}; HttpOnly; SameSite=Lax; Path=/{secure}"
        ))
        .ok()
    }

    /// `Set-Cookie` that removes the session cookie.
    pub(crate) fn clear_cookie_header(&self) -> HeaderValue {
        HeaderValue::from_static("doorman_demo_session=; Max-Age=0; HttpOnly; SameSite=Lax; Path=/")
    }

    /// The top-up page's URL.
    pub(crate) fn topup_url(&self) -> String {
        self.topup_url.clone()
    }

    async fn user(&self, user: &UserId) -> Result<Option<User>, StoreError> {
        match user_key(user) {
            Some(id) => self.db.user(id).await.map_err(backend),
            None => Ok(None),
        }
    }
}

#[async_trait]
impl Sessions for HostData {
    async fn current_user(
        &self,
        request: &http::request::Parts,
    ) -> Result<Option<UserId>, StoreError> {
        Ok(self
            .current(&request.headers)
            .await
            .map_err(backend)?
            .map(|(id, _)| UserId::new(id.to_string())))
    }

    fn login_url(&self, return_to: &str) -> String {
        format!("/login?return_to={}", form_encode(return_to))
    }
}

#[async_trait]
impl Claims for HostData {
    async fn claims(&self, user: &UserId) -> Result<Option<UserClaims>, StoreError> {
        Ok(self.user(user).await?.map(|u| self.claims_of(u)))
    }

    /// The token and the user's row in one read: on SQLite and PostgreSQL
    /// one statement (a userinfo request costs one query), in memory one
    /// call instead of the server's two.
    async fn claims_with_token(&self, hash: &TokenHash) -> Result<TokenClaims, StoreError> {
        Ok(match self.db.token_with_user(hash).await? {
            None => TokenClaims::NoToken,
            Some((token, user)) => TokenClaims::Found(token, user.map(|u| self.claims_of(u))),
        })
    }
}

impl HostData {
    /// A user's claims. One row holds the profile and the balance: the
    /// server takes the balance from here (it releases it only to tokens
    /// with the balance scope).
    fn claims_of(&self, u: User) -> UserClaims {
        let balance = Balance {
            quota: u.quota,
            used_quota: u.used_quota,
            formatted: balance_formatted(u.quota, u.used_quota),
            topup_url: self.topup_url(),
        };
        UserClaims::new()
            .base("id", u.id)
            .base("created_time", u.created_time)
            .base("status", u.status)
            .scoped("profile", "username", u.username)
            .scoped("profile", "email", u.email)
            .with_balance(balance)
    }
}

#[async_trait]
impl Balances for HostData {
    async fn balance(&self, user: &UserId) -> Result<Option<Balance>, StoreError> {
        Ok(self.user(user).await?.map(|u| Balance {
            quota: u.quota,
            used_quota: u.used_quota,
            formatted: balance_formatted(u.quota, u.used_quota),
            topup_url: self.topup_url(),
        }))
    }
}

/// `(quota - used_quota) / 1000`, rounded half away from zero to two decimals.
pub fn balance_formatted(quota: i64, used_quota: i64) -> String {
    Balance::format_units(quota, used_quota, 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balances_format_like_the_provider() {
        assert_eq!(balance_formatted(1_000_000, 250_000), "750.00");
        assert_eq!(balance_formatted(500_000, 0), "500.00");
        assert_eq!(balance_formatted(0, 0), "0.00");
        assert_eq!(balance_formatted(1_005, 0), "1.01"); // 1.005 rounds away from zero
        assert_eq!(balance_formatted(1_004, 0), "1.00");
        assert_eq!(balance_formatted(0, 1_005), "-1.01");
        assert_eq!(balance_formatted(123_456_789, 0), "123456.79");
    }

    #[test]
    fn session_cookie_is_found_among_others() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("a=1; doorman_demo_session=abc; b=2"),
        );
        assert_eq!(session_cookie(&h), Some("abc"));
        let mut h = HeaderMap::new();
        h.append(http::header::COOKIE, HeaderValue::from_static("x=1"));
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("doorman_demo_session=def"),
        );
        assert_eq!(session_cookie(&h), Some("def"));
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            HeaderValue::from_static("doorman_demo_session="),
        );
        assert_eq!(session_cookie(&h), None);
    }

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("alice-password").expect("hashes");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password(&h, "alice-password"));
        assert!(!verify_password(&h, "alice-passwore"));
        assert!(!verify_password("not a hash", "alice-password"));
    }
}
