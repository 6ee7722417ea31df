//! Consul's KV endpoints, after Consul's API documentation: what micro's
//! Consul config source uses.
//!
//! | endpoint | what the stand-in does |
//! |---|---|
//! | `GET /v1/kv/:key` | the entry as a one-element list (`Value` base64, `null` when empty); `?recurse` every entry whose key starts with `:key`; `?keys` only the keys; `?raw` the bare value; 404 when nothing matches; blocking with `?index=N&wait=D`, answering `X-Consul-Index` (on 404s too) |
//! | `PUT /v1/kv/:key` | stores the body as the value; `?flags=N`; `?cas=N` stores only if the entry's `ModifyIndex` is N (0: only if absent); answers `true` or `false` |
//! | `DELETE /v1/kv/:key` | removes the entry, or with `?recurse` every entry under the prefix; `?cas=N` as for PUT; answers `true` or `false` |
//!
//! Every change raises the stand-in's one index, so a blocking KV read can
//! also wake for an unrelated change (Consul documents that indexes may move
//! for unrelated reasons; clients must compare what they read).

use std::collections::{BTreeMap, HashMap};

use axum::{
    Router,
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderName, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use serde::Serialize;

use super::{
    query::{bad_request, block, flag, json_with_index, params},
    state::Shared,
};

/// The KV store's data: entries by key.
#[derive(Debug, Default)]
pub(crate) struct KvStore {
    entries: BTreeMap<String, KvEntry>,
}

#[derive(Debug, Clone)]
struct KvEntry {
    value: Vec<u8>,
    flags: u64,
    create_index: u64,
    modify_index: u64,
}

/// One entry as Consul reports it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "PascalCase")]
struct EntryView {
    lock_index: u64,
    key: String,
    flags: u64,
    value: Option<String>,
    create_index: u64,
    modify_index: u64,
}

pub(super) fn routes() -> Router<Shared> {
    Router::new().route("/v1/kv/{*key}", get(read).put(write).delete(remove))
}

async fn read(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = params(raw);
    if let Err(response) = block(&shared, &params).await {
        return response;
    }
    let (recurse, keys_only, raw_value) = match (
        flag(&params, "recurse"),
        flag(&params, "keys"),
        flag(&params, "raw"),
    ) {
        (Ok(recurse), Ok(keys), Ok(raw)) => (recurse, keys, raw),
        (Err(response), _, _) | (_, Err(response), _) | (_, _, Err(response)) => return response,
    };
    let index = shared.index();
    let state = shared.lock();
    let matching: Vec<(&String, &KvEntry)> = if recurse || keys_only {
        state
            .kv
            .entries
            .range(key.clone()..)
            .take_while(|(k, _)| k.starts_with(&key))
            .collect()
    } else {
        state.kv.entries.get_key_value(&key).into_iter().collect()
    };
    if matching.is_empty() {
        return not_found_with_index(index);
    }
    if keys_only {
        let keys: Vec<&String> = matching.iter().map(|(k, _)| *k).collect();
        return json_with_index(index, &keys);
    }
    if raw_value {
        return (StatusCode::OK, matching[0].1.value.clone()).into_response();
    }
    let views: Vec<EntryView> = matching
        .into_iter()
        .map(|(key, entry)| EntryView {
            lock_index: 0,
            key: key.clone(),
            flags: entry.flags,
            value: (!entry.value.is_empty()).then(|| base64(&entry.value)),
            create_index: entry.create_index,
            modify_index: entry.modify_index,
        })
        .collect();
    json_with_index(index, &views)
}

async fn write(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
    body: Bytes,
) -> Response {
    let params = params(raw);
    let (flags, cas) = match (number(&params, "flags"), number(&params, "cas")) {
        (Ok(flags), Ok(cas)) => (flags, cas),
        (Err(message), _) | (_, Err(message)) => return bad_request(message),
    };
    let mut state = shared.lock();
    let existing = state.kv.entries.get(&key).cloned();
    if !cas_holds(cas, existing.as_ref()) {
        return answer(false);
    }
    let index = shared.bump();
    state.kv.entries.insert(
        key,
        KvEntry {
            value: body.to_vec(),
            flags: flags.unwrap_or(existing.as_ref().map_or(0, |e| e.flags)),
            create_index: existing.map_or(index, |e| e.create_index),
            modify_index: index,
        },
    );
    answer(true)
}

async fn remove(
    State(shared): State<Shared>,
    Path(key): Path<String>,
    RawQuery(raw): RawQuery,
) -> Response {
    let params = params(raw);
    let recurse = match flag(&params, "recurse") {
        Ok(recurse) => recurse,
        Err(response) => return response,
    };
    let cas = match number(&params, "cas") {
        Ok(cas) => cas,
        Err(message) => return bad_request(message),
    };
    let mut state = shared.lock();
    if recurse {
        state.kv.entries.retain(|k, _| !k.starts_with(&key));
    } else {
        if !cas_holds(cas, state.kv.entries.get(&key)) {
            return answer(false);
        }
        state.kv.entries.remove(&key);
    }
    shared.bump();
    answer(true)
}

/// Whether a check-and-set index allows the change: none given always does;
/// 0 only when the entry is absent; N only when its `ModifyIndex` is N.
fn cas_holds(cas: Option<u64>, existing: Option<&KvEntry>) -> bool {
    match (cas, existing) {
        (None, _) => true,
        (Some(0), existing) => existing.is_none(),
        (Some(index), Some(entry)) => entry.modify_index == index,
        (Some(_), None) => false,
    }
}

/// A numeric query parameter; the error is the message for a 400.
fn number(params: &HashMap<String, String>, name: &str) -> Result<Option<u64>, String> {
    params
        .get(name)
        .map(|value| {
            value
                .parse()
                .map_err(|_| format!("invalid {name}={value:?}"))
        })
        .transpose()
}

fn answer(done: bool) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        if done { "true" } else { "false" },
    )
        .into_response()
}

/// Consul answers a read that finds nothing with 404 and still gives the
/// index, so a client can block on a prefix that is empty.
fn not_found_with_index(index: u64) -> Response {
    (
        StatusCode::NOT_FOUND,
        [(
            HeaderName::from_static("x-consul-index"),
            HeaderValue::from(index.max(1)),
        )],
    )
        .into_response()
}

/// Standard base64 with padding, as Consul encodes KV values.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"5432"), "NTQzMg==");
    }
}
