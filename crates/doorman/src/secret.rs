//! Credentials: generation, hashing and constant-time comparison.
//!
//! Codes, tokens and generated client secrets carry 256 bits from a
//! CSPRNG, written in base64url. Stores only ever see their [`TokenHash`],
//! built from SHA-256. The credential types redact themselves in `Debug`,
//! so a stray `{:?}` cannot leak one into a log.
//!
//! Codes and tokens are *located*: their first six bytes are the time of
//! issue in milliseconds, then come the 256 random bits (51 base64url
//! characters in all). Their [`TokenHash::of_token`] key starts with those
//! six bytes, so a store's index receives new keys in time order: a SQL
//! B-tree appends them to its last pages instead of writing a random page
//! per credential, and the rows a purge or a burst of exchanges touch sit
//! together. The time is not a secret (a token's holder learns it from
//! `expires_in` anyway); guessing a credential is still guessing 256 bits.

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

/// Bytes of issue time that open a located credential.
const LOCATOR: usize = 6;
/// Characters of a located credential: base64url of the time's 6 bytes
/// and 32 random bytes, unpadded.
const LOCATED_LEN: usize = 51;
/// Characters that encode the locator exactly (8 × 6 bits = 6 bytes).
const LOCATOR_CHARS: usize = 8;

/// A located credential: 6 bytes of the time of issue (milliseconds since
/// 1970, big-endian) and 256 random bits, in base64url (51 characters).
pub(crate) fn located_token() -> String {
    let mut b = [0u8; LOCATOR + 32];
    let millis = u64::try_from(chrono::Utc::now().timestamp_millis()).unwrap_or(0);
    b[..LOCATOR].copy_from_slice(&millis.to_be_bytes()[8 - LOCATOR..]);
    random_bytes(&mut b[LOCATOR..]);
    URL_SAFE_NO_PAD.encode(b)
}

/// The locator of a credential in the located form, if it has that form.
fn locator(credential: &str) -> Option<[u8; LOCATOR]> {
    let bytes = credential.as_bytes();
    if bytes.len() != LOCATED_LEN {
        return None;
    }
    let mut out = [0u8; LOCATOR];
    match URL_SAFE_NO_PAD.decode_slice(&bytes[..LOCATOR_CHARS], &mut out) {
        Ok(LOCATOR) => Some(out),
        _ => None,
    }
}

/// The key under which a store keeps a credential: never the credential
/// itself. For client secrets (and anything a host hashes with
/// [`TokenHash::of`]) it is the SHA-256; for codes and tokens it is
/// [`TokenHash::of_token`].
///
/// For a store: a code's or token's key opens with 6 bytes of its issue
/// time, so keys sort by time (good for a B-tree) but their first bytes
/// are not uniform. A store that picks a shard or a hash bucket from a
/// key's bytes should use its last bytes, which are SHA-256 output in
/// either form.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TokenHash(pub [u8; 32]);

impl TokenHash {
    /// The SHA-256 of a credential: the key of a client secret.
    pub fn of(credential: &str) -> Self {
        Self(Sha256::digest(credential.as_bytes()).into())
    }

    /// The key of an authorization code, access or refresh token. For a
    /// located credential (the form doorman issues, see the module docs)
    /// it is the 6-byte locator followed by the first 26 bytes of the
    /// credential's SHA-256, so keys sort by time of issue; for anything
    /// else (a 43-character token from before the located form, a
    /// malformed value) it is the plain SHA-256, as [`TokenHash::of`].
    /// A presented value maps to exactly one key either way, and 208 bits
    /// of hash still have to match.
    pub fn of_token(credential: &str) -> Self {
        let mut key = Self::of(credential);
        if let Some(at) = locator(credential) {
            key.0.copy_within(..32 - LOCATOR, LOCATOR);
            key.0[..LOCATOR].copy_from_slice(&at);
        }
        key
    }

    /// Constant-time equality, for comparing a presented credential's hash
    /// with a stored one.
    pub fn ct_eq(&self, other: &Self) -> bool {
        // As four words: subtle compares a slice element by element behind
        // an optimisation barrier each, so four of them cost an eighth of
        // thirty-two.
        words(&self.0).ct_eq(&words(&other.0)).into()
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

/// The value of one hex digit (either case).
pub(crate) fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for TokenHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A few bytes are enough to tell keys apart in a log; the last
        // ones, because a located key opens with its (shared) issue time.
        write!(f, "TokenHash(…{})", &self.to_hex()[56..])
    }
}

