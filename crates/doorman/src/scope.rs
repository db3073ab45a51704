//! Scopes (RFC 6749 §3.3): parsing, set operations and the human
//! descriptions shown on the consent page.

use std::fmt;

/// A set of scope tokens, kept sorted and without duplicates.
///
/// Parsing enforces the RFC 6749 §3.3 grammar: tokens separated by single
/// spaces, each made of `%x21 / %x23-5B / %x5D-7E` (printable ASCII except
/// space, `"` and `\`).
///
/// The set is held as its canonical scope string (the sorted tokens,
/// single spaces between): one allocation, written out as it is.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Scopes(String);

/// Why a scope string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// A token holds a character outside the RFC 6749 grammar.
    #[error("scope contains a character outside RFC 6749 §3.3")]
    BadCharacter,
    /// Two spaces in a row, or a leading or trailing space.
    #[error("scope tokens must be separated by single spaces")]
    BadSeparator,
}

fn is_scope_char(c: u8) -> bool {
    c == 0x21 || (0x23..=0x5B).contains(&c) || (0x5D..=0x7E).contains(&c)
}

/// Whether `s` is one scope token of the RFC 6749 §3.3 grammar.
fn is_scope_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_scope_char)
}

impl Scopes {
    /// The empty set.
    pub fn empty() -> Self {
        Self(String::new())
    }

    /// Parses a space-delimited scope string; the empty string is the empty set.
    pub fn parse(s: &str) -> Result<Self, ScopeError> {
        if s.is_empty() {
            return Ok(Self::empty());
        }
        let mut canonical = true;
        let mut previous: Option<&str> = None;
        for tok in s.split(' ') {
            if tok.is_empty() {
                return Err(ScopeError::BadSeparator);
            }
            if !tok.bytes().all(is_scope_char) {
                return Err(ScopeError::BadCharacter);
            }
            canonical &= previous.is_none_or(|p| p < tok);
            previous = Some(tok);
        }
        if canonical {
            // Already sorted and without duplicates: the string is the set.
            return Ok(Self(s.to_owned()));
        }
        Ok(Self::from_strs(s.split(' ')))
    }

    /// Builds a set from tokens (sorted, deduplicated here). Anything
    /// that is not one RFC 6749 scope token — empty, with a space, a quote
    /// or a non-ASCII character in it — is left out: no request could
    /// name it, and a set holds only what a request could.
    pub fn from_tokens<I, S>(tokens: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let tokens: Vec<S> = tokens.into_iter().collect();
        Self::from_strs(
            tokens
                .iter()
                .map(AsRef::as_ref)
                .filter(|t| is_scope_token(t)),
        )
    }

    /// The set of `tokens`, valid ones: sorted, deduplicated, empty ones
    /// left out.
    fn from_strs<'a>(tokens: impl Iterator<Item = &'a str>) -> Self {
        let mut v: Vec<&str> = tokens.filter(|t| !t.is_empty()).collect();
        v.sort_unstable();
        v.dedup();
        Self(v.join(" "))
    }

    /// A set from its canonical string, as [`Scopes::as_str`] gave it (a
    /// store reading back what it wrote), kept as it is.
    pub(crate) fn from_canonical(s: String) -> Self {
        debug_assert!(
            s.is_empty()
                || s.split(' ')
                    .collect::<Vec<_>>()
                    .windows(2)
                    .all(|w| w[0] < w[1]),
            "not a canonical scope string: {s:?}"
        );
        Self(s)
    }

    /// The canonical scope string: the tokens, sorted, single spaces
    /// between (the RFC 6749 §3.3 form); empty for the empty set.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether the set holds `scope`.
    pub fn contains(&self, scope: &str) -> bool {
        self.iter().any(|s| s == scope)
    }

    /// Whether every token of `self` is in `other`.
    pub fn is_subset_of(&self, other: &Scopes) -> bool {
        self.iter().all(|s| other.contains(s))
    }

    /// The union of two sets.
    pub fn union(&self, other: &Scopes) -> Scopes {
        Scopes::from_strs(self.iter().chain(other.iter()))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The tokens, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.split(' ').filter(|t| !t.is_empty())
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.iter().count()
    }
}

impl fmt::Display for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Scopes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Scopes({self})")
    }
}

/// A scope the server offers, with the words the consent page shows for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScopeInfo {
    /// The token, e.g. `profile`.
    pub name: String,
    /// What granting it means, in plain English.
    pub description: String,
}

