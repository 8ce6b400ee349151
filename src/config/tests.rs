//! Loading and validation together, from TOML text: defaults, every check naming its key, and
//! the shipped example.

use super::{ConfigError, CredentialSettings, Settings};

fn load(text: &str) -> Result<Settings, ConfigError> {
    Settings::from_toml_with_env(text, Vec::new())
}

#[test]
fn defaults_are_valid() {
    let s = load("").unwrap();
    assert_eq!(s.redis.key_prefix, "callpush:");
    assert_eq!(s.workers.max_in_flight, 4096);
    assert_eq!(s.bindings.max_per_identity, 20);
}

#[test]
fn twilio_settings_and_payload_format() {
    let s = load(
        "[twilio]\nwebhook_url=\"https://h/p\"\n[[credentials]]\nsid=\"CR1\"\nplatform=\"fcm\"\nservice_account_file=\"/f\"\npayload=\"twilio\"\n",
    )
    .unwrap();
    assert_eq!(s.twilio.ring_ttl_ms, 30_000);
    assert_eq!(s.twilio.shared_key_file, None);
    let keyed = load("[twilio]\nshared_key_file=\"/etc/k\"\n").unwrap();
    assert_eq!(keyed.twilio.shared_key_file, Some("/etc/k".into()));
    let CredentialSettings::Fcm(c) = &s.credentials[0] else {
        panic!("an FCM credential");
    };
    assert_eq!(c.payload, crate::config::PayloadFormat::Twilio);
    let err = load("[twilio]\nring_ttl_ms = 0\n").unwrap_err();
    assert!(err.to_string().contains("twilio.ring_ttl_ms"), "{err}");
    let err = load("[twilio]\nwebhook_url = \"push.example.com\"\n").unwrap_err();
    assert!(err.to_string().contains("twilio.webhook_url"), "{err}");
    let err = load("[[credentials]]\nsid=\"CR1\"\nplatform=\"fcm\"\nservice_account_file=\"/f\"\npayload=\"gcm\"\n").unwrap_err();
    assert!(err.to_string().contains("credentials[0]"), "{err}");
}

#[test]
fn unknown_key_is_named() {
    let err = load("[redis]\nurl = \"redis://x\"\nurll = 1\n").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("urll"), "{msg}");
}

#[test]
fn credential_errors_name_the_key() {
    let err = load(
        "[[credentials]]\nsid=\"CR1\"\nplatform=\"apns\"\nbundle_id=\"a.voip\"\nteam_id=\"T\"\nkey_id=\"K\"\nkey_file=\"/k\"\n",
    )
    .unwrap_err();
    assert!(
        err.to_string().contains("credentials[0].bundle_id"),
        "{err}"
    );
    let err = load("[[credentials]]\nsid=\"CR1\"\nplatform=\"apns\"\n").unwrap_err();
    assert!(err.to_string().contains("credentials[0]"), "{err}");
    let err = load("[[credentials]]\nsid=\"CR1\"\nplatform=\"gcm\"\n").unwrap_err();
    assert!(err.to_string().contains("credentials[0]"), "{err}");
}

#[test]
fn apns_environments_follow_the_hosts_and_the_keys_scope() {
    use crate::domain::ApnsEnvironment::{Production, Sandbox};
    let base = "[[credentials]]\nsid=\"CR1\"\nplatform=\"apns\"\nbundle_id=\"a\"\nteam_id=\"T\"\nkey_id=\"K\"\nkey_file=\"/k\"\n";
    let of = |extra: &str| {
        let s = load(&format!("{base}{extra}")).unwrap();
        let crate::config::CredentialSettings::Apns(c) = &s.credentials[0] else {
            panic!("an APNs credential");
        };
        let e = c.environments();
        let hosts = (
            c.endpoint_of(Production).to_string(),
            c.endpoint_of(Sandbox).to_string(),
        );
        (e.default, e.other, hosts)
    };
    let apple = (
        "https://api.push.apple.com".to_string(),
        "https://api.sandbox.push.apple.com".to_string(),
    );
    assert_eq!(of(""), (Production, Some(Sandbox), apple.clone()));
    // A double or proxy for one environment: callpush never goes around it to Apple.
    let (default, other, hosts) = of("endpoint=\"http://p:1\"\n");
    assert_eq!((default, other), (Production, None));
    assert_eq!(hosts.0, "http://p:1");
    let both = "endpoint=\"http://p:1\"\nsandbox_endpoint=\"http://s:1\"\n";
    let (_, other, hosts) = of(both);
    assert_eq!(other, Some(Sandbox));
    assert_eq!(hosts, ("http://p:1".into(), "http://s:1".into()));
    // The one-host form of earlier versions: a sandbox credential's endpoint is its host.
    let (default, other, hosts) = of("environment=\"sandbox\"\nendpoint=\"http://s:1\"\n");
    assert_eq!((default, other), (Sandbox, None));
    assert_eq!(hosts, (apple.0.clone(), "http://s:1".into()));
    // A key Apple scoped to production.
    let scoped = "environments=[\"production\"]\n";
    assert_eq!(of(scoped), (Production, None, apple.clone()));
    let listed = "endpoint=\"http://p:1\"\nenvironments=[\"production\",\"sandbox\"]\n";
    assert_eq!(of(listed).1, Some(Sandbox), "listed explicitly: both");
    for (extra, needle) in [
        ("environments=[]\n", "at least one"),
        ("environments=[\"sandbox\"]\n", "needs environment"),
        (
            "environments=[\"sandbox\",\"sandbox\"]\nenvironment=\"sandbox\"\n",
            "twice",
        ),
        ("environments=[\"staging\"]\n", "credentials[0]"),
        ("sandbox_endpoint=\"sandbox.example\"\n", "sandbox_endpoint"),
    ] {
        let err = load(&format!("{base}{extra}")).unwrap_err().to_string();
        assert!(err.contains("credentials[0]"), "{extra}: {err}");
        assert!(err.contains(needle), "{extra}: {err}");
    }
}

