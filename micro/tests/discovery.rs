//! Discovery across processes: `greeter_server` and `greeter_client` find each
//! other by name with the registry chosen only by environment variables; a
//! SIGKILLed server is forgotten within its TTL; a SIGTERMed one deregisters
//! at once. One module per backend; see `discovery_support` for the harness
//! and how to add a backend.

#![cfg(unix)]

mod discovery_support;

use discovery_support as support;

#[cfg(feature = "registry-mdns")]
mod mdns {
    //! Every case in a network namespace it creates: the mDNS daemons of the
    //! test and of both processes run there, on its loopback only, so no mDNS
    //! packet reaches the host's interfaces. The services' HTTP stays on the
    //! host's 127.0.0.1. Needs root and iproute2.

    use std::{process::Command, time::Duration};

    use micro::registry::mdns::MdnsRegistry;

    use super::support::{self, Backend};

    /// A named namespace with loopback up and multicast on, deleted on drop.
    struct Netns(String);

    impl Netns {
        fn create() -> Netns {
            let name = format!(
                "micro-disc-{}-{:08x}",
                std::process::id(),
                rand::random::<u32>()
            );
            ip(&["netns", "add", &name]);
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
            ]);
            Netns(name)
        }
    }

    impl Drop for Netns {
        fn drop(&mut self) {
            let _ = Command::new("ip")
                .args(["netns", "delete", &self.0])
                .status();
        }
    }

    fn ip(args: &[&str]) {
        let status = Command::new("ip").args(args).status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "ip {} failed: the mDNS discovery tests need root and iproute2",
            args.join(" ")
        );
    }

    fn backend(netns: &Netns) -> Backend {
        let observer = MdnsRegistry::builder()
            .netns(&netns.0)
            .interfaces(["lo"])
            .discovery_wait(Duration::from_secs(1))
            .build()
            .expect("an mDNS registry in the test namespace");
        Backend::new("mdns", observer)
            .env("MICRO_REGISTRY", "mdns")
            .env("MICRO_MDNS_NETNS", &netns.0)
            .env("MICRO_MDNS_INTERFACES", "lo")
            .env("MICRO_MDNS_DISCOVERY_WAIT", "3s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn found_by_name() {
        let netns = Netns::create();
        support::found_by_name(backend(&netns)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_expires() {
        let netns = Netns::create();
        support::sigkill_expires(backend(&netns)).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_stop_deregisters() {
        let netns = Netns::create();
        support::clean_stop_deregisters(backend(&netns)).await;
    }
}

#[cfg(feature = "registry-gossip")]
mod gossip {
    //! Every case its own cluster: the test's observer member listens on a
    //! free loopback UDP port and is the seed of the server and the client.
    //! (The observer holds its port from the moment it is picked; a port
    //! picked here and handed to a process to bind later could be taken by
    //! anything picking a free port meanwhile.)

    use std::time::Duration;

    use micro::registry::gossip::GossipRegistry;

    use super::support::{self, Backend};

    /// Gossip every 100 ms: failure detection then takes about a second.
    const INTERVAL: &str = "100ms";

    fn backend() -> Backend {
        let cluster = format!("disc-{:08x}", rand::random::<u32>());
        let observer = GossipRegistry::builder()
            .listen("127.0.0.1:0")
            .cluster(&cluster)
            .gossip_interval(Duration::from_millis(100))
            .discovery_wait(Duration::from_secs(1))
            .build()
            .expect("a gossip member on loopback");
        let seed = observer.listen_address().to_string();
        // Server and client each gossip on a free port of their own and join
        // through the observer (MICRO_REGISTRY_ADDRESS lists seeds).
        Backend::new("gossip", observer)
            .env("MICRO_REGISTRY", "gossip")
            .env("MICRO_REGISTRY_ADDRESS", &seed)
            .env("MICRO_GOSSIP_CLUSTER", cluster)
            .env("MICRO_GOSSIP_INTERVAL", INTERVAL)
            .env("MICRO_GOSSIP_DISCOVERY_WAIT", "3s")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn found_by_name() {
        support::found_by_name(backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sigkill_expires() {
        support::sigkill_expires(backend()).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn clean_stop_deregisters() {
        support::clean_stop_deregisters(backend()).await;
    }
}
