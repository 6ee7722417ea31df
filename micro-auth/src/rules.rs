//! Rules: which accounts may call which endpoints.
//!
//! A [`Rule`] names a resource (a service and an endpoint, each exact, `*`
//! or a prefix ending in `*`), a scope the caller must hold (`""`: anyone,
//! signed in or not; `"*"`: any account; else a named scope), an access
//! (grant or deny) and a priority. For each call, the rules whose resource
//! matches are tried from the highest priority down (a deny before a grant
//! of the same priority, then in the order they were added); the first
//! whose scope the caller satisfies decides. With any rule defined, a call
//! no rule decides is refused; with none at all, every call is let through
//! (auth off).

use serde::{Deserialize, Serialize};

use crate::{Account, Error, Result};

/// Whether a matching rule lets the call through.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// The call goes ahead.
    Grant,
    /// The call is refused.
    Deny,
}

/// One rule; [`Rules`] says how rules decide.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    /// The service called: exact, `*`, or a prefix ending in `*`.
    #[serde(default = "any")]
    pub service: String,
    /// The endpoint called (`Greeter.Hello`): exact, `*`, or a prefix ending
    /// in `*` (`Health.*`).
    #[serde(default = "any")]
    pub endpoint: String,
    /// What the caller must hold: `""` (nothing: public), `"*"` (any
    /// account) or a scope name.
    #[serde(default)]
    pub scope: String,
    /// Grant or deny.
    pub access: Access,
    /// Higher is tried first.
    #[serde(default)]
    pub priority: i32,
}

fn any() -> String {
    "*".to_owned()
}

impl Rule {
    /// Grants calls of `endpoint` of `service` to callers holding `scope`.
    pub fn grant(
        service: impl Into<String>,
        endpoint: impl Into<String>,
        scope: impl Into<String>,
    ) -> Rule {
        Rule {
            service: service.into(),
            endpoint: endpoint.into(),
            scope: scope.into(),
            access: Access::Grant,
            priority: 0,
        }
    }

    /// Denies calls of `endpoint` of `service` to callers holding `scope`.
    pub fn deny(
        service: impl Into<String>,
        endpoint: impl Into<String>,
        scope: impl Into<String>,
    ) -> Rule {
        Rule {
            access: Access::Deny,
            ..Rule::grant(service, endpoint, scope)
        }
    }

    /// Sets the priority (higher is tried first).
    pub fn priority(mut self, priority: i32) -> Rule {
        self.priority = priority;
        self
    }

    fn covers(&self, service: &str, endpoint: &str) -> bool {
        matches(&self.service, service) && matches(&self.endpoint, endpoint)
    }

