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
    fn queue_groups_must_be_named() {
        validate_queue_group("email-workers").unwrap();
        for bad in ["", "two words", "new\nline"] {
            let err = validate_queue_group(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
    }
}
