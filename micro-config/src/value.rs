//! The configuration tree: a JSON value whose root is an object, addressed by
//! dotted paths (`server.timeout`, `peers.0.host`).

use serde_json::{Map, Value};

use crate::{Error, Result};

/// The segments of a dotted path; the empty path is the root.
pub(crate) fn segments(path: &str) -> impl Iterator<Item = &str> {
    path.split('.').filter(|segment| !segment.is_empty())
}

/// The value at `path`, if any. Array elements are addressed by index.
pub(crate) fn lookup<'a>(root: &'a Value, path: &str) -> Option<&'a Value> {
    segments(path).try_fold(root, |node, segment| match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
        _ => None,
    })
}

/// Merges `overlay` into `base`: maps merge key by key, recursively; anything
/// else in `overlay` replaces what `base` had (arrays are replaced, not
/// concatenated, so a later source can shorten a list).
pub(crate) fn merge(base: &mut Value, overlay: &Value) {
    match (base, overlay) {
        (Value::Object(base), Value::Object(overlay)) => {
            for (key, value) in overlay {
                match base.get_mut(key) {
                    Some(existing) => merge(existing, value),
                    None => {
                        base.insert(key.clone(), value.clone());
                    }
                }
            }
        }
        (base, overlay) => *base = overlay.clone(),
    }
}

/// Sets `path` to `value`, creating (or replacing non-map values with) the maps
/// on the way. Setting the empty path replaces the whole tree.
pub(crate) fn set(root: &mut Value, path: &str, value: Value) {
    let mut node = root;
    for segment in segments(path) {
        if !node.is_object() {
            *node = Value::Object(Map::new());
        }
        node = match node {
            Value::Object(map) => map.entry(segment.to_owned()).or_insert(Value::Null),
            other => other,
        };
    }
    *node = value;
}

/// Removes `path`; returns whether it was there. Maps left empty are removed too.
pub(crate) fn remove(root: &mut Value, path: &str) -> bool {
    let segments: Vec<&str> = segments(path).collect();
    remove_segments(root, &segments)
}

fn remove_segments(node: &mut Value, segments: &[&str]) -> bool {
    let Value::Object(map) = node else {
        return false;
    };
    match segments {
        [] => false,
        [last] => map.remove(*last).is_some(),
        [first, rest @ ..] => {
            let Some(child) = map.get_mut(*first) else {
                return false;
            };
            let removed = remove_segments(child, rest);
            if removed && child.as_object().is_some_and(Map::is_empty) {
                map.remove(*first);
            }
            removed
        }
    }
}

/// Builds a tree from flat `(segments, value)` pairs, as key/value stores and
/// environment variables hold them.
///
/// A key that is both a value and a section (`db = "x"` beside `db.host = "y"`)
/// is an `InvalidArgument` error naming it: there is no tree that holds both.
pub(crate) fn from_pairs<'a, I>(pairs: I) -> Result<Value>
where
    I: IntoIterator<Item = (Vec<String>, &'a str)>,
{
    let mut root = Value::Object(Map::new());
    for (segments, value) in pairs {
        if segments.is_empty() {
            continue;
        }
        insert_leaf(&mut root, &segments, value)?;
    }
    Ok(root)
}

fn insert_leaf(root: &mut Value, segments: &[String], value: &str) -> Result<()> {
    let conflict = || {
        Error::invalid_argument(format!(
            "config key `{}` is both a value and a section",
            segments.join(".")
        ))
    };
    let mut node = root;
    let (last, parents) = segments.split_last().ok_or_else(conflict)?;
    for segment in parents {
        let Value::Object(map) = node else {
            return Err(conflict());
        };
        node = map
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    let Value::Object(map) = node else {
        return Err(conflict());
    };
    if map.get(last).is_some_and(Value::is_object) {
        return Err(conflict());
    }
    map.insert(last.clone(), Value::String(value.to_owned()));
    Ok(())
}

/// Checks that a source's snapshot is a map at its root.
pub(crate) fn expect_object(value: Value, what: &str) -> Result<Value> {
    match value {
        Value::Object(_) => Ok(value),
        Value::Null => Ok(Value::Object(Map::new())),
        other => Err(Error::invalid_argument(format!(
            "{what}: the top level must be a map of settings, found {}",
            kind_of(&other)
        ))),
    }
}

/// A short name for the JSON type of `value`, for messages.
pub(crate) fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a map",
    }
}

