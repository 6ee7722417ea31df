use std::{convert::Infallible, sync::Arc, time::Duration};

use ::http::{
    HeaderValue, Method, StatusCode,
    header::{CONTENT_TYPE, HeaderMap, HeaderName},
};
use bytes::Bytes;
use http_body::Body as _;
use hyper::body::Incoming;
use tokio::{net::TcpListener, sync::oneshot, time::Instant};

use super::{
    stream::{self, HttpBody, ReadError},
    wire::{
        BODY, SERVICE, STREAM, TIMEOUT, content_type_value, error_response,
        error_response_with_status, is_stream, metadata_from_headers, metadata_into_headers,
        parse_timeout,
    },
};
use crate::{
    Body, Error, Handler, Listener, Request, Result,
    call::{DeadlineTimer, StreamLimits, body_too_large, guard_call, limit_stream},
    listen::{ConnectionLimits, ListenerTls, PeerSubject, serve_http},
};

/// What every request of one server shares.
struct ServerState {
    handler: Handler,
    max_body_size: usize,
    limits: ConnectionLimits,
    tls: ListenerTls,
}

/// Binds `address` and serves `handler` on it until the returned listener is shut down.
pub(super) async fn listen(
    address: &str,
    handler: Handler,
    max_body_size: usize,
    limits: ConnectionLimits,
    tls: ListenerTls,
) -> Result<Listener> {
    let bind_to = bind_address(address);
    let listener = TcpListener::bind(&bind_to)
        .await
        .map_err(|err| Error::from(err).context(format!("binding {bind_to}")))?;
    let local = listener
        .local_addr()
        .map_err(|err| Error::from(err).context("reading the bound address"))?;
    tracing::debug!(address = %local, "http server listening");
    let state = Arc::new(ServerState {
        handler,
        max_body_size,
        limits,
        tls,
    });
    let speaks_tls = state.tls.is_enabled();
    let (stop, stopped) = oneshot::channel();
    let server = tokio::spawn(serve(listener, state, stopped));
    Ok(Listener::new(local.to_string(), move |grace| {
        Box::pin(async move {
            // The server task may have stopped already if its runtime is
            // shutting down; then there is nothing left to stop.
            let _ = stop.send(grace);
            server
                .await
                .map_err(|err| Error::internal("the http server task failed").with_source(err))
        })
    })
    .with_tls(speaks_tls))
}

/// Where to bind: `""` is a free loopback port, `:8080` is every interface.
fn bind_address(address: &str) -> String {
    let address = address.trim();
    let address = ["http://", "https://"]
        .iter()
        .find_map(|scheme| address.strip_prefix(scheme))
        .unwrap_or(address);
    if address.is_empty() {
        "127.0.0.1:0".to_owned()
    } else if address.starts_with(':') {
        format!("0.0.0.0{address}")
    } else {
        address.to_owned()
    }
}

/// Serves until told to stop, then drains the connections for the grace
/// period; dropping a connection left after it drops the handler futures
/// running on it, which cancels the calls still in flight.
async fn serve(listener: TcpListener, state: Arc<ServerState>, stop: oneshot::Receiver<Duration>) {
    let (limits, tls) = (state.limits.clone(), state.tls.clone());
    let service = tower::service_fn(move |request| handle(state.clone(), request));
    serve_http(listener, limits, tls, service, stop).await;
    tracing::debug!("http server stopped");
}

/// Answers one HTTP request.
async fn handle(
    state: Arc<ServerState>,
    request: ::http::Request<Incoming>,
) -> Result<::http::Response<HttpBody>, Infallible> {
    respond(&state, request).await
}

/// Answers one HTTP request. Every failure becomes an error response, so the
/// connection itself never fails because of what a request contained.
async fn respond(
    state: &ServerState,
    request: ::http::Request<Incoming>,
) -> Result<::http::Response<HttpBody>, Infallible> {
    if request.method() != Method::POST {
        let error = Error::unimplemented(format!(
            "method {} is not allowed: call an endpoint with POST /{{endpoint}}",
            request.method()
        ));
        let response = error_response_with_status(StatusCode::METHOD_NOT_ALLOWED, &error);
        return Ok(response.map(stream::full));
    }
    let response = match answer(state, request).await {
        Ok(response) => return Ok(response),
        Err(Rejection::BodyTooLarge(error)) => {
            error_response_with_status(StatusCode::PAYLOAD_TOO_LARGE, &error)
        }
        Err(Rejection::Failed(error)) => error_response(&error),
    };
    Ok(response.map(stream::full))
}

/// Why a request got no successful answer.
enum Rejection {
    /// The request body was over the limit: 413 rather than the kind's own 429.
    BodyTooLarge(Error),
    /// Anything else, answered with the kind's status.
    Failed(Error),
}

impl From<Error> for Rejection {
    fn from(error: Error) -> Rejection {
        Rejection::Failed(error)
    }
}

