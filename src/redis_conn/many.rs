//! Many calls of one script (or many plain commands, or many small transactions) in one round
//! trip, for the stages that work on a batch of events. Each call gets its own answer: a batch
//! shares its round trip, never its fate, so one entry's refused command (`WRONGTYPE`, a script
//! error) fails that entry alone ([`crate::backend`] decides what a failure means).
//!
//! On one server the calls go as one pipeline: one request, one reply to parse, one wake-up,
//! however many calls. On a cluster redis-rs (1.x) refuses a pipeline whose commands name
//! different slots (`CrossSlot`), and the calls of a batch do (one ledger hash per call, say):
//! there each call is its own command, sent together, and the cluster connection pipelines the
//! ones bound for one node on that node's connection.

use redis::{ErrorKind, FromRedisValue, RedisError, Script, ServerErrorKind, ToRedisArgs, Value};

use super::RedisConn;

/// One call of a script, built straight into its `EVALSHA` command: no copy of the arguments
/// between building and sending.
#[derive(Debug, Clone)]
pub struct ScriptCall {
    cmd: redis::Cmd,
}

impl ScriptCall {
    /// A call of `script` on `key` (`KEYS[1]`), with no arguments yet.
    pub fn new(script: &Script, key: impl ToRedisArgs) -> ScriptCall {
        ScriptCall::with_keys(script, &[key])
    }

    /// A call of `script` on `keys` (`KEYS[1]`, `KEYS[2]`, …: one slot between them), with no
    /// arguments yet.
    pub fn with_keys<K: ToRedisArgs>(script: &Script, keys: &[K]) -> ScriptCall {
        let mut cmd = redis::cmd("EVALSHA");
        cmd.arg(script.get_hash()).arg(keys.len()).arg(keys);
        ScriptCall { cmd }
    }

    /// Run this one call of `script`; a script the server forgot (a restart, `SCRIPT FLUSH`) is
    /// loaded and the call sent again.
    pub async fn invoke<T: FromRedisValue>(
        &self,
        conn: &RedisConn,
        script: &Script,
    ) -> Result<T, RedisError> {
        let mut conn = conn.clone();
        match self.cmd.query_async::<T>(&mut conn).await {
            Err(e) if e.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                script.prepare_invoke().load_async(&mut conn).await?;
                self.cmd.query_async::<T>(&mut conn).await
            }
            other => other,
        }
    }

    /// Add an argument (`ARGV[i]`).
    pub fn arg(&mut self, arg: impl ToRedisArgs) -> &mut ScriptCall {
        self.cmd.arg(arg);
        self
    }
}

/// One answer per call or command of a batch, each its own: a batch shares its round trip,
/// never its fate.
pub type Answers<T> = Vec<Result<T, RedisError>>;

/// Run every call of `script` in `calls` (each built by [`ScriptCall::new`] with this script);
/// one answer per call, in order, each its own: a call the server refuses (a script error,
/// `WRONGTYPE`) fails alone, and only a connection that fails fails every call it carried.
/// Callers repeat what failed, so every script run this way must be safe to run twice.
pub async fn invoke_each<T: FromRedisValue>(
    conn: &RedisConn,
    script: &Script,
    calls: Vec<ScriptCall>,
) -> Answers<T> {
    if calls.is_empty() {
        return Vec::new();
    }
    match conn {
        RedisConn::Single(..) => {
            let n = calls.len();
            let mut pipe = redis::pipe();
            for call in calls {
                pipe.add_command(call.cmd);
            }
            // Errors come back as values, so a script the server forgot (a restart, SCRIPT
            // FLUSH) is told from the rest: it is loaded and the whole pipeline sent again
            // (none of its calls ran: they all name that script).
            pipe.ignore_errors();
            let mut conn = conn.clone();
            let sent = async {
                let mut answers: Vec<Value> = pipe.query_async(&mut conn).await?;
                if answers.iter().any(is_no_script) {
                    script.prepare_invoke().load_async(&mut conn).await?;
                    answers = pipe.query_async(&mut conn).await?;
                }
                Ok::<_, RedisError>(answers)
            };
            each_of(sent.await, n)
        }
        RedisConn::Cluster(_) => {
            let each = calls.iter().map(|call| call.invoke(conn, script));
            futures::future::join_all(each).await
        }
    }
}

/// Run every command of `cmds`; one answer per command, in order, each its own (as
/// [`invoke_each`]): one pipeline on one server, each its own command on a cluster.
pub async fn query_each<T: FromRedisValue>(conn: &RedisConn, cmds: Vec<redis::Cmd>) -> Answers<T> {
    if cmds.is_empty() {
        return Vec::new();
    }
    match conn {
        RedisConn::Single(..) => {
            let n = cmds.len();
            let mut pipe = redis::pipe();
            for cmd in cmds {
                pipe.add_command(cmd);
            }
            pipe.ignore_errors();
            each_of(pipe.query_async(&mut conn.clone()).await, n)
        }
        RedisConn::Cluster(_) => {
            let each = cmds.into_iter().map(|cmd| {
                let mut conn = conn.clone();
                async move { cmd.query_async::<T>(&mut conn).await }
            });
            futures::future::join_all(each).await
        }
    }
}

/// Run each list of `transactions` as one `MULTI` … `EXEC` (its commands all on one key, so one
/// slot); the `EXEC` answer of each, in order, each its own (a transaction the server aborts
/// fails alone). On one server all of them go in one pipeline (a pipeline's commands reach the
/// server together, so no other command lands inside a transaction); on a cluster each is a
/// transactional pipeline of its own, sent together.
pub async fn exec_each(conn: &RedisConn, transactions: Vec<Vec<redis::Cmd>>) -> Answers<Value> {
    if transactions.is_empty() {
        return Vec::new();
    }
    match conn {
        RedisConn::Single(..) => {
            let n = transactions.len();
            let mut pipe = redis::pipe();
            let mut exec_at = Vec::with_capacity(n);
            let mut sent = 0;
            for cmds in transactions {
                pipe.cmd("MULTI");
                sent += 1 + cmds.len();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                pipe.cmd("EXEC");
                exec_at.push(sent);
                sent += 1;
            }
            pipe.ignore_errors();
            let replies: Result<Vec<Value>, RedisError> = pipe.query_async(&mut conn.clone()).await;
            match replies {
                Ok(mut replies) => exec_at
                    .into_iter()
                    .map(|i| std::mem::replace(&mut replies[i], Value::Nil).extract_error())
                    .collect(),
                Err(e) => vec![Err(e); n],
            }
        }
        RedisConn::Cluster(_) => {
            let each = transactions.into_iter().map(|cmds| {
                let mut pipe = redis::pipe();
                pipe.atomic();
                for cmd in cmds {
                    pipe.add_command(cmd);
                }
                let mut conn = conn.clone();
                async move { Ok(Value::Array(pipe.query_async(&mut conn).await?)) }
            });
            futures::future::join_all(each).await
        }
    }
}

/// The answers of a pipeline sent with `ignore_errors`, one per command: a command's own error
/// for that command, the connection's error for every command.
fn each_of<T: FromRedisValue>(answers: Result<Vec<Value>, RedisError>, n: usize) -> Answers<T> {
    match answers {
        Ok(answers) => answers
            .into_iter()
            .map(|v| Ok(redis::from_redis_value(v.extract_error()?)?))
            .collect(),
        Err(e) => (0..n).map(|_| Err(e.clone())).collect(),
    }
}

fn is_no_script(value: &Value) -> bool {
    matches!(value, Value::ServerError(e) if e.kind() == Some(ServerErrorKind::NoScript))
}
