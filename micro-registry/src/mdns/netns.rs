//! Starting the mDNS daemon inside a network namespace.
//!
//! mdns-sd opens its sockets, and joins the mDNS multicast group on every
//! interface that is up, from its own thread as soon as it starts: before any
//! interface restriction can reach it. To keep every packet (multicast group
//! membership reports included) inside a namespace, the daemon is started from
//! a short-lived thread that first moves itself into that namespace; the
//! daemon's thread inherits it, and with it all of the daemon's sockets. The
//! rest of the process stays where it was.

use mdns_sd::ServiceDaemon;

use crate::{Error, Result};

/// A daemon on `port` in the current network namespace, or in `netns` (a name
/// under `/var/run/netns`, or a path) when given.
pub(super) fn start_daemon(port: u16, netns: Option<&str>) -> Result<ServiceDaemon> {
    match netns {
        None => new_daemon(port),
        Some(netns) => in_netns(netns, move || new_daemon(port)),
    }
}

fn new_daemon(port: u16) -> Result<ServiceDaemon> {
    ServiceDaemon::new_with_port(port)
        .map_err(|err| Error::unavailable(format!("starting the mDNS daemon: {err}")))
}

#[cfg(target_os = "linux")]
fn in_netns<T: Send>(netns: &str, start: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    use std::{fs::File, os::fd::AsFd, path::PathBuf};

    use rustix::thread::{LinkNameSpaceType, move_into_link_name_space};

    let path = if netns.contains('/') {
        PathBuf::from(netns)
    } else {
        PathBuf::from("/var/run/netns").join(netns)
    };
    let namespace = File::open(&path).map_err(|err| {
        Error::invalid_argument(format!(
            "network namespace {netns:?} ({}) cannot be opened: {err}",
            path.display()
        ))
    })?;
    std::thread::scope(|scope| {
        scope
            .spawn(|| {
                move_into_link_name_space(namespace.as_fd(), Some(LinkNameSpaceType::Network))
                    .map_err(|err| {
                        Error::unavailable(format!(
                            "entering network namespace {netns:?}: {err} (needs CAP_SYS_ADMIN)"
                        ))
                    })?;
                start()
            })
            .join()
            .unwrap_or_else(|_| Err(Error::internal("the mDNS start-up thread panicked")))
    })
}

#[cfg(not(target_os = "linux"))]
fn in_netns<T: Send>(netns: &str, _start: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    Err(Error::invalid_argument(format!(
        "network namespace {netns:?}: network namespaces exist only on Linux"
    )))
}
