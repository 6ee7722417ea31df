//! Hooks: the `users` service changes a password and publishes
//! `user.password_changed`; the `email` service, subscribed to that hook,
//! sends (prints) the email. `users` never calls `email`, nor knows it exists.
//!
//! ```sh
//! cargo run --example hooks
//! ```

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

    // The example exits once the email went out; a real email service just keeps running.
    let (sent_tx, mut sent_rx) = mpsc::channel::<u64>(1);
    let email = micro::Service::builder("email")
        .subscribe(PASSWORD_CHANGED, move |_ctx, event: PasswordChanged| {
            let sent = sent_tx.clone();
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
        })
        .build_from_env()?
        .start()
        .await?;

    let users = micro::Service::builder("users")
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
        .build_from_env()?
        .start()
        .await?;

    let client = users.client();
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
