//! The agent endpoints the registry uses, after Consul's API documentation
//! (`/v1/agent/service/register`, `/v1/agent/service/deregister/:id`,
//! `/v1/agent/check/pass/:id`). Only TTL checks are supported.

use std::{collections::BTreeMap, time::Duration};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::put,
};
use serde::Deserialize;
use tokio::time::Instant;

use super::{
    query::{bad_request, flag, go_duration, not_found, params},
    state::{CheckEntry, ServiceEntry, Shared, Status},
};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/agent/service/register", put(register))
        .route("/v1/agent/service/deregister/{service_id}", put(deregister))
        .route("/v1/agent/check/pass/{check_id}", put(pass))
}

/// The body of a service registration (the fields the stand-in understands).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Registration {
    #[serde(rename = "ID")]
    id: Option<String>,
    name: String,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    address: String,
    #[serde(default)]
    port: u16,
    #[serde(default)]
    meta: BTreeMap<String, String>,
    check: Option<CheckDefinition>,
    #[serde(default)]
    checks: Vec<CheckDefinition>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct CheckDefinition {
    #[serde(rename = "CheckID")]
    check_id: Option<String>,
    name: Option<String>,
    #[serde(rename = "TTL")]
    ttl: Option<String>,
    status: Option<Status>,
    deregister_critical_service_after: Option<String>,
    #[serde(rename = "HTTP")]
    http: Option<String>,
    #[serde(rename = "TCP")]
    tcp: Option<String>,
    #[serde(default)]
    args: Vec<String>,
}

/// A check definition, validated.
struct CheckSpec {
    id: String,
    name: String,
    ttl: Duration,
    status: Option<Status>,
    deregister_after: Option<Duration>,
}

async fn register(
    State(shared): State<Shared>,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(query);
    let replace_checks = match flag(&params, "replace-existing-checks") {
        Ok(replace) => replace,
        Err(response) => return response,
    };
    let registration: Registration = match serde_json::from_slice(&body) {
        Ok(registration) => registration,
        Err(err) => return bad_request(format!("Request decode failed: {err}")),
    };
    if registration.name.is_empty() {
        return bad_request("Missing service name".to_owned());
    }
    let service_id = registration
        .id
        .clone()
        .filter(|id| !id.is_empty())
        .unwrap_or_else(|| registration.name.clone());
    let definitions: Vec<_> = registration
        .check
        .into_iter()
        .chain(registration.checks)
        .collect();
    let numbered = definitions.len() > 1;
    let mut specs = Vec::new();
    for (n, definition) in definitions.into_iter().enumerate() {
        match check_spec(&service_id, n + 1, numbered, definition) {
            Ok(spec) => specs.push(spec),
            Err(response) => return response,
        }
    }

    let now = Instant::now();
    let mut state = shared.lock();
    let index = shared.index() + 1;
    let mut changed = false;
    let service = ServiceEntry {
        id: service_id.clone(),
        service: registration.name,
        tags: registration.tags,
        address: registration.address,
        port: registration.port,
        meta: registration.meta,
        create_index: index,
        modify_index: index,
    };
    match state.services.get_mut(&service_id) {
        Some(existing) => {
            let same = existing.service == service.service
                && existing.tags == service.tags
                && existing.address == service.address
                && existing.port == service.port
                && existing.meta == service.meta;
            if !same {
                *existing = ServiceEntry {
                    create_index: existing.create_index,
                    ..service
                };
                changed = true;
            }
        }
        None => {
            state.services.insert(service_id.clone(), service);
            changed = true;
        }
    }
    if replace_checks {
        let before = state.checks.len();
        state.checks.retain(|id, check| {
            check.service_id != service_id || specs.iter().any(|spec| spec.id == *id)
        });
        changed |= state.checks.len() != before;
    }
    for spec in specs {
        changed |= upsert_check(&mut state.checks, &service_id, spec, now, index);
    }
    drop(state);
    if changed {
        shared.bump();
    }
    StatusCode::OK.into_response()
}

