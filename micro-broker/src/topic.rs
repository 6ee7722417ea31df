//! Topic names and subscription patterns, with NATS-style wildcards.
//!
//! A **topic** is what a message is published to: one or more non-empty tokens
//! separated by dots (`user.password_changed`, `orders.eu.created`). Tokens may
//! not contain whitespace, control characters, `*` or `>`.
//!
//! A **pattern** is what a subscription listens to. It is a topic, or a topic
//! with wildcard tokens, exactly as NATS subjects work, so a pattern means the
//! same thing on every backend:
//!
//! | pattern      | matches                                   | does not match        |
//! |--------------|-------------------------------------------|-----------------------|
//! | `user.login` | `user.login`                              | `user.logout`         |
//! | `user.*`     | `user.login`, `user.logout` (one token)   | `user`, `user.a.b`    |
//! | `user.>`     | `user.login`, `user.a.b` (one or more)    | `user`                |
//! | `*.created`  | `order.created`, `user.created`           | `a.b.created`         |
//!
//! `>` may only be the last token. Wildcards are whole tokens: `us*r` is
//! rejected rather than read as a literal, so no pattern is ambiguous.
//!
//! ```
//! use micro_broker::topic::Pattern;
//!
//! let pattern = Pattern::parse("user.>")?;
//! assert!(pattern.matches("user.password_changed"));
//! assert!(pattern.matches("user.profile.updated"));
//! assert!(!pattern.matches("user"));
//! # Ok::<(), micro_broker::Error>(())
//! ```

use std::fmt;

use crate::{Error, Result};

const ONE_TOKEN: &str = "*";
const TRAILING_TOKENS: &str = ">";

/// Checks that `topic` is a concrete topic that can be published to.
///
/// Fails with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
/// for an empty topic, an empty token (`a..b`, `.a`, `a.`), whitespace or
/// control characters, or a wildcard (`*`, `>`): messages go to concrete
/// topics; only subscriptions use patterns.
pub fn validate_topic(topic: &str) -> Result<()> {
    if is_plain_ascii_topic(topic) {
        return Ok(());
    }
    if topic.is_empty() {
        return Err(Error::invalid_argument("a topic must not be empty"));
    }
    for token in topic.split('.') {
        check_literal_token(token)
            .map_err(|err| err.context(format_args!("invalid topic `{topic}`")))?;
    }
    Ok(())
}

/// Whether `topic` is a valid topic written in printable ASCII, checked in
/// one pass over its bytes: the common case, and on every publish. Anything
/// else (an error to explain, or non-ASCII text) takes the token-by-token
/// path of [`validate_topic`].
fn is_plain_ascii_topic(topic: &str) -> bool {
    let mut token_is_empty = true;
    for &byte in topic.as_bytes() {
        match byte {
            b'.' if token_is_empty => return false,
            b'.' => token_is_empty = true,
            b'*' | b'>' => return false,
            // Printable ASCII: neither space, nor control characters, nor DEL.
            b'!'..=b'~' => token_is_empty = false,
            _ => return false,
        }
    }
    !token_is_empty
}

/// Checks a queue group name: non-empty, without whitespace or control characters.
pub fn validate_queue_group(group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(Error::invalid_argument(
            "a queue group name must not be empty",
        ));
    }
    if group.chars().any(is_forbidden_char) {
        return Err(Error::invalid_argument(format!(
            "invalid queue group `{}`: whitespace and control characters are not allowed",
            group.escape_debug()
        )));
    }
    Ok(())
}

/// A subscription pattern: a topic that may contain `*` and `>` wildcard tokens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Pattern {
    text: String,
    has_wildcards: bool,
}

