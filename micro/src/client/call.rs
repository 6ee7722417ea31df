use std::{fmt, time::Duration};

use bytes::Bytes;
use serde::{Serialize, de::DeserializeOwned};
use tokio::time::Instant;

use super::Client;
use crate::{
    Error, Metadata, Result,
    codec::{self, ContentType},
    transport::Response,
};

/// Where a call goes and what it carries, as set on a [`CallBuilder`].
#[derive(Debug)]
pub(crate) struct CallSpec {
    pub(crate) service: String,
    pub(crate) endpoint: String,
    pub(crate) address: Option<String>,
    pub(crate) timeout: Option<Duration>,
    pub(crate) deadline: Option<Instant>,
    pub(crate) metadata: Metadata,
    pub(crate) retries: Option<u32>,
}

impl CallSpec {
    /// The service name, or the address when calling one directly.
    pub(crate) fn target(&self) -> &str {
        match &self.address {
            Some(address) => address,
            None => &self.service,
        }
    }

    pub(crate) fn deadline_exceeded(&self, timeout: Duration) -> Error {
        Error::timeout(format!(
            "{} on {} did not answer before the call's deadline (timeout {timeout:?})",
            self.endpoint,
            self.target()
        ))
    }
}

/// One call with per-call options; from [`Client::request`].
///
/// ```
/// # async fn demo(client: micro::Client) -> micro::Result<()> {
/// use std::time::Duration;
///
/// let total: u64 = client
///     .request("billing", "Billing.Total")
///     .timeout(Duration::from_secs(1))   // whole call, retries included
///     .retries(0)                        // no retry for this one
///     .metadata("tenant", "acme")
///     .send(&vec![1u64, 2, 3])
///     .await?;
/// # Ok(())
/// # }
/// ```
#[must_use = "a call does nothing until sent"]
pub struct CallBuilder {
    pub(crate) client: Client,
    pub(crate) spec: CallSpec,
    pub(crate) content_type: Option<ContentType>,
}

impl CallBuilder {
    pub(crate) fn new(client: Client, service: String, endpoint: String) -> CallBuilder {
        CallBuilder {
            client,
            spec: CallSpec {
                service,
                endpoint,
                address: None,
                timeout: None,
                deadline: None,
                metadata: Metadata::new(),
                retries: None,
            },
            content_type: None,
        }
    }

    /// The time this call may take, retries included, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> CallBuilder {
        self.spec.timeout = Some(timeout);
        self
    }

    /// A point in time the call must end by; the earlier of this and the
    /// timeout applies.
    pub fn deadline(mut self, deadline: Instant) -> CallBuilder {
        self.spec.deadline = Some(deadline);
        self
    }

    /// Adds one metadata pair sent with the request.
    pub fn metadata(mut self, key: &str, value: impl Into<String>) -> CallBuilder {
        self.spec.metadata.insert(key, value);
        self
    }

    /// Sends to this address instead of a node from the registry (the service
    /// name still travels with the request).
    pub fn address(mut self, address: impl Into<String>) -> CallBuilder {
        self.spec.address = Some(address.into());
        self
    }

    /// How many times a retryable failure is retried, instead of the client's.
    pub fn retries(mut self, retries: u32) -> CallBuilder {
        self.spec.retries = Some(retries);
        self
    }

    /// The codec of [`send`](CallBuilder::send): JSON or MessagePack.
    pub fn content_type(mut self, content_type: ContentType) -> CallBuilder {
        self.content_type = Some(content_type);
        self
    }

    /// Sends a serde request and decodes the serde reply.
    pub async fn send<Req, Resp>(self, request: &Req) -> Result<Resp>
    where
        Req: Serialize + ?Sized,
        Resp: DeserializeOwned,
    {
        let content_type = self.content_type.unwrap_or(self.client.inner.content_type);
        if !content_type.is_serde() {
            return Err(Error::invalid_argument(format!(
                "send encodes serde types with {} or {}, not {content_type}; use send_proto or send_raw",
                codec::JSON,
                codec::MSGPACK
            )));
        }
        let body = content_type.encode(request)?;
        let response = self.client.invoke(self.spec, content_type, body).await?;
        let reply_type = ContentType::parse(&response.content_type).map_err(bad_reply)?;
        reply_type
            .decode(&reply_bytes(response)?)
            .map_err(bad_reply)
    }

    /// Sends a protobuf request and decodes the protobuf reply.
    pub async fn send_proto<Req, Resp>(self, request: &Req) -> Result<Resp>
    where
        Req: prost::Message,
        Resp: prost::Message + Default,
    {
        let body = codec::encode_proto(request);
        let response = self
            .client
            .invoke(self.spec, ContentType::Protobuf, body)
            .await?;
        codec::decode_proto(&reply_bytes(response)?).map_err(bad_reply)
    }

    /// Sends raw bytes (`application/octet-stream` unless
    /// [`content_type`](CallBuilder::content_type) says otherwise) and returns
    /// the raw reply.
    pub async fn send_raw(self, body: Bytes) -> Result<Bytes> {
        let content_type = self.content_type.unwrap_or(ContentType::Raw);
        let response = self.client.invoke(self.spec, content_type, body).await?;
        reply_bytes(response)
    }
}

pub(crate) fn reply_bytes(response: Response) -> Result<Bytes> {
    response.body.into_bytes().map_err(bad_reply)
}

/// A reply the caller cannot read is the serving side's fault, not the caller's.
pub(crate) fn bad_reply(err: Error) -> Error {
    Error::internal(format!("unreadable reply: {}", err.message()))
}

impl fmt::Debug for CallBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBuilder")
            .field("spec", &self.spec)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}
