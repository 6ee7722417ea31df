use std::{fmt, sync::Arc};

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde_json::Value;

use crate::Result;

/// What a source supports, so callers choose instead of failing at run time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// [`Source::watch`] reports changes as they happen. Without it the stream
    /// yields the current snapshot once and then nothing.
    pub watch: bool,
}

impl Capabilities {
    /// A source that reports its changes.
    pub const fn watched() -> Capabilities {
        Capabilities { watch: true }
    }

    /// A source read once (environment, command line).
    pub const fn fixed() -> Capabilities {
        Capabilities { watch: false }
    }
}

/// What [`Source::watch`] yields: the whole new snapshot after each change, or
/// the error that kept the source from producing one.
///
/// The first item is the snapshot as the watch starts, taken so that no later
/// change is missed. After an `Err` the stream goes on if the source can
/// recover by itself (a file that is fixed, a Consul agent that comes back);
/// a stream that ends is reopened by [`Config`](crate::Config).
pub type SourceStream = BoxStream<'static, Result<Value>>;

/// Where configuration comes from: a file, the environment, a key/value store.
///
/// A snapshot is a tree of settings (a JSON value whose root is a map).
/// Sources holding only strings (environment, flags, key/value stores) give
/// string leaves; [`Config`](crate::Config) converts them to the types asked
/// for. `Arc<T>` and `Box<T>` forward the trait, so [`DynSource`] is a source too.
#[async_trait]
pub trait Source: fmt::Debug + Send + Sync + 'static {
    /// The scheme naming this kind of source (`file`, `env`, `etcd`, ...).
    fn scheme(&self) -> &'static str;

    /// Which one it is, for logs and errors: `file:/etc/app.yaml`, `env:MICRO_`.
    fn name(&self) -> String;

    /// What this source supports.
    fn capabilities(&self) -> Capabilities;

    /// Reads the current snapshot.
    async fn load(&self) -> Result<Value>;

    /// Follows changes: the current snapshot first, then a new one after each
    /// change (see [`SourceStream`]).
    async fn watch(&self) -> Result<SourceStream>;
}

/// A shared, type-erased source.
pub type DynSource = Arc<dyn Source>;

macro_rules! forward_source {
    ($wrapper:ident) => {
        #[async_trait]
        impl<T: Source + ?Sized> Source for $wrapper<T> {
            fn scheme(&self) -> &'static str {
                (**self).scheme()
            }
            fn name(&self) -> String {
                (**self).name()
            }
            fn capabilities(&self) -> Capabilities {
                (**self).capabilities()
            }
            async fn load(&self) -> Result<Value> {
                (**self).load().await
            }
            async fn watch(&self) -> Result<SourceStream> {
                (**self).watch().await
            }
        }
    };
}

forward_source!(Arc);
forward_source!(Box);

/// The watch of a source that cannot report changes: its snapshot, once, and
/// then nothing (the stream stays open: nothing will change).
pub(crate) async fn watch_once(source: &(impl Source + ?Sized)) -> Result<SourceStream> {
    use futures::StreamExt;

    let snapshot = source.load().await?;
    Ok(futures::stream::once(async move { Ok(snapshot) })
        .chain(futures::stream::pending())
        .boxed())
}
