//! `callpush dlq … --admin`: the CLI acting through a daemon's admin API, and its one-line failures.

use super::*;

/// `callpush dlq … --admin`: a purge through the admin API acts like the Redis path, and
/// failures are one line with a failure status — the API's refusal, a wrong token, a missing
/// token, a daemon that is not there.
#[tokio::test]
async fn the_cli_through_the_admin_api_acts_and_fails_with_one_line() {
    let mut w = ApiWorld::on(Backend::Memory, |_| {}).await;
    let ids = seed(&mut w).await;
    let admin = w.serve_admin().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("callpush.toml");
    std::fs::write(&config, config_toml(&w.world, "cli", &Knobs::default())).unwrap();
    let (_, summary) = cli(
        &config,
        &["--admin", &admin],
        &["dlq", "purge", &ids[0], "--yes"],
    )
    .await;
    assert_eq!(summary["purged"], 1, "{summary}");
    assert_eq!(dead::world_streams(&mut w.world).await.0.len(), 4);

    let run = |args: Vec<String>, token: Option<&'static str>| {
        let config = config.clone();
        async move {
            let mut command = Command::new(env!("CARGO_BIN_EXE_callpush"));
            command.args(&args).arg("--config").arg(&config);
            command.env_remove("CALLPUSH_ADMIN_TOKEN");
            if let Some(token) = token {
                command.env("CALLPUSH_ADMIN_TOKEN", token);
            }
            let out = tokio::task::spawn_blocking(move || command.output())
                .await
                .unwrap()
                .unwrap();
            assert!(!out.status.success(), "{args:?} succeeded");
            String::from_utf8_lossy(&out.stderr).trim().to_string()
        }
    };
    let show = |id: &str, url: &str| {
        ["dlq", "show", id, "--admin", url]
            .map(String::from)
            .to_vec()
    };
    let gone = run(show(&ids[0], &admin), Some(ADMIN_TOKEN)).await;
    assert_eq!(
        gone,
        format!(
            "callpush: admin API answered 404: no dead letter with id {}",
            ids[0]
        )
    );
    let wrong = run(show(&ids[1], &admin), Some("not-the-token")).await;
    assert!(
        wrong.starts_with("callpush: admin API answered 401"),
        "{wrong}"
    );
    let missing = run(show(&ids[1], &admin), None).await;
    assert!(missing.contains("CALLPUSH_ADMIN_TOKEN"), "{missing}");
    let nobody = run(show(&ids[1], "http://127.0.0.1:1"), Some(ADMIN_TOKEN)).await;
    assert!(
        nobody.starts_with("callpush: admin API http://127.0.0.1:1:"),
        "{nobody}"
    );
    for err in [gone, wrong, missing, nobody] {
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}
