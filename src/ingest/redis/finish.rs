//! Recording outcomes (`finish.lua`, keys `<p>calls`, `<p>results`, `<p>dead` of one shard): one
//! script call for every entry of a batch, and one answer per entry.
//!
//! A batch shares its round trip, not its fate:
//! - a transient failure ([`Fate::Transient`]: Redis down, hung, failing over) answers every
//!   entry of the call with the error; they stay pending and the caller tries them again;
//! - a permanent one ([`Fate::Permanent`]: the store refuses the command as it is) is narrowed
//!   down: the entries go again one per call, so only the one that caused it fails again (the
//!   script leaves each entry finished or untouched, and answers 0 for one finished already, so
//!   nothing is written twice); that entry is then recorded with a dead letter without the
//!   event's fields (reason `store_error`, the detail naming the store's complaint), which an
//!   entry's content cannot make fail, so a permanent error ends the entry with an outcome
//!   instead of being retried forever;
//! - only when even that is refused (the shard's own streams are broken: `<p>dead` or
//!   `<p>results` turned into another type of key) does the entry keep the error.
//!
//! Dead letters are bounded (`crate::outcome`: at most 256 fields and 64 KiB of the event), so
//! the first call takes any entry a call server can add; the narrowing is the safety net for
//! what the bounds do not foresee.

use redis::RedisError;

use super::{is_no_group, Finish, RedisCallQueue};
use crate::backend::{BackendError, Fate};
use crate::outcome::{DeadLetter, DeadReason, Field};
use crate::redis_conn::wire::{Commands, Reply, WireConn};
use crate::redis_conn::ScriptCall;

/// Which dead-letter fields a call writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DeadFields {
    /// The event's fields within the bounds, then the dead letter's own.
    Full,
    /// The dead letter's own fields only (see the module docs).
    Bare,
}

/// One item with its plain stream id (without a shard suffix).
pub(super) type Item<'a> = (&'a str, Finish<'a>);

