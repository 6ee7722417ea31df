//! A running service reads its settings from a watched configuration file:
//! a good edit reaches its handlers, and a corrupted file leaves the service
//! serving on its last good configuration while the watch reports the error.

use std::{path::Path, time::Duration};

use futures::StreamExt;
use micro::{
    Context, ErrorKind, Service,
    config::{Config, FileSource, WatchStream},
    registry::memory::MemoryRegistry,
    transport::memory::MemoryTransport,
};

const WAIT: Duration = Duration::from_secs(20);

/// Replaces the file the way deployment tools do: write aside, rename over.
async fn write(path: &Path, content: &str) {
    let aside = path.with_extension("tmp");
    tokio::fs::write(&aside, content)
        .await
        .expect("writing the config");
    tokio::fs::rename(&aside, path)
        .await
        .expect("replacing the config");
}

async fn next<T>(watch: &mut WatchStream<T>) -> micro::Result<T> {
    tokio::time::timeout(WAIT, watch.next())
        .await
        .expect("a config watch item in time")
        .expect("the config watch goes on")
}

#[tokio::test(flavor = "multi_thread")]
async fn corrupted_config_file_keeps_the_service_on_its_last_good_configuration() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let path = dir.path().join("greeter.yaml");
    write(&path, "greeting: Hello\npunctuation: \"!\"\n").await;
    let config = Config::builder()
        .source(FileSource::new(&path).expect("a YAML file"))
        .build()
        .await
        .expect("loading the config");

    let registry = MemoryRegistry::new();
    let transport = MemoryTransport::new();
    let service = Service::builder("greeter")
        .registry(registry.clone())
        .transport(transport.clone())
        .config(config.clone())
        .handle("Greeter.Hello", |ctx: Context, name: String| async move {
            let config = ctx.config();
            let greeting: String = config.get("greeting")?;
            let punctuation: String = config.get_or("punctuation", String::new())?;
            Ok(format!("{greeting}, {name}{punctuation}"))
        })
        .build()
        .expect("building the service");
    assert!(service.config().is_some());
    let running = service.start().await.expect("starting the service");
    let client = running.client();
    let greet = || async {
        client
            .call::<_, String>("greeter", "Greeter.Hello", &"Ada")
            .await
            .expect("the greeter answers")
    };
    assert_eq!(greet().await, "Hello, Ada!");

    let mut greetings = config.watch::<String>("greeting");
    write(&path, "greeting: Hi\npunctuation: \"!\"\n").await;
    assert_eq!(next(&mut greetings).await.expect("the new greeting"), "Hi");
    assert_eq!(greet().await, "Hi, Ada!");

    write(&path, "greeting: [this is not\n  valid: yaml").await;
    let error = next(&mut greetings)
        .await
        .expect_err("the watch reports the corrupted file");
    assert_eq!(error.kind(), ErrorKind::InvalidArgument, "{error}");
    assert!(error.message().contains("greeter.yaml"), "{error}");
    assert_eq!(
        greet().await,
        "Hi, Ada!",
        "the last good configuration stays"
    );
    assert_eq!(config.get::<String>("greeting").unwrap(), "Hi");

    write(&path, "greeting: Hey\n").await;
    let repaired = loop {
        match next(&mut greetings).await {
            Ok(greeting) => break greeting,
            // A save can show as more than one event; each failed read is reported.
            Err(err) => assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{err}"),
        }
    };
    assert_eq!(repaired, "Hey");
    assert_eq!(greet().await, "Hey, Ada");

    running.stop().await.expect("stopping the service");
}

#[tokio::test]
async fn handlers_without_a_config_read_an_empty_one() {
    let ctx = Context::new("svc", "Svc.Call");
    let err = ctx.config().get::<String>("anything").unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
}
