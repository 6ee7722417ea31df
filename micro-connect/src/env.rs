//! The environment grammar shared by every system: `MICRO_<BLOCK>_<SYSTEM>_<KEY>`,
//! then `MICRO_<BLOCK>_ADDRESS` for the URL, then `MICRO_<SYSTEM>_<KEY>`.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use micro_core::Result;

/// The building block whose variables may override the shared ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Block {
    /// `MICRO_REGISTRY_<SYSTEM>_*`, and `MICRO_REGISTRY_ADDRESS` as the URL.
    Registry,
    /// `MICRO_BROKER_<SYSTEM>_*`, and `MICRO_BROKER_ADDRESS` as the URL.
    Broker,
    /// `MICRO_SYNC_<SYSTEM>_*`, and `MICRO_SYNC_ADDRESS` as the URL.
    Sync,
    /// `MICRO_CONFIG_<SYSTEM>_*`.
    Config,
}

impl Block {
    /// The block's part of a variable name (`REGISTRY`).
    pub fn as_str(self) -> &'static str {
        match self {
            Block::Registry => "REGISTRY",
            Block::Broker => "BROKER",
            Block::Sync => "SYNC",
            Block::Config => "CONFIG",
        }
    }

    /// The block's own address variable, read as its URL, if it has one.
    fn address_variable(self) -> Option<&'static str> {
        match self {
            Block::Registry => Some("MICRO_REGISTRY_ADDRESS"),
            Block::Broker => Some("MICRO_BROKER_ADDRESS"),
            Block::Sync => Some("MICRO_SYNC_ADDRESS"),
            Block::Config => None,
        }
    }
}

/// Where variables are read from: the process environment
/// ([`Lookup::env`]) or, in tests, a function.
pub struct Lookup<'a> {
    read: Box<ReadVar<'a>>,
}

/// Reads one variable: `None` when unset.
type ReadVar<'a> = dyn Fn(&str) -> Result<Option<String>> + 'a;

impl<'a> Lookup<'a> {
    /// The process environment, read with [`micro_core::env::var`] (empty
    /// means unset).
    pub fn env() -> Lookup<'static> {
        Lookup {
            read: Box::new(micro_core::env::var),
        }
    }

    /// Variables from `read`; empty or blank values count as unset, as in
    /// the environment.
    pub fn from_fn(read: impl Fn(&str) -> Option<String> + 'a) -> Lookup<'a> {
        Lookup {
            read: Box::new(move |name| {
                Ok(read(name)
                    .map(|value| value.trim().to_owned())
                    .filter(|value| !value.is_empty()))
            }),
        }
    }

    fn get(&self, name: &str) -> Result<Option<String>> {
        (self.read)(name)
    }
}

impl std::fmt::Debug for Lookup<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Lookup")
    }
}

/// Reads one system's variables for one block, remembering which variable
/// each setting came from so errors can name it.
pub(crate) struct Reader<'a> {
    system: &'static str,
    block: Option<Block>,
    lookup: &'a Lookup<'a>,
    pub(crate) origins: BTreeMap<&'static str, String>,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(system: &'static str, block: Option<Block>, lookup: &'a Lookup<'a>) -> Self {
        Reader {
            system,
            block,
            lookup,
            origins: BTreeMap::new(),
        }
    }

    /// The candidate names of `key`, most specific first.
    pub(crate) fn names(&self, key: &str) -> Vec<String> {
        let mut names = Vec::with_capacity(3);
        if let Some(block) = self.block {
            names.push(format!("MICRO_{}_{}_{key}", block.as_str(), self.system));
            if key == "URL" {
                names.extend(block.address_variable().map(str::to_owned));
            }
        }
        names.push(format!("MICRO_{}_{key}", self.system));
        names
    }

    /// The first set variable of `key`, recorded as the origin of `field`.
    pub(crate) fn string(&mut self, key: &str, field: &'static str) -> Result<Option<String>> {
        self.string_or(key, field, &[])
    }

    /// Like [`Reader::string`], falling back to `extra` variables (a
    /// system's own names, such as Consul's `CONSUL_HTTP_TOKEN`).
    pub(crate) fn string_or(
        &mut self,
        key: &str,
        field: &'static str,
        extra: &[&str],
    ) -> Result<Option<String>> {
        let names = self.names(key);
        let candidates = names
            .iter()
            .map(String::as_str)
            .chain(extra.iter().copied());
        for name in candidates {
            if let Some(value) = self.lookup.get(name)? {
                self.origins.insert(field, name.to_owned());
                return Ok(Some(value));
            }
        }
        Ok(None)
    }

    pub(crate) fn list(&mut self, key: &str, field: &'static str) -> Result<Option<Vec<String>>> {
        Ok(self.string(key, field)?.map(|text| split_list(&text)))
    }

    pub(crate) fn path(&mut self, key: &str, field: &'static str) -> Result<Option<PathBuf>> {
        Ok(self.string(key, field)?.map(PathBuf::from))
    }

    pub(crate) fn duration(&mut self, key: &str, field: &'static str) -> Result<Option<Duration>> {
        match self.string(key, field)? {
            Some(text) => {
                let name = self.origins.get(field).cloned().unwrap_or_default();
                micro_core::duration::parse_named(&name, &text).map(Some)
            }
            None => Ok(None),
        }
    }
}

