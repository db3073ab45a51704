//! The demo's settings, from the environment (see the contract's table).

use std::fmt;
use std::net::SocketAddr;

use crate::error::DemoError;

/// Which web framework serves the demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Adapter {
    /// axum 0.8, through `doorman-axum` (the default).
    Axum,
    /// actix-web 4, through `doorman-actix`.
    Actix,
}

impl Adapter {
    /// The name used in `DOORMAN_ADAPTER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Axum => "axum",
            Self::Actix => "actix",
        }
    }
}

/// Everything `start` needs to run the demo.
#[derive(Clone)]
pub struct DemoConfig {
    /// Listen address (`DOORMAN_ADDR`, default `127.0.0.1:8080`; port 0 picks one).
    pub addr: SocketAddr,
    /// Issuer URL (`DOORMAN_ISSUER`); `None`: `http://<bound address>`.
    pub issuer: Option<String>,
    /// `DATABASE_URL`: `sqlite://…` (default `sqlite://doorman-demo.db?mode=rwc`), `postgres://…`, or `memory:` (process memory, for benchmarks).
    pub database_url: String,
    /// Developer token for app registration (`DOORMAN_DEV_TOKEN`); `None`: random.
    pub dev_token: Option<String>,
    /// Web framework (`DOORMAN_ADAPTER`, default `axum`).
    pub adapter: Adapter,
    /// Authorization-code lifetime in seconds (`DOORMAN_CODE_TTL_SECS`, default 600).
    pub code_ttl_secs: i64,
    /// Access-token lifetime in seconds (`DOORMAN_ACCESS_TTL_SECS`, default 7200).
    pub access_ttl_secs: i64,
    /// Refresh-token lifetime in seconds (`DOORMAN_REFRESH_TTL_SECS`, default 2592000).
    pub refresh_ttl_secs: i64,
    /// Allow `http://` redirect URIs to any host (`DOORMAN_ALLOW_HTTP_REDIRECTS`, default `true`).
    pub allow_http_redirects: bool,
    /// The demo owns its SQLite file alone (`DOORMAN_SQLITE_EXCLUSIVE`,
    /// default `false`): faster, but no other process can open the file
    /// while it runs (see `doorman_sqlx::SqlStoreOptions::sqlite_exclusive`).
    pub sqlite_exclusive: bool,
}

/// The default `DATABASE_URL`: an SQLite file next to where the demo runs.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://doorman-demo.db?mode=rwc";

impl DemoConfig {
    /// Reads the environment; unset variables take the contract's defaults,
    /// malformed ones are an error naming the variable.
    pub fn from_env() -> Result<Self, DemoError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// The contract's defaults over `database_url` and `adapter`, listening
    /// on `127.0.0.1:0` with a random developer token: what tests start.
    pub fn for_tests(database_url: String, adapter: Adapter) -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            issuer: None,
            database_url,
            dev_token: None,
            adapter,
            code_ttl_secs: 600,
            access_ttl_secs: 7200,
            refresh_ttl_secs: 2_592_000,
            allow_http_redirects: true,
            sqlite_exclusive: false,
        }
    }

    fn from_lookup(var: impl Fn(&str) -> Option<String>) -> Result<Self, DemoError> {
        let var = |name: &str| {
            var(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bad = |name: &str, why: &str| DemoError::Config(format!("{name}: {why}"));
        let addr = match var("DOORMAN_ADDR") {
            Some(a) => a
                .parse()
                .map_err(|_| bad("DOORMAN_ADDR", "expected an address like 127.0.0.1:8080"))?,
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
        };
        let issuer = match var("DOORMAN_ISSUER") {
            Some(i) if i.starts_with("http://") || i.starts_with("https://") => Some(i),
            Some(_) => return Err(bad("DOORMAN_ISSUER", "expected an http:// or https:// URL")),
            None => None,
        };
        let adapter = match var("DOORMAN_ADAPTER").as_deref() {
            None | Some("axum") => Adapter::Axum,
            Some("actix") => Adapter::Actix,
            Some(_) => return Err(bad("DOORMAN_ADAPTER", "expected axum or actix")),
        };
        let secs = |name: &str, default: i64| -> Result<i64, DemoError> {
            match var(name) {
                None => Ok(default),
                Some(v) => match v.parse::<i64>() {
                    Ok(n) if n > 0 && n <= 10 * 365 * 24 * 3600 => Ok(n),
                    _ => Err(bad(name, "expected a positive number of seconds")),
                },
            }
        };
        let flag = |name: &str, default: bool| -> Result<bool, DemoError> {
            match var(name).map(|v| v.to_ascii_lowercase()).as_deref() {
                None => Ok(default),
                Some("true" | "1" | "yes") => Ok(true),
                Some("false" | "0" | "no") => Ok(false),
                Some(_) => Err(bad(name, "expected true or false")),
            }
        };
        Ok(Self {
            addr,
            issuer,
            database_url: var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned()),
            dev_token: var("DOORMAN_DEV_TOKEN"),
            adapter,
            code_ttl_secs: secs("DOORMAN_CODE_TTL_SECS", 600)?,
            access_ttl_secs: secs("DOORMAN_ACCESS_TTL_SECS", 7200)?,
            refresh_ttl_secs: secs("DOORMAN_REFRESH_TTL_SECS", 2_592_000)?,
            allow_http_redirects: flag("DOORMAN_ALLOW_HTTP_REDIRECTS", true)?,
            sqlite_exclusive: flag("DOORMAN_SQLITE_EXCLUSIVE", false)?,
        })
    }
}

