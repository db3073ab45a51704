//! Request parameters: form bodies, JSON bodies and query strings, read
//! without losing repeated names (RFC 6749 §3.1, §3.2: parameters must not
//! be included more than once).

use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};

use crate::error::OAuthError;
use crate::secret::hex_val;

/// The name/value pairs of one request, in order, repeats kept.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (client_secret, code, tokens): names only.
        f.debug_list()
            .entries(self.pairs.iter().map(|(k, _)| k))
            .finish()
    }
}

impl Params {
    /// Pairs as given.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        Self { pairs }
    }

    /// Parses `application/x-www-form-urlencoded` bytes (the WHATWG URL
    /// standard's parser: `&`-separated, empty pieces skipped, a name
    /// without `=` has an empty value, `+` is a space, `%XX` a byte, a `%`
    /// without two hex digits itself; bytes that are not UTF-8 become
    /// U+FFFD). Never fails today; the `Result` stays so that callers do
    /// not change if a stricter reading ever refuses input.
    pub fn from_form(body: &[u8]) -> Result<Self, OAuthError> {
        Ok(Self::from_pairs(parse_urlencoded(body)))
    }

    /// Parses a query string (without the `?`), as [`Params::from_form`].
    pub fn from_query(query: Option<&str>) -> Result<Self, OAuthError> {
        Ok(query.map_or_else(Self::default, |q| {
            Self::from_form(q.as_bytes()).unwrap_or_default()
        }))
    }

    /// Parses a JSON object whose values are strings (numbers and booleans
    /// are taken as their JSON text); repeated keys are kept so that they
    /// can be refused like repeated form fields.
    pub fn from_json(body: &[u8]) -> Result<Self, OAuthError> {
        let mut de = serde_json::Deserializer::from_slice(body);
        let pairs = de
            .deserialize_map(PairsVisitor)
            .and_then(|p| de.end().map(|()| p))
            .map_err(|_| {
                OAuthError::invalid_request("the body is not a JSON object of string values")
            })?;
        Ok(Self::from_pairs(pairs))
    }

    /// The first name that occurs more than once.
    pub fn repeated(&self) -> Option<&str> {
        self.pairs
            .iter()
            .enumerate()
            .find(|(i, (k, _))| self.pairs[..*i].iter().any(|(k2, _)| k2 == k))
            .map(|(_, (k, _))| k.as_str())
    }

    /// Refuses repeated names with `invalid_request`.
    pub fn reject_repeats(&self) -> Result<(), OAuthError> {
        match self.repeated() {
            Some(name) => Err(OAuthError::invalid_request(format!(
                "parameter `{}` is repeated",
                printable(name)
            ))),
            None => Ok(()),
        }
    }

    /// The value of `name`; an empty value counts as absent (RFC 6749 §3.1).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Whether `name` occurs more than once.
    pub fn is_repeated(&self, name: &str) -> bool {
        self.pairs.iter().filter(|(k, _)| k == name).count() > 1
    }

    /// The value of a required parameter, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::invalid_request(format!("missing required parameter `{name}`"))
        })
    }

    /// Renames a parameter (for wire profiles: `app_id` → `client_id`).
    pub fn rename(&mut self, from: &str, to: &str) {
        for (k, _) in &mut self.pairs {
            if k == from {
                *k = to.to_owned();
            }
        }
    }

    /// All pairs.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }
}

/// The pairs of a form-urlencoded string, in order. Written out rather
/// than through `serde_urlencoded`, which this replaces on every token,
/// introspection and authorize request: a value without escapes is copied
/// once into its `String`, with no deserializer in between.
fn parse_urlencoded(input: &[u8]) -> Vec<(String, String)> {
    // Room for the pieces counted, but not more than a real request has:
    // a body of ampersands must not reserve a pair for each of them.
    let pieces = input.iter().filter(|&&b| b == b'&').count() + 1;
    let mut pairs = Vec::with_capacity(pieces.min(16));
    for piece in input.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(at) => (&piece[..at], &piece[at + 1..]),
            None => (piece, &[][..]),
        };
        pairs.push((decode(name), decode(value)));
    }
    pairs
}

