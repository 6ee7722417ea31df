//! What a handler knows about the call it is serving.

use std::{fmt, time::Duration};

use tokio::time::Instant;

use crate::{Client, Metadata, config::Config};

/// Whether a metadata key travels on from a handler to the calls it makes.
///
/// Everything does except per-hop keys: HTTP framing and negotiation headers
/// (`content-type`, `content-length`, `host`, `user-agent`, ...) and
/// transport-internal keys (prefixed `grpc-`, `micro-` or `:`), and the
/// caller's credential (`authorization`), which goes on only through
/// [`Context::client_as_caller`].
pub fn is_propagated(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    key != "authorization" && !micro_transport::is_per_hop(&key)
}

/// What a handler or subscriber sees about the call or message it is serving.
///
/// For a request: the service, the endpoint, the caller's metadata and the
/// caller's deadline. For a broker message: the service, the topic (as
/// [`endpoint`](Context::endpoint)) and the message headers, with no deadline.
///
/// # Downstream calls
///
/// [`Context::client`] returns the serving service's [`Client`] scoped to this
/// call: every call made through it ends no later than this call's deadline
/// (the client's own timeout still applies when it is shorter) and carries this
/// call's metadata, except per-hop keys (see [`is_propagated`]). A chain of
/// services therefore shares one deadline and one set of trace ids.
///
/// ```
/// # async fn demo() -> micro::Result<()> {
/// use micro::{Context, Service};
///
/// let frontend = Service::builder("frontend")
///     .handle("Frontend.Greet", |ctx: Context, name: String| async move {
///         // Inherits the caller's deadline and metadata.
///         let reply: String = ctx.client().call("greeter", "Greeter.Hello", &name).await?;
///         Ok(reply)
///     })
///     .build()?;
/// # drop(frontend);
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Context {
    service: String,
    endpoint: String,
    metadata: Metadata,
    deadline: Option<Instant>,
    client: Option<Client>,
    config: Option<Config>,
    account: Option<crate::auth::Account>,
}

impl Context {
    /// A context for `endpoint` of `service`, with no metadata, deadline or client.
    ///
    /// Handlers receive theirs from the server; this is for calling a handler
    /// directly, in tests for instance.
    pub fn new(service: impl Into<String>, endpoint: impl Into<String>) -> Context {
        Context {
            service: service.into(),
            endpoint: endpoint.into(),
            metadata: Metadata::new(),
            deadline: None,
            client: None,
            config: None,
            account: None,
        }
    }

    /// Sets the caller's account, as [`Context::account`] returns it.
    pub fn with_account(mut self, account: Option<crate::auth::Account>) -> Context {
        self.account = account;
        self
    }

    /// The caller's account, when the server authenticates callers
    /// ([`ServiceBuilder::auth`](crate::ServiceBuilder::auth)) and the call
    /// carried a valid credential.
    pub fn account(&self) -> Option<&crate::auth::Account> {
        self.account.as_ref()
    }

    /// Sets the metadata.
    pub fn with_metadata(mut self, metadata: Metadata) -> Context {
        self.metadata = metadata;
        self
    }

    /// Sets the deadline.
    pub fn with_deadline(mut self, deadline: Option<Instant>) -> Context {
        self.deadline = deadline;
        self
    }

    /// Sets the client returned (scoped) by [`Context::client`].
    pub fn with_client(mut self, client: Client) -> Context {
        self.client = Some(client);
        self
    }

    /// Sets the configuration returned by [`Context::config`].
    pub fn with_config(mut self, config: Config) -> Context {
        self.config = Some(config);
        self
    }

    /// The serving service's configuration, as given to
    /// [`ServiceBuilder::config`](crate::ServiceBuilder::config): always the
    /// current values (a watched source's changes show at once) and, when a
    /// source fails, its last good ones.
    ///
    /// Without one, an empty configuration: every read is `NotFound`.
    ///
    /// ```
    /// use micro::{Context, Service, config::{Config, MemorySource}};
    ///
    /// # async fn demo() -> micro::Result<()> {
    /// let settings = MemorySource::new(serde_json::json!({"greeting": "Hello"}))?;
    /// let config = Config::builder().source(settings).build().await?;
    /// let service = Service::builder("greeter")
    ///     .config(config)
    ///     .handle("Greeter.Hello", |ctx: Context, name: String| async move {
    ///         let greeting: String = ctx.config().get_or("greeting", "Hi".to_owned())?;
    ///         Ok(format!("{greeting}, {name}"))
    ///     })
    ///     .build()?;
    /// # drop(service);
    /// # Ok(())
    /// # }
    /// ```
    pub fn config(&self) -> Config {
        self.config.clone().unwrap_or_else(Config::empty)
    }

