use std::{fmt, marker::PhantomData, time::Duration};

use bytes::Bytes;
use tokio::time::Instant;

use super::Client;
use crate::{
    Error, Metadata, Result,
    codec::{self, ContentType, Decode, Encode},
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
/// `Req` and `Resp` are the endpoint's request and reply types: given by a
/// typed [`Endpoint`](crate::Endpoint), or inferred from what is sent and expected. They
/// choose the codec ([`codec`](mod@crate::codec)).
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
pub struct CallBuilder<Req: ?Sized, Resp> {
    pub(crate) client: Client,
    pub(crate) spec: CallSpec,
    pub(crate) content_type: Option<ContentType>,
    types: PhantomData<fn(&Req) -> Resp>,
}

impl<Req: ?Sized, Resp> CallBuilder<Req, Resp> {
    pub(crate) fn new(client: Client, service: String, endpoint: String) -> CallBuilder<Req, Resp> {
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
            types: PhantomData,
        }
    }

    /// The time this call may take, retries included, instead of the client's.
    pub fn timeout(mut self, timeout: Duration) -> CallBuilder<Req, Resp> {
        self.spec.timeout = Some(timeout);
        self
    }

    /// A point in time the call must end by; the earlier of this and the
    /// timeout applies.
    pub fn deadline(mut self, deadline: Instant) -> CallBuilder<Req, Resp> {
        self.spec.deadline = Some(deadline);
        self
    }

    /// Adds one metadata pair sent with the request.
    pub fn metadata(mut self, key: &str, value: impl Into<String>) -> CallBuilder<Req, Resp> {
        self.spec.metadata.insert(key, value);
        self
    }

    /// Sends to this address instead of a node from the registry (the service
    /// name still travels with the request).
    pub fn address(mut self, address: impl Into<String>) -> CallBuilder<Req, Resp> {
        self.spec.address = Some(address.into());
        self
    }

    /// How many times a retryable failure is retried, instead of the client's.
    pub fn retries(mut self, retries: u32) -> CallBuilder<Req, Resp> {
        self.spec.retries = Some(retries);
        self
    }

    /// The content type to send, among those the request type can be sent
    /// as: JSON or MessagePack for a plain serde type (instead of the
    /// client's default), any for [`Raw`](crate::codec::Raw) (a label only).
    /// A content type the request type cannot be sent as fails the call with
    /// `InvalidArgument`.
    pub fn content_type(mut self, content_type: ContentType) -> CallBuilder<Req, Resp> {
        self.content_type = Some(content_type);
        self
    }

    /// Sends the request and decodes the reply, each with the codec its
    /// type chooses.
    pub async fn send(self, request: &Req) -> Result<Resp>
    where
        Req: Encode,
        Resp: Decode,
    {
        let (label, format) = self.request_format()?;
        let body = codec::encode_message(request, format)?;
        let response = self.client.invoke(self.spec, label, body).await?;
        decode_reply(response)
    }

    /// The content type a request is labelled with and the one it is
    /// written as (they differ only for a codec, such as `Raw`, that writes
    /// every content type the same way): the call's, if `Req` can be sent as
    /// it; else the client's default, if `Req` can; else `Req`'s first.
    pub(crate) fn request_format(&self) -> Result<(&'static str, &'static str)>
    where
        Req: Encode,
    {
        if let Some(asked) = self.content_type {
            let label = asked.as_str();
            let format = Req::negotiate(label).ok_or_else(|| {
                Error::invalid_argument(format!(
                    "{} is sent as {}, not {label}",
                    std::any::type_name::<Req>(),
                    Req::CONTENT_TYPES.join(" or ")
                ))
            })?;
            return Ok((label, format));
        }
        let preferred = self.client.default_content_type().as_str();
        let format = if Req::CONTENT_TYPES.contains(&preferred) {
            preferred
        } else {
            Req::CONTENT_TYPES
                .first()
                .copied()
                .unwrap_or(codec::OCTET_STREAM)
        };
        Ok((format, format))
    }
}

/// A reply decoded as `Resp`, by its content type (an empty one is `Resp`'s
/// first).
pub(crate) fn decode_reply<Resp: Decode>(response: Response) -> Result<Resp> {
    let format = reply_format::<Resp>(&response.content_type)?;
    Resp::decode(format, reply_bytes(response)?).map_err(bad_reply)
}

/// The format `Resp` reads a reply of `content_type` in, or the serving
/// side's fault when it cannot.
pub(crate) fn reply_format<Resp: Decode>(content_type: &str) -> Result<&'static str> {
    codec::incoming_format::<Resp>(content_type).ok_or_else(|| {
        bad_reply(Error::invalid_argument(format!(
            "{} is read from {}, not {content_type:?}",
            std::any::type_name::<Resp>(),
            Resp::CONTENT_TYPES.join(" or "),
        )))
    })
}

pub(crate) fn reply_bytes(response: Response) -> Result<Bytes> {
    response.body.into_bytes().map_err(bad_reply)
}

/// A reply the caller cannot read is the serving side's fault, not the caller's.
pub(crate) fn bad_reply(err: Error) -> Error {
    Error::internal(format!("unreadable reply: {}", err.message()))
}

impl<Req: ?Sized, Resp> fmt::Debug for CallBuilder<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallBuilder")
            .field("spec", &self.spec)
            .field("content_type", &self.content_type)
            .finish_non_exhaustive()
    }
}
