//! The Redis part of `callpush check`: reachable, its version, cluster mode, and the ACL.
//!
//! The ACL is checked by running each command callpush sends in a form that changes nothing
//! (a conditional write on a key that does not exist, a read of a group that does not exist):
//! Redis checks a command's permission before it runs it, so `NOPERM` says the user may not run
//! it, and any other answer (even an error such as `NOGROUP`) says it may. This works for any
//! user, where `ACL DRYRUN` needs an admin. The only key touched is `<p>check:probe`, a hash
//! written and deleted again.

use redis::{ErrorKind, RedisError, ServerErrorKind};

use super::{Finding, PROBE_TIMEOUT};
use crate::config::Settings;
use crate::daemon::redacted_url;
use crate::redis_conn::{self, RedisConn};

const SUBJECT: &str = "redis";

/// What Redis says about itself and the user.
pub(super) async fn check(settings: &Settings) -> Vec<Finding> {
    let url = redacted_url(&settings.redis.url);
    let conn = match tokio::time::timeout(PROBE_TIMEOUT, redis_conn::connect(&settings.redis)).await
    {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => return vec![unreachable(&url, &e)],
        Err(_) => {
            return vec![Finding::problem(
                SUBJECT,
                format!("{url} did not answer within {} s", PROBE_TIMEOUT.as_secs()),
                "check redis.url, that Redis runs and that this host may reach it",
            )]
        }
    };
    let mut found = Vec::new();
    let server = info(&conn, "server").await;
    let cluster = info(&conn, "cluster").await;
    let version = field(&server, "redis_version").unwrap_or("unknown");
    let clustered = field(&cluster, "cluster_enabled") == Some("1");
    let mode = if clustered { "cluster" } else { "standalone" };
    match (clustered, settings.redis.cluster) {
        (true, false) => found.push(Finding::problem(
            SUBJECT,
            format!("{url} is a Redis Cluster node (Redis {version})"),
            "set redis.cluster = true (and list the seed nodes in redis.urls)",
        )),
        (false, true) => found.push(Finding::problem(
            SUBJECT,
            format!("{url} is not a cluster (Redis {version}), but redis.cluster = true"),
            "set redis.cluster = false",
        )),
        _ => {}
    }
    let key = format!("{}check:probe", settings.redis.key_prefix);
    let denied = denied_commands(&conn, &key).await;
    let user = settings.redis.username.as_deref().unwrap_or("default");
    if denied.is_empty() {
        found.push(Finding::ok(
            SUBJECT,
            format!("Redis {version}, {mode}; user {user} may run every command callpush needs"),
        ));
    } else {
        found.push(Finding::problem(
            SUBJECT,
            format!(
                "Redis {version}, {mode}; user {user} may not run {}",
                denied.join(", ")
            ),
            format!(
                "grant them, e.g. ACL SETUSER {user} {}",
                denied
                    .iter()
                    .map(|c| format!("+{}", c.to_ascii_lowercase().replace(' ', "|")))
                    .collect::<Vec<_>>()
                    .join(" ")
            ),
        ));
    }
    found
}

fn unreachable(url: &str, e: &RedisError) -> Finding {
    let fix = match e.kind() {
        ErrorKind::AuthenticationFailed => {
            "check redis.username and the password (redis.password_file or CALLPUSH_REDIS_PASSWORD)"
        }
        _ => "check redis.url, that Redis runs and that this host may reach it",
    };
    Finding::problem(SUBJECT, format!("cannot connect to {url}: {e}"), fix)
}

async fn info(conn: &RedisConn, section: &str) -> String {
    let mut conn = conn.clone();
    redis::cmd("INFO")
        .arg(section)
        .query_async::<String>(&mut conn)
        .await
        .unwrap_or_default()
}

/// The value of `name` in an `INFO` answer.
fn field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
        .map(str::trim)
}