/// Expands `${VAR}` and `${VAR:-default}` in `text` with `lookup`; `$$` is a
/// literal `$`. A variable that is unset and has no default is an error
/// naming it, rather than a silent empty string.
pub(crate) fn expand(text: &str, lookup: &dyn Fn(&str) -> Option<String>) -> Result<String> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('{') {
            let Some(end) = body.find('}') else {
                return Err(Error::invalid_argument(format!(
                    "unterminated `${{` in {text:?}"
                )));
            };
            let reference = &body[..end];
            let (name, default) = match reference.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (reference, None),
            };
            match (lookup(name), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => {
                    return Err(Error::invalid_argument(format!(
                        "environment variable `{name}` referenced as `${{{name}}}` is not set \
                         (write `${{{name}:-default}}` to give a default)"
                    )));
                }
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn merge_is_deep_and_later_wins() {
        let mut base = json!({"db": {"host": "a", "port": 1}, "list": [1, 2, 3]});
        merge(
            &mut base,
            &json!({"db": {"host": "b", "user": "u"}, "list": [9]}),
        );
        assert_eq!(
            base,
            json!({"db": {"host": "b", "port": 1, "user": "u"}, "list": [9]})
        );
    }

    #[test]
    fn lookup_walks_maps_and_lists() {
        let root = json!({"peers": [{"host": "a"}, {"host": "b"}]});
        assert_eq!(lookup(&root, "peers.1.host"), Some(&json!("b")));
        assert_eq!(lookup(&root, "peers.7.host"), None);
        assert_eq!(lookup(&root, ""), Some(&root));
    }

    #[test]
    fn set_and_remove_paths() {
        let mut root = json!({});
        set(&mut root, "a.b.c", json!(1));
        set(&mut root, "a.d", json!(2));
        assert_eq!(root, json!({"a": {"b": {"c": 1}, "d": 2}}));
        assert!(remove(&mut root, "a.b.c"));
        assert_eq!(root, json!({"a": {"d": 2}}));
        assert!(!remove(&mut root, "a.zz"));
    }

    #[test]
    fn pairs_conflict_is_an_error() {
        let ok = from_pairs([(vec!["db".into(), "host".into()], "h")]).unwrap();
        assert_eq!(ok, json!({"db": {"host": "h"}}));
        let err = from_pairs([
            (vec!["db".into(), "host".into()], "h"),
            (vec!["db".into()], "x"),
        ])
        .unwrap_err();
        assert_eq!(err.kind(), micro_core::ErrorKind::InvalidArgument);
        let err = from_pairs([
            (vec!["db".into()], "x"),
            (vec!["db".into(), "host".into()], "h"),
        ])
        .unwrap_err();
        assert_eq!(err.kind(), micro_core::ErrorKind::InvalidArgument);
    }

    #[test]
    fn expands_variables() {
        let lookup = |name: &str| (name == "HOST").then(|| "db.local".to_owned());
        assert_eq!(
            expand("postgres://${HOST}:5432", &lookup).unwrap(),
            "postgres://db.local:5432"
        );
        assert_eq!(expand("${PORT:-5432}", &lookup).unwrap(), "5432");
        assert_eq!(expand("cost: $$5, $x", &lookup).unwrap(), "cost: $5, $x");
        let err = expand("${MISSING}", &lookup).unwrap_err();
        assert_eq!(err.kind(), micro_core::ErrorKind::InvalidArgument);
        assert!(err.message().contains("MISSING"));
        assert!(expand("${OPEN", &lookup).is_err());
    }
}
