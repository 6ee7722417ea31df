//! Reading `MICRO_*` environment variables, the same way in every crate.
//!
//! Empty means unset (so `MICRO_X= cmd` turns a setting off the way an unset
//! variable does), surrounding whitespace is ignored, and a value that is not
//! Unicode is an error naming the variable rather than a silent default.

use crate::{Error, Result};

/// Reads `name`: `None` when unset or empty, an `InvalidArgument` error when
/// the value is not Unicode.
pub fn var(name: &str) -> Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) if value.trim().is_empty() => Ok(None),
        Ok(value) => Ok(Some(value.trim().to_owned())),
        Err(std::env::VarError::NotPresent) => Ok(None),
        Err(std::env::VarError::NotUnicode(_)) => Err(Error::invalid_argument(format!(
            "{name} is not valid Unicode"
        ))),
    }
}

/// Reads the first of `names` that is set: a per-block variable before the
/// shared one (`MICRO_REGISTRY_NATS_URL` before `MICRO_NATS_URL`). Returns the
/// name it came from with the value, so errors can name the variable.
pub fn first_var<'a>(names: &[&'a str]) -> Result<Option<(&'a str, String)>> {
    for name in names {
        if let Some(value) = var(name)? {
            return Ok(Some((name, value)));
        }
    }
    Ok(None)
}

/// Reads `name` and parses it with `FromStr`; the error names the variable.
pub fn parse<T>(name: &str) -> Result<Option<T>>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
{
    var(name)?
        .map(|text| {
            text.parse::<T>().map_err(|err| {
                Error::invalid_argument(format!("{name}={text:?} is not valid: {err}"))
            })
        })
        .transpose()
}

/// Reads `name` as a boolean: `1`, `true`, `yes`, `on` or `0`, `false`, `no`, `off`.
pub fn flag(name: &str) -> Result<Option<bool>> {
    var(name)?
        .map(|text| match text.to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(Error::invalid_argument(format!(
                "{name}={text:?} is not a boolean (use true or false)"
            ))),
        })
        .transpose()
}
