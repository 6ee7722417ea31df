//! Reading typed values out of the configuration tree.
//!
//! Sources disagree on types: environment variables, flags and key/value
//! stores only hold strings, while JSON, TOML and YAML have numbers and
//! booleans. This deserializer is lenient where the meaning is clear (the
//! string `"5432"` reads as a `u16`, `"true"` as a `bool`, `"a,b"` as a list,
//! `"250ms"` as a `Duration`), expands `${VAR}` references in every string it
//! reads, and reports failures with the dotted path of the value at fault.

use std::{borrow::Cow, fmt, time::Duration};

use serde::de::Deserializer as _;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, EnumAccess, Expected, IntoDeserializer, MapAccess,
    SeqAccess, Unexpected, VariantAccess, Visitor,
};
use serde_json::{Map, Value};

use crate::{Error, Result, value};

/// Looks environment variables up for `${VAR}` expansion.
pub(crate) type Vars<'a> = &'a (dyn Fn(&str) -> Option<String> + Send + Sync);

/// Deserializes the value at `path` (already looked up) into `T`.
pub(crate) fn from_value<T: DeserializeOwned>(
    value: &Value,
    path: &str,
    vars: Vars<'_>,
) -> Result<T> {
    T::deserialize(ValueDeserializer {
        value: Cow::Borrowed(value),
        path: path.to_owned(),
        vars,
    })
    .map_err(|err| err.into_error(path))
}

/// What a failed deserialization says, and where in the tree it happened.
#[derive(Debug)]
pub(crate) struct DeError {
    message: String,
    path: Option<String>,
}

impl DeError {
    /// Records `path` as the place of the failure unless a deeper one was recorded.
    fn at(mut self, path: &str) -> DeError {
        if self.path.is_none() {
            self.path = Some(path.to_owned());
        }
        self
    }

    fn into_error(self, fallback: &str) -> Error {
        let path = self.path.as_deref().unwrap_or(fallback);
        let place = if path.is_empty() {
            "the config root".to_owned()
        } else {
            format!("config value at `{path}`")
        };
        Error::invalid_argument(format!("{place}: {}", self.message))
    }
}

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(message: T) -> DeError {
        DeError {
            message: message.to_string(),
            path: None,
        }
    }
}

fn json_error(err: serde_json::Error) -> DeError {
    de::Error::custom(err)
}

struct ExpectedDuration;

impl Expected for ExpectedDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a duration such as \"250ms\", \"5s\" or \"1h 30m\"")
    }
}

struct ValueDeserializer<'a> {
    value: Cow<'a, Value>,
    path: String,
    vars: Vars<'a>,
}

impl<'a> ValueDeserializer<'a> {
    fn child(&self, key: &str, value: Cow<'a, Value>) -> ValueDeserializer<'a> {
        let path = if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        };
        ValueDeserializer {
            value,
            path,
            vars: self.vars,
        }
    }

    fn expand(&self, text: &str) -> Result<String, DeError> {
        value::expand(text, self.vars).map_err(|err| de::Error::custom(err.message()))
    }

    /// The expanded text when the value is a string.
    fn text(&self) -> Result<Option<String>, DeError> {
        match &*self.value {
            Value::String(text) => self.expand(text).map(Some),
            _ => Ok(None),
        }
    }