    fn applies_to(&self, account: Option<&Account>) -> bool {
        match (self.scope.as_str(), account) {
            ("", _) => true,
            ("*", account) => account.is_some(),
            (scope, Some(account)) => account.has_scope(scope),
            (_, None) => false,
        }
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// A set of rules, kept sorted for deciding.
///
/// A [`Rule`] names a resource (a service and an endpoint, each exact, `*`
/// or a prefix ending in `*`), a scope the caller must hold (`""`: anyone,
/// signed in or not; `"*"`: any account; else a named scope), an access
/// (grant or deny) and a priority. For each call, the rules whose resource
/// matches are tried from the highest priority down (a deny before a grant
/// of the same priority, then in the order they were added); the first
/// whose scope the caller satisfies decides. With any rule defined, a call
/// no rule decides is refused; with none at all, every call is let through.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<Rule>", into = "Vec<Rule>")]
pub struct Rules {
    rules: Vec<Rule>,
}

impl Rules {
    /// No rules: every call is let through.
    pub fn new() -> Rules {
        Rules::default()
    }

    /// Adds `rule`.
    pub fn rule(mut self, rule: Rule) -> Rules {
        self.rules.push(rule);
        self.sort();
        self
    }

    /// Makes `endpoint` (exact or a `Prefix.*`) of any service public.
    pub fn public(self, endpoint: impl Into<String>) -> Rules {
        self.rule(Rule::grant("*", endpoint, ""))
    }

    /// Whether there are no rules (auth off).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The rules, in the order they are tried.
    pub fn iter(&self) -> impl Iterator<Item = &Rule> {
        self.rules.iter()
    }

    fn sort(&mut self) {
        // Stable: rules of equal rank keep the order they were added in.
        self.rules.sort_by_key(|rule| {
            (
                std::cmp::Reverse(rule.priority),
                rule.access == Access::Grant,
            )
        });
    }

    /// Decides a call of `endpoint` of `service` by `account` (`None`: no
    /// credential). Refused calls are `Unauthenticated` when there is no
    /// account and signing in could help, `PermissionDenied` otherwise; the
    /// messages say nothing about the rules.
    pub fn verify(&self, account: Option<&Account>, service: &str, endpoint: &str) -> Result<()> {
        if self.rules.is_empty() {
            return Ok(());
        }
        let decided = self
            .rules
            .iter()
            .filter(|rule| rule.covers(service, endpoint))
            .find(|rule| rule.applies_to(account));
        match (decided.map(|rule| rule.access), account) {
            (Some(Access::Grant), _) => Ok(()),
            (_, None) => Err(Error::unauthenticated("authentication required")),
            (_, Some(_)) => Err(Error::permission_denied("permission denied")),
        }
    }
}

impl From<Rules> for Vec<Rule> {
    fn from(rules: Rules) -> Vec<Rule> {
        rules.rules
    }
}

impl From<Vec<Rule>> for Rules {
    fn from(rules: Vec<Rule>) -> Rules {
        rules.into_iter().fold(Rules::new(), Rules::rule)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    fn reader() -> Account {
        Account::new("ada", "test").with_scopes(["orders:read"])
    }

    fn kind(result: Result<()>) -> Option<ErrorKind> {
        result.err().map(|err| err.kind())
    }

    #[test]
    fn no_rules_let_everything_through() {
        assert!(Rules::new().verify(None, "orders", "Orders.Delete").is_ok());
    }

    #[test]
    fn with_rules_an_undecided_call_is_refused() {
        let rules = Rules::new().rule(Rule::grant("orders", "Orders.Get", "orders:read"));
        assert_eq!(
            kind(rules.verify(Some(&reader()), "orders", "Orders.Get")),
            None
        );
        assert_eq!(
            kind(rules.verify(Some(&reader()), "orders", "Orders.Delete")),
            Some(ErrorKind::PermissionDenied)
        );
        assert_eq!(
            kind(rules.verify(None, "orders", "Orders.Get")),
            Some(ErrorKind::Unauthenticated)
        );
    }

    #[test]
    fn public_any_account_and_named_scopes() {
        let rules = Rules::new()
            .public("Health.*")
            .rule(Rule::grant("orders", "Orders.List", "*"));
        assert!(rules.verify(None, "orders", "Health.Check").is_ok());
        assert!(rules.verify(None, "billing", "Health.Watch").is_ok());
        assert_eq!(
            kind(rules.verify(None, "orders", "Orders.List")),
            Some(ErrorKind::Unauthenticated)
        );
        let nobody = Account::new("eve", "test");
        assert!(rules.verify(Some(&nobody), "orders", "Orders.List").is_ok());
    }

    #[test]
    fn the_highest_priority_decides_and_deny_wins_a_tie() {
        let rules = Rules::new()
            .rule(Rule::grant("*", "*", "*"))
            .rule(Rule::deny("orders", "Orders.Delete", "*").priority(10));
        assert_eq!(
            kind(rules.verify(Some(&reader()), "orders", "Orders.Delete")),
            Some(ErrorKind::PermissionDenied)
        );
        assert!(
            rules
                .verify(Some(&reader()), "orders", "Orders.Get")
                .is_ok()
        );
        let tie = Rules::new()
            .rule(Rule::grant("orders", "*", "orders:read"))
            .rule(Rule::deny("orders", "*", "orders:read"));
        assert_eq!(
            kind(tie.verify(Some(&reader()), "orders", "Orders.Get")),
            Some(ErrorKind::PermissionDenied)
        );
    }

    #[test]
    fn wildcards_match_prefixes_only_at_the_end() {
        assert!(matches("Orders.*", "Orders.Get"));
        assert!(!matches("Orders.*", "OrdersX"));
        assert!(matches("*", "anything"));
        assert!(!matches("Orders.Get", "Orders.GetAll"));
    }

    #[test]
    fn rules_read_from_config() {
        let rules: Rules = serde_json::from_str(
            r#"[{"endpoint": "Health.*", "access": "grant"},
                {"service": "orders", "endpoint": "*", "scope": "orders:read", "access": "grant", "priority": 5}]"#,
        )
        .unwrap();
        assert!(rules.verify(None, "x", "Health.Check").is_ok());
        assert!(
            rules
                .verify(Some(&reader()), "orders", "Orders.Get")
                .is_ok()
        );
        assert!(serde_json::from_str::<Rules>(r#"[{"access": "maybe"}]"#).is_err());
    }
}
