//! What the host application answers: who is logged in, where to log in,
//! what a user's claims and balance are, and how its pages look.

use std::borrow::Cow;

use async_trait::async_trait;
use bytes::Bytes;
use serde_json::Value;

use crate::error::{OAuthError, StoreError};
use crate::model::{TokenRecord, UserId};
use crate::scope::ScopeInfo;
use crate::secret::TokenHash;

/// The host's sessions: doorman never logs anyone in itself.
#[async_trait]
pub trait Sessions: Send + Sync + 'static {
    /// The user logged in on this request (from the host's own session
    /// cookie), or `None`.
    async fn current_user(
        &self,
        request: &http::request::Parts,
    ) -> Result<Option<UserId>, StoreError>;

    /// Where to send the browser to log in; after logging in, the host
    /// sends it back to `return_to` (a path and query on this server).
    fn login_url(&self, return_to: &str) -> String;
}

/// A user's claims as the host knows them, each released with any token
/// for the user (`base`) or only with a token carrying its scope
/// (`scoped`).
///
/// Names and scopes are usually string literals and are kept as
/// `&'static str`, so building the claims of a request allocates only for
/// the values: the userinfo endpoint writes its answer straight from here.
///
/// ```
/// use doorman::UserClaims;
///
/// let claims = UserClaims::new()
///     .base("id", 42)
///     .scoped("profile", "username", "ada")
///     .scoped("email", "email", String::from("ada@example.com"));
/// assert_eq!(claims.iter().count(), 3);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct UserClaims {
    claims: Vec<Claim>,
    /// The user's balance, when the host reads it together with the claims
    /// (one row, one query): the server then does not ask [`Balances`].
    /// Released, like a [`Balances`] answer, only with the balance scope.
    pub balance: Option<Balance>,
}

/// One claim and the scope that releases it (`None`: any token).
#[derive(Debug, Clone, PartialEq)]
struct Claim {
    scope: Option<Cow<'static, str>>,
    name: Cow<'static, str>,
    value: Value,
}

impl UserClaims {
    /// No claims.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an always-released claim. A name given twice keeps its later
    /// value.
    #[must_use]
    pub fn base(self, name: impl Into<Cow<'static, str>>, value: impl Into<Value>) -> Self {
        self.with(Claim {
            scope: None,
            name: name.into(),
            value: value.into(),
        })
    }

    fn with(mut self, claim: Claim) -> Self {
        if self.claims.capacity() == 0 {
            // Room for a usual profile at once, rather than growing 4 → 8.
            self.claims.reserve(8);
        }
        self.claims.push(claim);
        self
    }

    /// Carries the user's balance along (see [`UserClaims::balance`]).
    #[must_use]
    pub fn with_balance(mut self, balance: Balance) -> Self {
        self.balance = Some(balance);
        self
    }

    /// Adds a claim released by `scope`. Released, it takes the place of
    /// a base claim of the same name; of two released claims of one name,
    /// the later added wins.
    #[must_use]
    pub fn scoped(
        self,
        scope: impl Into<Cow<'static, str>>,
        name: impl Into<Cow<'static, str>>,
        value: impl Into<Value>,
    ) -> Self {
        self.with(Claim {
            scope: Some(scope.into()),
            name: name.into(),
            value: value.into(),
        })
    }

    /// The claims in the order they were added: `(scope, name, value)`,
    /// the scope `None` for a base claim.
    pub fn iter(&self) -> impl Iterator<Item = (Option<&str>, &str, &Value)> {
        self.claims
            .iter()
            .map(|c| (c.scope.as_deref(), c.name.as_ref(), &c.value))
    }
}

