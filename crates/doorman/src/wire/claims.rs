//! The claims a userinfo answer releases, written without building a map.

use serde::ser::{Serialize, SerializeMap as _, Serializer};
use serde_json::{Map, Value};

/// The claims the userinfo endpoint releases for one token: sorted by
/// name, each name once.
///
/// It borrows from the host's [`UserClaims`](crate::UserClaims) and the
/// token, so that the standard wire writes the answer straight from them
/// (serialized as one JSON object, byte for byte what a
/// `serde_json::Map` of the same claims gives). A profile that wraps its
/// answers gets the same object as a map from
/// [`ReleasedClaims::to_map`].
#[derive(Debug, Clone, PartialEq)]
pub struct ReleasedClaims<'a> {
    entries: Vec<Entry<'a>>,
}

/// Which of two claims of one name a userinfo answer keeps: the higher.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Rank {
    /// `sub` from the token's user: only when the host gave no `sub`.
    Subject,
    /// A claim released with any token.
    Base,
    /// A claim its scope released.
    Scoped,
    /// The balance fields, released by the balance scope.
    Balance,
}

#[derive(Debug, Clone, PartialEq)]
struct Entry<'a> {
    name: &'a str,
    /// The name's first eight bytes, for sorting without a string compare.
    key: u64,
    rank: Rank,
    /// The order of addition: among equal ranks the later wins.
    seq: u32,
    value: ClaimValue<'a>,
}

/// A released value: the host's JSON, or a number or text of the server's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ClaimValue<'a> {
    Json(&'a Value),
    Int(i64),
    Text(&'a str),
}

impl ClaimValue<'_> {
    fn to_value(&self) -> Value {
        match self {
            ClaimValue::Json(v) => (*v).clone(),
            ClaimValue::Int(i) => Value::from(*i),
            ClaimValue::Text(s) => Value::from(*s),
        }
    }
}

impl Serialize for ClaimValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            ClaimValue::Json(v) => v.serialize(s),
            ClaimValue::Int(i) => s.serialize_i64(*i),
            ClaimValue::Text(t) => s.serialize_str(t),
        }
    }
}

impl<'a> ReleasedClaims<'a> {
    /// Room for `n` claims.
    pub(crate) fn with_capacity(n: usize) -> Self {
        Self {
            entries: Vec::with_capacity(n),
        }
    }

    /// Adds a released claim; [`ReleasedClaims::finish`] decides between
    /// claims of one name.
    pub(crate) fn push(&mut self, name: &'a str, rank: Rank, value: ClaimValue<'a>) {
        let seq = u32::try_from(self.entries.len()).unwrap_or(u32::MAX);
        self.entries.push(Entry {
            name,
            key: name_key(name),
            rank,
            seq,
            value,
        });
    }

    /// Sorts by name and keeps, of each name, the claim of the highest
    /// rank, and of those the one added last.
    ///
    /// Names are compared by their first eight bytes as one integer, and
    /// in full only when those are equal: the order is the names' byte
    /// order all the same (see [`name_key`]), and sorting a userinfo
    /// answer's claims calls no string compare.
    pub(crate) fn finish(mut self) -> Self {
        self.entries.sort_unstable_by(|a, b| {
            a.key
                .cmp(&b.key)
                .then_with(|| a.name.cmp(b.name))
                .then(b.rank.cmp(&a.rank))
                .then(b.seq.cmp(&a.seq))
        });
        self.entries
            .dedup_by(|later, kept| later.key == kept.key && later.name == kept.name);
        self
    }

    /// The claims, sorted by name.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|e| e.name)
    }

    /// How many claims are released.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The claims as a JSON object.
    pub fn to_map(&self) -> Map<String, Value> {
        self.entries
            .iter()
            .map(|e| (e.name.to_owned(), e.value.to_value()))
            .collect()
    }
}

/// A name's first eight bytes, big-endian, padded with zeros: when two
/// names' keys differ, they differ as the names do. The first byte where
/// the keys differ is either a byte of both names, or the end of the
/// shorter one (a zero) against a byte of the longer that is not zero; in
/// both cases the names compare the same way. Equal keys say nothing, and
/// the names are then compared in full.
fn name_key(name: &str) -> u64 {
    let mut key = [0u8; 8];
    let bytes = name.as_bytes();
    let n = bytes.len().min(8);
    key[..n].copy_from_slice(&bytes[..n]);
    u64::from_be_bytes(key)
}