    /// The name of the service serving this call.
    pub fn service(&self) -> &str {
        &self.service
    }

    /// The endpoint being called (`Greeter.Hello`), or the topic of a message.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The caller's metadata, or the message's headers.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// When the caller stops waiting, if it said.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// The time left before the deadline (zero once it has passed); `None`
    /// without a deadline.
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|deadline| deadline.saturating_duration_since(Instant::now()))
    }

    /// Whether the deadline has passed.
    pub fn is_expired(&self) -> bool {
        self.remaining() == Some(Duration::ZERO)
    }

    /// The metadata that downstream calls inherit (see [`is_propagated`]).
    pub fn propagated_metadata(&self) -> Metadata {
        self.metadata
            .iter()
            .filter(|(key, _)| is_propagated(key))
            .collect()
    }

    /// The serving service's client, scoped to this call: its calls inherit
    /// this call's deadline and propagated metadata.
    ///
    /// Handlers of a [`Service`](crate::Service) always have one. In a bare
    /// [`Server`](crate::Server) that was given no client
    /// ([`Server::client`](crate::Server::client)), every call and publish
    /// through the returned client fails with `FailedPrecondition` saying so.
    pub fn client(&self) -> Client {
        match &self.client {
            Some(client) => client.scoped(self.deadline, self.propagated_metadata()),
            None => Client::detached(),
        }
    }

    /// Like [`Context::client`], but its calls also carry the caller's
    /// credential (`authorization`), so that the next service decides on the
    /// original caller's account rather than on this service's own.
    pub fn client_as_caller(&self) -> Client {
        let mut metadata = self.propagated_metadata();
        if let Some(credential) = self.metadata.get("authorization") {
            metadata.insert("authorization", credential);
        }
        match &self.client {
            Some(client) => client.scoped(self.deadline, metadata),
            None => Client::detached(),
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("service", &self.service)
            .field("endpoint", &self.endpoint)
            .field("metadata", &self.metadata)
            .field("remaining", &self.remaining())
            .field("has_client", &self.client.is_some())
            .field("has_config", &self.config.is_some())
            .field("account", &self.account.as_ref().map(|account| &account.id))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn per_hop_keys_are_not_propagated() {
        let metadata: Metadata = [
            ("Content-Type", "application/json"),
            ("content-length", "12"),
            ("micro-timeout", "5s"),
            ("grpc-timeout", "5S"),
            ("Trace-Id", "abc"),
            ("authorization", "Bearer x"),
        ]
        .into_iter()
        .collect();
        let ctx = Context::new("svc", "Svc.Call").with_metadata(metadata);
        let propagated = ctx.propagated_metadata();
        assert_eq!(propagated.get("trace-id"), Some("abc"));
        // The caller's credential goes on only through `client_as_caller`.
        assert_eq!(propagated.get("authorization"), None);
        assert_eq!(propagated.len(), 1);
    }

    #[tokio::test]
    async fn remaining_counts_down_to_zero() {
        let ctx = Context::new("svc", "Svc.Call");
        assert_eq!(ctx.remaining(), None);
        assert!(!ctx.is_expired());
        let ctx = ctx.with_deadline(Some(Instant::now() + Duration::from_secs(60)));
        assert!(ctx.remaining().unwrap() > Duration::from_secs(30));
        let ctx = ctx.with_deadline(Some(Instant::now() - Duration::from_millis(1)));
        assert_eq!(ctx.remaining(), Some(Duration::ZERO));
        assert!(ctx.is_expired());
    }

    #[tokio::test]
    async fn client_without_one_fails_with_failed_precondition() {
        let client = Context::new("svc", "Svc.Call").client();
        let err = client
            .call::<_, ()>("other", "Other.Call", &())
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
        let err = client.publish("topic", &1).await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::FailedPrecondition);
    }
}
