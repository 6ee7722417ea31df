//! The source conformance suite against the sources that need no server:
//! memory, environment, flags and files in each format, and the type-erased
//! wrappers users hold them in.

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{Arc, Mutex},
};

use async_trait::async_trait;
use micro_config::{
    DynSource, EnvSource, FileSource, FlagsSource, MemorySource,
    conformance::{Boxed, Fixture},
    file::Format,
};
use serde_json::Value;

#[derive(Debug, Default)]
struct Memory(MemorySource);

#[async_trait]
impl Fixture for Memory {
    async fn source(&self) -> DynSource {
        Arc::new(self.0.clone())
    }
    async fn set(&self, key: &str, value: &str) {
        self.0.set(key, Value::String(value.to_owned()));
    }
    async fn delete(&self, key: &str) {
        self.0.delete(key);
    }
}

/// Environment variables in a map the source reads at each load: a test
/// cannot change the process environment safely while other threads run.
#[derive(Debug, Default)]
struct Env(Arc<Mutex<BTreeMap<String, String>>>);

fn env_name(key: &str) -> String {
    format!("CONF_{}", key.replace('.', "_").to_uppercase())
}

#[async_trait]
impl Fixture for Env {
    async fn source(&self) -> DynSource {
        let vars = self.0.clone();
        Arc::new(
            EnvSource::builder()
                .prefix("CONF")
                .vars_fn(move || {
                    let mut all: Vec<(String, String)> =
                        vars.lock().unwrap().clone().into_iter().collect();
                    all.push(("UNRELATED_DB_HOST".into(), "ignored".into()));
                    all
                })
                .build(),
        )
    }
    async fn set(&self, key: &str, value: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(env_name(key), value.to_owned());
    }
    async fn delete(&self, key: &str) {
        self.0.lock().unwrap().remove(&env_name(key));
    }
}

/// A command line rebuilt from the flags set so far.
#[derive(Debug, Default)]
struct Flags(Mutex<BTreeMap<String, String>>);

#[async_trait]
impl Fixture for Flags {
    async fn source(&self) -> DynSource {
        let args: Vec<String> = self
            .0
            .lock()
            .unwrap()
            .iter()
            .map(|(key, value)| format!("--{}={value}", key.replace('.', "-")))
            .collect();
        Arc::new(FlagsSource::from_args(args).expect("valid flags"))
    }
    async fn set(&self, key: &str, value: &str) {
        self.0
            .lock()
            .unwrap()
            .insert(key.to_owned(), value.to_owned());
    }
    async fn delete(&self, key: &str) {
        self.0.lock().unwrap().remove(key);
    }
}

/// A settings file in a temporary directory, replaced atomically (write a
/// temporary file, rename it over) as deployment tools do.
#[derive(Debug)]
struct File {
    _dir: tempfile::TempDir,
    path: PathBuf,
    format: Format,
    data: MemorySource,
}

impl File {
    fn new(format: Format) -> File {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let path = dir.path().join(format!("settings.{format}"));
        std::fs::write(&path, render(format, &Value::Object(Default::default())))
            .expect("writing the settings file");
        File {
            _dir: dir,
            path,
            format,
            data: MemorySource::empty(),
        }
    }

    async fn write(&self, bytes: &[u8]) {
        let temporary = self.path.with_extension("tmp");
        tokio::fs::write(&temporary, bytes).await.expect("writing");
        tokio::fs::rename(&temporary, &self.path)
            .await
            .expect("renaming over the settings file");
    }
}

fn render(format: Format, value: &Value) -> Vec<u8> {
    match format {
        Format::Json => serde_json::to_vec_pretty(value).unwrap(),
        Format::Toml => toml::to_string(value).unwrap().into_bytes(),
        Format::Yaml => yaml_serde::to_string(value).unwrap().into_bytes(),
        _ => unreachable!("a format this test does not know"),
    }
}

#[async_trait]
impl Fixture for File {
    async fn source(&self) -> DynSource {
        Arc::new(FileSource::new(&self.path).expect("a known extension"))
    }
    async fn set(&self, key: &str, value: &str) {
        self.data.set(key, Value::String(value.to_owned()));
        self.write(&render(self.format, &self.data.snapshot()))
            .await;
    }
    async fn delete(&self, key: &str) {
        self.data.delete(key);
        self.write(&render(self.format, &self.data.snapshot()))
            .await;
    }
    async fn corrupt(&self) -> bool {
        let broken: &[u8] = match self.format {
            Format::Json => b"{\"db\": {\"host\": ",
            Format::Toml => b"[db\nhost = ",
            _ => b"db: [unclosed\n  host: {",
        };
        self.write(broken).await;
        true
    }
}

mod memory {
    micro_config::config_conformance_tests!(async { super::Memory::default() });
}

mod memory_boxed {
    micro_config::config_conformance_tests!(async { super::Boxed(super::Memory::default()) });
}

mod env {
    micro_config::config_conformance_tests!(async { super::Env::default() });
}

mod flags {
    micro_config::config_conformance_tests!(async { super::Flags::default() });
}

mod file_json {
    micro_config::config_conformance_tests!(async { super::File::new(super::Format::Json) });
}

mod file_toml {
    micro_config::config_conformance_tests!(async { super::File::new(super::Format::Toml) });
}

mod file_yaml {
    micro_config::config_conformance_tests!(async { super::File::new(super::Format::Yaml) });
}

mod file_boxed {
    micro_config::config_conformance_tests!(async {
        super::Boxed(super::File::new(super::Format::Yaml))
    });
}