impl Serialize for ReleasedClaims<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.entries.len()))?;
        for e in &self.entries {
            map.serialize_entry(e.name, &e.value)?;
        }
        map.end()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn released<'a>(entries: &[(&'a str, Rank, ClaimValue<'a>)]) -> ReleasedClaims<'a> {
        let mut r = ReleasedClaims::with_capacity(entries.len());
        for (name, rank, value) in entries {
            r.push(name, *rank, value.clone());
        }
        r.finish()
    }

    #[test]
    fn the_higher_rank_then_the_later_claim_wins_and_names_come_sorted() {
        let a = Value::from("base");
        let b = Value::from("scoped");
        let c = Value::from("later scoped");
        let r = released(&[
            ("sub", Rank::Subject, ClaimValue::Text("7")),
            ("quota", Rank::Scoped, ClaimValue::Json(&b)),
            ("name", Rank::Scoped, ClaimValue::Json(&b)),
            ("name", Rank::Base, ClaimValue::Json(&a)),
            ("name", Rank::Scoped, ClaimValue::Json(&c)),
            ("quota", Rank::Balance, ClaimValue::Int(5)),
            ("id", Rank::Base, ClaimValue::Json(&a)),
        ]);
        assert_eq!(
            r.names().collect::<Vec<_>>(),
            ["id", "name", "quota", "sub"]
        );
        let map = r.to_map();
        assert_eq!(map["name"], "later scoped");
        assert_eq!(map["quota"], 5);
        assert_eq!(map["sub"], "7");
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&map).unwrap()
        );
    }

    #[test]
    fn a_host_sub_takes_the_place_of_the_token_user() {
        let host = Value::from("host-sub");
        let r = released(&[
            ("sub", Rank::Subject, ClaimValue::Text("7")),
            ("sub", Rank::Base, ClaimValue::Json(&host)),
        ]);
        assert_eq!(serde_json::to_string(&r).unwrap(), r#"{"sub":"host-sub"}"#);
    }

    proptest::proptest! {
        /// Sorting by the keys first gives the order, and keeps the claim,
        /// that sorting by the names alone gives: names that share their
        /// first eight bytes, run past them, end in zero bytes or are not
        /// ASCII included.
        #[test]
        fn the_keyed_sort_is_the_names_sort(
            claims in proptest::collection::vec(("[ab\\x00é]{0,10}", 0usize..4), 0..24)
        ) {
            const RANKS: [Rank; 4] = [Rank::Subject, Rank::Base, Rank::Scoped, Rank::Balance];
            let values: Vec<Value> = (0..claims.len()).map(Value::from).collect();
            let mut r = ReleasedClaims::with_capacity(claims.len());
            for ((name, rank), value) in claims.iter().zip(&values) {
                r.push(name, RANKS[*rank], ClaimValue::Json(value));
            }
            let r = r.finish();
            // The model: by name, then the highest rank, then the latest.
            let mut model: Vec<(&str, Rank, usize)> = claims
                .iter()
                .enumerate()
                .map(|(i, (name, rank))| (name.as_str(), RANKS[*rank], i))
                .collect();
            model.sort_by(|a, b| a.0.cmp(b.0).then(b.1.cmp(&a.1)).then(b.2.cmp(&a.2)));
            model.dedup_by(|later, kept| later.0 == kept.0);
            let got: Vec<(&str, Value)> =
                r.entries.iter().map(|e| (e.name, e.value.to_value())).collect();
            let want: Vec<(&str, Value)> =
                model.iter().map(|(n, _, i)| (*n, Value::from(*i))).collect();
            proptest::prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn text_is_escaped_like_serde_json_does() {
        let odd = Value::from("a\"b\\c\u{1}é");
        let r = released(&[
            ("x\"y", Rank::Base, ClaimValue::Json(&odd)),
            ("t", Rank::Balance, ClaimValue::Text("q\"\n")),
            ("n", Rank::Balance, ClaimValue::Int(i64::MIN)),
        ]);
        assert_eq!(
            serde_json::to_string(&r).unwrap(),
            serde_json::to_string(&r.to_map()).unwrap()
        );
    }
}
