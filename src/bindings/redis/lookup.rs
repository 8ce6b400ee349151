//! Looking bindings up in the Redis store: an identity's hash read, each binding checked
//! against its device key (the authority on ownership), the expired ones removed with their
//! feed events, and the rest listed most recently updated first. The bindings are read in
//! place and listed as [`Device`]s (this runs for every event).

use std::borrow::Cow;
use std::sync::Arc;

use redis::RedisError;
use tracing::warn;

use super::{owner_is, RedisBindingStore};
use crate::backend::BackendError;
use crate::bindings::device::Stored;
use crate::bindings::{Credentials, Device};
use crate::redis_conn::wire::{Commands, Items, Reply};
use crate::redis_conn::{query_each, Answers};

impl RedisBindingStore {
    /// The unexpired bindings of `identity`'s hash, most recently updated first, and the ids
    /// of the expired ones; a binding that does not decode is skipped and noted
    /// ([`Undecodable`](super::Undecodable)).
    pub(super) fn live_bindings<'h>(
        &self,
        identity: &Arc<str>,
        hash: impl Iterator<Item = (Cow<'h, str>, &'h [u8])>,
        now_ms: u64,
        credentials: &mut Credentials,
    ) -> (Vec<Device>, Vec<String>) {
        let mut live = Vec::with_capacity(hash.size_hint().0);
        let mut expired = Vec::new();
        for (binding_id, json) in hash {
            match serde_json::from_slice::<Stored>(json) {
                Ok(b) if b.expires_at_ms > now_ms => {
                    live.push(b.into_device(identity, credentials))
                }
                Ok(_) => expired.push(binding_id.into_owned()),
                Err(e) => {
                    let e = BackendError::Corrupt(e.to_string());
                    self.undecodable.note(identity, &binding_id, &e)
                }
            }
        }
        live.sort_by(newest_first);
        (live, expired)
    }

    /// [`RedisBindingStore::live_bindings`] of one identity's hash however it was read, its
    /// expired bindings added to `expired` (removed once the batch is read).
    fn listed<'i, 'h>(
        &self,
        identity: &'i Arc<str>,
        hash: impl Iterator<Item = (Cow<'h, str>, &'h [u8])>,
        now_ms: u64,
        credentials: &mut Credentials,
        expired: &mut Vec<(&'i str, Vec<String>)>,
    ) -> Vec<Device> {
        let (live, gone) = self.live_bindings(identity, hash, now_ms, credentials);
        if !gone.is_empty() {
            expired.push((identity, gone));
        }
        live
    }

    /// [`BindingStore::list_devices`](crate::bindings::BindingStore::list_devices) in two round
    /// trips for the whole lot: every identity's `HGETALL`, then every live binding's device
    /// key. Each identity's answer is its own: a hash that cannot be read (`WRONGTYPE`) or a
    /// device key whose node does not answer fails that identity alone, and a binding that does
    /// not decode is skipped ([`Undecodable`](super::Undecodable)) while the identity's others
    /// are listed.
    pub(super) async fn lookup_many(
        &self,
        identities: &[Arc<str>],
    ) -> Vec<Result<Vec<Device>, BackendError>> {
        let now = crate::domain::now_ms();
        let mut expired = Vec::new();
        let mut credentials = Credentials::default();
        let mut lives: Vec<Result<Vec<Device>, BackendError>> = match self.conn.wire() {
            Some(wire) => {
                let mut out = Commands::with_capacity(identities.len() * 64);
                for identity in identities {
                    let key = self.keys.identity_bindings_parts(identity);
                    out.command(2).arg("HGETALL").arg_parts(&key);
                }
                match wire.send(out).await {
                    Ok(replies) => identities
                        .iter()
                        .zip(replies.iter())
                        .map(|(identity, hash)| {
                            let Reply::Array(items) = hash.ok()? else {
                                return Err(BackendError::Corrupt(
                                    "HGETALL answered no list".to_string(),
                                ));
                            };
                            Ok(self.listed(
                                identity,
                                pairs(items),
                                now,
                                &mut credentials,
                                &mut expired,
                            ))
                        })
                        .collect(),
                    Err(e) => identities.iter().map(|_| Err(e.clone().into())).collect(),
                }
            }
            None => {
                let hashes = identities
                    .iter()
                    .map(|identity| {
                        let mut cmd = redis::cmd("HGETALL");
                        cmd.arg(self.keys.identity_bindings(identity));
                        cmd
                    })
                    .collect();
                let stored: Answers<Vec<(String, String)>> = query_each(&self.conn, hashes).await;
                identities
                    .iter()
                    .zip(stored)
                    .map(|(identity, hash)| {
                        let hash = hash?;
                        let fields = hash
                            .iter()
                            .map(|(id, json)| (Cow::Borrowed(id.as_str()), json.as_bytes()));
                        Ok(self.listed(identity, fields, now, &mut credentials, &mut expired))
                    })
                    .collect()
            }
        };
        for (identity, gone) in expired {
            self.expire(identity, &gone).await;
        }

        // The device keys are the authority on ownership: skip bindings whose token moved on
        // (left behind by an interrupted registration, see the module docs).
        let mut owners = self.new_owners(&lives).await.into_iter();
        for (identity, live) in identities.iter().zip(&mut lives) {
            let Ok(bindings) = live else {
                continue;
            };
            let mut failed = None;
            let mut moved = Vec::new();
            // In place: the bindings kept are most of them, and this runs for every event.
            bindings.retain(|b| match owners.next() {
                Some(Err(e)) => {
                    failed = Some(e);
                    false
                }
                Some(Ok(Some(owner))) => {
                    moved.push((b.clone(), owner));
                    false
                }
                Some(Ok(None)) | None => true,
            });
            for (b, owner) in moved {
                if let Err(e) = self
                    .remove_if_token(
                        identity,
                        &b.binding_id,
                        (&*b.credential, &*b.device_token),
                        None,
                        ("moved", "", owner.split('\n').next().unwrap_or_default()),
                    )
                    .await
                {
                    warn!(error = %e, binding_id = %b.binding_id, "could not remove a binding whose token moved on");
                }
            }
            if let Some(e) = failed {
                *live = Err(e.into());
            }
        }
        lives
    }
}

