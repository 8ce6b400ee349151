//! Key names: [`Keys`] of one shard and the [`Layout`] of all shards (`stream.shards`).

#[cfg(test)]
use super::slots::key_slot;
use super::slots::{shard_of, shard_tag};

/// Why a key prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Braces in the prefix would move the cluster hash tag away from the identity or device.
    #[error("redis.key_prefix must not contain `{{` or `}}`")]
    BraceInPrefix,
}

/// The names of every key callpush owns, derived from `redis.key_prefix`.
///
/// One `Keys` names one shard's streams: the unsharded layout (`stream.shards = 1` without
/// cluster) has no hash tag, a shard of [`Layout`] has its own (`<p>{<tag>}calls`, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Keys {
    prefix: String,
    /// The shard's hash tag, `None` in the unsharded layout.
    tag: Option<String>,
    /// `<p>calls` (`<p>{<tag>}calls`): the calls stream call servers add events to.
    pub calls: String,
    /// `<p>results` (`<p>{<tag>}results`): one entry per finished event.
    pub results: String,
    /// `<p>dead` (`<p>{<tag>}dead`): dead letters.
    pub dead: String,
}

impl Keys {
    /// Derive the key names from the prefix (`callpush:` by default).
    pub fn new(prefix: &str) -> Result<Keys, KeyError> {
        if prefix.contains(['{', '}']) {
            return Err(KeyError::BraceInPrefix);
        }
        Ok(Keys {
            prefix: prefix.to_string(),
            tag: None,
            calls: format!("{prefix}calls"),
            results: format!("{prefix}results"),
            dead: format!("{prefix}dead"),
        })
    }

    /// The keys of the shard with hash tag `tag`: its streams and once-markers share the
    /// tag's slot, the per-identity, per-device and per-call keys are the same as unsharded.
    fn with_tag(prefix: &str, tag: &str) -> Result<Keys, KeyError> {
        let mut keys = Keys::new(prefix)?;
        let tagged = format!("{prefix}{{{tag}}}");
        keys.calls = format!("{tagged}calls");
        keys.results = format!("{tagged}results");
        keys.dead = format!("{tagged}dead");
        keys.tag = Some(tag.to_string());
        Ok(keys)
    }

    /// The shard's hash tag (`None`: the unsharded layout).
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The prefix itself.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// `<p>once:<key>` (`<p>{<tag>}once:<key>`, in the shard's slot): the idempotency marker
    /// of an event added once (`CallQueue::enqueue_once`).
    pub fn once(&self, key: &str) -> String {
        match &self.tag {
            Some(tag) => format!("{}{{{tag}}}once:{key}", self.prefix),
            None => format!("{}once:{key}", self.prefix),
        }
    }

    /// `<p>id:{<identity>}:b`: hash binding_id → JSON binding of one identity.
    pub fn identity_bindings(&self, identity: &str) -> String {
        self.identity_key(identity, "b")
    }

    /// `<p>id:{<identity>}:u`: sorted set binding_id scored by `updated_at_ms`, same slot as the
    /// hash.
    pub fn identity_updated(&self, identity: &str) -> String {
        self.identity_key(identity, "u")
    }

    /// `<p>id:{<identity>}:<suffix>`. The hash tag ends at the identity's first `}`, which keeps
    /// an identity's keys in one slot, unless the identity starts with `}`: its tag would be
    /// empty and Redis Cluster would hash each whole key to a slot of its own (a CROSSSLOT error
    /// in the binding scripts). Those identities get `<p>id}:{=}<identity>:<suffix>`, a family
    /// no other identity's keys can collide with (they all start with `<p>id:{`), tagged `=`:
    /// they share one slot, which only such (rare) identities use.
    fn identity_key(&self, identity: &str, suffix: &str) -> String {
        join(&self.identity_key_parts(identity, suffix))
    }

    /// [`Keys::identity_key`] in its pieces.
    fn identity_key_parts<'a>(&'a self, identity: &'a str, suffix: &'a str) -> [&'a [u8]; 5] {
        let p = self.prefix.as_bytes();
        if identity.starts_with('}') {
            [p, b"id}:{=}", identity.as_bytes(), b":", suffix.as_bytes()]
        } else {
            [p, b"id:{", identity.as_bytes(), b"}:", suffix.as_bytes()]
        }
    }

    /// `<p>dev:{<credential>:<device_token>}`: which identity (and binding) owns the device token
    /// under the credential.
    pub fn device(&self, credential: &str, device_token: &str) -> String {
        join(&self.device_parts(credential, device_token))
    }

    /// `<p>sent:{<call_sid>}`: hash device → push state of one call (the no-double-ring ledger,
    /// `dispatch::ledger`).
    pub fn sent(&self, call_sid: &str) -> String {
        join(&self.sent_parts(call_sid))
    }

    /// [`Keys::identity_bindings`] in the pieces it is made of ([`Keys::sent_parts`]).
    pub fn identity_bindings_parts<'a>(&'a self, identity: &'a str) -> [&'a [u8]; 5] {
        self.identity_key_parts(identity, "b")
    }

    /// [`Keys::device`] in the pieces it is made of ([`Keys::sent_parts`]).
    pub fn device_parts<'a>(&'a self, credential: &'a str, device_token: &'a str) -> [&'a [u8]; 6] {
        [
            self.prefix.as_bytes(),
            b"dev:{",
            credential.as_bytes(),
            b":",
            device_token.as_bytes(),
            b"}",
        ]
    }

    /// [`Keys::sent`] in the pieces it is made of, to be written out without joining them
    /// first ([`super::wire::Commands::arg_parts`]).
    pub fn sent_parts<'a>(&'a self, call_sid: &'a str) -> [&'a [u8]; 4] {
        [self.prefix.as_bytes(), b"sent:{", call_sid.as_bytes(), b"}"]
    }

    /// `<p><name>`: any other key callpush owns, so its prefix is applied in one place.
    pub fn named(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }
}

