//! Typed endpoints: a name with the request and reply types it carries,
//! shared by the serving and the calling side.

use std::{borrow::Cow, fmt, marker::PhantomData};

/// An endpoint's name (`Greeter.Hello`) together with its request and reply
/// types: the contract a server and its clients share.
///
/// Declared once, as a constant, it is what both sides name, so a request of
/// the wrong type is a compile error rather than a run-time `InvalidArgument`,
/// and a typo in the name cannot differ between them:
///
/// ```
/// use micro::{Endpoint, Server};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Serialize, Deserialize)]
/// struct HelloRequest { name: String }
/// #[derive(Serialize, Deserialize)]
/// struct HelloReply { message: String }
///
/// const HELLO: Endpoint<HelloRequest, HelloReply> = Endpoint::new("Greeter.Hello");
///
/// let server = Server::new().handle(HELLO, |_ctx, request| async move {
///     Ok(HelloReply { message: format!("Hello, {}", request.name) })
/// });
/// # async fn call(client: micro::Client) -> micro::Result<()> {
/// # const HELLO: Endpoint<HelloRequest, HelloReply> = Endpoint::new("Greeter.Hello");
/// let reply = client.call("greeter", HELLO, &HelloRequest { name: "Ada".into() }).await?;
/// # let _: HelloReply = reply;
/// # Ok(())
/// # }
/// # let _ = server;
/// ```
///
/// The types pick the codec ([`codec`](mod@crate::codec)): plain serde types are
/// JSON or MessagePack, [`Proto<T>`](crate::codec::Proto) is protobuf, and
/// so on. A request of another type does not compile:
///
/// ```compile_fail,E0631
/// use micro::{Endpoint, Server};
///
/// const HELLO: Endpoint<String, String> = Endpoint::new("Greeter.Hello");
///
/// // The handler takes a u64, the endpoint says String: a type error.
/// let server = Server::new().handle(HELLO, |_ctx, id: u64| async move { Ok(id.to_string()) });
/// ```
///
/// ```compile_fail,E0308
/// use micro::Endpoint;
///
/// const HELLO: Endpoint<String, String> = Endpoint::new("Greeter.Hello");
///
/// # async fn call(client: micro::Client) -> micro::Result<()> {
/// // Sending a u64 where the endpoint takes a String: a type error.
/// let reply: String = client.call("greeter", HELLO, &42u64).await?;
/// # Ok(())
/// # }
/// ```
///
/// Where a quick name will do, a string converts into an `Endpoint` whose
/// types are inferred from the handler or the call:
/// `server.handle("Greeter.Hello", |_ctx, name: String| ...)`.
pub struct Endpoint<Req: ?Sized, Resp> {
    name: Cow<'static, str>,
    #[cfg(feature = "schema")]
    schemas: Option<fn() -> Schemas>,
    types: PhantomData<fn(&Req) -> Resp>,
}

/// The JSON Schemas of an endpoint's request and reply.
#[cfg(feature = "schema")]
pub(crate) type Schemas = (Option<serde_json::Value>, Option<serde_json::Value>);

impl<Req: ?Sized, Resp> Endpoint<Req, Resp> {
    /// The endpoint called `name` (`Service.Method` by convention), usable
    /// in a `const`.
    pub const fn new(name: &'static str) -> Endpoint<Req, Resp> {
        Endpoint {
            name: Cow::Borrowed(name),
            #[cfg(feature = "schema")]
            schemas: None,
            types: PhantomData,
        }
    }

    /// The endpoint called `name`, a name made at run time.
    pub fn named(name: impl Into<String>) -> Endpoint<Req, Resp> {
        Endpoint {
            name: Cow::Owned(name.into()),
            #[cfg(feature = "schema")]
            schemas: None,
            types: PhantomData,
        }
    }

    /// The endpoint's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn into_name(self) -> String {
        self.name.into_owned()
    }

    /// The JSON Schemas of its request and reply, if it has them.
    #[cfg(feature = "schema")]
    pub(crate) fn schemas(&self) -> Option<Schemas> {
        self.schemas.map(|schemas| schemas())
    }
}

#[cfg(feature = "schema")]
impl<Req: ?Sized + schemars::JsonSchema, Resp: schemars::JsonSchema> Endpoint<Req, Resp> {
    /// The endpoint called `name`, described by the JSON Schemas of its
    /// request and reply types: a server that serves it stores them with the endpoint in its
    /// registry record ([`registry::Endpoint::request_schema`](crate::registry::Endpoint::request_schema)
    /// and `response_schema`), where gateways and tools read them. Needs the
    /// `schema` feature.
    ///
    /// ```
    /// use micro::Endpoint;
    ///
    /// #[derive(serde::Serialize, serde::Deserialize, schemars::JsonSchema)]
    /// struct HelloRequest { name: String }
    ///
    /// const HELLO: Endpoint<HelloRequest, String> = Endpoint::described("Greeter.Hello");
    /// ```
    pub const fn described(name: &'static str) -> Endpoint<Req, Resp> {
        Endpoint {
            name: Cow::Borrowed(name),
            schemas: Some(schemas_of::<Req, Resp>),
            types: PhantomData,
        }
    }
}

#[cfg(feature = "schema")]
fn schemas_of<Req: ?Sized + schemars::JsonSchema, Resp: schemars::JsonSchema>() -> Schemas {
    (
        Some(schemars::schema_for!(Req).to_value()),
        Some(schemars::schema_for!(Resp).to_value()),
    )
}

impl<Req: ?Sized, Resp> Clone for Endpoint<Req, Resp> {
    fn clone(&self) -> Endpoint<Req, Resp> {
        Endpoint {
            name: self.name.clone(),
            #[cfg(feature = "schema")]
            schemas: self.schemas,
            types: PhantomData,
        }
    }
}

impl<Req: ?Sized, Resp> fmt::Debug for Endpoint<Req, Resp> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Endpoint")
            .field("name", &self.name)
            .field("request", &std::any::type_name::<Req>())
            .field("response", &std::any::type_name::<Resp>())
            .finish()
    }
}

impl<Req: ?Sized, Resp> From<&str> for Endpoint<Req, Resp> {
    fn from(name: &str) -> Endpoint<Req, Resp> {
        Endpoint::named(name)
    }
}

impl<Req: ?Sized, Resp> From<String> for Endpoint<Req, Resp> {
    fn from(name: String) -> Endpoint<Req, Resp> {
        Endpoint::named(name)
    }
}

impl<Req: ?Sized, Resp> From<&String> for Endpoint<Req, Resp> {
    fn from(name: &String) -> Endpoint<Req, Resp> {
        Endpoint::named(name.as_str())
    }
}

impl<Req: ?Sized, Resp> From<&Endpoint<Req, Resp>> for Endpoint<Req, Resp> {
    fn from(endpoint: &Endpoint<Req, Resp>) -> Endpoint<Req, Resp> {
        endpoint.clone()
    }
}
