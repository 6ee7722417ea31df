//! The behaviour every [`Source`] must show, as one `async fn` per case taking
//! a [`Fixture`] (a source plus a way to change the data behind it), and
//! [`config_conformance_tests!`](crate::config_conformance_tests) to run them
//! all as separately named tests.
//!
//! ```
//! use std::sync::Arc;
//!
//! use async_trait::async_trait;
//! use micro_config::{DynSource, MemorySource, conformance::Fixture};
//! use serde_json::Value;
//!
//! /// The memory source's fixture: the data is the source itself.
//! #[derive(Debug, Default)]
//! struct Memory(MemorySource);
//!
//! #[async_trait]
//! impl Fixture for Memory {
//!     async fn source(&self) -> DynSource {
//!         Arc::new(self.0.clone())
//!     }
//!     async fn set(&self, key: &str, value: &str) {
//!         self.0.set(key, Value::String(value.to_owned()));
//!     }
//!     async fn delete(&self, key: &str) {
//!         self.0.delete(key);
//!     }
//! }
//!
//! mod memory {
//!     micro_config::config_conformance_tests!(async { super::Memory::default() });
//! }
//! # fn main() {}
//! ```
//!
//! A fixture owns fresh data (its own file, key prefix or bucket), so cases
//! can share one server and run in parallel. Cases needing watches are
//! skipped, with a printed message, when [`Source::capabilities`] says the
//! source lacks them; the invalid-data case is skipped for sources that
//! cannot hold invalid data ([`Fixture::corrupt`] returns `false`).
//!
//! The contract, beyond the trait documentation:
//! - `load` reflects every write made before it;
//! - a watch's first item is the snapshot at the time of the call, and later
//!   items reflect every later write, eventually (intermediate states may be skipped);
//! - invalid data is an error item on the watch, never a snapshot, and a
//!   [`Config`] over the source keeps the last good values until the data is
//!   valid again.

use std::{sync::Arc, time::Duration};

use async_trait::async_trait;
use futures::StreamExt;
use serde::Deserialize;
use serde_json::Value;

use crate::{Config, DynSource, ErrorKind, Source, SourceStream, WatchStream};

/// How long a case waits for a change it expects.
pub const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

/// A source under test and a hand on the data behind it.
///
/// Keys are dotted paths (`db.host`); values are strings, the one type every
/// source can hold. Each fixture owns fresh, empty data.
#[async_trait]
pub trait Fixture: Send + Sync {
    /// A new source over the fixture's data.
    async fn source(&self) -> DynSource;

    /// Writes `value` at `key`. Writing also undoes [`corrupt`](Fixture::corrupt).
    async fn set(&self, key: &str, value: &str);

    /// Removes `key`.
    async fn delete(&self, key: &str);

    /// Makes the data invalid (broken syntax, a key that is both a value and
    /// a section, ...) without touching what is already stored; `false` when
    /// the source cannot hold invalid data. The next [`set`](Fixture::set)
    /// makes it valid again.
    async fn corrupt(&self) -> bool {
        false
    }
}

#[derive(Debug, Deserialize, PartialEq)]
struct Db {
    host: String,
    port: u16,
}

async fn seed(fixture: &dyn Fixture) {
    fixture.set("db.host", "localhost").await;
    fixture.set("db.port", "5432").await;
    fixture.set("name", "conformance").await;
}

fn at<'a>(snapshot: &'a Value, path: &str) -> Option<&'a Value> {
    crate::value::lookup(snapshot, path)
}

fn text(snapshot: &Value, path: &str) -> Option<String> {
    at(snapshot, path).and_then(|value| match value {
        Value::String(text) => Some(text.clone()),
        Value::Number(number) => Some(number.to_string()),
        _ => None,
    })
}

async fn load(source: &dyn Source) -> Value {
    source
        .load()
        .await
        .unwrap_or_else(|err| panic!("loading {}: {err}", source.name()))
}

async fn watch(source: &dyn Source) -> SourceStream {
    source
        .watch()
        .await
        .unwrap_or_else(|err| panic!("watching {}: {err}", source.name()))
}

async fn config(source: DynSource) -> Config {
    let name = source.name();
    Config::builder()
        .dyn_source(source)
        .build()
        .await
        .unwrap_or_else(|err| panic!("building a config over {name}: {err}"))
}

/// The next snapshot for which `accept` holds, failing the case on an error
/// item, the end of the stream or a timeout.
async fn snapshot_where(
    stream: &mut SourceStream,
    what: &str,
    accept: impl Fn(&Value) -> bool,
) -> Value {
    let waited = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            match stream.next().await {
                Some(Ok(snapshot)) if accept(&snapshot) => return snapshot,
                Some(Ok(_)) => continue,
                Some(Err(err)) => panic!("{what}: the watch reported an error: {err}"),
                None => panic!("{what}: the watch ended"),
            }
        }
    })
    .await;
    waited.unwrap_or_else(|_| panic!("{what}: not within {EVENT_TIMEOUT:?}"))
}