/// One form-urlencoded name or value: `+` → space, `%XX` → byte, then
/// UTF-8 with invalid sequences replaced (as browsers do).
fn decode(raw: &[u8]) -> String {
    if !raw.iter().any(|&b| b == b'%' || b == b'+') {
        return String::from_utf8_lossy(raw).into_owned();
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while let Some(&b) = raw.get(i) {
        match b {
            b'+' => out.push(b' '),
            b'%' => match (
                raw.get(i + 1).and_then(|&c| hex_val(c)),
                raw.get(i + 2).and_then(|&c| hex_val(c)),
            ) {
                (Some(hi), Some(lo)) => {
                    out.push((hi << 4) | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
        i += 1;
    }
    match String::from_utf8(out) {
        Ok(s) => s,
        Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
    }
}

/// A parameter name safe to echo in a description: at most 40 printable
/// ASCII characters.
fn printable(name: &str) -> String {
    name.chars()
        .filter(|c| c.is_ascii_graphic())
        .take(40)
        .collect()
}

struct PairsVisitor;

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Vec<(String, String)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = Vec::new();
        while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                serde_json::Value::Bool(b) => b.to_string(),
                serde_json::Value::Number(n) => n.to_string(),
                _ => return Err(serde::de::Error::custom("nested values are not parameters")),
            };
            out.push((k, v));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn form_keeps_repeats_and_empty_is_absent() {
        let p = Params::from_form(b"a=1&b=&a=2&c=x+y%26").expect("valid");
        assert_eq!(p.repeated(), Some("a"));
        assert!(p.reject_repeats().is_err());
        assert_eq!(p.get("b"), None);
        assert_eq!(p.get("c"), Some("x y&"));
        assert_eq!(
            p.require("b").map_err(|e| e.code),
            Err(crate::ErrorCode::InvalidRequest)
        );
    }

    #[test]
    fn form_escapes_and_odd_pieces() {
        let p = Params::from_form(
            b"&&a&=v&r=https%3A%2F%2Fx.test%2Fcb&bad=%zz%4&u=%E4%BD%A0&x=%FF&e==",
        )
        .expect("valid");
        let pairs: Vec<(&str, &str)> = p
            .pairs()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            pairs,
            [
                ("a", ""),
                ("", "v"),
                ("r", "https://x.test/cb"),
                ("bad", "%zz%4"),
                ("u", "你"),
                ("x", "\u{fffd}"),
                ("e", "="),
            ]
        );
        assert_eq!(Params::from_query(None).expect("none").pairs(), &[]);
        let q = Params::from_query(Some("state=a+b%2Bc")).expect("valid");
        assert_eq!(q.get("state"), Some("a b+c"));
    }

    #[test]
    fn a_body_of_ampersands_reserves_no_pairs() {
        let p = Params::from_form(&[b'&'; 100_000]).expect("valid");
        assert!(p.pairs().is_empty());
        assert!(
            p.pairs.capacity() <= 16,
            "{} pairs reserved",
            p.pairs.capacity()
        );
    }

    #[test]
    fn json_repeated_keys_are_detected() {
        let p = Params::from_json(br#"{"grant_type":"x","grant_type":"y","n":5,"t":true}"#)
            .expect("valid");
        assert_eq!(p.repeated(), Some("grant_type"));
        assert_eq!(p.get("n"), Some("5"));
        assert!(Params::from_json(br#"{"a":{"b":1}}"#).is_err());
        assert!(Params::from_json(br#"[1]"#).is_err());
        assert!(Params::from_json(br#"{"a":"b"} trailing"#).is_err());
    }

    #[test]
    fn debug_hides_values() {
        let p = Params::from_form(b"client_secret=hunter2").expect("valid");
        assert!(!format!("{p:?}").contains("hunter2"));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Params::from_form(&bytes);
            let _ = Params::from_json(&bytes);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = Params::from_query(Some(s));
            }
        }

        /// The hand-written parser reads every input exactly as
        /// `serde_urlencoded` (the WHATWG parser it replaced) did.
        #[test]
        fn form_parser_agrees_with_serde_urlencoded(
            bytes in proptest::collection::vec(
                prop_oneof![
                    Just(b'&'), Just(b'='), Just(b'+'), Just(b'%'), Just(b'a'),
                    Just(b'F'), Just(b'0'), Just(b'7'), any::<u8>()
                ],
                0..64,
            )
        ) {
            let ours = Params::from_form(&bytes).expect("never fails");
            let theirs: Vec<(String, String)> =
                serde_urlencoded::from_bytes(&bytes).expect("never fails");
            prop_assert_eq!(ours.pairs(), &theirs[..]);
        }

        #[test]
        fn form_round_trip(pairs in proptest::collection::vec(("[a-z_]{1,8}", ".{0,16}"), 0..6)) {
            let body = serde_urlencoded::to_string(&pairs).expect("encodes");
            let p = Params::from_form(body.as_bytes()).expect("parses");
            prop_assert_eq!(p.pairs(), &pairs[..]);
        }
    }
}