/// The host's user profiles.
#[async_trait]
pub trait Claims: Send + Sync + 'static {
    /// The claims of `user`, or `None` if the user no longer exists.
    async fn claims(&self, user: &UserId) -> Result<Option<UserClaims>, StoreError>;

    /// The token stored under `hash` in the server's store, read together
    /// with its user's claims in one round trip: for a host whose user
    /// rows live in the store's database (doorman-sqlx's
    /// `SqlStore::token_with_user` reads both in one statement), so that
    /// the userinfo endpoint costs one query instead of two.
    ///
    /// The token must come from the same store the server uses, as
    /// [`TokenStore::token`](crate::store::TokenStore::token) would answer
    /// it: the server checks it exactly as it checks one read from its
    /// store (kind, hash, expiry) before it releases any claim.
    ///
    /// The default answers [`TokenClaims::Separate`]: the server reads the
    /// token from its store and then calls [`Claims::claims`].
    async fn claims_with_token(&self, hash: &TokenHash) -> Result<TokenClaims, StoreError> {
        let _ = hash;
        Ok(TokenClaims::Separate)
    }
}

/// What [`Claims::claims_with_token`] read.
// Returned once per userinfo request and taken apart at once: boxing the
// large variant would only add an allocation to that hot path.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum TokenClaims {
    /// This host reads claims on their own: the server reads the token
    /// from its store, then asks [`Claims::claims`].
    Separate,
    /// No token is stored under the hash.
    NoToken,
    /// The token, and its user's claims: `None` when the token acts for
    /// no user or its user no longer exists.
    Found(TokenRecord, Option<UserClaims>),
}

/// A user's credit, in the host's smallest unit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Balance {
    /// Credit bought or granted.
    pub quota: i64,
    /// Credit spent.
    pub used_quota: i64,
    /// What remains, formatted for people (see [`Balance::format_units`]).
    pub formatted: String,
    /// The page where the user tops up.
    pub topup_url: String,
}

impl Balance {
    /// `(quota - used_quota) / divisor`, rounded half away from zero to two
    /// decimals, in exact integer arithmetic (`"750.00"` for 1000000,
    /// 250000 and 1000). `divisor` must be positive.
    pub fn format_units(quota: i64, used_quota: i64, divisor: i64) -> String {
        let remaining = i128::from(quota) - i128::from(used_quota);
        let divisor = divisor.max(1).unsigned_abs();
        // Hundredths of the magnitude, rounded half away from zero
        // (`2r >= d` written as `r >= d - r`, which cannot overflow). Every
        // balance a host shows fits `u64` arithmetic, far cheaper than
        // `u128`'s; the extremes take the wide path.
        let scaled = remaining.unsigned_abs() * 100;
        let hundredths = match u64::try_from(scaled) {
            Ok(m) => u128::from(m / divisor + u64::from(m % divisor >= divisor - m % divisor)),
            Err(_) => {
                let d = u128::from(divisor);
                scaled / d + u128::from(scaled % d >= d - scaled % d)
            }
        };
        // Written from the right: two decimals, the point, the units, the
        // sign (none for a balance that rounds to zero).
        let mut buf = [0u8; 44];
        let mut at = buf.len();
        let mut n = hundredths;
        for i in 0.. {
            if i == 2 {
                at -= 1;
                buf[at] = b'.';
            }
            // Digits stay in `u64` once the rest fits: no `u128` division.
            let digit = match u64::try_from(n) {
                Ok(small) => {
                    n = u128::from(small / 10);
                    small % 10
                }
                Err(_) => {
                    let d = n % 10;
                    n /= 10;
                    d as u64
                }
            };
            at -= 1;
            buf[at] = b'0' + digit as u8;
            if i >= 2 && n == 0 {
                break;
            }
        }
        if remaining < 0 && hundredths != 0 {
            at -= 1;
            buf[at] = b'-';
        }
        buf[at..].iter().map(|&b| char::from(b)).collect()
    }
}

/// The host's balances.
#[async_trait]
pub trait Balances: Send + Sync + 'static {
    /// The balance of `user`, or `None` if the user no longer exists.
    async fn balance(&self, user: &UserId) -> Result<Option<Balance>, StoreError>;
}

/// What the consent page must show and submit.
#[derive(Debug, Clone)]
pub struct ConsentPrompt {
    /// The user being asked.
    pub user_id: UserId,
    /// The client asking.
    pub client_id: String,
    /// Its display name (untrusted text: escape it).
    pub client_name: String,
    /// Its description (untrusted text: escape it).
    pub client_description: String,
    /// The scopes requested, with descriptions.
    pub scopes: Vec<ScopeInfo>,
    /// Where the form posts to.
    pub form_action: String,
    /// Hidden fields the form must carry back unchanged, the anti-CSRF
    /// ticket among them. The submit buttons add `decision=approve|deny`.
    pub hidden_fields: Vec<(String, String)>,
}