async fn next_item<T>(stream: &mut WatchStream<T>, what: &str) -> crate::Result<T> {
    match tokio::time::timeout(EVENT_TIMEOUT, stream.next()).await {
        Ok(Some(item)) => item,
        Ok(None) => panic!("{what}: the watch ended"),
        Err(_) => panic!("{what}: nothing within {EVENT_TIMEOUT:?}"),
    }
}

fn skip(source: &dyn Source, case: &str, missing: &str) {
    println!(
        "skipping config conformance case {case}: the {} source does not support {missing}",
        source.scheme()
    );
}

/// `load` returns what was written, as a tree: `db.host` is under `db`.
pub async fn load_reads_what_was_written(fixture: &dyn Fixture) {
    seed(fixture).await;
    let source = fixture.source().await;
    let snapshot = load(&*source).await;
    assert_eq!(text(&snapshot, "db.host").as_deref(), Some("localhost"));
    assert_eq!(text(&snapshot, "db.port").as_deref(), Some("5432"));
    assert_eq!(text(&snapshot, "name").as_deref(), Some("conformance"));
    assert!(snapshot.is_object(), "a snapshot is a map: {snapshot}");
}

/// A watch starts with the current snapshot, for every source (those that
/// cannot watch yield just that).
pub async fn watch_starts_with_the_snapshot(fixture: &dyn Fixture) {
    seed(fixture).await;
    let source = fixture.source().await;
    let mut stream = watch(&*source).await;
    let first = snapshot_where(&mut stream, "the first watch item", |_| true).await;
    assert_eq!(first, load(&*source).await);
}

/// A write after the watch started shows in a later snapshot.
pub async fn watch_sees_a_change(fixture: &dyn Fixture) {
    seed(fixture).await;
    let source = fixture.source().await;
    if !source.capabilities().watch {
        skip(&*source, "watch_sees_a_change", "watch");
        return;
    }
    let mut stream = watch(&*source).await;
    snapshot_where(&mut stream, "the first snapshot", |_| true).await;
    fixture.set("db.host", "db-2").await;
    let changed = snapshot_where(&mut stream, "the changed db.host", |s| {
        text(s, "db.host").as_deref() == Some("db-2")
    })
    .await;
    assert_eq!(text(&changed, "db.port").as_deref(), Some("5432"));
    fixture.set("db.user", "app").await;
    snapshot_where(&mut stream, "the added db.user", |s| {
        text(s, "db.user").as_deref() == Some("app")
    })
    .await;
}

/// A deleted key leaves the snapshot (seen by a running watch where the
/// source watches, and by a new load in any case); its neighbours stay.
pub async fn delete_removes_the_key(fixture: &dyn Fixture) {
    seed(fixture).await;
    let source = fixture.source().await;
    let mut stream = if source.capabilities().watch {
        let mut stream = watch(&*source).await;
        snapshot_where(&mut stream, "the first snapshot", |_| true).await;
        Some(stream)
    } else {
        skip(&*source, "delete_removes_the_key (watch)", "watch");
        None
    };
    fixture.delete("db.port").await;
    if let Some(stream) = &mut stream {
        let after = snapshot_where(stream, "the deletion of db.port", |s| {
            at(s, "db.port").is_none()
        })
        .await;
        assert_eq!(text(&after, "db.host").as_deref(), Some("localhost"));
    }
    let reloaded = load(&*fixture.source().await).await;
    assert!(
        at(&reloaded, "db.port").is_none(),
        "db.port is still there: {reloaded}"
    );
    assert_eq!(text(&reloaded, "db.host").as_deref(), Some("localhost"));
}

/// A [`Config`] over the source delivers each new value at a path to its
/// watchers, typed.
pub async fn config_watch_delivers_new_values(fixture: &dyn Fixture) {
    seed(fixture).await;
    let source = fixture.source().await;
    if !source.capabilities().watch {
        skip(&*source, "config_watch_delivers_new_values", "watch");
        return;
    }
    let config = config(source).await;
    let mut ports = config.watch::<u16>("db.port");
    assert_eq!(config.get::<u16>("db.port").expect("reading db.port"), 5432);
    fixture.set("db.port", "6543").await;
    let port = next_item(&mut ports, "the new db.port").await;
    assert_eq!(port.expect("the new port"), 6543);
    assert_eq!(config.get::<u16>("db.port").expect("reading db.port"), 6543);
}

