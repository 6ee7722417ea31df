//! Network namespaces for mDNS tests: every mDNS packet of a test stays on the
//! loopback interface of a namespace the test created, never on the host's
//! interfaces (mdns-sd joins the multicast group on every interface it sees).

#![allow(dead_code, unreachable_pub)]

use std::{process::Command, time::Duration};

use micro_registry::mdns::MdnsRegistry;

/// A named network namespace with its loopback up and multicast on; deleted on drop
/// (a daemon started in it keeps it alive until the daemon ends).
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// A new namespace, or `None` (after a loud message) when this machine
    /// cannot make one (not root, no `ip`) and `MICRO_TEST_REQUIRE_SERVERS` is
    /// unset; with it set, that is a failure.
    pub fn create() -> Option<Netns> {
        let name = format!(
            "micro-mdns-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let made = ip(&["netns", "add", &name]).and_then(|()| {
            ip(&[
                "-n",
                &name,
                "link",
                "set",
                "dev",
                "lo",
                "up",
                "multicast",
                "on",
            ])
        });
        match made {
            Ok(()) => Some(Netns { name }),
            Err(err) if std::env::var_os("MICRO_TEST_REQUIRE_SERVERS").is_some() => {
                panic!("cannot create a network namespace for the mDNS tests: {err}")
            }
            Err(err) => {
                eprintln!(
                    "SKIPPING mDNS test: cannot create a network namespace ({err}); \
                     run as root with iproute2 installed"
                );
                None
            }
        }
    }

    /// An mDNS registry whose daemon runs in this namespace, restricted to its loopback.
    pub fn registry(&self) -> MdnsRegistry {
        MdnsRegistry::builder()
            .netns(&self.name)
            .interfaces(["lo"])
            .discovery_wait(Duration::from_millis(300))
            .build()
            .expect("starting an mDNS registry in the test namespace")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "delete", &self.name]);
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let output = Command::new("ip")
        .args(args)
        .output()
        .map_err(|err| format!("running ip {}: {err}", args.join(" ")))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        ))
    }
}