impl RedisBindingStore {
    /// For each binding of `lives`, in order, the owner its device key names (its value) when
    /// that is another binding — the token moved on — and `None` when it names this binding or
    /// nobody: one `GET` each, in one round trip. Only an owner that moved is copied out.
    async fn new_owners(
        &self,
        lives: &[Result<Vec<Device>, BackendError>],
    ) -> Vec<Result<Option<String>, RedisError>> {
        let bindings = || lives.iter().flatten().flatten();
        let moved = |owner: &str, b: &Device| {
            !owner.is_empty() && !owner_is(owner, &b.identity, &b.binding_id)
        };
        let Some(wire) = self.conn.wire() else {
            let gets = bindings()
                .map(|b| {
                    let mut cmd = redis::cmd("GET");
                    cmd.arg(self.keys.device(&b.credential, &b.device_token));
                    cmd
                })
                .collect();
            return query_each::<Option<String>>(&self.conn, gets)
                .await
                .into_iter()
                .zip(bindings())
                .map(|(owner, b)| Ok(owner?.filter(|owner| moved(owner, b))))
                .collect();
        };
        let mut out = Commands::with_capacity(lives.len() * 128);
        for b in bindings() {
            let key = self.keys.device_parts(&b.credential, &b.device_token);
            out.command(2).arg("GET").arg_parts(&key);
        }
        let count = out.count();
        match wire.send(out).await {
            Ok(replies) => replies
                .iter()
                .zip(bindings())
                .map(|(owner, b)| match owner.ok()? {
                    Reply::Nil => Ok(None),
                    other => {
                        let owner = other.text().unwrap_or_default();
                        Ok(moved(&owner, b).then(|| owner.into_owned()))
                    }
                })
                .collect(),
            Err(e) => (0..count).map(|_| Err(e.clone())).collect(),
        }
    }
}

/// An `HGETALL` reply's fields and values, read in place.
fn pairs<'a>(mut items: Items<'a>) -> impl Iterator<Item = (Cow<'a, str>, &'a [u8])> {
    std::iter::from_fn(move || match (items.next()?, items.next()?) {
        (Reply::Bulk(field), Reply::Bulk(value)) => Some((String::from_utf8_lossy(field), value)),
        _ => None,
    })
}

/// The order bindings are listed in: most recently updated first, ties by binding id.
fn newest_first(a: &Device, b: &Device) -> std::cmp::Ordering {
    b.updated_at_ms
        .cmp(&a.updated_at_ms)
        .then_with(|| a.binding_id.cmp(&b.binding_id))
}
