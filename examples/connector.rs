//! Send/reply of any serde type: strings, integers, floats, lists, maps,
//! structs, several values at once as a tuple, and replies with nothing in
//! them (unit, `None`). Each call prints what went in and came back, with types.
//!
//! ```sh
//! cargo run --example connector
//! ```

use std::{collections::BTreeMap, fmt::Debug};

use micro_examples::init_logging;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Point {
    x: f64,
    y: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct User {
    id: u64,
    name: String,
    tags: Vec<String>,
    home: Option<Point>,
}

#[tokio::main]
async fn main() -> micro::Result<()> {
    init_logging();

    let running = micro::Service::builder("connector")
        .handle("Connector.Upper", |_ctx, text: String| async move {
            Ok(text.to_uppercase())
        })
        .handle("Connector.Double", |_ctx, n: i64| async move {
            n.checked_mul(2)
                .ok_or_else(|| micro::Error::new(micro::ErrorKind::OutOfRange, "overflow"))
        })
        .handle("Connector.Sqrt", |_ctx, x: f64| async move { Ok(x.sqrt()) })
        .handle("Connector.Sort", |_ctx, mut list: Vec<i32>| async move {
            list.sort_unstable();
            Ok(list)
        })
        .handle("Connector.Count", |_ctx, words: Vec<String>| async move {
            let mut counts = BTreeMap::<String, usize>::new();
            for word in words {
                *counts.entry(word).or_default() += 1;
            }
            Ok(counts)
        })
        .handle("Connector.Move", |_ctx, point: Point| async move {
            Ok(Point {
                x: point.x + 1.0,
                y: point.y - 1.0,
            })
        })
        // Several arguments and several results: tuples.
        .handle("Connector.DivMod", |_ctx, (a, b): (i64, i64)| async move {
            if b == 0 {
                return Err(micro::Error::invalid_argument("division by zero"));
            }
            Ok((a / b, a % b))
        })
        .handle("Connector.FindUser", |_ctx, id: u64| async move {
            let ada = User {
                id: 1,
                name: "Ada".into(),
                tags: vec!["admin".into()],
                home: None,
            };
            Ok(if id == ada.id { Some(ada) } else { None })
        })
        .handle("Connector.Log", |_ctx, line: String| async move {
            eprintln!("connector log: {line}");
            Ok(())
        })
        .build_from_env()?
        .start()
        .await?;
    let client = running.client();

    show::<_, String>(&client, "string", "Connector.Upper", "hello".to_owned()).await?;
    show::<_, i64>(&client, "integer", "Connector.Double", 21_i64).await?;
    show::<_, f64>(&client, "float", "Connector.Sqrt", 2.0_f64).await?;
    show::<_, Vec<i32>>(&client, "list", "Connector.Sort", vec![3, 1, 2]).await?;
    let words: Vec<String> = ["a", "b", "a"].map(String::from).to_vec();
    show::<_, BTreeMap<String, usize>>(&client, "map", "Connector.Count", words).await?;
    show::<_, Point>(
        &client,
        "struct",
        "Connector.Move",
        Point { x: 1.0, y: 2.0 },
    )
    .await?;
    show::<_, (i64, i64)>(&client, "tuple", "Connector.DivMod", (17_i64, 5_i64)).await?;
    show::<_, Option<User>>(&client, "some", "Connector.FindUser", 1_u64).await?;
    show::<_, Option<User>>(&client, "none", "Connector.FindUser", 2_u64).await?;
    show::<_, ()>(
        &client,
        "unit",
        "Connector.Log",
        "nothing to return".to_owned(),
    )
    .await?;

    running.stop().await
}

/// Calls `endpoint` with `request` and prints both sides with their types.
async fn show<Req, Resp>(
    client: &micro::Client,
    label: &str,
    endpoint: &str,
    request: Req,
) -> micro::Result<()>
where
    Req: Serialize + Debug + Send + Sync,
    Resp: DeserializeOwned + Debug + Send,
{
    let reply: Resp = client.call("connector", endpoint, &request).await?;
    println!(
        "{label:<8} {endpoint:<18} {request:?}: {} -> {reply:?}: {}",
        short_type_name::<Req>(),
        short_type_name::<Resp>()
    );
    Ok(())
}

/// `alloc::vec::Vec<i32>` -> `Vec<i32>`: type names without their module paths.
fn short_type_name<T>() -> String {
    let full = std::any::type_name::<T>();
    let mut short = String::with_capacity(full.len());
    let mut segment = String::new();
    let mut chars = full.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            segment.push(c);
        } else if c == ':' && chars.peek() == Some(&':') {
            // `segment` was a module path component: drop it.
            chars.next();
            segment.clear();
        } else {
            short.push_str(&segment);
            segment.clear();
            short.push(c);
        }
    }
    short.push_str(&segment);
    short
}
