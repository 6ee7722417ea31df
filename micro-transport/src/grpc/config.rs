use std::{path::PathBuf, time::Duration};

use serde::{Deserialize, Serialize};

use super::Compression;
use crate::{DEFAULT_MAX_BODY_SIZE, Error, Result, listen::ConnectionLimits};

/// The variable giving [`GrpcConfig::package`] to [`GrpcConfig::from_env`].
pub const PACKAGE_ENV: &str = "MICRO_GRPC_PACKAGE";
/// The variable giving [`GrpcConfig::max_message_size`] (bytes) to [`GrpcConfig::from_env`].
pub const MAX_MESSAGE_SIZE_ENV: &str = "MICRO_GRPC_MAX_MESSAGE_SIZE";
/// The variable giving [`GrpcConfig::compression`] (`gzip` or `identity`) to
/// [`GrpcConfig::from_env`].
pub const COMPRESSION_ENV: &str = "MICRO_GRPC_COMPRESSION";
/// The variable giving [`GrpcConfig::descriptor_set_files`] to
/// [`GrpcConfig::from_env`]: paths of encoded `FileDescriptorSet`s, separated
/// by commas.
pub const DESCRIPTOR_SET_ENV: &str = "MICRO_GRPC_DESCRIPTOR_SET";

/// Settings of a [`GrpcTransport`](super::GrpcTransport).
///
/// Deserializes from any serde format; missing fields take their defaults and
/// durations are humantime strings (`250ms`, `5s`).
///
/// ```
/// use micro_transport::grpc::GrpcConfig;
///
/// let config: GrpcConfig = serde_json::from_str(r#"{"package": "helloworld", "max_message_size": 1048576}"#).unwrap();
/// assert_eq!(config.package, "helloworld");
/// assert_eq!(config.max_message_size, 1024 * 1024);
/// assert!(config.health);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
#[non_exhaustive]
pub struct GrpcConfig {
    /// The protobuf package a client puts in front of the service part of an
    /// endpoint: with `helloworld`, endpoint `Greeter.SayHello` is called at
    /// `/helloworld.Greeter/SayHello`; empty (the default), at
    /// `/Greeter/SayHello`. Servers accept any package, so a micro handler is
    /// reachable whatever package the caller's `.proto` file declares.
    pub package: String,
    /// The largest message, in bytes, a server or client sends or accepts.
    /// A larger one fails with `ResourceExhausted` (gRPC status 8), judged
    /// from the frame's length prefix before the message is read. Default: 4 MiB.
    pub max_message_size: usize,
    /// How long a client waits for a TCP connection before the call fails
    /// with `Unavailable`. Default: 5 s.
    #[serde(with = "micro_core::duration::serde")]
    pub connect_timeout: Duration,
    /// Whether servers answer the standard gRPC health service
    /// (`grpc.health.v1.Health`). Default: true.
    pub health: bool,
    /// Whether servers answer gRPC server reflection (v1 and v1alpha), so
    /// grpcurl and similar tools can list services. Default: true.
    pub reflection: bool,
    /// How messages this transport sends are compressed: a client's requests,
    /// and a server's answers to callers that accept it. Whatever this says,
    /// gzip and identity are read, and a gzip request is answered with gzip.
    /// Default: identity (not compressed).
    pub compression: Compression,
    /// Files holding encoded `FileDescriptorSet`s (`protoc
    /// --descriptor_set_out=set.bin --include_imports`, or tonic-prost-build's
    /// `file_descriptor_set_path`) that server reflection describes, so tools
    /// such as grpcurl can list and describe the service's own methods. A file
    /// that cannot be read or parsed fails the build of the transport.
    /// Default: none.
    pub descriptor_set_files: Vec<PathBuf>,
    /// What a server allows its connections: how many, from whom, how long
    /// before the first call and between calls. See [`ConnectionLimits`].
    pub connections: ConnectionLimits,
    /// TLS for servers (when a certificate is set) and for clients dialing
    /// `https://` addresses (feature `tls`). See [`crate::tls`].
    #[cfg(feature = "tls")]
    pub tls: crate::tls::TlsConfig,
}

