//! The hostile-input table of docs/security.md, driven row by row: the table is the single source
//! of what is sent and what must come back. Each row's `id` names a driver here; a row without a
//! driver, or a driver without a row, fails the test, so the document and the behaviour cannot
//! drift apart.
//!
//! One world serves every row: a real redis-server, the provider doubles, both routers (HTTP
//! rows go through `oneshot`), and a daemon that reads every stream row from the calls stream
//! and is then shown a good event, which must still be delivered.

mod hostile;
mod support;

use std::collections::{BTreeSet, HashMap, HashSet};

use callpush::config::Settings;
use callpush::domain::Platform;
use hostile::drivers::{drivers, hs256, jwt, request, Driver, Env, Input, JSON};
use http::{Method, StatusCode};
use serde_json::{json, Value};
use support::api::{claims, send, ApiWorld};
use support::daemon::wait_entries;
use support::twilio;
use support::world::WAIT;

const TABLE: &str = include_str!("../docs/security.md");

/// What a row expects, as the table's last column says it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Expect {
    /// An HTTP status and, for errors, the `error.code`.
    Http(u16, Option<String>),
    /// A dead letter with this reason whose detail names `field` (when given).
    Dead(String, Option<String>),
    /// This outcome on the results stream.
    Result(String),
    /// The daemon refuses to start, naming this key.
    Startup(String),
}

fn parse_expect(cell: &str) -> Expect {
    let words: Vec<&str> = cell.trim().trim_matches('`').split_whitespace().collect();
    let word = |i: usize| words.get(i).map(|w| w.to_string());
    match words.as_slice() {
        ["dead", ..] => Expect::Dead(word(1).expect("a reason"), word(2)),
        ["result", outcome] => Expect::Result(outcome.to_string()),
        ["startup", ..] => Expect::Startup(words[1..].join(" ")),
        [status, ..] => Expect::Http(status.parse().expect("an HTTP status"), word(1)),
        [] => panic!("empty expectation"),
    }
}

/// The rows of the table under "## Hostile input": (id, surface, expectation).
fn table_rows() -> Vec<(String, String, Expect)> {
    let section = TABLE
        .split("\n## Hostile input")
        .nth(1)
        .expect("docs/security.md has a `## Hostile input` section");
    let section = section.split("\n## ").next().unwrap();
    section
        .lines()
        .filter(|l| l.starts_with("| ") && !l.starts_with("| id "))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split(" | ").map(str::trim).collect();
            assert_eq!(cells.len(), 4, "a row has four cells: {l}");
            (
                cells[0].to_string(),
                cells[1].to_string(),
                parse_expect(cells[3]),
            )
        })
        .collect()
}

/// The CRC16 (XMODEM) hash slot of a key, with Redis Cluster's hash-tag rule, written from the
/// cluster specification independently of callpush.
fn slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            rest.iter()
                .position(|&b| b == b'}')
                .filter(|&close| close > 0)
                .map(|close| &rest[..close])
        })
        .unwrap_or(key);
    let mut crc: u16 = 0;
    for &b in hashed {
        crc ^= (b as u16) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc % 16384
}

async fn all_keys(conn: &mut redis::aio::MultiplexedConnection) -> HashSet<Vec<u8>> {
    redis::cmd("KEYS").arg("*").query_async(conn).await.unwrap()
}

/// What one row produced, for the failure message.
type Seen = Result<(), String>;