/// A key from its pieces (every piece comes from a `&str`, so the whole is UTF-8).
fn join(parts: &[&[u8]]) -> String {
    String::from_utf8(parts.concat()).expect("pieces of str make a str")
}

/// Every shard's keys: `stream.shards` streams (and their results and dead letters), the
/// unsharded names when there is one shard and no cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    shards: Vec<Keys>,
}

impl Layout {
    /// The layout of `shards` shards under `prefix`. On a cluster every shard carries a hash
    /// tag ([`shard_tag`]), even a single one, so each `finish` script stays in one slot.
    pub fn new(prefix: &str, shards: u32, cluster: bool) -> Result<Layout, KeyError> {
        let shards = shards.max(1);
        if shards == 1 && !cluster {
            return Ok(Layout {
                shards: vec![Keys::new(prefix)?],
            });
        }
        let shards = (0..shards)
            .map(|i| Keys::with_tag(prefix, &shard_tag(i, shards)))
            .collect::<Result<_, _>>()?;
        Ok(Layout { shards })
    }

    /// Every shard, in order.
    pub fn shards(&self) -> &[Keys] {
        &self.shards
    }

    /// The shard an event to `to` belongs to ([`shard_of`]).
    pub fn shard_for(&self, to: &str) -> &Keys {
        &self.shards[shard_of(to, self.shards.len() as u32)]
    }

    /// The first shard, whose keys the per-identity and per-call names are taken from.
    pub fn first(&self) -> &Keys {
        &self.shards[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_carry_the_prefix_and_hash_tags() {
        let k = Keys::new("cp:").unwrap();
        assert_eq!(k.calls, "cp:calls");
        assert_eq!(k.results, "cp:results");
        assert_eq!(k.dead, "cp:dead");
        assert_eq!(k.identity_bindings("alice"), "cp:id:{alice}:b");
        assert_eq!(k.identity_updated("alice"), "cp:id:{alice}:u");
        assert_eq!(k.device("CR1", "ab:cd"), "cp:dev:{CR1:ab:cd}");
        assert_eq!(k.named("x"), "cp:x");
        assert_eq!(k.sent("CA1"), "cp:sent:{CA1}");
    }

    #[test]
    fn an_identity_starting_with_a_closing_brace_keeps_its_keys_in_one_slot() {
        let k = Keys::new("cp:").unwrap();
        for identity in ["}alice", "}", "}}{", "al}ice", "{", "{}"] {
            let (b, u) = (k.identity_bindings(identity), k.identity_updated(identity));
            assert_eq!(key_slot(&b), key_slot(&u), "{b} {u}");
            assert!(b.starts_with("cp:") && u.starts_with("cp:"));
        }
        assert_eq!(k.identity_bindings("}alice"), "cp:id}:{=}}alice:b");
        // No other identity's key is the same.
        assert_ne!(
            k.identity_bindings("=}}alice"),
            k.identity_bindings("}alice")
        );
    }

    #[test]
    fn one_shard_without_cluster_keeps_todays_names() {
        let layout = Layout::new("cp:", 1, false).unwrap();
        assert_eq!(layout.shards(), &[Keys::new("cp:").unwrap()]);
        assert_eq!(layout.first().once("m1"), "cp:once:m1");
    }

    #[test]
    fn every_script_keeps_to_one_slot() {
        let layout = Layout::new("cp:", 4, true).unwrap();
        let mut shard_slots = Vec::new();
        for keys in layout.shards() {
            // finish.lua (calls, results, dead), replay.lua (dead, calls), enqueue_once.lua
            // (once marker, calls).
            let slot = key_slot(&keys.calls);
            assert_eq!(key_slot(&keys.results), slot);
            assert_eq!(key_slot(&keys.dead), slot);
            assert_eq!(key_slot(&keys.once("MM123")), slot);
            shard_slots.push(slot);
        }
        // One master of three (equal ranges) per shard at least.
        let masters: std::collections::BTreeSet<_> =
            shard_slots.iter().map(|s| *s as u32 * 3 / 16384).collect();
        assert_eq!(masters.len(), 3, "{shard_slots:?}");
        // upsert.lua / remove*.lua (one identity), claim/release (one device), the ledger.
        let k = layout.first();
        assert_eq!(
            key_slot(&k.identity_bindings("al{ice")),
            key_slot(&k.identity_updated("al{ice"))
        );
        assert_eq!(k.sent("CA1"), "cp:sent:{CA1}");
        assert_eq!(
            layout.shards()[0].calls,
            format!("cp:{{{}}}calls", shard_tag(0, 4))
        );
    }

    #[test]
    fn events_go_to_the_shard_of_their_to() {
        let layout = Layout::new("cp:", 4, false).unwrap();
        assert_eq!(layout.shard_for("alice"), &layout.shards()[3]);
        assert_eq!(
            layout.shard_for("alice").tag(),
            Some(shard_tag(3, 4).as_str())
        );
    }

    #[test]
    fn braces_in_the_prefix_are_refused() {
        assert_eq!(Keys::new("a{b}:"), Err(KeyError::BraceInPrefix));
    }
}
