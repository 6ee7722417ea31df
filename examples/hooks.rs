//! Hooks: the `users` service changes a password and publishes
//! `user.password_changed`; the `email` service, subscribed to that hook,
//! sends (prints) the email. `users` never calls `email`, nor knows it exists.
//!
//! In one process (the memory broker and registry):
//!
//! ```sh
//! cargo run --example hooks
//! ```
//!
//! As two processes: the same code, only the environment picks the broker.
//! Over NATS:
//!
//! ```sh
//! export MICRO_BROKER=nats MICRO_BROKER_ADDRESS=nats://127.0.0.1:4222
//! cargo run -p micro-examples --features full --example hooks -- subscriber &
//! cargo run -p micro-examples --features full --example hooks -- publisher
//! ```
//!
//! Over the HTTP broker (no broker server: the publisher finds the `email`
//! subscription in the registry and posts the event to it), with a registry
//! both processes share, e.g. NATS or etcd:
//!
//! ```sh
//! export MICRO_BROKER=http MICRO_REGISTRY=etcd MICRO_REGISTRY_ADDRESS=http://127.0.0.1:2379
//! cargo run -p micro-examples --features full --example hooks -- subscriber &
//! cargo run -p micro-examples --features full --example hooks -- publisher
//! ```
//!
//! `subscriber [--emails N]` runs the `email` service until SIGINT/SIGTERM,
//! or until it sent N emails; `publisher` changes two passwords (one is
//! refused as too weak) and exits.

use micro_examples::{PASSWORD_CHANGED, PasswordChanged, init_logging};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

#[derive(Debug, Serialize, Deserialize)]
struct ChangePassword {
    user_id: u64,
    new_password: String,
}

#[tokio::main]
async fn main() -> micro::Result<()> {
    init_logging();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        None => both_in_one_process().await,
        Some("subscriber") => subscriber(emails_limit(&args[1..])?).await,
        Some("publisher") => publisher().await,
        Some(other) => Err(micro::Error::invalid_argument(format!(
            "unknown mode `{other}`: expected `subscriber [--emails N]`, `publisher`, or nothing"
        ))),
    }
}

fn emails_limit(args: &[String]) -> micro::Result<Option<u64>> {
    match args {
        [] => Ok(None),
        [flag, count] if flag == "--emails" => count.parse().map(Some).map_err(|_| {
            micro::Error::invalid_argument(format!("--emails needs a number, got `{count}`"))
        }),
        _ => Err(micro::Error::invalid_argument(
            "usage: hooks subscriber [--emails N]",
        )),
    }
}

/// The `email` service: one email per `user.password_changed` event. Each
/// email sent is reported on `sent`.
fn email_service(sent: mpsc::Sender<u64>) -> micro::Result<micro::Service> {
    micro::Service::builder("email")
        .server(micro::Server::new().subscribe(
            PASSWORD_CHANGED,
            move |_ctx, event: PasswordChanged| {
                let sent = sent.clone();
                async move {
                    println!(
                        "email to {}: your password was changed (user {})",
                        event.email, event.user_id
                    );
                    sent.send(event.user_id)
                        .await
                        .map_err(|_| micro::Error::internal("example ended"))?;
                    Ok(())
                }
            },
        ))
        .build_from_env()
}

/// The `users` service: changes passwords and publishes the hook.
fn users_service() -> micro::Result<micro::Service> {
    micro::Service::builder("users")
        .handle(
            "Users.ChangePassword",
            |ctx, request: ChangePassword| async move {
                if request.new_password.len() < 8 {
                    return Err(micro::Error::invalid_argument(
                        "password must have 8 characters or more",
                    ));
                }
                // ... store the new password hash ...
                let event = PasswordChanged {
                    user_id: request.user_id,
                    email: format!("user{}@example.com", request.user_id),
                };
                ctx.client().publish(PASSWORD_CHANGED, &event).await?;
                println!(
                    "users: password of user {} changed, hook published",
                    request.user_id
                );
                Ok(())
            },
        )
        .build_from_env()
}

/// Changes a good password (published) and a weak one (refused).
async fn change_passwords(client: &micro::Client) -> micro::Result<()> {
    let request = ChangePassword {
        user_id: 42,
        new_password: "correct horse battery".to_owned(),
    };
    client
        .call::<_, ()>("users", "Users.ChangePassword", &request)
        .await?;

    let weak = ChangePassword {
        user_id: 7,
        new_password: "short".to_owned(),
    };
    let refused = client
        .call::<_, ()>("users", "Users.ChangePassword", &weak)
        .await;
    if let Err(error) = refused {
        println!("users: refused a weak password ({})", error.kind());
    }
    Ok(())
}

async fn both_in_one_process() -> micro::Result<()> {
    // The example exits once the email went out; a real email service just keeps running.
    let (sent_tx, mut sent_rx) = mpsc::channel::<u64>(1);
    let email = email_service(sent_tx)?.start().await?;
    let users = users_service()?.start().await?;
    change_passwords(&users.client()).await?;

    match tokio::time::timeout(std::time::Duration::from_secs(10), sent_rx.recv()).await {
        Ok(Some(user_id)) => println!("email service confirmed the email to user {user_id}"),
        _ => {
            return Err(micro::Error::timeout(
                "the email service did not send the email",
            ));
        }
    }

    users.stop().await?;
    email.stop().await
}

async fn subscriber(limit: Option<u64>) -> micro::Result<()> {
    let (sent_tx, mut sent_rx) = mpsc::channel::<u64>(16);
    let email = email_service(sent_tx)?;
    println!(
        "email: subscribing to {PASSWORD_CHANGED} on the {} broker",
        email.broker().scheme()
    );
    let sent_enough = async move {
        let mut sent = 0;
        while sent_rx.recv().await.is_some() {
            sent += 1;
            if limit.is_some_and(|limit| sent >= limit) {
                return;
            }
        }
    };
    let running = email.start().await?;
    // Subscribed and registered: a publisher started now reaches this process.
    println!("email: ready");
    tokio::select! {
        () = sent_enough => {}
        () = shutdown_signal() => {}
    }
    running.stop().await
}

async fn publisher() -> micro::Result<()> {
    let users = users_service()?;
    println!(
        "users: publishing on the {} broker",
        users.broker().scheme()
    );
    let users = users.start().await?;
    let changed = change_passwords(&users.client()).await;
    users.stop().await?;
    changed
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut terminate) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = terminate.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
            return;
        }
    }
    let _ = tokio::signal::ctrl_c().await;
}