impl Default for GrpcConfig {
    fn default() -> GrpcConfig {
        GrpcConfig {
            package: String::new(),
            max_message_size: DEFAULT_MAX_BODY_SIZE,
            connect_timeout: Duration::from_secs(5),
            health: true,
            reflection: true,
            compression: Compression::Identity,
            descriptor_set_files: Vec::new(),
            connections: ConnectionLimits::default(),
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsConfig::default(),
        }
    }
}

impl GrpcConfig {
    /// The defaults, overridden by [`PACKAGE_ENV`], [`MAX_MESSAGE_SIZE_ENV`],
    /// [`COMPRESSION_ENV`], [`DESCRIPTOR_SET_ENV`] and the connection limits'
    /// variables ([`ConnectionLimits::from_env`]) where set. A size that
    /// is not a whole number, or a compression other than `gzip` or
    /// `identity`, is `InvalidArgument` naming the variable.
    pub fn from_env() -> Result<GrpcConfig> {
        GrpcConfig::from_lookup(|name| std::env::var(name).ok())
    }

    /// Like [`from_env`](GrpcConfig::from_env), reading variables through `lookup`.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<GrpcConfig> {
        let mut config = GrpcConfig {
            connections: ConnectionLimits::from_lookup(&lookup)?,
            #[cfg(feature = "tls")]
            tls: crate::tls::TlsConfig::from_lookup(&lookup)?,
            ..GrpcConfig::default()
        };
        if let Some(package) = lookup(PACKAGE_ENV) {
            config.package = package.trim().to_owned();
        }
        if let Some(size) = lookup(MAX_MESSAGE_SIZE_ENV).filter(|size| !size.trim().is_empty()) {
            config.max_message_size = size.trim().parse().map_err(|err| {
                Error::invalid_argument(format!(
                    "{MAX_MESSAGE_SIZE_ENV}={size:?} is not a whole number of bytes"
                ))
                .with_source(err)
            })?;
        }
        if let Some(name) = lookup(COMPRESSION_ENV).filter(|name| !name.trim().is_empty()) {
            config.compression = name
                .trim()
                .parse()
                .map_err(|err: Error| err.context(COMPRESSION_ENV))?;
        }
        if let Some(paths) = lookup(DESCRIPTOR_SET_ENV) {
            config.descriptor_set_files = paths
                .split(',')
                .map(str::trim)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
                .collect();
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use crate::ErrorKind;

    #[test]
    fn round_trips_through_json() {
        let config = GrpcConfig {
            package: "helloworld".into(),
            connect_timeout: Duration::from_millis(1500),
            ..GrpcConfig::default()
        };
        let json = serde_json::to_value(&config).unwrap();
        assert_eq!(json["connect_timeout"], "1s 500ms");
        assert_eq!(serde_json::from_value::<GrpcConfig>(json).unwrap(), config);
        assert!(serde_json::from_str::<GrpcConfig>(r#"{"pakage":"x"}"#).is_err());
    }

    #[test]
    fn reads_the_environment() {
        let vars = HashMap::from([
            (PACKAGE_ENV, " shop "),
            (MAX_MESSAGE_SIZE_ENV, "1024"),
            (COMPRESSION_ENV, "gzip"),
            (DESCRIPTOR_SET_ENV, "a/set.bin, b.bin"),
        ]);
        let config = GrpcConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap();
        assert_eq!(config.package, "shop");
        assert_eq!(config.max_message_size, 1024);
        assert_eq!(config.compression, Compression::Gzip);
        assert_eq!(
            config.descriptor_set_files,
            [PathBuf::from("a/set.bin"), PathBuf::from("b.bin")]
        );
        let vars = HashMap::from([(COMPRESSION_ENV, "br")]);
        let err =
            GrpcConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
        assert!(err.to_string().contains(COMPRESSION_ENV), "{err}");
        let vars = HashMap::from([(MAX_MESSAGE_SIZE_ENV, "4MB")]);
        let err =
            GrpcConfig::from_lookup(|name| vars.get(name).map(|v| v.to_string())).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument);
    }
}
