//! Request parameters: form bodies, JSON bodies and query strings, read
//! without losing repeated names (RFC 6749 §3.1, §3.2: parameters must not
//! be included more than once).

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;

use serde::de::{Deserializer, MapAccess, Visitor};

use crate::error::OAuthError;
use crate::secret::hex_val;

/// The name/value pairs of one request, in order, repeats kept.
///
/// Every name and value is decoded into one string, and the pairs are
/// ranges of it: reading a request's parameters makes two allocations
/// however many there are.
#[derive(Clone, Default)]
pub struct Params {
    /// The decoded names and values, one after another.
    text: String,
    /// Each pair's name and value, as ranges of `text`.
    pairs: Vec<(Range<usize>, Range<usize>)>,
}

impl fmt::Debug for Params {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values may be secrets (client_secret, code, tokens): names only.
        f.debug_list()
            .entries(self.pairs().map(|(k, _)| k))
            .finish()
    }
}

impl PartialEq for Params {
    fn eq(&self, other: &Self) -> bool {
        self.pairs().eq(other.pairs())
    }
}

impl Eq for Params {}

impl Params {
    /// Pairs as given.
    pub fn from_pairs(pairs: Vec<(String, String)>) -> Self {
        let mut out = Self {
            text: String::with_capacity(pairs.iter().map(|(k, v)| k.len() + v.len()).sum()),
            pairs: Vec::with_capacity(pairs.len()),
        };
        for (k, v) in &pairs {
            let name = out.append(k);
            let value = out.append(v);
            out.pairs.push((name, value));
        }
        out
    }

    /// Parses `application/x-www-form-urlencoded` bytes (the WHATWG URL
    /// standard's parser: `&`-separated, empty pieces skipped, a name
    /// without `=` has an empty value, `+` is a space, `%XX` a byte, a `%`
    /// without two hex digits itself; bytes that are not UTF-8 become
    /// U+FFFD). Never fails today; the `Result` stays so that callers do
    /// not change if a stricter reading ever refuses input.
    pub fn from_form(body: &[u8]) -> Result<Self, OAuthError> {
        Ok(parse_urlencoded(body))
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

    /// Appends `s` to the text; its range there.
    fn append(&mut self, s: &str) -> Range<usize> {
        let start = self.text.len();
        self.text.push_str(s);
        start..self.text.len()
    }

    /// The text at `range` (always within it: the ranges are its own).
    fn at(&self, range: &Range<usize>) -> &str {
        self.text.get(range.clone()).unwrap_or_default()
    }

    /// The first name that occurs more than once (the earliest second
    /// occurrence).
    ///
    /// Linear in the number of pairs: a body of thousands of distinct
    /// names must not cost the square of them (at the default 64 KiB
    /// limit, comparing every name with every earlier one took 110 ms).
    pub fn repeated(&self) -> Option<&str> {
        if self.pairs.len() <= 16 {
            // A real request: a few names, compared in place.
            return self
                .pairs()
                .enumerate()
                .find_map(|(i, (k, _))| self.pairs().take(i).any(|(k2, _)| k2 == k).then_some(k));
        }
        let mut seen = HashSet::with_capacity(self.pairs.len());
        self.pairs().map(|(k, _)| k).find(|k| !seen.insert(*k))
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
        self.pairs()
            .find(|(k, v)| *k == name && !v.is_empty())
            .map(|(_, v)| v)
    }

    /// Whether `name` occurs more than once.
    pub fn is_repeated(&self, name: &str) -> bool {
        self.pairs().filter(|(k, _)| *k == name).count() > 1
    }

    /// The value of a required parameter, or `invalid_request` naming it.
    pub fn require(&self, name: &str) -> Result<&str, OAuthError> {
        self.get(name).ok_or_else(|| {
            OAuthError::invalid_request(format!("missing required parameter `{name}`"))
        })
    }

    /// Renames a parameter (for wire profiles: `app_id` → `client_id`).
    pub fn rename(&mut self, from: &str, to: &str) {
        let mut renamed = None;
        for i in 0..self.pairs.len() {
            if self.at(&self.pairs[i].0) == from {
                let name = match &renamed {
                    Some(r) => Range::clone(r),
                    None => renamed.insert(self.append(to)).clone(),
                };
                self.pairs[i].0 = name;
            }
        }
    }

    /// All pairs, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> + '_ {
        self.pairs.iter().map(|(k, v)| (self.at(k), self.at(v)))
    }

    /// Whether there are no pairs at all.
    pub fn is_empty(&self) -> bool {
        self.pairs.is_empty()
    }
}

