//! The agent endpoints rs-consul does not offer, over reqwest: service
//! registration and deregistration, and passing a TTL check.

use std::time::Duration;

use serde_json::{Value, json};

use super::{ConsulConfig, Inner, MARKER_TAG, RECORD_TAG, check_id, path_segment};
use crate::{Error, ErrorKind, Result, Service, record};

/// The body of `PUT /v1/agent/service/register` for one node.
pub(super) fn definition(
    id: &str,
    record: &Service,
    ttl: Option<Duration>,
    config: &ConsulConfig,
) -> Result<Value> {
    let encoded = String::from_utf8(record::encode(record)?)
        .map_err(|err| Error::internal("a registration's JSON is not UTF-8").with_source(err))?;
    let node = &record.nodes[0];
    let (address, port) = match node.address.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host.trim_start_matches('[').trim_end_matches(']'), port),
            Err(_) => (node.address.as_str(), 0),
        },
        None => (node.address.as_str(), 0),
    };
    let mut definition = json!({
        "ID": id,
        "Name": record.name,
        "Tags": [MARKER_TAG, format!("{RECORD_TAG}{encoded}")],
        "Address": address,
        "Port": port,
        "Meta": { "micro-version": record.version },
    });
    if let Some(ttl) = ttl {
        // Consul's minimum for DeregisterCriticalServiceAfter is a minute; the
        // TTL itself is sent to the millisecond.
        definition["Check"] = json!({
            "CheckID": check_id(id),
            "Name": "micro registration TTL",
            "TTL": format!("{}ms", ttl.as_millis().max(1)),
            "Status": "passing",
            "DeregisterCriticalServiceAfter": format!("{}s", record::ttl_seconds(config.deregister_critical_after)),
        });
    }
    Ok(definition)
}

pub(super) async fn register(inner: &Inner, definition: &Value) -> Result<()> {
    let url = format!(
        "{}/v1/agent/service/register?replace-existing-checks=true",
        inner.config.base()
    );
    send(
        inner,
        "registering with the Consul agent",
        inner.http.put(url).json(definition),
    )
    .await
}

pub(super) async fn deregister(inner: &Inner, id: &str) -> Result<()> {
    let url = format!(
        "{}/v1/agent/service/deregister/{}",
        inner.config.base(),
        path_segment(id)
    );
    send(
        inner,
        "deregistering from the Consul agent",
        inner.http.put(url),
    )
    .await
}

pub(super) async fn pass(inner: &Inner, check: &str) -> Result<()> {
    let url = format!(
        "{}/v1/agent/check/pass/{}",
        inner.config.base(),
        path_segment(check)
    );
    send(inner, "passing a Consul TTL check", inner.http.put(url)).await
}

/// Sends an agent request under the request timeout; a non-2xx answer is an
/// error of the kind its status maps to (404 is `NotFound`).
async fn send(inner: &Inner, what: &str, request: reqwest::RequestBuilder) -> Result<()> {
    // The client sends the ACL token with every request.
    let request = request.timeout(inner.config.request_timeout);
    let response = request.send().await.map_err(|err| {
        let kind = if err.is_timeout() {
            ErrorKind::Timeout
        } else {
            ErrorKind::Unavailable
        };
        Error::new(kind, format!("{what}: {err}")).with_source(err)
    })?;
    let status = response.status();
    if status.is_success() {
        return Ok(());
    }
    let body = response.text().await.unwrap_or_default();
    Err(Error::new(
        ErrorKind::from_http_status(status.as_u16()),
        format!("{what}: the agent answered {status}: {}", body.trim()),
    ))
}

/// The checks' index of the agent's catalog: `/v1/health/state/any`, blocking
/// until it passes `index` (when given). Returns the new index.
pub(super) async fn checks_index(inner: &Inner, index: u64) -> Result<u64> {
    let wait = inner.config.watch_wait.as_secs().max(1);
    let url = format!(
        "{}/v1/health/state/any?index={index}&wait={wait}s",
        inner.config.base()
    );
    let request = inner.http.get(url).timeout(inner.blocking_timeout());
    let what = "watching Consul health checks";
    let response = request
        .send()
        .await
        .map_err(|err| Error::unavailable(format!("{what}: {err}")).with_source(err))?;
    let status = response.status();
    if !status.is_success() {
        return Err(Error::new(
            ErrorKind::from_http_status(status.as_u16()),
            format!("{what}: the agent answered {status}"),
        ));
    }
    response
        .headers()
        .get("X-Consul-Index")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok())
        .ok_or_else(|| Error::internal(format!("{what}: no X-Consul-Index in the answer")))
}
