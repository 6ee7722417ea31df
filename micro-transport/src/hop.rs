/// Whether a header name or metadata key (lower-case) belongs to one hop of a
/// call rather than to the call itself.
///
/// Per-hop names are HTTP framing and negotiation headers (`content-type`,
/// `content-length`, `host`, `user-agent`, ...) and transport-internal keys
/// (prefixed `micro-`, `grpc-` or `:`), which each hop sets for itself. They
/// never become [`Metadata`](crate::Metadata) on the serving side, metadata
/// never overrides them on the calling side, and a handler's downstream calls
/// do not inherit them.
///
/// Checked for every header of every call, hence a `match` (which compiles to
/// a dispatch on length) rather than a scan of a list.
///
/// ```
/// use micro_transport::is_per_hop;
///
/// assert!(is_per_hop("content-length"));
/// assert!(is_per_hop("micro-timeout"));
/// assert!(!is_per_hop("trace-id"));
/// ```
pub fn is_per_hop(name: &str) -> bool {
    name.starts_with("micro-")
        || name.starts_with("grpc-")
        || name.starts_with(':')
        || matches!(
            name,
            "accept"
                | "accept-encoding"
                | "connection"
                | "content-encoding"
                | "content-length"
                | "content-type"
                | "date"
                | "expect"
                | "host"
                | "http2-settings"
                | "keep-alive"
                | "proxy-authorization"
                | "proxy-connection"
                | "server"
                | "te"
                | "trailer"
                | "transfer-encoding"
                | "upgrade"
                | "user-agent"
        )
}
