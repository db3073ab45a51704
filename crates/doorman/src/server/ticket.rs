//! Stateless form tickets: `issued_at.HMAC-SHA256(key, issued_at ‖ fields)`.
//!
//! The consent form and host forms carry one. It binds the form to the
//! logged-in user and to the exact request, expires, and needs no storage
//! round trip, so any instance sharing the key can check it. A ticket can
//! be submitted more than once while fresh; that only repeats a decision
//! the same user already made on the same request.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, TimeDelta, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::secret::ct_eq_bytes;

type HmacSha256 = Hmac<Sha256>;

fn mac(key: &[u8; 32], issued_at: i64, fields: &[&str]) -> [u8; 32] {
    // new_from_slice only fails for invalid key lengths, which HMAC has none of.
    let mut m = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0u8; 32],
    };
    m.update(b"doorman-ticket-v1");
    m.update(&issued_at.to_be_bytes());
    for f in fields {
        // Length prefixes keep ("ab","c") and ("a","bc") apart.
        m.update(&(f.len() as u64).to_be_bytes());
        m.update(f.as_bytes());
    }
    m.finalize().into_bytes().into()
}

pub(crate) fn issue(key: &[u8; 32], now: DateTime<Utc>, fields: &[&str]) -> String {
    let ts = now.timestamp();
    format!("{ts}.{}", URL_SAFE_NO_PAD.encode(mac(key, ts, fields)))
}

pub(crate) fn verify(
    key: &[u8; 32],
    ticket: &str,
    now: DateTime<Utc>,
    ttl: TimeDelta,
    fields: &[&str],
) -> bool {
    let Some((ts, sig)) = ticket.split_once('.') else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return false;
    };
    let Ok(sig) = URL_SAFE_NO_PAD.decode(sig) else {
        return false;
    };
    let age = now.timestamp().saturating_sub(ts);
    // A ticket from the future (clock skew between instances) gets a minute.
    if age > ttl.num_seconds() || age < -60 {
        return false;
    }
    ct_eq_bytes(&sig, &mac(key, ts, fields))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_fields_key_and_time() {
        let key = [7u8; 32];
        let now = Utc::now();
        let ttl = TimeDelta::minutes(10);
        let t = issue(&key, now, &["alice", "client", "scope"]);
        assert!(verify(&key, &t, now, ttl, &["alice", "client", "scope"]));
        assert!(!verify(&key, &t, now, ttl, &["bob", "client", "scope"]));
        assert!(!verify(
            &key,
            &t,
            now,
            ttl,
            &["alice", "client", "scope more"]
        ));
        assert!(!verify(&key, &t, now, ttl, &["alicec", "lient", "scope"]));
        assert!(!verify(
            &[8u8; 32],
            &t,
            now,
            ttl,
            &["alice", "client", "scope"]
        ));
        assert!(!verify(
            &key,
            &t,
            now + TimeDelta::minutes(11),
            ttl,
            &["alice", "client", "scope"]
        ));
        assert!(!verify(&key, "garbage", now, ttl, &["alice"]));
        assert!(!verify(&key, "1.", now, ttl, &["alice"]));
        // A tampered timestamp invalidates the MAC.
        let (_, sig) = t.split_once('.').expect("dot");
        let forged = format!("{}.{sig}", now.timestamp() + 5);
        assert!(!verify(
            &key,
            &forged,
            now,
            ttl,
            &["alice", "client", "scope"]
        ));
    }
}