/// Every command callpush sends, each in a form that changes nothing on a key that does not
/// exist (see the module docs), in the order they are tried.
fn probes(key: &str) -> Vec<(&'static str, redis::Cmd)> {
    let c = |name: &str| redis::cmd(name);
    let with = |name: &'static str, cmd: &str, args: &[&str]| {
        let mut cmd = c(cmd);
        for a in args {
            cmd.arg(*a);
        }
        (name, cmd)
    };
    let g = "callpush-check";
    vec![
        with("PING", "PING", &[]),
        with("TIME", "TIME", &[]),
        with("EVAL", "EVAL", &["return 1", "1", key]),
        with(
            "EVALSHA",
            "EVALSHA",
            &["e0e1f9fabfc9d4800c877a703b823ac0578ff8db", "1", key],
        ),
        with("SCRIPT LOAD", "SCRIPT", &["LOAD", "return 1"]),
        with("XADD", "XADD", &[key, "NOMKSTREAM", "*", "f", "v"]),
        with(
            "XREADGROUP",
            "XREADGROUP",
            &["GROUP", g, g, "COUNT", "1", "STREAMS", key, ">"],
        ),
        with("XACK", "XACK", &[key, g, "0-1"]),
        with("XAUTOCLAIM", "XAUTOCLAIM", &[key, g, g, "1000", "0-0"]),
        with("XCLAIM", "XCLAIM", &[key, g, g, "1000", "0-1"]),
        with("XPENDING", "XPENDING", &[key, g]),
        with("XGROUP CREATE", "XGROUP", &["CREATE", key, g, "$"]),
        with("XGROUP DELCONSUMER", "XGROUP", &["DELCONSUMER", key, g, g]),
        with("XINFO GROUPS", "XINFO", &["GROUPS", key]),
        with("XINFO CONSUMERS", "XINFO", &["CONSUMERS", key, g]),
        with("XRANGE", "XRANGE", &[key, "-", "+", "COUNT", "1"]),
        with("XREVRANGE", "XREVRANGE", &[key, "+", "-", "COUNT", "1"]),
        with("XLEN", "XLEN", &[key]),
        with("XDEL", "XDEL", &[key, "0-1"]),
        with("HSET", "HSET", &[key, "f", "v"]),
        with("HSETNX", "HSETNX", &[key, "f", "v"]),
        with("HGET", "HGET", &[key, "f"]),
        with("HGETALL", "HGETALL", &[key]),
        with("HDEL", "HDEL", &[key, "f"]),
        with("ZADD", "ZADD", &[key, "XX", "1", "m"]),
        with("ZREM", "ZREM", &[key, "m"]),
        with("ZRANGE", "ZRANGE", &[key, "0", "-1"]),
        with("ZCARD", "ZCARD", &[key]),
        with("GET", "GET", &[key]),
        with("SET", "SET", &[key, "v", "XX"]),
        with("EXISTS", "EXISTS", &[key]),
        with("EXPIRE", "EXPIRE", &[key, "1"]),
        with("PEXPIRE", "PEXPIRE", &[key, "1"]),
        with("PTTL", "PTTL", &[key]),
        with("TYPE", "TYPE", &[key]),
        with("DEL", "DEL", &[key]),
    ]
}

/// The commands the user may not run (`NOPERM`), including `MULTI`/`EXEC`.
async fn denied_commands(conn: &RedisConn, key: &str) -> Vec<&'static str> {
    let mut denied = Vec::new();
    let mut conn = conn.clone();
    for (name, cmd) in probes(key) {
        if let Err(e) = cmd.query_async::<redis::Value>(&mut conn).await {
            if is_denied(&e) {
                denied.push(name);
            }
        }
    }
    let transaction = redis::pipe()
        .atomic()
        .cmd("EXISTS")
        .arg(key)
        .query_async::<redis::Value>(&mut conn)
        .await;
    if transaction.as_ref().is_err_and(is_denied) {
        denied.push("MULTI");
        denied.push("EXEC");
    }
    denied
}

fn is_denied(e: &RedisError) -> bool {
    matches!(
        e.kind(),
        ErrorKind::Server(ServerErrorKind::NoPerm | ServerErrorKind::ExecAbort)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_fields_are_read_by_name() {
        let info = "# Server\r\nredis_version:7.0.15\r\nredis_mode:standalone\r\n";
        assert_eq!(field(info, "redis_version"), Some("7.0.15"));
        assert_eq!(field(info, "redis_mode"), Some("standalone"));
        assert_eq!(field(info, "redis"), None);
    }

    #[test]
    fn every_probe_names_a_command() {
        let probes = probes("p:check:probe");
        assert!(probes.iter().any(|(n, _)| *n == "EVALSHA"));
        assert!(probes
            .iter()
            .all(|(n, _)| n.chars().all(|c| c.is_ascii_uppercase() || c == ' ')));
    }
}