/// The pairs of a form-urlencoded string, in order. Written out rather
/// than through `serde_urlencoded`, which this replaces on every token,
/// introspection and authorize request.
fn parse_urlencoded(input: &[u8]) -> Params {
    // Room for the pieces counted, but not more than a real request has:
    // a body of ampersands must not reserve a pair for each of them.
    let pieces = input.iter().filter(|&&b| b == b'&').count() + 1;
    let mut out = Params {
        text: String::with_capacity(input.len()),
        pairs: Vec::with_capacity(pieces.min(16)),
    };
    // Escaped pieces are unescaped here first (allocated on the first).
    let mut scratch = Vec::new();
    for piece in input.split(|&b| b == b'&') {
        if piece.is_empty() {
            continue;
        }
        let (name, value) = match piece.iter().position(|&b| b == b'=') {
            Some(at) => (&piece[..at], &piece[at + 1..]),
            None => (piece, &[][..]),
        };
        let name = decode_into(&mut out, &mut scratch, name);
        let value = decode_into(&mut out, &mut scratch, value);
        out.pairs.push((name, value));
    }
    out
}

/// Appends one form-urlencoded name or value to `out`'s text: `+` →
/// space, `%XX` → byte, then UTF-8 with invalid sequences replaced (as
/// browsers do). Its range in the text.
fn decode_into(out: &mut Params, scratch: &mut Vec<u8>, raw: &[u8]) -> Range<usize> {
    let bytes = if raw.iter().any(|&b| b == b'%' || b == b'+') {
        scratch.clear();
        let mut i = 0;
        while let Some(&b) = raw.get(i) {
            match b {
                b'+' => scratch.push(b' '),
                b'%' => match (
                    raw.get(i + 1).and_then(|&c| hex_val(c)),
                    raw.get(i + 2).and_then(|&c| hex_val(c)),
                ) {
                    (Some(hi), Some(lo)) => {
                        scratch.push((hi << 4) | lo);
                        i += 2;
                    }
                    _ => scratch.push(b'%'),
                },
                _ => scratch.push(b),
            }
            i += 1;
        }
        &scratch[..]
    } else {
        raw
    };
    out.append(&String::from_utf8_lossy(bytes))
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
        let pairs: Vec<(&str, &str)> = p.pairs().collect();
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
        assert!(Params::from_query(None).expect("none").is_empty());
        let q = Params::from_query(Some("state=a+b%2Bc")).expect("valid");
        assert_eq!(q.get("state"), Some("a b+c"));
    }

    #[test]
    fn a_body_of_ampersands_reserves_no_pairs() {
        let p = Params::from_form(&[b'&'; 100_000]).expect("valid");
        assert!(p.is_empty());
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
    fn every_name_and_value_lives_in_one_text() {
        let mut p = Params::from_form(b"app_id=a&x=%41+b&app_id=c").expect("valid");
        assert_eq!(p.text, "app_idaxA bapp_idc");
        p.rename("app_id", "client_id");
        let pairs: Vec<(&str, &str)> = p.pairs().collect();
        assert_eq!(
            pairs,
            [("client_id", "a"), ("x", "A b"), ("client_id", "c")]
        );
        assert_eq!(p.repeated(), Some("client_id"));
        assert!(p.is_repeated("client_id") && !p.is_repeated("x"));
        let same = Params::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        assert_eq!(p, same);
        assert_ne!(p, Params::from_form(b"client_id=a&x=A+b").expect("valid"));
    }

    #[test]
    fn a_body_of_many_distinct_names_is_checked_for_repeats_in_one_pass() {
        let names: Vec<String> = (0..20_000).map(|i| format!("{i:x}")).collect();
        let mut body = names
            .iter()
            .map(|n| format!("{n}="))
            .collect::<Vec<_>>()
            .join("&");
        let p = Params::from_form(body.as_bytes()).expect("parses");
        assert_eq!(p.repeated(), None);
        body.push_str("&4e1f=x&3=y");
        let p = Params::from_form(body.as_bytes()).expect("parses");
        assert_eq!(p.repeated(), Some("4e1f"));
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
            prop_assert!(ours.pairs().eq(theirs.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        }

        #[test]
        fn repeated_is_the_earliest_second_occurrence(names in proptest::collection::vec("[a-e]{1,2}", 0..40)) {
            let body: Vec<String> = names.iter().map(|n| format!("{n}=v")).collect();
            let p = Params::from_form(body.join("&").as_bytes()).expect("parses");
            let expected = names
                .iter()
                .enumerate()
                .find(|(i, n)| names[..*i].contains(n))
                .map(|(_, n)| n.as_str());
            prop_assert_eq!(p.repeated(), expected);
        }

        #[test]
        fn form_round_trip(pairs in proptest::collection::vec(("[a-z_]{1,8}", ".{0,16}"), 0..6)) {
            let body = serde_urlencoded::to_string(&pairs).expect("encodes");
            let p = Params::from_form(body.as_bytes()).expect("parses");
            prop_assert!(p.pairs().eq(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))));
        }
    }
}
