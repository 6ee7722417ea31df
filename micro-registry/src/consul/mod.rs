//! Consul