impl RedisCallQueue {
    /// Finish `items` with one script call (see the module docs): one answer per item, in order.
    pub(super) async fn finish_ids(&self, items: &[Item<'_>]) -> Vec<Result<(), BackendError>> {
        if items.is_empty() {
            return Vec::new();
        }
        match self.finish_call(items, DeadFields::Full).await {
            Ok(()) => items.iter().map(|_| Ok(())).collect(),
            Err(err) if err.fate() == Fate::Permanent => match items {
                [one] => vec![self.finish_bare(one, err).await],
                _ => {
                    let alone = items.iter().map(|item| self.finish_alone(item));
                    futures::future::join_all(alone).await
                }
            },
            Err(err) => items.iter().map(|_| Err(err.clone())).collect(),
        }
    }

    /// One item on its own call, then bare when the store refuses it for good.
    async fn finish_alone(&self, item: &Item<'_>) -> Result<(), BackendError> {
        match self
            .finish_call(std::slice::from_ref(item), DeadFields::Full)
            .await
        {
            Err(err) if err.fate() == Fate::Permanent => self.finish_bare(item, err).await,
            other => other,
        }
    }

    /// Record `item` with a bare `store_error` dead letter after `refused` (permanent) refused
    /// it with its fields. An item without a dead letter keeps the error: its own fields were
    /// not the cause (a result is a few short fields), the shard's streams are.
    async fn finish_bare(
        &self,
        item: &Item<'_>,
        refused: BackendError,
    ) -> Result<(), BackendError> {
        let (id, finish) = item;
        let Some(dead) = finish.dead else {
            tracing::error!(stream_id = %id, error = %refused, "Redis refuses to record this entry's outcome; it stays pending");
            return Err(refused);
        };
        let bare = DeadLetter {
            reason: DeadReason::StoreError,
            detail: format!(
                "the store refused the {} dead letter with the event's fields: {refused}",
                dead.reason.as_str()
            ),
            attempts: dead.attempts,
            failed_at_ms: dead.failed_at_ms,
        };
        let retry = (
            *id,
            Finish {
                dead: Some(&bare),
                ..*finish
            },
        );
        match self
            .finish_call(std::slice::from_ref(&retry), DeadFields::Bare)
            .await
        {
            Ok(()) => {
                tracing::warn!(stream_id = %id, error = %refused, "Redis refused this entry's dead letter with its fields; recorded it without them (store_error)");
                Ok(())
            }
            Err(err) => {
                tracing::error!(stream_id = %id, error = %err, "Redis refuses to record this entry's outcome even without its fields; it stays pending");
                Err(err)
            }
        }
    }

    /// One call of `finish.lua` for `items`. A group that disappeared is created again (and
    /// with it went the pending entries: there is nothing left to acknowledge, docs/runbook.md,
    /// "The consumer group disappeared").
    async fn finish_call(
        &self,
        items: &[Item<'_>],
        fields: DeadFields,
    ) -> Result<(), BackendError> {
        let keys = [
            self.keys.calls.as_str(),
            self.keys.results.as_str(),
            self.keys.dead.as_str(),
        ];
        let results = self.options.results_enabled;
        let dead_fields: Vec<Vec<(String, String)>> = items
            .iter()
            .map(|(id, item)| {
                item.dead
                    .map(|d| match fields {
                        DeadFields::Full => d.fields_of(&item.entry.to_pairs(), id),
                        DeadFields::Bare => d.bare_fields_of(&item.entry.to_pairs(), id),
                    })
                    .unwrap_or_default()
            })
            .collect();
        let recorded: Result<Vec<i64>, RedisError> = match self.conn.wire() {
            Some(wire) => self.finish_wire(wire, &keys, items, &dead_fields).await,
            None => {
                let mut call = ScriptCall::with_keys(&self.finish, &keys);
                call.arg(&self.options.group)
                    .arg(self.options.results_max_len)
                    .arg(self.options.dead_max_len);
                for ((id, item), dead_fields) in items.iter().zip(&dead_fields) {
                    let result_fields = item.result.fields();
                    let n_result = if results { result_fields.len() * 2 } else { 0 };
                    call.arg(*id).arg(n_result).arg(dead_fields.len() * 2);
                    if results {
                        for (k, v) in result_fields {
                            call.arg(k).arg(v);
                        }
                    }
                    for (k, v) in dead_fields {
                        call.arg(k).arg(v);
                    }
                }
                call.invoke(&self.conn, &self.finish).await
            }
        };
        match recorded {
            Ok(recorded) => {
                for ((id, _), _) in items.iter().zip(&recorded).filter(|(_, r)| **r == 0) {
                    tracing::debug!(stream_id = %id, "entry finished by another consumer first; outcome not repeated");
                }
                Ok(())
            }
            Err(e) if is_no_group(&e) => self.recreate_group().await,
            Err(e) => Err(e.into()),
        }
    }

    /// [`RedisCallQueue::finish_call`]'s script call over the wire connection, written
    /// straight into its buffer; a script the server forgot is loaded through the client and
    /// the call sent again.
    async fn finish_wire(
        &self,
        wire: &WireConn,
        keys: &[&str; 3],
        items: &[Item<'_>],
        dead_fields: &[Vec<(String, String)>],
    ) -> Result<Vec<i64>, RedisError> {
        let results = self.options.results_enabled;
        // Every result has the same fields (`EventResult::fields` is an array).
        let result_words = match items.first() {
            Some((_, item)) if results => 2 * item.result.fields().len(),
            _ => 0,
        };
        let words = 3
            + keys.len()
            + 3
            + dead_fields
                .iter()
                .map(|dead| 3 + result_words + 2 * dead.len())
                .sum::<usize>();
        let write = || {
            let mut out = Commands::with_capacity(words * 24);
            out.command(words)
                .arg("EVALSHA")
                .arg(self.finish.get_hash())
                .arg_u64(keys.len() as u64);
            for key in keys {
                out.arg(key);
            }
            out.arg(&self.options.group)
                .arg_u64(self.options.results_max_len)
                .arg_u64(self.options.dead_max_len);
            for ((id, item), dead) in items.iter().zip(dead_fields) {
                out.arg(id)
                    .arg_u64(result_words as u64)
                    .arg_u64(2 * dead.len() as u64);
                if results {
                    for (k, v) in item.result.fields() {
                        out.arg(k);
                        match v {
                            Field::Text(text) => out.arg(text),
                            Field::Count(n) => out.arg_u64(n as u64),
                        };
                    }
                }
                for (k, v) in dead {
                    out.arg(k).arg(v);
                }
            }
            out
        };
        let mut replies = wire.send(write()).await?;
        let forgot =
            matches!(replies.iter().next(), Some(Reply::Error(e)) if e.starts_with(b"NOSCRIPT"));
        if forgot {
            self.finish
                .prepare_invoke()
                .load_async(&mut self.conn.clone())
                .await?;
            replies = wire.send(write()).await?;
        }
        let Some(Reply::Array(recorded)) = replies.iter().next().map(Reply::ok).transpose()? else {
            return Err(RedisError::from((
                redis::ErrorKind::UnexpectedReturnType,
                "finish.lua answered no list",
            )));
        };
        Ok(recorded
            .map(|r| match r {
                Reply::Int(n) => n,
                _ => -1,
            })
            .collect())
    }
}
