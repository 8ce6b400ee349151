//! Listing bindings: the key layout, the ownership check, one identity or a batch, and what both stores keep of environments and targets.

use super::*;

#[tokio::test]
async fn keys_are_hash_tagged_by_identity_and_device_and_expire() {
    let f = fixture(365, 20).await;
    let reg = f.register("alice", 1, now_ms()).await;
    let p = f.keys.prefix();

    let mut conn = f.conn.clone();
    let mut found: Vec<String> = conn.keys(format!("{p}*")).await.unwrap();
    found.sort();
    let device_key = format!("{p}dev:{{{CRED}:{}}}", token(1));
    let mut expected = vec![
        device_key.clone(),
        format!("{p}id:{{alice}}:b"),
        format!("{p}id:{{alice}}:u"),
    ];
    // The binding feed (SPEC §11), capped rather than expiring.
    let feed = format!("{p}binding-events");
    found.retain(|k| k != &feed);
    expected.sort();
    assert_eq!(found, expected);

    for key in &expected {
        let ttl: i64 = conn.pttl(key).await.unwrap();
        assert!(ttl > 364 * DAY_MS as i64, "{key} has the binding TTL");
    }
    let owner: String = conn.get(&device_key).await.unwrap();
    assert_eq!(owner, format!("alice\n{}", reg.binding.binding_id));
}

#[tokio::test]
async fn list_skips_a_binding_whose_device_key_names_another_identity() {
    // What a registration interrupted between its steps leaves behind: the device key already
    // names bob, alice's hash still holds the token.
    for (way, f) in both_fixtures(365, 20).await {
        println!("{way}");
        f.register("alice", 1, now_ms()).await;
        f.set_device_owner(1, "bob\nBS0").await;
        let mut conn = f.conn.clone();

        assert!(f.store.list("alice").await.unwrap().is_empty());
        let stored: usize = conn.hlen(f.keys.identity_bindings("alice")).await.unwrap();
        assert_eq!(stored, 0, "the stale binding is cleaned up");
    }
}

#[tokio::test]
async fn list_many_answers_each_identity_in_order_with_the_ownership_check() {
    // The dispatcher's lookup stage: the bindings of a whole read batch in two round trips.
    // Identities repeat (two calls to one callee), one has nothing, one holds a binding whose
    // token moved on.
    for (way, f) in both_fixtures(365, 20).await {
        println!("{way}");
        let t0 = now_ms();
        let devices = [("alice", 1), ("alice", 2), ("bob", 3), ("carol", 4)];
        f.register_all(&devices, t0).await;
        f.set_device_owner(4, "dave\nBS0").await;

        let lists = f
            .store
            .list_many(&["alice", "nobody", "bob", "alice", "carol"])
            .await
            .into_iter()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let seen: Vec<Vec<String>> = lists.iter().map(|l| tokens(l)).collect();
        assert_eq!(
            seen,
            vec![
                vec![token(2), token(1)],
                vec![],
                vec![token(3)],
                vec![token(2), token(1)],
                vec![],
            ]
        );
        for (identity, list) in ["alice", "nobody", "bob", "alice", "carol"]
            .iter()
            .zip(&lists)
        {
            assert_eq!(&f.store.list(identity).await.unwrap(), list);
        }
    }
}

#[tokio::test]
async fn list_many_isolates_what_cannot_be_read() {
    // One identity's hash holds a binding another version wrote, another identity's key is
    // not a hash at all: each answer is its own, and the readable bindings are all listed.
    for (way, f) in both_fixtures(365, 20).await {
        println!("{way}");
        f.register_all(&[("alice", 1), ("alice", 2), ("bob", 3)], now_ms())
            .await;
        let mut conn = f.conn.clone();
        let _: () = conn
            .hset(f.keys.identity_bindings("alice"), "BSfuture", "{\"v\":2}")
            .await
            .unwrap();
        let _: () = conn
            .set(f.keys.identity_bindings("eve"), "a string")
            .await
            .unwrap();

        let lists = f.store.list_many(&["alice", "eve", "bob"]).await;
        assert_eq!(tokens(lists[0].as_ref().unwrap()), vec![token(2), token(1)]);
        let refused = lists[1].as_ref().unwrap_err();
        assert!(
            !refused.is_transient(),
            "WRONGTYPE is the entry's: {refused}"
        );
        assert_eq!(tokens(lists[2].as_ref().unwrap()), vec![token(3)]);
        assert_eq!(f.store.undecodable_skipped(), 1);
    }
}

/// What both stores do with a binding's APNs environment and FCM target (SPEC §4): learned once
/// and kept, kept through a refresh that names none, replaced by one that names one, never
/// overwritten by learning; an FID stored as an FID.
async fn environments_and_targets_are_kept(store: &dyn BindingStore) {
    use callpush::domain::ApnsEnvironment::{Production, Sandbox};
    use callpush::domain::Target;
    let t0 = now_ms();
    let first = store.register(apns("alice", &token(1)), t0).await.unwrap();
    assert_eq!(first.binding.environment, None);
    assert!(store
        .learn_environment("alice", CRED, &token(1), Sandbox)
        .await
        .unwrap());
    let listed = store.list("alice").await.unwrap();
    assert_eq!(listed[0].environment, Some(Sandbox));
    assert!(listed[0].environment_learned);
    assert_eq!(
        (listed[0].created_at_ms, listed[0].updated_at_ms),
        (t0, t0),
        "the rest of the binding is untouched"
    );
    assert!(
        !store
            .learn_environment("alice", CRED, &token(1), Production)
            .await
            .unwrap(),
        "learned once"
    );

    let again = store
        .register(apns("alice", &token(1)), t0 + 1_000)
        .await
        .unwrap();
    assert!(!again.created);
    assert_eq!(again.binding.environment, Some(Sandbox), "kept on refresh");
    assert!(again.binding.environment_learned);
    assert_eq!(store.list("alice").await.unwrap(), vec![again.binding]);

    let named = NewBinding {
        environment: Some(Production),
        ..apns("alice", &token(1))
    };
    let named = store.register(named, t0 + 2_000).await.unwrap().binding;
    assert_eq!(
        (named.environment, named.environment_learned),
        (Some(Production), false)
    );
    assert!(!store
        .learn_environment("alice", CRED, &token(1), Sandbox)
        .await
        .unwrap());
    assert_eq!(store.list("alice").await.unwrap(), vec![named]);
    assert!(!store
        .learn_environment("nobody", CRED, &token(1), Sandbox)
        .await
        .unwrap());

    let fid = NewBinding {
        identity: "bob".into(),
        platform: Platform::Fcm,
        credential: "CRfcm".into(),
        device_token: "cF3kq9zYRv2X-B8mN1pQ_w".into(),
        target: Target::Fid,
        environment: None,
    };
    let stored = store.register(fid, t0).await.unwrap().binding;
    assert_eq!(stored.target, Target::Fid);
    assert_eq!(store.list("bob").await.unwrap(), vec![stored]);
    assert!(store
        .unregister("bob", "CRfcm", "cF3kq9zYRv2X-B8mN1pQ_w")
        .await
        .unwrap());
}

#[tokio::test]
async fn environments_and_targets_are_kept_in_redis() {
    let f = fixture(365, 20).await;
    environments_and_targets_are_kept(&f.store).await;
}

#[tokio::test]
async fn environments_and_targets_are_kept_in_memory() {
    let store = callpush::memory::MemoryBindingStore::new(365, 20);
    environments_and_targets_are_kept(&store).await;
}