impl Pattern {
    /// Parses and validates a pattern.
    ///
    /// Fails with [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument)
    /// for the same reasons as [`validate_topic`], except that `*` and `>` are
    /// allowed as whole tokens, and `>` only as the last one.
    pub fn parse(pattern: &str) -> Result<Pattern> {
        if pattern.is_empty() {
            return Err(Error::invalid_argument(
                "a subscription pattern must not be empty",
            ));
        }
        let invalid = |err: Error| err.context(format_args!("invalid pattern `{pattern}`"));
        let mut tokens = pattern.split('.').peekable();
        let mut has_wildcards = false;
        while let Some(token) = tokens.next() {
            match token {
                ONE_TOKEN => has_wildcards = true,
                TRAILING_TOKENS if tokens.peek().is_none() => has_wildcards = true,
                TRAILING_TOKENS => {
                    return Err(invalid(Error::invalid_argument(
                        "`>` may only be the last token",
                    )));
                }
                literal => check_literal_token(literal).map_err(invalid)?,
            }
        }
        Ok(Pattern {
            text: pattern.to_owned(),
            has_wildcards,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether the pattern contains `*` or `>`; without them it matches only itself.
    pub fn has_wildcards(&self) -> bool {
        self.has_wildcards
    }

    /// Whether the concrete `topic` matches this pattern.
    pub fn matches(&self, topic: &str) -> bool {
        if !self.has_wildcards {
            return self.text == topic;
        }
        let mut topic_tokens = topic.split('.');
        for pattern_token in self.text.split('.') {
            match (pattern_token, topic_tokens.next()) {
                (_, None) => return false,
                (TRAILING_TOKENS, Some(_)) => return true,
                (ONE_TOKEN, Some(_)) => {}
                (literal, Some(token)) if literal == token => {}
                (_, Some(_)) => return false,
            }
        }
        topic_tokens.next().is_none()
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

fn check_literal_token(token: &str) -> Result<()> {
    if token.is_empty() {
        return Err(Error::invalid_argument(
            "tokens between dots must not be empty",
        ));
    }
    if token.contains(['*', '>']) {
        return Err(Error::invalid_argument(
            "`*` and `>` are wildcards: they may only appear as whole tokens of a subscription pattern",
        ));
    }
    if token.chars().any(is_forbidden_char) {
        return Err(Error::invalid_argument(
            "whitespace and control characters are not allowed",
        ));
    }
    Ok(())
}

fn is_forbidden_char(c: char) -> bool {
    c.is_whitespace() || c.is_control()
}

/// The topic a [`Delivery`](crate::Delivery) was published to: a string
/// that is cheap to clone and to hand out.
///
/// A delivery's topic is shared rather than copied: the memory broker hands
/// every delivery of a subscription the subscription's own string, and the
/// NATS broker keeps the subject the client already read off the wire. So a
/// delivery costs no allocation for its topic. It reads as a `&str`
/// ([`Topic::as_str`], `Deref`) and compares with strings directly.
///
/// ```
/// use micro_broker::topic::Topic;
///
/// let topic = Topic::from("user.password_changed");
/// assert_eq!(topic, "user.password_changed");
/// assert!(topic.starts_with("user."));
/// assert_eq!(topic.to_string(), "user.password_changed");
/// ```
#[derive(Clone)]
pub struct Topic(TopicText);

#[derive(Clone)]
enum TopicText {
    Static(&'static str),
    Shared(std::sync::Arc<str>),
    /// A subject as async-nats read it: its bytes are a slice of the
    /// client's read buffer, shared, and UTF-8 by construction.
    #[cfg(feature = "nats")]
    Nats(async_nats::Subject),
}

impl Topic {
    /// A topic naming a string that lives for the whole program; no allocation.
    pub const fn from_static(topic: &'static str) -> Topic {
        Topic(TopicText::Static(topic))
    }

    /// The topic as a string slice.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            TopicText::Static(text) => text,
            TopicText::Shared(text) => text,
            #[cfg(feature = "nats")]
            TopicText::Nats(subject) => subject.as_str(),
        }
    }
}

impl std::ops::Deref for Topic {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl AsRef<str> for Topic {
    fn as_ref(&self) -> &str {
        self.as_str()
    }
}

impl std::borrow::Borrow<str> for Topic {
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl PartialEq for Topic {
    fn eq(&self, other: &Topic) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Topic {}

impl PartialOrd for Topic {
    fn partial_cmp(&self, other: &Topic) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Topic {
    fn cmp(&self, other: &Topic) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::hash::Hash for Topic {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // As `str` hashes, so that `Borrow<str>` lookups find it.
        self.as_str().hash(state);
    }
}

/// Compares a [`Topic`] with a string type, both ways round.
macro_rules! topic_equals {
    ($($other:ty),*) => {$(
        impl PartialEq<$other> for Topic {
            fn eq(&self, other: &$other) -> bool {
                self.as_str() == AsRef::<str>::as_ref(other)
            }
        }

        impl PartialEq<Topic> for $other {
            fn eq(&self, other: &Topic) -> bool {
                AsRef::<str>::as_ref(self) == other.as_str()
            }
        }
    )*};
}

topic_equals!(str, &str, String);

impl From<&str> for Topic {
    fn from(topic: &str) -> Topic {
        Topic(TopicText::Shared(topic.into()))
    }
}

impl From<&String> for Topic {
    fn from(topic: &String) -> Topic {
        Topic::from(topic.as_str())
    }
}

impl From<String> for Topic {
    fn from(topic: String) -> Topic {
        Topic(TopicText::Shared(topic.into()))
    }
}

impl From<std::sync::Arc<str>> for Topic {
    fn from(topic: std::sync::Arc<str>) -> Topic {
        Topic(TopicText::Shared(topic))
    }
}

#[cfg(feature = "nats")]
impl From<async_nats::Subject> for Topic {
    fn from(subject: async_nats::Subject) -> Topic {
        Topic(TopicText::Nats(subject))
    }
}

impl From<Topic> for String {
    fn from(topic: Topic) -> String {
        topic.as_str().to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn exact_patterns_match_only_themselves() {
        let pattern = Pattern::parse("user.login").unwrap();
        assert!(!pattern.has_wildcards());
        assert!(pattern.matches("user.login"));
        assert!(!pattern.matches("user.logout"));
        assert!(!pattern.matches("user.login.extra"));
        assert!(!pattern.matches("user"));
    }

    #[test]
    fn star_matches_exactly_one_token_anywhere() {
        let pattern = Pattern::parse("user.*").unwrap();
        assert!(pattern.has_wildcards());
        assert!(pattern.matches("user.login"));
        assert!(!pattern.matches("user"));
        assert!(!pattern.matches("user.a.b"));
        assert!(!pattern.matches("account.login"));

        let middle = Pattern::parse("orders.*.created").unwrap();
        assert!(middle.matches("orders.eu.created"));
        assert!(!middle.matches("orders.eu.deleted"));
        assert!(!middle.matches("orders.created"));
    }

    #[test]
    fn greater_than_matches_one_or_more_trailing_tokens() {
        let pattern = Pattern::parse("user.>").unwrap();
        assert!(pattern.matches("user.login"));
        assert!(pattern.matches("user.a.b.c"));
        assert!(!pattern.matches("user"));
        assert!(!pattern.matches("users.login"));

        let everything = Pattern::parse(">").unwrap();
        assert!(everything.matches("a"));
        assert!(everything.matches("a.b"));

        let mixed = Pattern::parse("*.b.>").unwrap();
        assert!(mixed.matches("a.b.c"));
        assert!(mixed.matches("x.b.c.d"));
        assert!(!mixed.matches("a.b"));
        assert!(!mixed.matches("a.c.d"));
    }

    #[test]
    fn malformed_patterns_are_invalid_arguments() {
        for bad in [
            "", "a..b", ".a", "a.", "a.>.b", "us*r", "a.b>", "a b", "a.\n", "a.\u{7}",
        ] {
            let err = Pattern::parse(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn topics_must_be_concrete() {
        validate_topic("user.password_changed").unwrap();
        validate_topic("a").unwrap();
        validate_topic("grüße.ünïcode").unwrap();
        for bad in ["", "a.*", "a.>", "a..b", "a.", "a b", "tab\there", "x*"] {
            let err = validate_topic(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }

    #[test]
    fn the_ascii_fast_path_agrees_with_the_full_check() {
        let samples = [
            "user.password_changed",
            "a",
            "a.b.c-d_e",
            "~!.@#",
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "a.*",
            "a.>",
            "x*",
            "a b",
            "tab\there",
            "del\u{7f}",
            "grüße.ünïcode",
            "non\u{a0}breaking",
        ];
        for topic in samples {
            let full = topic
                .split('.')
                .all(|token| check_literal_token(token).is_ok());
            if is_plain_ascii_topic(topic) {
                assert!(full, "{topic:?} passed the fast path only");
            }
            assert_eq!(validate_topic(topic).is_ok(), full, "{topic:?}");
        }
    }

    #[test]
    fn the_ascii_fast_path_takes_exactly_the_valid_ascii_topics() {
        // Every string of up to five characters from an alphabet holding each
        // case the fast path tells apart.
        let alphabet = ['a', '.', '*', '>', ' ', '~', '\u{7f}'];
        let mut topics = vec![String::new()];
        for _ in 0..5 {
            let longer: Vec<String> = topics
                .iter()
                .filter(|topic| topic.len() == topics.last().map_or(0, String::len))
                .flat_map(|topic| alphabet.iter().map(move |c| format!("{topic}{c}")))
                .collect();
            topics.extend(longer);
        }
        for topic in &topics {
            let full = !topic.is_empty()
                && topic
                    .split('.')
                    .all(|token| check_literal_token(token).is_ok());
            assert_eq!(is_plain_ascii_topic(topic), full, "{topic:?}");
        }
    }

    #[test]
    fn a_topic_reads_and_compares_as_its_text() {
        use std::collections::HashSet;

        let shared = Topic::from("orders.eu.created");
        let owned = Topic::from(String::from("orders.eu.created"));
        let fixed = Topic::from_static("orders.eu.created");
        assert_eq!(shared, owned);
        assert_eq!(owned, fixed);
        assert_eq!(shared, "orders.eu.created");
        assert_eq!("orders.eu.created", shared);
        assert_eq!(shared, String::from("orders.eu.created"));
        assert_ne!(shared, "orders.eu");
        assert_eq!(
            format!("{shared} {shared:?}"),
            "orders.eu.created \"orders.eu.created\""
        );
        assert_eq!(String::from(fixed.clone()), "orders.eu.created");
        // Hashes as its text, so sets of topics are looked up with a `&str`.
        let set: HashSet<Topic> = [shared, Topic::from("b")].into_iter().collect();
        assert!(set.contains("orders.eu.created"));
        assert!(!set.contains("c"));
    }

    #[cfg(feature = "nats")]
    #[test]
    fn a_nats_subject_becomes_a_topic_as_it_is() {
        let topic = Topic::from(async_nats::Subject::from("user.login"));
        assert_eq!(topic, "user.login");
        assert_eq!(topic.as_str(), "user.login");
    }

    #[test]
    fn queue_groups_must_be_named() {
        validate_queue_group("email-workers").unwrap();
        for bad in ["", "two words", "new\nline"] {
            let err = validate_queue_group(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }
}