#[allow(
    clippy::result_large_err,
    reason = "handlers answer failures with ready-made responses"
)]
fn check_spec(
    service_id: &str,
    n: usize,
    numbered: bool,
    definition: CheckDefinition,
) -> Result<CheckSpec, Response> {
    if definition.http.is_some() || definition.tcp.is_some() || !definition.args.is_empty() {
        return Err(bad_request(
            "this Consul stand-in supports only TTL checks".to_owned(),
        ));
    }
    let Some(ttl) = definition.ttl else {
        return Err(bad_request(
            "check without TTL: the stand-in supports only TTL checks".to_owned(),
        ));
    };
    let ttl = go_duration(&ttl).ok_or_else(|| bad_request(format!("invalid TTL {ttl:?}")))?;
    let deregister_after = match definition.deregister_critical_service_after {
        Some(after) => Some(go_duration(&after).ok_or_else(|| {
            bad_request(format!("invalid DeregisterCriticalServiceAfter {after:?}"))
        })?),
        None => None,
    };
    let id = definition.check_id.unwrap_or_else(|| {
        if numbered {
            format!("service:{service_id}:{n}")
        } else {
            format!("service:{service_id}")
        }
    });
    Ok(CheckSpec {
        name: definition
            .name
            .unwrap_or_else(|| format!("Service '{service_id}' check")),
        id,
        ttl,
        status: definition.status,
        deregister_after,
    })
}

/// Adds or updates a check; a re-registered check keeps its status unless the
/// definition sets one. Returns whether anything visible changed.
fn upsert_check(
    checks: &mut BTreeMap<String, CheckEntry>,
    service_id: &str,
    spec: CheckSpec,
    now: Instant,
    index: u64,
) -> bool {
    match checks.get_mut(&spec.id) {
        Some(check) => {
            let before = (
                check.status,
                check.ttl,
                check.deregister_after,
                check.name.clone(),
            );
            check.ttl = spec.ttl;
            check.deregister_after = spec.deregister_after;
            check.name = spec.name;
            check.service_id = service_id.to_owned();
            if let Some(status) = spec.status {
                set_status(check, status, now);
            }
            let changed = before
                != (
                    check.status,
                    check.ttl,
                    check.deregister_after,
                    check.name.clone(),
                );
            if changed {
                check.modify_index = index;
            }
            changed
        }
        None => {
            // Consul starts a check critical unless told otherwise.
            let status = spec.status.unwrap_or(Status::Critical);
            let mut check = CheckEntry {
                id: spec.id.clone(),
                name: spec.name,
                service_id: service_id.to_owned(),
                status,
                output: String::new(),
                ttl: spec.ttl,
                expires_at: now + spec.ttl,
                deregister_after: spec.deregister_after,
                critical_since: None,
                create_index: index,
                modify_index: index,
            };
            set_status(&mut check, status, now);
            checks.insert(spec.id, check);
            true
        }
    }
}

/// Sets a TTL check's status; any update restarts its TTL.
fn set_status(check: &mut CheckEntry, status: Status, now: Instant) {
    check.expires_at = now + check.ttl;
    if status == Status::Critical {
        check.critical_since.get_or_insert(now);
    } else {
        check.critical_since = None;
    }
    check.status = status;
}

async fn deregister(State(shared): State<Shared>, Path(service_id): Path<String>) -> Response {
    let removed = shared.lock().remove_service(&service_id);
    if !removed {
        return not_found(format!(
            "Unknown service ID {service_id:?}. Ensure that the service ID is passed, not the service name."
        ));
    }
    shared.bump();
    StatusCode::OK.into_response()
}

async fn pass(
    State(shared): State<Shared>,
    Path(check_id): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let note = params(query).remove("note").unwrap_or_default();
    let now = Instant::now();
    let mut state = shared.lock();
    let Some(check) = state.checks.get_mut(&check_id) else {
        return not_found(format!("Unknown check ID {check_id:?}"));
    };
    let changed = check.status != Status::Passing || check.output != note;
    set_status(check, Status::Passing, now);
    check.output = note;
    if changed {
        check.modify_index = shared.index() + 1;
    }
    drop(state);
    if changed {
        shared.bump();
    }
    StatusCode::OK.into_response()
}