    fn seq_of(&self, items: Vec<Cow<'a, Value>>) -> SeqDe<'a> {
        SeqDe {
            items: items.into_iter(),
            index: 0,
            parent: self.path.clone(),
            vars: self.vars,
        }
    }

    fn map_of(&self, entries: Vec<(String, Cow<'a, Value>)>) -> MapDe<'a> {
        MapDe {
            entries: entries.into_iter(),
            pending: None,
            parent: self.path.clone(),
            vars: self.vars,
        }
    }

    fn items(&self) -> Option<Vec<Cow<'a, Value>>> {
        match &self.value {
            Cow::Borrowed(Value::Array(items)) => Some(items.iter().map(Cow::Borrowed).collect()),
            Cow::Owned(Value::Array(items)) => {
                Some(items.iter().cloned().map(Cow::Owned).collect())
            }
            _ => None,
        }
    }

    fn entries(&self) -> Option<Vec<(String, Cow<'a, Value>)>> {
        match &self.value {
            Cow::Borrowed(Value::Object(map)) => Some(
                map.iter()
                    .map(|(k, v)| (k.clone(), Cow::Borrowed(v)))
                    .collect(),
            ),
            Cow::Owned(Value::Object(map)) => Some(
                map.iter()
                    .map(|(k, v)| (k.clone(), Cow::Owned(v.clone())))
                    .collect(),
            ),
            _ => None,
        }
    }

    fn any<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if let Some(text) = self.text()? {
            return visitor.visit_string(text);
        }
        if let Some(items) = self.items() {
            return visitor.visit_seq(self.seq_of(items));
        }
        if let Some(entries) = self.entries() {
            return visitor.visit_map(self.map_of(entries));
        }
        self.value
            .into_owned()
            .deserialize_any(visitor)
            .map_err(json_error)
    }

    fn duration<'de, V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let Some(text) = self.text()? else {
            return match &*self.value {
                Value::Object(_) => self.any(visitor),
                other => Err(de::Error::invalid_type(
                    unexpected(other),
                    &ExpectedDuration,
                )),
            };
        };
        let duration: Duration = micro_core::duration::parse(&text)
            .map_err(|_| de::Error::invalid_value(Unexpected::Str(&text), &ExpectedDuration))?;
        let mut parts = Map::new();
        parts.insert("secs".to_owned(), duration.as_secs().into());
        parts.insert("nanos".to_owned(), duration.subsec_nanos().into());
        let entries = parts.into_iter().map(|(k, v)| (k, Cow::Owned(v))).collect();
        visitor.visit_map(self.map_of(entries))
    }
}

fn unexpected(value: &Value) -> Unexpected<'_> {
    match value {
        Value::Null => Unexpected::Unit,
        Value::Bool(b) => Unexpected::Bool(*b),
        Value::Number(n) => n
            .as_u64()
            .map(Unexpected::Unsigned)
            .or_else(|| n.as_i64().map(Unexpected::Signed))
            .or_else(|| n.as_f64().map(Unexpected::Float))
            .unwrap_or(Unexpected::Other("number")),
        Value::String(s) => Unexpected::Str(s),
        Value::Array(_) => Unexpected::Seq,
        Value::Object(_) => Unexpected::Map,
    }
}

fn parse_bool(text: &str) -> Option<bool> {
    match text.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Some(true),
        "false" | "no" | "off" | "0" => Some(false),
        _ => None,
    }
}

/// Numbers: parsed from strings, otherwise read as JSON reads them.
macro_rules! numbers {
    ($($method:ident => $ty:ty, $visit:ident;)*) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let path = self.path.clone();
                let result = match self.text()? {
                    Some(text) => match text.trim().parse::<$ty>() {
                        Ok(number) => visitor.$visit(number),
                        Err(_) => Err(de::Error::invalid_value(Unexpected::Str(&text), &visitor)),
                    },
                    None => self.value.into_owned().$method(visitor).map_err(json_error),
                };
                result.map_err(|err| err.at(&path))
            }
        )*
    };
}

/// Methods that go through [`ValueDeserializer::any`], recording the path.
macro_rules! through_any {
    ($($method:ident),* $(,)?) => {
        $(
            fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
                let path = self.path.clone();
                self.any(visitor).map_err(|err| err.at(&path))
            }
        )*
    };
}

