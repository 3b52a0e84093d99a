//! `get`, `set`, `delete`, `incr`, `decr`.

use std::io::{Read, Write};

use mcstore_client::{Client, Error};

use crate::{Failure, Outcome};

pub async fn get(client: &Client, key: &str) -> Outcome {
    match client.get(key).await? {
        Some(item) => {
            let mut out = std::io::stdout().lock();
            out.write_all(&item.value)?;
            if std::io::IsTerminal::is_terminal(&out) {
                out.write_all(b"\n")?;
            }
            Ok(())
        }
        None => Err(Failure::Negative(format!("{key}: not found"))),
    }
}

pub async fn set(client: &Client, key: &str, value: &str, flags: u32, exptime: i32) -> Outcome {
    let value = if value == "-" {
        let mut data = Vec::new();
        std::io::stdin().read_to_end(&mut data)?;
        data
    } else {
        value.as_bytes().to_vec()
    };
    client.set(key, value, flags, exptime).await?;
    Ok(())
}

pub async fn delete(client: &Client, key: &str) -> Outcome {
    match client.delete(key).await {
        Err(Error::NotFound) => Err(Failure::Negative(format!("{key}: not found"))),
        other => Ok(other?),
    }
}

pub async fn arithmetic(client: &Client, key: &str, delta: u64, increment: bool) -> Outcome {
    let result = if increment {
        client.incr(key, delta).await
    } else {
        client.decr(key, delta).await
    };
    match result {
        Ok(value) => {
            println!("{value}");
            Ok(())
        }
        Err(Error::NotFound) => Err(Failure::Negative(format!("{key}: not found"))),
        Err(err) => Err(err.into()),
    }
}
