//! The Redis binding store against a real redis-server: registration, token moves, the cap,
//! race-safe pruning, expiry, unregistering, and the key layout.

#[path = "../support/mod.rs"]
mod support;

mod listing;

use callpush::bindings::redis::RedisBindingStore;
use callpush::bindings::{Binding, BindingStore, NewBinding, Registered};
use callpush::domain::{now_ms, Platform};
use callpush::redis_conn::Keys;
use redis::aio::ConnectionManager;
use redis::AsyncCommands;
use support::fixtures::numbered_apns_token as token;
use support::redis_server::{unique_prefix, RedisServer};

const DAY_MS: u64 = 86_400_000;
const CRED: &str = "CR00000000000000000000000000000001";

struct Fixture {
    // Kept alive for the test's duration; the server dies with it.
    _redis: RedisServer,
    store: RedisBindingStore,
    keys: Keys,
    conn: ConnectionManager,
}

/// A store on the daemon's connection (its lookups on the wire connection).
async fn fixture(ttl_days: u32, max_per_identity: usize) -> Fixture {
    fixture_on(ttl_days, max_per_identity, true).await
}

/// The fixture both ways the store reads bindings: on the daemon's wire connection, and on the
/// client's alone (what a `rediss://` server gets).
async fn both_fixtures(ttl_days: u32, max_per_identity: usize) -> [(&'static str, Fixture); 2] {
    [
        ("wire", fixture_on(ttl_days, max_per_identity, true).await),
        (
            "client",
            fixture_on(ttl_days, max_per_identity, false).await,
        ),
    ]
}

async fn fixture_on(ttl_days: u32, max_per_identity: usize, wire: bool) -> Fixture {
    let redis = RedisServer::start().await;
    let keys = Keys::new(&unique_prefix()).unwrap();
    let conn = redis.conn().await;
    let store_conn = match wire {
        true => callpush::redis_conn::connect(&redis.settings(""))
            .await
            .unwrap(),
        false => conn.clone().into(),
    };
    assert_eq!(store_conn.wire().is_some(), wire);
    let store = RedisBindingStore::new(store_conn, keys.clone(), ttl_days, max_per_identity);
    Fixture {
        _redis: redis,
        store,
        keys,
        conn,
    }
}

impl Fixture {
    /// Register alice's (or another identity's) APNs device `n` at `at_ms`.
    async fn register(&self, identity: &str, n: u64, at_ms: u64) -> Registered {
        self.store
            .register(apns(identity, &token(n)), at_ms)
            .await
            .unwrap()
    }

    /// Register each `(identity, n)` at `t0 + n`: one millisecond apart, so "most recently
    /// updated first" has one answer.
    async fn register_all(&self, devices: &[(&str, u64)], t0: u64) {
        for &(identity, n) in devices {
            self.register(identity, n, t0 + n).await;
        }
    }

    /// The device tokens `identity` lists, most recently updated first.
    async fn listed(&self, identity: &str) -> Vec<String> {
        tokens(&self.store.list(identity).await.unwrap())
    }

    /// Whether device `n`'s key (its owner) exists.
    async fn device_key_exists(&self, n: u64) -> bool {
        let mut conn = self.conn.clone();
        conn.exists(self.keys.device(CRED, &token(n)))
            .await
            .unwrap()
    }

    /// Make device `n`'s key name `owner` (`identity\nbinding id`), as an interrupted
    /// registration leaves it.
    async fn set_device_owner(&self, n: u64, owner: &str) {
        let mut conn = self.conn.clone();
        let _: () = conn
            .set(self.keys.device(CRED, &token(n)), owner)
            .await
            .unwrap();
    }
}

fn apns(identity: &str, device_token: &str) -> NewBinding {
    NewBinding {
        identity: identity.into(),
        platform: Platform::Apns,
        credential: CRED.into(),
        device_token: device_token.into(),
        target: Default::default(),
        environment: None,
    }
}

fn tokens(bindings: &[Binding]) -> Vec<String> {
    bindings.iter().map(|b| b.device_token.clone()).collect()
}

#[tokio::test]
async fn registering_twice_refreshes_the_same_binding() {
    let f = fixture(365, 20).await;
    let t0 = now_ms();

    let first = f.register("alice", 1, t0).await;
    assert!(first.created);
    assert!(first.binding.binding_id.starts_with("BS"));
    assert_eq!(first.binding.created_at_ms, t0);
    assert_eq!(first.binding.updated_at_ms, t0);
    assert_eq!(first.binding.expires_at_ms, t0 + 365 * DAY_MS);
    assert_eq!(first.moved_from, None);

    let t1 = t0 + 1_000;
    let again = f.register("alice", 1, t1).await;
    assert!(!again.created);
    assert_eq!(again.binding.binding_id, first.binding.binding_id);
    assert_eq!(again.binding.created_at_ms, t0);
    assert_eq!(again.binding.updated_at_ms, t1);
    assert_eq!(again.binding.expires_at_ms, t1 + 365 * DAY_MS);

    let listed = f.store.list("alice").await.unwrap();
    assert_eq!(listed, vec![again.binding]);
}

#[tokio::test]
async fn a_token_registered_for_bob_is_gone_from_alice() {
    let f = fixture(365, 20).await;
    let t0 = now_ms();
    f.register("alice", 1, t0).await;
    f.register("alice", 2, t0).await;

    let bob = f.register("bob", 1, t0 + 10).await;
    assert!(bob.created);
    assert_eq!(bob.moved_from.as_deref(), Some("alice"));

    assert_eq!(f.listed("alice").await, vec![token(2)]);
    assert_eq!(f.listed("bob").await, vec![token(1)]);
}

#[tokio::test]
async fn the_cap_evicts_the_least_recently_updated() {
    let f = fixture(365, 3).await;
    let t0 = now_ms();
    f.register_all(&[("alice", 1), ("alice", 2), ("alice", 3)], t0)
        .await;
    // Refreshing token 1 makes token 2 the least recently updated.
    f.register("alice", 1, t0 + 10).await;

    let fourth = f.register("alice", 4, t0 + 20).await;
    assert_eq!(tokens(&fourth.evicted), vec![token(2)]);
    assert_eq!(f.listed("alice").await, vec![token(4), token(1), token(3)]);

    assert!(
        !f.device_key_exists(2).await,
        "the evicted binding's device key is released"
    );
    assert!(f.device_key_exists(3).await);

    // The evicted token can come back, as a new binding.
    let back = f.register("alice", 2, t0 + 30).await;
    assert!(back.created);
    assert_eq!(tokens(&back.evicted), vec![token(3)]);
}

#[tokio::test]
async fn pruning_spares_a_binding_re_registered_after_the_verdict() {
    let f = fixture(365, 20).await;
    let t0 = now_ms();
    let first = f.register("alice", 1, t0).await;
    f.register("alice", 1, t0 + 1_000).await;

    // The provider judged the token dead before the app registered it again: keep it.
    let pruned = f
        .store
        .prune(&first.binding, t0 + 500, "Unregistered")
        .await
        .unwrap();
    assert!(!pruned);
    assert_eq!(f.store.list("alice").await.unwrap().len(), 1);

    // A binding with the same id but another token is never touched.
    let mut other = first.binding.clone();
    other.device_token = token(9);
    assert!(!f
        .store
        .prune(&other, t0 + 5_000, "Unregistered")
        .await
        .unwrap());

    // Judged dead after the last registration: removed, device key released.
    assert!(f
        .store
        .prune(&first.binding, t0 + 1_500, "Unregistered")
        .await
        .unwrap());
    assert!(f.store.list("alice").await.unwrap().is_empty());
    assert!(!f.device_key_exists(1).await);
    assert!(!f
        .store
        .prune(&first.binding, t0 + 1_500, "Unregistered")
        .await
        .unwrap());
}

#[tokio::test]
async fn expired_bindings_are_not_listed_and_are_dropped_on_the_next_registration() {
    let f = fixture(1, 20).await;
    let long_ago = now_ms() - 2 * DAY_MS;
    f.register("alice", 1, long_ago).await;
    assert!(f.store.list("alice").await.unwrap().is_empty());

    f.register("alice", 2, now_ms()).await;
    assert_eq!(f.listed("alice").await, vec![token(2)]);
    let mut conn = f.conn.clone();
    let stored: usize = conn.hlen(f.keys.identity_bindings("alice")).await.unwrap();
    assert_eq!(stored, 1, "the expired binding is dropped from the hash");

    // Registering the expired token again creates a fresh binding.
    let again = f.register("alice", 1, now_ms()).await;
    assert!(again.created);
}

#[tokio::test]
async fn unregister_and_delete_only_remove_the_callers_own_binding() {
    let f = fixture(365, 20).await;
    let t0 = now_ms();
    let alice = f.register("alice", 1, t0).await;
    f.register("bob", 2, t0).await;

    assert!(!f.store.unregister("alice", CRED, &token(2)).await.unwrap());
    assert_eq!(f.listed("bob").await, vec![token(2)]);

    assert!(f.store.unregister("alice", CRED, &token(1)).await.unwrap());
    assert!(f.store.list("alice").await.unwrap().is_empty());
    assert!(!f.store.unregister("alice", CRED, &token(1)).await.unwrap());
    assert!(!f.device_key_exists(1).await);

    let bob = f.store.list("bob").await.unwrap().remove(0);
    assert!(!f.store.delete("alice", &bob.binding_id).await.unwrap());
    assert!(f.store.delete("bob", &bob.binding_id).await.unwrap());
    assert!(!f.store.delete("bob", &bob.binding_id).await.unwrap());
    assert!(!f
        .store
        .delete("alice", &alice.binding.binding_id)
        .await
        .unwrap());
}