impl<'de> de::Deserializer<'de> for ValueDeserializer<'_> {
    type Error = DeError;

    numbers! {
        deserialize_i8 => i8, visit_i8;
        deserialize_i16 => i16, visit_i16;
        deserialize_i32 => i32, visit_i32;
        deserialize_i64 => i64, visit_i64;
        deserialize_i128 => i128, visit_i128;
        deserialize_u8 => u8, visit_u8;
        deserialize_u16 => u16, visit_u16;
        deserialize_u32 => u32, visit_u32;
        deserialize_u64 => u64, visit_u64;
        deserialize_u128 => u128, visit_u128;
        deserialize_f32 => f32, visit_f32;
        deserialize_f64 => f64, visit_f64;
    }

    through_any!(deserialize_any, deserialize_map, deserialize_identifier);

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let result = match self.text()? {
            Some(text) => match parse_bool(&text) {
                Some(b) => visitor.visit_bool(b),
                None => Err(de::Error::invalid_value(Unexpected::Str(&text), &visitor)),
            },
            None => self
                .value
                .into_owned()
                .deserialize_bool(visitor)
                .map_err(json_error),
        };
        result.map_err(|err| err.at(&path))
    }

    fn deserialize_char<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let result = match self.text()? {
            Some(text) => visitor.visit_string(text),
            None => self
                .value
                .into_owned()
                .deserialize_char(visitor)
                .map_err(json_error),
        };
        result.map_err(|err| err.at(&path))
    }

    fn deserialize_str<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_string(visitor)
    }

    fn deserialize_string<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        // A YAML `port: 8080` read into a String field means "8080", not an error.
        let result = match &*self.value {
            Value::Number(n) => visitor.visit_string(n.to_string()),
            Value::Bool(b) => visitor.visit_string(b.to_string()),
            _ => self.any(visitor),
        };
        result.map_err(|err| err.at(&path))
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        self.value
            .into_owned()
            .deserialize_bytes(visitor)
            .map_err(|err| json_error(err).at(&path))
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match &*self.value {
            Value::Null => visitor.visit_none(),
            _ => visitor.visit_some(self),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        self.value
            .into_owned()
            .deserialize_unit(visitor)
            .map_err(|err| json_error(err).at(&path))
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_unit(visitor)
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        // Flat sources write lists as `a,b,c`.
        let result = match self.text()? {
            Some(text) => {
                let items = text
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .map(|item| Cow::Owned(Value::String(item.to_owned())))
                    .collect();
                visitor.visit_seq(self.seq_of(items))
            }
            None => self.any(visitor),
        };
        result.map_err(|err| err.at(&path))
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let result = if name == "Duration" && fields == ["secs", "nanos"] {
            self.duration(visitor)
        } else {
            self.any(visitor)
        };
        result.map_err(|err| err.at(&path))
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let path = self.path.clone();
        let result = if let Some(text) = self.text()? {
            visitor.visit_enum(text.into_deserializer())
        } else {
            match self.entries() {
                Some(entries) if entries.len() == 1 => {
                    let (variant, value) = entries.into_iter().next().expect("one entry");
                    let value = self.child(&variant, value);
                    visitor.visit_enum(EnumDe { variant, value })
                }
                _ => Err(de::Error::invalid_type(
                    unexpected(&self.value),
                    &"a variant name or a map with one variant",
                )),
            }
        };
        result.map_err(|err| err.at(&path))
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }
}

struct SeqDe<'a> {
    items: std::vec::IntoIter<Cow<'a, Value>>,
    index: usize,
    parent: String,
    vars: Vars<'a>,
}

impl<'de> SeqAccess<'de> for SeqDe<'_> {
    type Error = DeError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, DeError> {
        let Some(item) = self.items.next() else {
            return Ok(None);
        };
        let path = join(&self.parent, &self.index.to_string());
        self.index += 1;
        seed.deserialize(ValueDeserializer {
            value: item,
            path: path.clone(),
            vars: self.vars,
        })
        .map(Some)
        .map_err(|err| err.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct MapDe<'a> {
    entries: std::vec::IntoIter<(String, Cow<'a, Value>)>,
    pending: Option<(String, Cow<'a, Value>)>,
    parent: String,
    vars: Vars<'a>,
}

impl<'de> MapAccess<'de> for MapDe<'_> {
    type Error = DeError;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, DeError> {
        let Some((key, value)) = self.entries.next() else {
            return Ok(None);
        };
        let path = join(&self.parent, &key);
        // Keys go through the lenient deserializer too, so `HashMap<u16, _>` works.
        let parsed = seed
            .deserialize(ValueDeserializer {
                value: Cow::Owned(Value::String(key.clone())),
                path: path.clone(),
                vars: &no_vars,
            })
            .map_err(|err| err.at(&path))?;
        self.pending = Some((key, value));
        Ok(Some(parsed))
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, DeError> {
        let (key, value) = self.pending.take().ok_or_else(|| {
            <DeError as de::Error>::custom("a map value was asked for before its key")
        })?;
        let path = join(&self.parent, &key);
        seed.deserialize(ValueDeserializer {
            value,
            path: path.clone(),
            vars: self.vars,
        })
        .map_err(|err| err.at(&path))
    }

    fn size_hint(&self) -> Option<usize> {
        Some(self.entries.len())
    }
}

/// Keys are names, not values: no `${VAR}` expansion in them.
fn no_vars(_: &str) -> Option<String> {
    None
}

fn join(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

struct EnumDe<'a> {
    variant: String,
    value: ValueDeserializer<'a>,
}

impl<'de, 'a> EnumAccess<'de> for EnumDe<'a> {
    type Error = DeError;
    type Variant = ValueDeserializer<'a>;

    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, Self::Variant), DeError> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, self.value))
    }
}

