//! The two servers (micro and plain axum) and the clients that call them,
//! started once and driven as any of the four client/server pairs.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use micro::transport::http::HttpTransport;

use crate::{
    EchoReply, EchoRequest, axum_peer, axum_peer::AxumClient, echo, measure, measure::Summary,
    sample_request,
};

/// Which client calls which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pair {
    /// micro's client, by service name, to micro's server.
    Micro,
    /// A plain hyper client to the axum server.
    Axum,
    /// micro's client, by address, to the axum server: micro's client-side cost.
    MicroToAxum,
    /// A plain hyper client to micro's server: micro's server-side cost.
    HyperToMicro,
}

impl Pair {
    /// Every pair, in the order they are named on the command line.
    const ALL: [Pair; 4] = [
        Pair::Micro,
        Pair::Axum,
        Pair::MicroToAxum,
        Pair::HyperToMicro,
    ];

    /// The short name printed in result rows and taken on the command line.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Pair::Micro => "micro",
            Pair::Axum => "axum",
            Pair::MicroToAxum => "mc>ax",
            Pair::HyperToMicro => "hy>mc",
        }
    }

    /// The pair named `label`.
    pub(crate) fn parse(label: &str) -> micro::Result<Pair> {
        Pair::ALL
            .into_iter()
            .find(|pair| pair.label() == label)
            .ok_or_else(|| {
                micro::Error::invalid_argument(format!(
                    "unknown peer {label:?}: expected micro, axum, mc>ax, hy>mc or memory"
                ))
            })
    }
}

/// Both servers on loopback and a client for each pair.
pub(crate) struct Peers {
    service: micro::RunningService,
    micro_client: micro::Client,
    axum_address: SocketAddr,
    axum_client: AxumClient,
    hyper_to_micro: AxumClient,
}

impl Peers {
    /// Starts micro's server (HTTP transport) and the axum server, each serving [`echo`].
    pub(crate) async fn start() -> micro::Result<Peers> {
        let service = micro::Service::builder("bench")
            .transport(Arc::new(HttpTransport::new()))
            .handle("Bench.Echo", |_ctx, request: EchoRequest| async move {
                Ok(echo(request))
            })
            .build()?
            .start()
            .await?;
        let micro_server: SocketAddr = service
            .address()
            .parse()
            .map_err(|error| micro::Error::internal("micro server address").with_source(error))?;
        let axum_address = axum_peer::serve().await?;
        let peer_address = |error| micro::Error::internal("peer address").with_source(error);
        Ok(Peers {
            micro_client: service.client(),
            axum_client: AxumClient::new(axum_address).map_err(peer_address)?,
            hyper_to_micro: AxumClient::new(micro_server).map_err(peer_address)?,
            axum_address,
            service,
        })
    }

    /// Drives `pair` from `concurrency` workers for `duration`; a call counts
    /// as successful only when its reply answers its request.
    pub(crate) async fn load(&self, pair: Pair, concurrency: usize, duration: Duration) -> Summary {
        match pair {
            Pair::Micro | Pair::MicroToAxum => {
                let client = self.micro_client.clone();
                let address = (pair == Pair::MicroToAxum).then(|| self.axum_address.to_string());
                measure::closed_loop(concurrency, duration, move || {
                    let (client, address) = (client.clone(), address.clone());
                    async move {
                        let request = sample_request();
                        let reply = match &address {
                            Some(address) => {
                                client
                                    .call_address::<_, EchoReply>(address, "Bench.Echo", &request)
                                    .await
                            }
                            None => {
                                client
                                    .call::<_, EchoReply>("bench", "Bench.Echo", &request)
                                    .await
                            }
                        };
                        reply.is_ok_and(|reply| reply.id == request.id)
                    }
                })
                .await
            }
            Pair::Axum | Pair::HyperToMicro => {
                let client = match pair {
                    Pair::Axum => self.axum_client.clone(),
                    _ => self.hyper_to_micro.clone(),
                };
                measure::closed_loop(concurrency, duration, move || {
                    let client = client.clone();
                    async move { client.call(&sample_request()).await }
                })
                .await
            }
        }
    }

    /// Runs `first` and `second` in `rounds` alternating rounds of `round`
    /// each, so that drift in the machine's load hits both alike.
    pub(crate) async fn alternate(
        &self,
        (first, second): (Pair, Pair),
        concurrency: usize,
        rounds: u32,
        round: Duration,
    ) -> (Summary, Summary) {
        let (mut first_runs, mut second_runs) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            first_runs.push(self.load(first, concurrency, round).await);
            second_runs.push(self.load(second, concurrency, round).await);
        }
        (Summary::merge(first_runs), Summary::merge(second_runs))
    }

    /// Stops micro's server.
    pub(crate) async fn stop(self) -> micro::Result<()> {
        self.service.stop().await
    }
}
