//! The event path's own Redis connection against a real redis-server: batches answered in
//! order and each command on its own, many batches at once, a server restarted or hung under
//! a batch in flight, and the client's rules on who to be (user, password, database).

mod support;

use std::time::Duration;

use callpush::redis_conn::wire::{Commands, Reply, WireConn};
use redis::{ErrorKind, IntoConnectionInfo};
use support::redis_server::{RedisOptions, RedisServer, TLS_PASSWORD, TLS_USER};

fn wire(url: &str, response_timeout: Duration) -> WireConn {
    let info = url.into_connection_info().unwrap();
    WireConn::for_info(&info, Duration::from_secs(2), response_timeout).expect("plain TCP")
}

fn set_get(key: &str, value: &str) -> Commands {
    let mut c = Commands::with_capacity(128);
    c.command(3).arg("SET").arg(key).arg(value);
    c.command(2).arg("GET").arg(key);
    c
}

fn texts(replies: &callpush::redis_conn::wire::Replies) -> Vec<String> {
    replies
        .iter()
        .map(|r| match r {
            Reply::Nil => "nil".to_string(),
            Reply::Int(n) => n.to_string(),
            Reply::Error(e) => format!("-{}", String::from_utf8_lossy(e)),
            Reply::Array(items) => format!("[{}]", items.remaining()),
            other => other.text().unwrap().into_owned(),
        })
        .collect()
}

#[tokio::test]
async fn a_batch_is_answered_in_order_and_a_refused_command_fails_alone() {
    let redis = RedisServer::start().await;
    let conn = wire(&redis.url(), Duration::from_secs(3));
    let mut c = Commands::with_capacity(256);
    c.command(3).arg("SET").arg("s").arg("text");
    c.command(3).arg("HSET").arg("s").arg("f"); // wrong type: refused
    c.command(4).arg("HSET").arg("h").arg("f").arg("v");
    c.command(2).arg("HGETALL").arg("h");
    c.command(2).arg("GET").arg("missing");
    c.command(1).arg("MULTI");
    c.command(4).arg("HSETNX").arg("h").arg("f").arg("w");
    c.command(3).arg("HGET").arg("h").arg("f");
    c.command(1).arg("EXEC");
    // HSET with a field and no value is a syntax error the server answers on its own line.
    let replies = conn.send(c).await.unwrap();
    let got = texts(&replies);
    assert_eq!(got[0], "OK");
    assert!(got[1].starts_with("-ERR wrong number"), "{got:?}");
    assert_eq!(got[2..6], ["1", "[2]", "nil", "OK"]);
    assert_eq!(got[6..9], ["QUEUED", "QUEUED", "[2]"]);
    let mut it = replies.iter().skip(8);
    let Some(Reply::Array(mut exec)) = it.next() else {
        panic!("EXEC answers an array")
    };
    assert!(matches!(exec.next(), Some(Reply::Int(0))));
    assert!(matches!(exec.next(), Some(Reply::Bulk(b"v"))));

    let mut c = Commands::with_capacity(64);
    c.command(4).arg("HSET").arg("s").arg("f").arg("v");
    let refused = conn.send(c).await.unwrap();
    let err = refused.iter().next().unwrap().ok().unwrap_err();
    assert_eq!(err.code(), Some("WRONGTYPE"));
}

#[tokio::test]
async fn many_batches_at_once_each_get_their_own_replies() {
    let redis = RedisServer::start().await;
    let conn = wire(&redis.url(), Duration::from_secs(3));
    let tasks: Vec<_> = (0..64)
        .map(|i| {
            let conn = conn.clone();
            tokio::spawn(async move {
                // Batches of different sizes, some large enough to arrive in several reads.
                let value = format!("{i}-{}", "x".repeat(i * 1000));
                let mut c = Commands::with_capacity(value.len() * (i + 1) + 64);
                for _ in 0..=i {
                    c.command(3).arg("SET").arg(format!("k{i}")).arg(&value);
                    c.command(2).arg("GET").arg(format!("k{i}"));
                }
                let replies = conn.send(c).await.unwrap();
                assert_eq!(replies.len(), 2 * (i + 1));
                for (n, reply) in replies.iter().enumerate() {
                    let want = if n % 2 == 0 { "OK" } else { value.as_str() };
                    assert_eq!(reply.text().unwrap(), want, "batch {i} reply {n}");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_restarted_server_fails_the_batch_in_flight_as_transient_and_the_next_reconnects() {
    let mut redis = RedisServer::start().await;
    let conn = wire(&redis.url(), Duration::from_secs(3));
    conn.send(set_get("a", "1")).await.unwrap();
    // In flight when the server goes away: a BLPOP of an empty list holds the answer back.
    let mut c = Commands::with_capacity(64);
    c.command(3).arg("BLPOP").arg("empty").arg("0");
    let sleeping = tokio::spawn({
        let conn = conn.clone();
        async move { conn.send(c).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    redis.stop().await;
    let err = sleeping.await.unwrap().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    let down = conn.send(set_get("b", "2")).await.unwrap_err();
    assert_eq!(down.kind(), ErrorKind::Io, "{down}");
    redis.restart().await;
    let replies = conn.send(set_get("c", "3")).await.unwrap();
    assert_eq!(texts(&replies), ["OK", "3"]);
}

#[tokio::test]
async fn a_hung_server_times_the_batch_out_and_the_connection_is_made_anew() {
    let redis = RedisServer::start().await;
    let conn = wire(&redis.url(), Duration::from_millis(500));
    conn.send(set_get("a", "1")).await.unwrap();
    redis.pause();
    let err = conn.send(set_get("b", "2")).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.to_string().contains("in time"), "{err}");
    redis.resume();
    let replies = conn.send(set_get("c", "3")).await.unwrap();
    assert_eq!(texts(&replies), ["OK", "3"]);
}

#[tokio::test]
async fn it_connects_as_the_url_says_user_password_and_database() {
    let redis = RedisServer::start_with(RedisOptions {
        tls: true,
        ..RedisOptions::default()
    })
    .await;
    let port = redis.port();
    let password = TLS_PASSWORD.replace(' ', "%20");
    let url = format!("redis://{TLS_USER}:{password}@127.0.0.1:{port}/3");
    let conn = wire(&url, Duration::from_secs(3));
    conn.send(set_get("in-db-3", "yes")).await.unwrap();
    let mut plain = redis::Client::open(url.as_str())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap();
    let got: Option<String> = redis::cmd("GET")
        .arg("in-db-3")
        .query_async(&mut plain)
        .await
        .unwrap();
    assert_eq!(got.as_deref(), Some("yes"), "written to database 3");

    let wrong = format!("redis://{TLS_USER}:wrong@127.0.0.1:{port}");
    let err = wire(&wrong, Duration::from_secs(3))
        .send(set_get("x", "1"))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("AUTH"), "{err}");
    assert_eq!(err.kind(), ErrorKind::AuthenticationFailed, "{err}");

    let tls = redis.tls_url().into_connection_info().unwrap();
    assert!(
        WireConn::for_info(&tls, Duration::from_secs(1), Duration::from_secs(1)).is_none(),
        "rediss:// stays with the client"
    );
}
