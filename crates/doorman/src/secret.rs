//! Credentials: generation, hashing and constant-time comparison.
//!
//! Codes, tokens and generated client secrets are 256-bit values from the
//! operating system's CSPRNG, written in base64url. Stores only ever see
//! their SHA-256 [`TokenHash`]. The credential types redact themselves in
//! `Debug`, so a stray `{:?}` cannot leak one into a log.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::Rng as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Fills `buf` from a CSPRNG (ChaCha12 reseeded from the OS).
pub(crate) fn random_bytes(buf: &mut [u8]) {
    rand::rng().fill_bytes(buf);
}

/// 256 random bits in base64url without padding (43 characters).
pub(crate) fn random_token() -> String {
    let mut b = [0u8; 32];
    random_bytes(&mut b);
    URL_SAFE_NO_PAD.encode(b)
}

/// The SHA-256 of a credential: the only form in which a store keeps it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// Hashes a presented credential.
    pub fn of(credential: &str) -> Self {
        Self(Sha256::digest(credential.as_bytes()).into())
    }

    /// Constant-time equality, for comparing a presented credential's hash
    /// with a stored one.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// Lower-case hex, the form SQL stores use as a key.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(64);
        for b in self.0 {
            s.push(char::from(HEX[usize::from(b >> 4)]));
            s.push(char::from(HEX[usize::from(b & 0xf)]));
        }
        s
    }

    /// Parses [`TokenHash::to_hex`] output.
    pub fn from_hex(s: &str) -> Option<Self> {
        let bytes = s.as_bytes();
        if bytes.len() != 64 {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, pair) in bytes.chunks_exact(2).enumerate() {
            let hi = hex_val(pair[0])?;
            let lo = hex_val(pair[1])?;
            out[i] = (hi << 4) | lo;
        }
        Some(Self(out))
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A prefix is enough to tell hashes apart in a log.
        write!(f, "TokenHash({}…)", &self.to_hex()[..8])
    }
}

macro_rules! credential {
    ($(#[$doc:meta])* $name:ident, $label:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// Wraps a presented or generated value.
            pub fn new(value: impl Into<String>) -> Self {
                Self(value.into())
            }

            /// The plaintext, for sending to its owner exactly once.
            pub fn secret(&self) -> &str {
                &self.0
            }

            /// The SHA-256 under which a store keeps it.
            pub fn hash(&self) -> TokenHash {
                TokenHash::of(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($label, "(<redacted>)"))
            }
        }
    };
}

credential!(
    /// An authorization code (RFC 6749 §4.1.2).
    AuthorizationCode,
    "AuthorizationCode"
);
credential!(
    /// A bearer access token (RFC 6750).
    AccessToken,
    "AccessToken"
);
credential!(
    /// A refresh token (RFC 6749 §6).
    RefreshToken,
    "RefreshToken"
);
credential!(
    /// A client secret (RFC 6749 §2.3.1).
    ClientSecret,
    "ClientSecret"
);

impl AuthorizationCode {
    /// A fresh 256-bit code.
    pub fn generate() -> Self {
        Self(random_token())
    }
}

impl AccessToken {
    /// A fresh 256-bit token.
    pub fn generate() -> Self {
        Self(random_token())
    }
}

impl RefreshToken {
    /// A fresh 256-bit token.
    pub fn generate() -> Self {
        Self(random_token())
    }
}

impl ClientSecret {
    /// A fresh 256-bit secret with the `secret_` prefix hosts recognise.
    pub fn generate() -> Self {
        Self(format!("secret_{}", random_token()))
    }
}

/// Constant-time comparison of two byte strings of possibly different length.
pub fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_tokens_are_256_bit_base64url_and_distinct() {
        let a = AccessToken::generate();
        let b = AccessToken::generate();
        assert_eq!(a.secret().len(), 43);
        assert_ne!(a, b);
        assert!(
            a.secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let raw = URL_SAFE_NO_PAD.decode(a.secret()).expect("base64url");
        assert_eq!(raw.len(), 32);
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = ClientSecret::generate();
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.secret()[8..]));
        assert_eq!(shown, "ClientSecret(<redacted>)");
        let h = s.hash();
        assert!(!format!("{h:?}").contains(&h.to_hex()[8..]));
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = TokenHash::of("abc");
        assert_eq!(
            h.to_hex(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(TokenHash::from_hex(&h.to_hex()), Some(h));
        assert_eq!(TokenHash::from_hex("zz"), None);
        assert!(h.ct_eq(&TokenHash::of("abc")));
        assert!(!h.ct_eq(&TokenHash::of("abd")));
    }
}