#[test]
fn the_shipped_example_is_valid() {
    let s = load(include_str!("../../deploy/callpush.example.toml")).unwrap();
    assert_eq!(s.credentials.len(), 2);
    assert_eq!(s.credentials[0].platform(), crate::domain::Platform::Apns);
    let err = load(
        "[[credentials]]\nsid=\"CR1\"\nplatform=\"fcm\"\nservice_account_file=\"/f\"\nbundle_id=\"x\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("bundle_id"), "{err}");
}

#[test]
fn cluster_and_shard_settings_are_checked_naming_the_key() {
    for (toml, key) in [
        ("[stream]\nshards = 0\n", "stream.shards"),
        ("[stream]\nshards = 65\n", "stream.shards"),
        ("[redis]\nurls = [\"redis://a:1\"]\n", "redis.urls"),
        (
            "[redis]\ncluster = true\nurls = [\"a:1\"]\n",
            "redis.urls[0]",
        ),
    ] {
        let err = load(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
    let s = load("[redis]\ncluster = true\nurls = [\"redis://a:1\", \"redis://b:2\"]\n[stream]\nshards = 4\n")
        .unwrap();
    assert!(s.redis.cluster);
    assert_eq!(s.stream.shards, 4);
}

#[test]
fn a_claim_idle_below_the_minimum_is_refused_naming_the_key() {
    for value in [0, 1, 999] {
        let err = load(&format!("[stream]\nclaim_idle_ms = {value}\n")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("stream.claim_idle_ms"), "{msg}");
        assert!(msg.contains("1000"), "{msg}");
    }
    assert!(load("[stream]\nclaim_idle_ms = 1000\n").is_ok());
    let err = Settings::from_toml_with_env(
        "",
        vec![("CALLPUSH_STREAM__CLAIM_IDLE_MS".into(), "0".into())],
    )
    .unwrap_err();
    assert!(err.to_string().contains("stream.claim_idle_ms"), "{err}");
}

#[test]
fn the_consumer_idle_threshold_is_at_least_the_claim_idle_and_defaults_to_an_hour() {
    let err = load("[stream]\nclaim_idle_ms = 2000\nconsumer_idle_delete_ms = 1999\n")
        .unwrap_err()
        .to_string();
    assert!(err.contains("stream.consumer_idle_delete_ms"), "{err}");
    let s = load("[stream]\nclaim_idle_ms = 2000\nconsumer_idle_delete_ms = 2000\n").unwrap();
    assert_eq!(s.stream.consumer_idle_delete().as_millis(), 2_000);
    assert_eq!(
        load("").unwrap().stream.consumer_idle_delete().as_secs(),
        3_600
    );
    let long = load("[stream]\nclaim_idle_ms = 600000\n").unwrap();
    assert_eq!(long.stream.consumer_idle_delete().as_secs(), 6_000);
}

#[test]
fn a_claim_idle_below_five_seconds_is_accepted_but_short() {
    for value in [1000, 2000, 4999] {
        let s = load(&format!("[stream]\nclaim_idle_ms = {value}\n")).unwrap();
        assert!(s.claim_idle_is_short(), "{value}");
    }
    for value in [5000, 10_000] {
        let s = load(&format!("[stream]\nclaim_idle_ms = {value}\n")).unwrap();
        assert!(!s.claim_idle_is_short(), "{value}");
    }
    assert!(!load("").unwrap().claim_idle_is_short(), "the default");
}

#[test]
fn a_ca_file_without_tls_is_refused_naming_the_key() {
    let err = load("[redis]\nurl = \"redis://r:6379\"\nca_file = \"/ca.pem\"\n").unwrap_err();
    assert!(err.to_string().contains("redis.ca_file"), "{err}");
    let ok = load("[redis]\nurl = \"rediss://r:6380\"\nca_file = \"/ca.pem\"\nusername = \"cp\"\npassword_file = \"/p\"\n");
    assert!(ok.is_ok(), "{ok:?}");
}

#[test]
fn listener_limits_and_tls_are_checked_naming_the_key() {
    for (toml, key) in [
        (
            "[api.limits]\nmax_connections = 0\n",
            "api.limits.max_connections",
        ),
        (
            "[admin.limits]\nheader_read_timeout_ms = 0\n",
            "admin.limits.header_read_timeout_ms",
        ),
        (
            "[api.limits]\nmax_header_bytes = 100\n",
            "api.limits.max_header_bytes",
        ),
        (
            "[api.limits]\nmax_concurrent_requests = 0\n",
            "api.limits.max_concurrent_requests",
        ),
        ("[api]\ntls_cert_file = \"/c.pem\"\n", "api.tls_key_file"),
        ("[api]\ntls_key_file = \"/k.pem\"\n", "api.tls_cert_file"),
        ("[api.limits]\nmax_conections = 5\n", "max_conections"),
    ] {
        let err = load(toml).unwrap_err().to_string();
        assert!(err.contains(key), "{toml}: {err}");
    }
    let s = load("[api.limits]\nmax_connections = 5\n[admin.limits]\nbody_read_timeout_ms = 7\n")
        .unwrap();
    assert_eq!(s.api.limits.max_connections, 5);
    assert_eq!(s.admin.limits.body_read_timeout_ms, 7);
    assert_eq!(s.admin.limits.max_connections, 10_000);
}

#[test]
fn wrong_type_is_named() {
    let err = load("[workers]\nmax_in_flight = \"many\"\n").unwrap_err();
    assert!(err.to_string().contains("workers.max_in_flight"), "{err}");
}