impl fmt::Debug for DemoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DemoConfig")
            .field("addr", &self.addr)
            .field("issuer", &self.issuer)
            .field("database_url", &redact_url(&self.database_url))
            .field("dev_token", &self.dev_token.as_ref().map(|_| "<redacted>"))
            .field("adapter", &self.adapter)
            .field("code_ttl_secs", &self.code_ttl_secs)
            .field("access_ttl_secs", &self.access_ttl_secs)
            .field("refresh_ttl_secs", &self.refresh_ttl_secs)
            .field("allow_http_redirects", &self.allow_http_redirects)
            .field("sqlite_exclusive", &self.sqlite_exclusive)
            .finish()
    }
}

/// A database URL without its password (`postgres://user:pw@host/db` →
/// `postgres://user@host/db`) and without query parameters that might
/// carry one.
pub fn redact_url(url: &str) -> String {
    let (base, _) = url.split_once('?').unwrap_or((url, ""));
    let Some((scheme, rest)) = base.split_once("://") else {
        return base.to_owned();
    };
    let auth_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}@{host}")
        }
        None => authority.to_owned(),
    };
    format!("{scheme}://{authority}{path}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_errors() {
        let c = DemoConfig::from_lookup(|_| None).expect("defaults");
        assert_eq!(c.addr.to_string(), "127.0.0.1:8080");
        assert_eq!(c.database_url, DEFAULT_DATABASE_URL);
        assert_eq!(
            (c.code_ttl_secs, c.access_ttl_secs, c.refresh_ttl_secs),
            (600, 7200, 2_592_000)
        );
        assert!(c.allow_http_redirects);
        assert!(!c.sqlite_exclusive);
        assert_eq!(c.adapter, Adapter::Axum);
        let c = DemoConfig::from_lookup(|n| match n {
            "DOORMAN_ADAPTER" => Some("actix".into()),
            "DOORMAN_ALLOW_HTTP_REDIRECTS" => Some("false".into()),
            "DOORMAN_DEV_TOKEN" => Some("s3cret-token".into()),
            "DOORMAN_SQLITE_EXCLUSIVE" => Some("yes".into()),
            _ => None,
        })
        .expect("parses");
        assert_eq!(c.adapter, Adapter::Actix);
        assert!(!c.allow_http_redirects);
        assert!(c.sqlite_exclusive);
        assert!(!format!("{c:?}").contains("s3cret-token"));
        for (name, value) in [
            ("DOORMAN_ADDR", "nope"),
            ("DOORMAN_ADAPTER", "rocket"),
            ("DOORMAN_CODE_TTL_SECS", "-1"),
            ("DOORMAN_ISSUER", "ftp://x"),
            ("DOORMAN_SQLITE_EXCLUSIVE", "sometimes"),
        ] {
            assert!(
                DemoConfig::from_lookup(|n| (n == name).then(|| value.to_owned())).is_err(),
                "{name}"
            );
        }
    }

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_url("postgres://u:pw@db:5432/x?sslmode=off"),
            "postgres://u@db:5432/x"
        );
        assert_eq!(
            redact_url("sqlite://doorman-demo.db?mode=rwc"),
            "sqlite://doorman-demo.db"
        );
        assert_eq!(redact_url("postgres://db/x"), "postgres://db/x");
    }
}