fn check_http(expect: &Expect, status: StatusCode, body: &Value) -> Seen {
    let Expect::Http(want, code) = expect else {
        return Err(format!("an HTTP driver for a row expecting {expect:?}"));
    };
    if status.as_u16() != *want {
        return Err(format!("status {status}, body {body}"));
    }
    match code {
        Some(code)
            if body["error"]["code"] != json!(code) || !body["error"]["message"].is_string() =>
        {
            Err(format!("body {body}"))
        }
        None if !status.is_success() => Err(format!("an error status without a code: {body}")),
        _ => Ok(()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_row_of_the_table_holds() {
    let rows = table_rows();
    let drivers: HashMap<&str, Driver> = drivers().into_iter().collect();
    let row_ids: BTreeSet<&str> = rows.iter().map(|(id, _, _)| id.as_str()).collect();
    let driver_ids: BTreeSet<&str> = drivers.keys().copied().collect();
    assert_eq!(rows.len(), row_ids.len(), "row ids are unique");
    assert!(rows.len() >= 80, "the issue asks for at least 80 rows");
    let no_driver: Vec<_> = row_ids.difference(&driver_ids).collect();
    let no_row: Vec<_> = driver_ids.difference(&row_ids).collect();
    assert!(
        no_driver.is_empty() && no_row.is_empty(),
        "rows without a driver: {no_driver:?}; drivers without a row: {no_row:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let env = Env {
        dir: dir.path().to_path_buf(),
    };
    let mut w = ApiWorld::with(|s| {
        twilio::add_twilio(s, dir.path(), &[twilio::AUTH_TOKEN]);
        s.limits.registrations_per_identity_per_min = 100_000;
        s.limits.calls_per_identity_per_min = 100_000;
    })
    .await;
    // Someone with a binding, for the routes that must not reach it (A25) and the good event.
    w.world
        .register("hostile-good", Platform::Fcm, "hostile-good-device")
        .await;
    let prefix = w.world.prefix.clone();
    let mut conn = w.world.conn.clone();

    let mut failures = Vec::new();
    let mut stream_rows = Vec::new();
    // Calls the admin API accepted: their outcomes land on the results stream too.
    let mut enqueued = 0;
    // Stream rows go first, those with an explicit (old) id before any other entry: an XADD id
    // must be above the stream's newest.
    let mut inputs: Vec<_> = rows
        .iter()
        .map(|(id, surface, expect)| (id, surface, expect, drivers[id.as_str()](&env)))
        .collect();
    inputs.sort_by_key(|(_, _, _, input)| match input {
        Input::Stream(Some(_), _) => 0,
        Input::Stream(None, _) => 1,
        _ => 2,
    });
    for (id, surface, expect, input) in inputs {
        let seen = match input {
            Input::Public(req) | Input::Admin(req) => {
                let router = if surface == "admin" {
                    w.admin()
                } else {
                    w.public()
                };
                let reply = send(router, req).await;
                if reply.status == StatusCode::ACCEPTED {
                    enqueued += 1;
                }
                let seen = check_http(expect, reply.status, &reply.body);
                let others = |b: &Value| {
                    b.as_array()
                        .is_some_and(|l| l.iter().any(|b| b["identity"] != "*"))
                };
                if id == "A25" && seen.is_ok() && others(&reply.body) {
                    Err(format!(
                        "`*` listed other identities' bindings: {}",
                        reply.body
                    ))
                } else {
                    seen
                }
            }
            Input::Identity(identity) => {
                let before = all_keys(&mut conn).await;
                let device = format!("identity-device-{id}");
                let body = json!({"platform": "fcm", "device_token": device}).to_string();
                let req = request(
                    Method::POST,
                    "/v1/registrations",
                    Some(&jwt(hs256(), claims(&identity))),
                    Some(JSON),
                    body,
                );
                let reply = send(w.public(), req).await;
                let new: Vec<Vec<u8>> = all_keys(&mut conn)
                    .await
                    .difference(&before)
                    .cloned()
                    .collect();
                check_http(expect, reply.status, &reply.body).and_then(|()| {
                    if let Some(k) = new.iter().find(|k| !k.starts_with(prefix.as_bytes())) {
                        return Err(format!(
                            "key {:?} is outside the prefix",
                            String::from_utf8_lossy(k)
                        ));
                    }
                    let device_key = format!("{prefix}dev:");
                    let identity_slots: BTreeSet<u16> = new
                        .iter()
                        .filter(|k| !k.starts_with(device_key.as_bytes()))
                        .map(|k| slot(k))
                        .collect();
                    match (reply.status.is_success(), new.len(), identity_slots.len()) {
                        (false, 0, _) => Ok(()),
                        (false, n, _) => Err(format!("a refused registration wrote {n} keys")),
                        (true, 3, 1) => Ok(()),
                        _ => Err(format!(
                            "keys {:?} in slots {identity_slots:?}",
                            new.iter()
                                .map(|k| String::from_utf8_lossy(k).into_owned())
                                .collect::<Vec<_>>()
                        )),
                    }
                })
            }
            Input::Stream(explicit_id, fields) => {
                let mut cmd = redis::cmd("XADD");
                cmd.arg(&w.world.keys.calls).arg(explicit_id.unwrap_or("*"));
                let mut call_sid = String::new();
                for (k, v) in fields {
                    let v = if v == b"CA-auto" {
                        format!("CA-{id}").into_bytes()
                    } else {
                        v
                    };
                    if k == b"call_sid" {
                        call_sid = String::from_utf8_lossy(&v).into_owned();
                    }
                    cmd.arg(k).arg(v);
                }
                let entry_id: String = cmd.query_async(&mut conn).await.expect("XADD");
                stream_rows.push((id.clone(), expect.clone(), entry_id, call_sid));
                continue;
            }
            Input::Config(extra, vars) => {
                let outcome = Settings::from_toml_with_env(&extra, vars)
                    .map_err(|e| e.to_string())
                    .and_then(|s| {
                        callpush::auth::Auth::from_settings(&s)
                            .map(drop)
                            .map_err(|e| e.to_string())
                    });
                match (expect, outcome) {
                    (Expect::Startup(key), Err(message)) if message.contains(key.as_str()) => {
                        Ok(())
                    }
                    (_, outcome) => Err(format!("{outcome:?}")),
                }
            }
        };
        if let Err(problem) = seen {
            failures.push(format!("{id} (expected {expect:?}): {problem}"));
        }
    }

    // The stream rows, then one good event: the daemon must get through all of them.
    let good = w
        .world
        .call(&[
            ("type", "incoming"),
            ("to", "hostile-good"),
            ("call_sid", "CA-hostile-good"),
        ])
        .await;
    let daemon = w.world.start_daemon();
    let results = wait_entries(
        &mut conn,
        &w.world.keys.results,
        stream_rows.len() + 1 + enqueued,
        WAIT,
    )
    .await;
    let dead = support::daemon::read_all(&mut conn, &w.world.keys.dead).await;
    daemon.stop().await;
    // Whatever the rows held (braces in call sids and identities), every key is callpush's.
    let stray: Vec<String> = all_keys(&mut conn)
        .await
        .into_iter()
        .filter(|k| !k.starts_with(prefix.as_bytes()))
        .map(|k| String::from_utf8_lossy(&k).into_owned())
        .collect();
    assert!(stray.is_empty(), "keys outside the prefix: {stray:?}");
    let outcome_of = |call_sid: &str| {
        results
            .iter()
            .find(|(_, f)| f.get("call_sid").map(String::as_str) == Some(call_sid))
            .map(|(_, f)| f["outcome"].clone())
    };
    assert_eq!(
        outcome_of("CA-hostile-good").as_deref(),
        Some("delivered"),
        "a good event after the hostile ones is delivered ({good})"
    );
    for (id, expect, entry_id, call_sid) in &stream_rows {
        let letter = dead
            .iter()
            .find(|(_, f)| f.get("source_id") == Some(entry_id))
            .map(|(_, f)| f);
        let seen = match (expect, letter) {
            (Expect::Dead(reason, field), Some(f)) => {
                let named = field
                    .as_ref()
                    .is_none_or(|field| f["detail"].contains(&format!("`{field}`")));
                if f["reason"] == *reason && named {
                    Ok(())
                } else {
                    Err(format!("dead letter {f:?}"))
                }
            }
            (Expect::Result(outcome), None) => {
                let got = outcome_of(call_sid);
                if got.as_deref() == Some(outcome.as_str()) {
                    Ok(())
                } else {
                    Err(format!("outcome {got:?}"))
                }
            }
            (_, letter) => Err(format!("dead letter {letter:?}")),
        };
        if let Err(problem) = seen {
            failures.push(format!("{id} (expected {expect:?}): {problem}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} rows fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