/// Invalid data is an error item on the watch, never a snapshot; a
/// [`Config`] keeps the last good values, reports the error to watchers, and
/// takes the data again once it is valid.
pub async fn invalid_data_keeps_the_last_good_values(fixture: &dyn Fixture) {
    seed(fixture).await;
    let source = fixture.source().await;
    if !source.capabilities().watch {
        skip(&*source, "invalid_data_keeps_the_last_good_values", "watch");
        return;
    }
    let config = config(source.clone()).await;
    let mut hosts = config.watch::<String>("db.host");
    let mut raw = watch(&*source).await;
    snapshot_where(&mut raw, "the first snapshot", |_| true).await;
    if !fixture.corrupt().await {
        println!(
            "skipping config conformance case invalid_data_keeps_the_last_good_values: \
             the {} source cannot hold invalid data",
            source.scheme()
        );
        return;
    }

    let raw_error = tokio::time::timeout(EVENT_TIMEOUT, async {
        loop {
            match raw.next().await {
                Some(Err(err)) => return err,
                Some(Ok(snapshot)) => assert_eq!(
                    text(&snapshot, "db.host").as_deref(),
                    Some("localhost"),
                    "a snapshot of invalid data: {snapshot}"
                ),
                None => panic!("the watch ended instead of reporting invalid data"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no error for invalid data within {EVENT_TIMEOUT:?}"));
    assert_eq!(raw_error.kind(), ErrorKind::InvalidArgument, "{raw_error}");

    let reported = next_item(&mut hosts, "the error on the config watch").await;
    assert_eq!(
        reported
            .expect_err("the config watch reports the error")
            .kind(),
        ErrorKind::InvalidArgument
    );
    assert_eq!(
        config
            .get::<String>("db.host")
            .expect("the last good db.host"),
        "localhost"
    );
    assert_eq!(
        config.get::<u16>("db.port").expect("the last good db.port"),
        5432
    );

    fixture.set("db.host", "repaired").await;
    let repaired = loop {
        match next_item(&mut hosts, "the repaired db.host").await {
            Ok(host) => break host,
            // The same invalid state may be reported more than once.
            Err(err) => assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}"),
        }
    };
    assert_eq!(repaired, "repaired");
}

/// Values read through a [`Config`] convert to the type asked for, a
/// section reads as a struct, and a value of the wrong type is an
/// `InvalidArgument` error naming the path and the type.
pub async fn typed_reads_and_wrong_types(fixture: &dyn Fixture) {
    seed(fixture).await;
    let config = config(fixture.source().await).await;
    assert_eq!(
        config.get::<Db>("db").expect("reading the db section"),
        Db {
            host: "localhost".to_owned(),
            port: 5432
        }
    );
    assert_eq!(config.get_or("db.pool", 8_u32).expect("a default"), 8);
    let err = config
        .get::<u16>("db.host")
        .expect_err("a host is not a port");
    assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    assert!(err.message().contains("db.host"), "the path: {err}");
    assert!(err.message().contains("u16"), "the expected type: {err}");
    let err = config
        .get::<String>("db.nothing")
        .expect_err("nothing there");
    assert_eq!(err.kind(), ErrorKind::NotFound);
}

/// Expands into one `#[tokio::test(flavor = "multi_thread")]` per conformance
/// case, each with a fresh fixture.
///
/// `$make` is an expression evaluating to a future that resolves to the
/// fixture (anything implementing [`Fixture`]); it is evaluated once per test.
/// Invoke it inside a module named after the source, so test names read
/// `file_yaml::watch_sees_a_change`. The calling crate needs tokio with the
/// `macros` and `rt-multi-thread` features.
///
/// With `optional:` before it, `$make` resolves to an `Option` of a fixture,
/// and `None` ends the test early: for server-backed sources whose server
/// binary is missing (the server fixture prints why, or fails the test when
/// servers are required).
#[macro_export]
macro_rules! config_conformance_tests {
    (optional: $make:expr) => {
        $crate::config_conformance_tests!(@cases $make;
            load_reads_what_was_written,
            watch_starts_with_the_snapshot,
            watch_sees_a_change,
            delete_removes_the_key,
            config_watch_delivers_new_values,
            invalid_data_keeps_the_last_good_values,
            typed_reads_and_wrong_types,
        );
    };
    ($make:expr) => {
        $crate::config_conformance_tests!(optional: async { Some($make.await) });
    };
    (@cases $make:expr; $($case:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread")]
            async fn $case() {
                let Some(fixture) = $make.await else { return };
                $crate::conformance::$case(&fixture).await;
            }
        )+
    };
}

/// The fixture wrapped so that the source is `Arc<dyn Source>` in a `Box<dyn Source>`,
/// checking the forwarding impls.
#[derive(Debug)]
pub struct Boxed<F>(pub F);

#[async_trait]
impl<F: Fixture> Fixture for Boxed<F> {
    async fn source(&self) -> DynSource {
        let boxed: Box<dyn Source> = Box::new(self.0.source().await);
        Arc::new(boxed)
    }
    async fn set(&self, key: &str, value: &str) {
        self.0.set(key, value).await;
    }
    async fn delete(&self, key: &str) {
        self.0.delete(key).await;
    }
    async fn corrupt(&self) -> bool {
        self.0.corrupt().await
    }
}
