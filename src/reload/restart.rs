//! Which sections of a new configuration differ from the running one and apply only after a
//! restart (see the module doc of [`super`] for why each does).

use crate::config::Settings;

/// How the HTTPS certificate and key are named in reports.
pub(super) const TLS_FILES: &str = "api.tls_cert_file / api.tls_key_file";

/// The sections of `next` that differ from `running` and apply only after a restart.
pub fn restart_required(running: &Settings, next: &Settings) -> Vec<String> {
    let differs =
        |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let sections: [(&str, bool); 15] = [
        ("api.listen", running.api.listen != next.api.listen),
        (
            TLS_FILES,
            running.api.tls_cert_file != next.api.tls_cert_file
                || running.api.tls_key_file != next.api.tls_key_file,
        ),
        ("api.limits", differs(&running.api.limits, &next.api.limits)),
        ("admin.listen", running.admin.listen != next.admin.listen),
        (
            "admin.limits",
            differs(&running.admin.limits, &next.admin.limits),
        ),
        ("redis", differs(&running.redis, &next.redis)),
        ("stream", differs(&running.stream, &next.stream)),
        ("workers", differs(&running.workers, &next.workers)),
        ("retry", differs(&running.retry, &next.retry)),
        ("limits.scope", running.limits.scope != next.limits.scope),
        ("bindings", differs(&running.bindings, &next.bindings)),
        ("results", differs(&running.results, &next.results)),
        (
            "dead_letters",
            differs(&running.dead_letters, &next.dead_letters),
        ),
        ("shutdown", differs(&running.shutdown, &next.shutdown)),
        (
            "credentials",
            differs(&running.credentials, &next.credentials),
        ),
    ];
    sections
        .into_iter()
        .filter(|(_, changed)| *changed)
        .map(|(name, _)| name.to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(toml: &str) -> Settings {
        Settings::from_toml_with_env(toml, Vec::new()).unwrap()
    }

    #[test]
    fn only_the_sections_that_changed_are_named() {
        let running = settings("[api]\nlisten = \"127.0.0.1:8080\"\n");
        assert!(restart_required(&running, &running.clone()).is_empty());
        let next = settings(
            "[api]\nlisten = \"127.0.0.1:8081\"\n[stream]\nshards = 4\n[auth]\nmax_token_ttl_secs = 60\n",
        );
        assert_eq!(restart_required(&running, &next), ["api.listen", "stream"]);
    }
}