macro_rules! credential {
    ($(#[$doc:meta])* $name:ident, $label:literal, $hash:path) => {
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

            /// The key under which a store keeps it.
            pub fn hash(&self) -> TokenHash {
                $hash(&self.0)
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
    "AuthorizationCode",
    TokenHash::of_token
);
credential!(
    /// A bearer access token (RFC 6750).
    AccessToken,
    "AccessToken",
    TokenHash::of_token
);
credential!(
    /// A refresh token (RFC 6749 §6).
    RefreshToken,
    "RefreshToken",
    TokenHash::of_token
);
credential!(
    /// A client secret (RFC 6749 §2.3.1).
    ClientSecret,
    "ClientSecret",
    TokenHash::of
);

impl AuthorizationCode {
    /// A fresh located code with 256 random bits.
    pub fn generate() -> Self {
        Self(located_token())
    }
}

impl AccessToken {
    /// A fresh located token with 256 random bits.
    pub fn generate() -> Self {
        Self(located_token())
    }
}

impl RefreshToken {
    /// A fresh located token with 256 random bits.
    pub fn generate() -> Self {
        Self(located_token())
    }
}

impl ClientSecret {
    /// A fresh 256-bit secret with the `secret_` prefix hosts recognise.
    pub fn generate() -> Self {
        Self(format!("secret_{}", random_token()))
    }
}

/// A hash as four native-endian words (for [`TokenHash::ct_eq`]).
fn words(bytes: &[u8; 32]) -> [u64; 4] {
    let mut out = [0u64; 4];
    for (word, chunk) in out.iter_mut().zip(bytes.chunks_exact(8)) {
        let mut b = [0u8; 8];
        b.copy_from_slice(chunk);
        *word = u64::from_ne_bytes(b);
    }
    out
}

/// Constant-time comparison of two byte strings of possibly different length.
pub fn ct_eq_bytes(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn millis_now() -> u64 {
        u64::try_from(chrono::Utc::now().timestamp_millis()).expect("after 1970")
    }

    fn millis_of(locator: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b[8 - LOCATOR..].copy_from_slice(&locator[..LOCATOR]);
        u64::from_be_bytes(b)
    }

    #[test]
    fn generated_tokens_are_located_256_bit_base64url_and_distinct() {
        let before = millis_now();
        let a = AccessToken::generate();
        let b = AccessToken::generate();
        let after = millis_now();
        assert_eq!(a.secret().len(), LOCATED_LEN);
        assert_ne!(a, b);
        assert!(
            a.secret()
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
        );
        let raw = URL_SAFE_NO_PAD.decode(a.secret()).expect("base64url");
        assert_eq!(raw.len(), LOCATOR + 32);
        let issued = millis_of(&raw);
        assert!(
            (before..=after).contains(&issued),
            "the locator is the issue time"
        );
        // The 256 bits after the locator are random: two tokens of the
        // same millisecond still differ there.
        let raw_b = URL_SAFE_NO_PAD.decode(b.secret()).expect("base64url");
        assert_ne!(raw[LOCATOR..], raw_b[LOCATOR..]);
        for c in [
            AuthorizationCode::generate().secret().len(),
            RefreshToken::generate().secret().len(),
        ] {
            assert_eq!(c, LOCATED_LEN);
        }
    }

    #[test]
    fn a_located_key_is_the_locator_then_the_hash() {
        let t = AccessToken::generate();
        let key = t.hash();
        let raw = URL_SAFE_NO_PAD.decode(t.secret()).expect("base64url");
        assert_eq!(key.0[..LOCATOR], raw[..LOCATOR]);
        let digest = TokenHash::of(t.secret());
        assert_eq!(key.0[LOCATOR..], digest.0[..32 - LOCATOR]);
        assert_eq!(key, TokenHash::of_token(t.secret()));
        // The same random part under another locator is another key, and
        // so is the same locator with another random part.
        let mut other = raw.clone();
        other[0] ^= 1;
        assert_ne!(TokenHash::of_token(&URL_SAFE_NO_PAD.encode(&other)), key);
        let mut other = raw;
        other[LOCATOR + 5] ^= 1;
        assert_ne!(TokenHash::of_token(&URL_SAFE_NO_PAD.encode(&other)), key);
    }

    #[test]
    fn located_keys_sort_by_time_of_issue() {
        let first = AuthorizationCode::generate().hash();
        std::thread::sleep(std::time::Duration::from_millis(3));
        let later: Vec<TokenHash> = (0..50).map(|_| AccessToken::generate().hash()).collect();
        assert!(later.iter().all(|k| *k > first));
        assert!(
            later
                .windows(2)
                .all(|w| w[0].0[..LOCATOR] <= w[1].0[..LOCATOR])
        );
    }

    #[test]
    fn anything_not_located_is_keyed_by_its_plain_sha256() {
        // A 43-character token from before the located form keeps its key,
        // so tokens stored then are still found.
        let legacy = random_token();
        assert_eq!(TokenHash::of_token(&legacy), TokenHash::of(&legacy));
        // 51 characters whose first 8 are not base64url: not located.
        let odd = format!("!!!!!!!!{}", &AccessToken::generate().secret()[8..]);
        assert_eq!(TokenHash::of_token(&odd), TokenHash::of(&odd));
        let wide = format!("{}a", "é".repeat(25)); // 51 bytes, not base64url
        for s in ["", "x", wide.as_str()] {
            assert_eq!(TokenHash::of_token(s), TokenHash::of(s));
        }
        // Client secrets are always keyed by their SHA-256.
        let s = ClientSecret::generate();
        assert_eq!(s.hash(), TokenHash::of(s.secret()));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let s = ClientSecret::generate();
        let shown = format!("{s:?}");
        assert!(!shown.contains(&s.secret()[8..]));
        assert_eq!(shown, "ClientSecret(<redacted>)");
        let h = s.hash();
        let shown = format!("{h:?}");
        assert_eq!(shown, format!("TokenHash(…{})", &h.to_hex()[56..]));
        assert!(!shown.contains(&h.to_hex()[..56]));
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

    #[test]
    fn ct_eq_sees_every_bit() {
        let h = TokenHash::of("abc");
        for byte in 0..32 {
            for bit in 0..8 {
                let mut other = h;
                other.0[byte] ^= 1 << bit;
                assert!(!h.ct_eq(&other), "byte {byte} bit {bit}");
                assert!(!other.ct_eq(&h), "byte {byte} bit {bit}");
            }
        }
    }
}