impl ScopeInfo {
    /// A scope with its description.
    pub fn new(name: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_sorts_and_dedups() {
        let s = Scopes::parse("profile balance profile").expect("valid");
        assert_eq!(s.to_string(), "balance profile");
        assert!(s.contains("balance"));
        assert!(!s.contains("email"));
    }

    #[test]
    fn rejects_bad_grammar() {
        assert_eq!(Scopes::parse("a  b"), Err(ScopeError::BadSeparator));
        assert_eq!(Scopes::parse(" a"), Err(ScopeError::BadSeparator));
        assert_eq!(Scopes::parse("a\"b"), Err(ScopeError::BadCharacter));
        assert_eq!(Scopes::parse("a\\b"), Err(ScopeError::BadCharacter));
        assert_eq!(Scopes::parse("é"), Err(ScopeError::BadCharacter));
        assert_eq!(Scopes::parse("a\tb"), Err(ScopeError::BadCharacter));
    }

    #[test]
    fn the_set_is_its_canonical_string() {
        assert_eq!(Scopes::parse("b a b").expect("valid").as_str(), "a b");
        assert_eq!(Scopes::parse("a b").expect("valid").as_str(), "a b");
        assert_eq!(Scopes::parse("a a").expect("valid").as_str(), "a");
        let odd = Scopes::from_tokens(["", "z y", "y", "é", "x", "q\"", "y"]);
        assert_eq!(odd.as_str(), "x y");
        assert_eq!(odd.iter().collect::<Vec<_>>(), ["x", "y"]);
        assert_eq!(odd.len(), 2);
        assert!(!odd.contains("") && !odd.contains("z y") && !odd.contains("z"));
        let none = Scopes::from_tokens(["", " "]);
        assert!(none.is_empty() && none.iter().next().is_none());
        assert_eq!(none.len(), 0);
        assert_eq!(none, Scopes::empty());
        assert!(!Scopes::empty().contains(""));
    }

    proptest! {
        #[test]
        fn behaves_as_the_sorted_set_of_its_tokens(tokens in proptest::collection::vec("[a-d]{1,2}", 0..6), probe in "[a-d]{1,2}") {
            let parsed = Scopes::parse(&tokens.join(" ")).expect("valid");
            let mut model = tokens.clone();
            model.sort();
            model.dedup();
            prop_assert_eq!(parsed.iter().collect::<Vec<_>>(), model.iter().map(String::as_str).collect::<Vec<_>>());
            prop_assert_eq!(parsed.to_string(), model.join(" "));
            prop_assert_eq!(parsed.len(), model.len());
            prop_assert_eq!(parsed.contains(&probe), model.contains(&probe));
            prop_assert_eq!(&Scopes::from_tokens(&tokens), &parsed);
        }

        #[test]
        fn parse_never_panics_and_round_trips(s in ".{0,64}") {
            if let Ok(parsed) = Scopes::parse(&s) {
                let again = Scopes::parse(&parsed.to_string()).expect("display output parses");
                prop_assert_eq!(&again, &parsed);
                for t in parsed.iter() {
                    prop_assert!(s.split(' ').any(|x| x == t));
                }
            }
        }

        #[test]
        fn subset_matches_definition(a in proptest::collection::vec("[a-d]", 0..5), b in proptest::collection::vec("[a-d]", 0..5)) {
            let sa = Scopes::from_tokens(a.clone());
            let sb = Scopes::from_tokens(b.clone());
            prop_assert_eq!(sa.is_subset_of(&sb), a.iter().all(|x| b.contains(x)));
            let u = sa.union(&sb);
            prop_assert!(sa.is_subset_of(&u) && sb.is_subset_of(&u));
        }
    }
}

/// The scope a bearer-token extractor requires, as a type, so that
/// adapters' extractors (`doorman_axum::Bearer<R>`, `doorman_actix::Bearer<R>`)
/// state it in the handler's signature.
///
/// Declare one with [`required_scope!`](crate::required_scope):
///
/// ```
/// doorman::required_scope!(
///     /// Tokens that may read the profile.
///     pub ProfileScope = "profile"
/// );
/// use doorman::RequiredScope as _;
/// assert_eq!(ProfileScope::SCOPE, Some("profile"));
/// ```
pub trait RequiredScope: Send + Sync + 'static {
    /// The scope the token must carry; `None` accepts any valid token.
    const SCOPE: Option<&'static str>;
}

/// No scope required: any valid access token passes.
#[derive(Debug, Clone, Copy, Default)]
pub struct AnyScope;

impl RequiredScope for AnyScope {
    const SCOPE: Option<&'static str> = None;
}

/// Declares a unit type implementing [`RequiredScope`] for one scope:
/// `required_scope!(pub BalanceScope = "balance");`, with optional doc
/// comments and attributes before the name.
#[macro_export]
macro_rules! required_scope {
    ($(#[$meta:meta])* $vis:vis $name:ident = $scope:literal) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $crate::RequiredScope for $name {
            const SCOPE: ::core::option::Option<&'static str> = ::core::option::Option::Some($scope);
        }
    };
}