impl<'de> VariantAccess<'de> for ValueDeserializer<'_> {
    type Error = DeError;

    fn unit_variant(self) -> Result<(), DeError> {
        de::Deserialize::deserialize(self)
    }

    fn newtype_variant_seed<T: DeserializeSeed<'de>>(self, seed: T) -> Result<T::Value, DeError> {
        seed.deserialize(self)
    }

    fn tuple_variant<V: Visitor<'de>>(self, _len: usize, visitor: V) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_seq(self, visitor)
    }

    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        de::Deserializer::deserialize_map(self, visitor)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use serde::Deserialize;
    use serde_json::json;

    use super::*;
    use crate::ErrorKind;

    fn vars(name: &str) -> Option<String> {
        (name == "DB_HOST").then(|| "db.internal".to_owned())
    }

    fn read<T: DeserializeOwned>(value: Value) -> Result<T> {
        from_value(&value, "x", &vars)
    }

    #[derive(Debug, Deserialize, PartialEq)]
    struct Db {
        host: String,
        port: u16,
        timeout: Duration,
        tls: bool,
        replicas: Vec<String>,
        mode: Mode,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(rename_all = "lowercase")]
    enum Mode {
        Primary,
        Replica,
    }

    #[test]
    fn strings_read_as_the_types_asked_for() {
        let db: Db = read(json!({
            "host": "${DB_HOST}",
            "port": "5432",
            "timeout": "250ms",
            "tls": "yes",
            "replicas": "a, b",
            "mode": "replica",
        }))
        .unwrap();
        assert_eq!(
            db,
            Db {
                host: "db.internal".into(),
                port: 5432,
                timeout: Duration::from_millis(250),
                tls: true,
                replicas: vec!["a".into(), "b".into()],
                mode: Mode::Replica,
            }
        );
        assert_eq!(read::<Mode>(json!("primary")).unwrap(), Mode::Primary);
    }

    #[test]
    fn native_types_read_too() {
        assert_eq!(read::<u16>(json!(8080)).unwrap(), 8080);
        assert_eq!(read::<String>(json!(8080)).unwrap(), "8080");
        assert_eq!(read::<Vec<u8>>(json!([1, 2])).unwrap(), vec![1, 2]);
        assert_eq!(read::<Option<u8>>(json!(null)).unwrap(), None);
        assert_eq!(
            read::<Duration>(json!({"secs": 1, "nanos": 5})).unwrap(),
            Duration::new(1, 5)
        );
        let map: HashMap<u16, String> = read(json!({"80": "http"})).unwrap();
        assert_eq!(map[&80], "http");
    }

    #[test]
    fn wrong_types_name_the_path_and_the_expected_type() {
        let err = read::<u16>(json!("eighty")).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.message().contains("`x`"), "{}", err.message());
        assert!(err.message().contains("u16"), "{}", err.message());

        let err = read::<Duration>(json!("soon")).unwrap_err();
        assert!(err.message().contains("duration"), "{}", err.message());
        let err = read::<Duration>(json!(5)).unwrap_err();
        assert!(err.message().contains("duration"), "{}", err.message());

        #[derive(Debug, Deserialize)]
        #[allow(dead_code)]
        struct Server {
            port: u16,
        }
        let err = read::<Vec<Server>>(json!([{"port": 1}, {"port": "x"}])).unwrap_err();
        assert!(err.message().contains("`x.1.port`"), "{}", err.message());
        let err = read::<Server>(json!({})).unwrap_err();
        assert!(
            err.message().contains("missing field `port`"),
            "{}",
            err.message()
        );
        let err = read::<String>(json!("${NOPE}")).unwrap_err();
        assert!(err.message().contains("NOPE"), "{}", err.message());
    }
}
