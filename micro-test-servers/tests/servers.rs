//! The fixtures start real servers that answer, survive kill/restart with
//! their data, and die with their owner.

use std::time::Duration;

use micro_test_servers::{EtcdServer, NatsServer};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Connects and returns the first line the server sends (NATS sends INFO).
async fn first_line(port: u16) -> String {
    let stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("server accepts");
    let mut line = String::new();
    BufReader::new(stream)
        .read_line(&mut line)
        .await
        .expect("server greets");
    line
}

async fn refused(port: u16) -> bool {
    TcpStream::connect(("127.0.0.1", port)).await.is_err()
}

/// Puts a key through etcd's v3 JSON gateway and reads it back (base64 "a" = "YQ==").
async fn etcd_call(port: u16, path: &str, body: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("etcd accepts");
    let request = format!(
        "POST {path} HTTP/1.0\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(request.as_bytes()).await.expect("write");
    let mut response = String::new();
    tokio::io::AsyncReadExt::read_to_string(&mut stream, &mut response)
        .await
        .expect("read");
    response
}

#[tokio::test]
async fn nats_server_answers_and_survives_kill_and_restart() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    assert!(nats.url().starts_with("nats://127.0.0.1:"));
    assert!(first_line(nats.port()).await.starts_with("INFO "));
    nats.kill().await;
    assert!(
        refused(nats.port()).await,
        "a killed server still accepts connections"
    );
    nats.restart().await;
    assert!(first_line(nats.port()).await.starts_with("INFO "));
}

#[tokio::test]
async fn nats_server_dies_on_drop() {
    let Some(nats) = NatsServer::start().await else {
        return;
    };
    let port = nats.port();
    drop(nats);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !refused(port).await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "nats-server outlived its fixture"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn shared_nats_server_is_one_server() {
    let (Some(a), Some(b)) = (NatsServer::shared().await, NatsServer::shared().await) else {
        return;
    };
    assert_eq!(a.url(), b.url());
}

#[tokio::test]
async fn etcd_keeps_data_across_kill_and_restart() {
    let Some(etcd) = EtcdServer::start().await else {
        return;
    };
    let put = etcd_call(
        etcd.port(),
        "/v3/kv/put",
        r#"{"key":"YQ==","value":"Yg=="}"#,
    )
    .await;
    assert!(put.contains(" 200 "), "{put}");
    etcd.kill().await;
    assert!(
        refused(etcd.port()).await,
        "a killed etcd still accepts connections"
    );
    etcd.restart().await;
    let got = etcd_call(etcd.port(), "/v3/kv/range", r#"{"key":"YQ=="}"#).await;
    assert!(
        got.contains(r#""value":"Yg==""#),
        "the key did not survive a restart: {got}"
    );
}