/// How the host's pages look. The defaults are plain, escaped English
/// HTML with strict security headers; hosts override them to match their
/// site and language.
pub trait Pages: Send + Sync + 'static {
    /// The consent page (status 200).
    fn consent_page(
        &self,
        prompt: &ConsentPrompt,
        request: &http::request::Parts,
    ) -> http::Response<Bytes> {
        let _ = request;
        crate::pages::default_consent_page(prompt)
    }

    /// The page shown instead of redirecting when the client or its
    /// redirect URI cannot be trusted.
    fn error_page(
        &self,
        error: &OAuthError,
        request: &http::request::Parts,
    ) -> http::Response<Bytes> {
        let _ = request;
        crate::pages::default_error_page(error)
    }
}

/// The default pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct DefaultPages;

impl Pages for DefaultPages {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn balance_formatting_rounds_half_away_from_zero() {
        assert_eq!(Balance::format_units(1_000_000, 250_000, 1000), "750.00");
        assert_eq!(Balance::format_units(500_000, 0, 1000), "500.00");
        assert_eq!(Balance::format_units(5, 0, 1000), "0.01"); // 0.005 → 0.01
        assert_eq!(Balance::format_units(4, 0, 1000), "0.00");
        assert_eq!(Balance::format_units(0, 5, 1000), "-0.01");
        assert_eq!(Balance::format_units(1234, 0, 1000), "1.23");
        assert_eq!(Balance::format_units(1235, 0, 1000), "1.24");
        assert_eq!(
            Balance::format_units(i64::MAX, i64::MIN, 1),
            "18446744073709551615.00"
        );
        assert_eq!(
            Balance::format_units(i64::MIN, i64::MAX, 1),
            "-18446744073709551615.00"
        );
        assert_eq!(Balance::format_units(-4, 0, 1000), "0.00"); // no "-0.00"
        assert_eq!(Balance::format_units(7, 0, 0), "7.00"); // divisor taken as 1
    }

    /// The plain `i128` arithmetic and `format!` the fast writer replaced.
    fn reference(quota: i64, used_quota: i64, divisor: i64) -> String {
        let remaining = i128::from(quota) - i128::from(used_quota);
        let divisor = i128::from(divisor.max(1));
        let scaled = remaining * 100;
        let mut q = scaled / divisor;
        if 2 * (scaled % divisor).abs() >= divisor {
            q += scaled.signum();
        }
        let sign = if q < 0 { "-" } else { "" };
        let q = q.abs();
        format!("{sign}{}.{:02}", q / 100, q % 100)
    }

    #[test]
    fn balance_formatting_matches_plain_arithmetic_at_the_edges() {
        let values = [
            i64::MIN,
            i64::MIN + 1,
            -184_467_440_737_095_517,
            -1_000_001,
            -1000,
            -999,
            -500,
            -499,
            -5,
            -1,
            0,
            1,
            4,
            5,
            499,
            500,
            999,
            1000,
            1_000_001,
            184_467_440_737_095_516,
            184_467_440_737_095_517,
            i64::MAX - 1,
            i64::MAX,
        ];
        let divisors = [1, 2, 3, 7, 10, 100, 1000, 1001, 1_000_000, i64::MAX, 0, -5];
        for quota in values {
            for used in [0, 1, -1, 999, i64::MAX, i64::MIN] {
                for divisor in divisors {
                    assert_eq!(
                        Balance::format_units(quota, used, divisor),
                        reference(quota, used, divisor),
                        "{quota} - {used} over {divisor}"
                    );
                }
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn balance_formatting_matches_plain_arithmetic(
            quota: i64,
            used_quota: i64,
            divisor in 1i64..=i64::MAX,
        ) {
            proptest::prop_assert_eq!(
                Balance::format_units(quota, used_quota, divisor),
                reference(quota, used_quota, divisor)
            );
        }
    }
}