/// Splits a comma-separated list, dropping blanks.
pub(crate) fn split_list(list: &str) -> Vec<String> {
    list.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Which variable each setting was read from, so errors can name it. Not
/// part of a config's value: two configs with the same settings are equal
/// wherever they came from.
#[derive(Debug, Clone, Default)]
pub(crate) struct Origins(pub(crate) BTreeMap<&'static str, String>);

impl PartialEq for Origins {
    fn eq(&self, _: &Origins) -> bool {
        true
    }
}

impl Eq for Origins {}

impl std::hash::Hash for Origins {
    fn hash<H: std::hash::Hasher>(&self, _: &mut H) {}
}

impl Origins {
    /// Names a setting in an error: the variable it came from, else its field.
    pub(crate) fn label(&self, field: &'static str) -> String {
        label(&self.0, field)
    }
}

/// Names a setting in an error: the variable it came from, else its field.
pub(crate) fn label(origins: &BTreeMap<&'static str, String>, field: &'static str) -> String {
    origins
        .get(field)
        .cloned()
        .unwrap_or_else(|| field.to_owned())
}

/// A lookup over fixed variables, for tests.
#[cfg(test)]
pub(crate) fn test_lookup(vars: &[(&str, &str)]) -> Lookup<'static> {
    let vars: Vec<(String, String)> = vars
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    Lookup::from_fn(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_variables_come_before_the_address_and_the_shared_one() {
        let vars = [
            ("MICRO_NATS_URL", "nats://shared:4222"),
            ("MICRO_REGISTRY_ADDRESS", "nats://old:4222"),
            ("MICRO_REGISTRY_NATS_URL", "nats://block:4222"),
        ];
        let read = |set: &'static [(&'static str, &'static str)]| {
            Lookup::from_fn(move |name| {
                set.iter()
                    .find(|(key, _)| *key == name)
                    .map(|(_, v)| (*v).to_owned())
            })
        };
        let all: &'static [_] = Box::leak(Box::new(vars));
        let lookup = read(all);
        let mut reader = Reader::new("NATS", Some(Block::Registry), &lookup);
        assert_eq!(
            reader.string("URL", "servers").unwrap().as_deref(),
            Some("nats://block:4222")
        );
        assert_eq!(reader.origins["servers"], "MICRO_REGISTRY_NATS_URL");
        let lookup = read(&all[..2]);
        let mut reader = Reader::new("NATS", Some(Block::Registry), &lookup);
        assert_eq!(
            reader.string("URL", "servers").unwrap().as_deref(),
            Some("nats://old:4222")
        );
        let mut reader = Reader::new("NATS", Some(Block::Broker), &lookup);
        assert_eq!(
            reader.string("URL", "servers").unwrap().as_deref(),
            Some("nats://shared:4222")
        );
        assert_eq!(label(&reader.origins, "servers"), "MICRO_NATS_URL");
        assert_eq!(label(&reader.origins, "tls.ca_file"), "tls.ca_file");
    }

    #[test]
    fn a_bad_duration_names_its_variable() {
        let lookup = Lookup::from_fn(|name| {
            (name == "MICRO_SYNC_ETCD_CONNECT_TIMEOUT").then(|| "soon".to_owned())
        });
        let mut reader = Reader::new("ETCD", Some(Block::Sync), &lookup);
        let err = reader
            .duration("CONNECT_TIMEOUT", "connect_timeout")
            .unwrap_err();
        assert_eq!(err.kind(), micro_core::ErrorKind::InvalidArgument);
        assert!(
            err.message().contains("MICRO_SYNC_ETCD_CONNECT_TIMEOUT"),
            "{err}"
        );
    }
}
