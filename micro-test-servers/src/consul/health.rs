//! The read endpoints the registry uses, after Consul's API documentation:
//! `/v1/health/service/:service` (with `passing`), `/v1/health/state/:state`
//! and `/v1/catalog/services`, all supporting blocking queries.

use std::collections::{BTreeMap, BTreeSet};

use axum::{
    Router,
    extract::{Path, RawQuery, State},
    response::Response,
    routing::get,
};
use serde::Serialize;

use super::{
    query::{bad_request, block, flag, json_with_index, params},
    state::{self, CheckEntry, ServiceEntry, Shared, Status},
};

pub(super) fn routes() -> Router<Shared> {
    Router::new()
        .route("/v1/health/service/{service}", get(service_health))
        .route("/v1/health/state/{state}", get(checks_in_state))
        .route("/v1/catalog/services", get(catalog_services))
}

/// The agent's node, as the health endpoints report it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct NodeView {
    #[serde(rename = "ID")]
    id: &'static str,
    node: &'static str,
    address: &'static str,
    datacenter: &'static str,
    tagged_addresses: BTreeMap<String, String>,
    meta: BTreeMap<String, String>,
}

fn node() -> NodeView {
    NodeView {
        id: state::NODE_ID,
        node: state::NODE_NAME,
        address: "127.0.0.1",
        datacenter: state::DATACENTER,
        tagged_addresses: BTreeMap::new(),
        meta: BTreeMap::new(),
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct CheckView {
    node: &'static str,
    #[serde(rename = "CheckID")]
    check_id: String,
    name: String,
    status: Status,
    notes: String,
    output: String,
    #[serde(rename = "ServiceID")]
    service_id: String,
    service_name: String,
    service_tags: Vec<String>,
    #[serde(rename = "Type")]
    kind: &'static str,
    create_index: u64,
    modify_index: u64,
}

/// The node's own Serf health check, always passing on the stand-in.
fn serf_health() -> CheckView {
    CheckView {
        node: state::NODE_NAME,
        check_id: "serfHealth".to_owned(),
        name: "Serf Health Status".to_owned(),
        status: Status::Passing,
        notes: String::new(),
        output: "Agent alive and reachable".to_owned(),
        service_id: String::new(),
        service_name: String::new(),
        service_tags: Vec::new(),
        kind: "",
        create_index: 1,
        modify_index: 1,
    }
}

fn check_view(check: &CheckEntry, service: Option<&ServiceEntry>) -> CheckView {
    CheckView {
        node: state::NODE_NAME,
        check_id: check.id.clone(),
        name: check.name.clone(),
        status: check.status,
        notes: String::new(),
        output: check.output.clone(),
        service_id: check.service_id.clone(),
        service_name: service.map(|s| s.service.clone()).unwrap_or_default(),
        service_tags: service.map(|s| s.tags.clone()).unwrap_or_default(),
        kind: "ttl",
        create_index: check.create_index,
        modify_index: check.modify_index,
    }
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct ServiceHealth {
    node: NodeView,
    service: ServiceEntry,
    checks: Vec<CheckView>,
}

async fn service_health(
    State(shared): State<Shared>,
    Path(name): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let params = params(query);
    let passing = match flag(&params, "passing") {
        Ok(passing) => passing,
        Err(response) => return response,
    };
    if let Err(response) = block(&shared, &params).await {
        return response;
    }
    let index = shared.index();
    let state = shared.lock();
    let entries: Vec<ServiceHealth> = state
        .services
        .values()
        .filter(|service| service.service == name)
        .filter(|service| !passing || state.passing(&service.id))
        .map(|service| ServiceHealth {
            node: node(),
            service: service.clone(),
            checks: std::iter::once(serf_health())
                .chain(
                    state
                        .checks
                        .values()
                        .filter(|check| check.service_id == service.id)
                        .map(|check| check_view(check, Some(service))),
                )
                .collect(),
        })
        .collect();
    drop(state);
    json_with_index(index, &entries)
}

async fn checks_in_state(
    State(shared): State<Shared>,
    Path(wanted): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let wanted = match wanted.as_str() {
        "any" => None,
        "passing" => Some(Status::Passing),
        "warning" => Some(Status::Warning),
        "critical" => Some(Status::Critical),
        other => return bad_request(format!("Invalid check state {other:?}")),
    };
    let params = params(query);
    if let Err(response) = block(&shared, &params).await {
        return response;
    }
    let index = shared.index();
    let state = shared.lock();
    let checks: Vec<CheckView> = std::iter::once(serf_health())
        .chain(
            state
                .checks
                .values()
                .map(|check| check_view(check, state.services.get(&check.service_id))),
        )
        .filter(|check| wanted.is_none_or(|status| check.status == status))
        .collect();
    drop(state);
    json_with_index(index, &checks)
}

async fn catalog_services(State(shared): State<Shared>, RawQuery(query): RawQuery) -> Response {
    let params = params(query);
    if let Err(response) = block(&shared, &params).await {
        return response;
    }
    let index = shared.index();
    let state = shared.lock();
    // Consul always lists itself.
    let mut services: BTreeMap<String, BTreeSet<String>> =
        BTreeMap::from([("consul".to_owned(), BTreeSet::new())]);
    for service in state.services.values() {
        services
            .entry(service.service.clone())
            .or_default()
            .extend(service.tags.iter().cloned());
    }
    drop(state);
    json_with_index(index, &services)
}