async fn answer(
    state: &ServerState,
    request: ::http::Request<Incoming>,
) -> Result<::http::Response<HttpBody>, Rejection> {
    let (parts, body) = request.into_parts();
    let (service, endpoint) = route(parts.uri.path())?;
    let deadline = deadline(&parts.headers)?;
    let service = match service {
        Some(service) => service.to_owned(),
        None => header(&parts.headers, &SERVICE)?
            .unwrap_or_default()
            .to_owned(),
    };
    let content_type = header(&parts.headers, &CONTENT_TYPE)?
        .unwrap_or("application/json")
        .to_owned();
    let mut metadata = metadata_from_headers(&parts.headers);
    if let Some(PeerSubject(subject)) = parts.extensions.get() {
        metadata.insert(crate::PEER_SUBJECT, subject.clone());
    }
    let streamed_request = is_stream(&parts.headers);
    let endpoint = endpoint.to_owned();
    // Reading the body and running the handler share one deadline race.
    let call = async move {
        let body = if streamed_request {
            Body::Stream(stream::decode_request(body, state.max_body_size))
        } else {
            Body::Full(read_body(body, state.max_body_size).await?)
        };
        let request = Request {
            service,
            endpoint,
            content_type,
            metadata,
            deadline,
            body,
        };
        state
            .handler
            .call_once(request)
            .await
            .map_err(Rejection::from)
    };
    let response = guard_call(deadline, None, DeadlineTimer::Shared, call).await?;
    let streamed = response.body.is_stream();
    let mut answer = ::http::Response::new(match response.body {
        Body::Full(bytes) => stream::full(bytes),
        Body::Stream(messages) => stream::encode(limit_stream(
            messages,
            "response",
            StreamLimits {
                max_message_size: usize::MAX,
                deadline,
                shutdown: None,
                _in_flight: None,
            },
        )),
    });
    let headers = answer.headers_mut();
    if let Err(err) = metadata_into_headers(&response.metadata, headers) {
        return Err(err.context("the handler's response metadata").into());
    }
    if !response.content_type.is_empty() {
        let content_type = content_type_value(&response.content_type).map_err(|err| {
            Error::internal("the handler's content type is not a valid HTTP header value")
                .with_source(err)
        })?;
        headers.insert(CONTENT_TYPE, content_type);
    }
    if streamed {
        headers.insert(BODY, HeaderValue::from_static(STREAM));
    }
    Ok(answer)
}

/// Splits `/{endpoint}` or `/{service}/{endpoint}`.
fn route(path: &str) -> Result<(Option<&str>, &str)> {
    let path = path.strip_prefix('/').unwrap_or(path);
    let (service, endpoint) = match path.split_once('/') {
        Some((service, endpoint)) => (Some(service), endpoint),
        None => (None, path),
    };
    if endpoint.is_empty() || endpoint.contains('/') || service.is_some_and(str::is_empty) {
        return Err(Error::not_found(format!(
            "no endpoint at {:?}: call POST /{{endpoint}} or POST /{{service}}/{{endpoint}}, such as POST /Greeter.Hello",
            format!("/{path}")
        )));
    }
    Ok((service, endpoint))
}

/// The deadline the caller's [`TIMEOUT_HEADER`] asks for, if any.
fn deadline(headers: &HeaderMap) -> Result<Option<Instant>> {
    let Some(timeout) = header(headers, &TIMEOUT)? else {
        return Ok(None);
    };
    let timeout = parse_timeout(timeout)?;
    // A timeout too large to represent is as good as none.
    Ok(Instant::now().checked_add(timeout))
}

/// A header's value as text; one that is not visible ASCII is `InvalidArgument`.
fn header<'a>(headers: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a str>> {
    headers
        .get(name)
        .map(|value| {
            value.to_str().map_err(|err| {
                Error::invalid_argument(format!("header {name} is not visible ASCII"))
                    .with_source(err)
            })
        })
        .transpose()
}

/// Reads the whole request body, refusing one over `max` before reading it
/// when its length is declared, and as soon as it passes `max` otherwise.
async fn read_body(body: Incoming, max: usize) -> Result<Bytes, Rejection> {
    let declared = body.size_hint().lower();
    if declared > max as u64 {
        return Err(Rejection::BodyTooLarge(body_too_large(
            "request body",
            declared,
            max,
        )));
    }
    match stream::read_full(body, max).await {
        Ok(bytes) => Ok(bytes),
        Err(ReadError::TooLarge) => Err(Rejection::BodyTooLarge(body_too_large(
            "request body",
            format!("more than {max}"),
            max,
        ))),
        Err(ReadError::Failed(err)) => {
            Err(Error::invalid_argument("reading the request body failed")
                .with_source(err)
                .into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;

    #[test]
    fn clients_drop_idle_connections_before_servers_close_them() {
        let config = super::super::HttpConfig::default();
        assert!(config.pool_idle_timeout < config.connections.header_read_timeout);
        assert!(config.pool_idle_timeout < config.connections.idle_timeout);
    }

    #[test]
    fn both_path_forms_route() {
        assert_eq!(route("/Greeter.Hello").unwrap(), (None, "Greeter.Hello"));
        assert_eq!(
            route("/greeter/Greeter.Hello").unwrap(),
            (Some("greeter"), "Greeter.Hello")
        );
    }

    #[test]
    fn other_paths_are_not_found() {
        for path in ["/", "", "/a/b/c", "/greeter/", "//Greeter.Hello"] {
            assert_eq!(
                route(path).unwrap_err().kind(),
                ErrorKind::NotFound,
                "{path}"
            );
        }
    }

    #[test]
    fn bind_addresses_default_to_loopback() {
        assert_eq!(bind_address(""), "127.0.0.1:0");
        assert_eq!(bind_address(":8080"), "0.0.0.0:8080");
        assert_eq!(bind_address("http://127.0.0.1:9"), "127.0.0.1:9");
    }
}
