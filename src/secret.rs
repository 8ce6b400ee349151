//! Secrets in memory: a type whose `Debug` and `Display` print `***`, loaded from a file or an
//! environment variable (never from the command line), compared in constant time. It has no
//! `Serialize`: a secret leaves only through [`Secret::expose`].
//!
//! Also the start-up check of the files secrets are read from ([`warn_exposed_files`]): one
//! other users may read (others, or a group the daemon is not in) gets a warning naming its
//! config key, path and mode.

use std::fmt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A secret string. It never prints.
#[derive(Clone)]
pub struct Secret(String);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Why a secret could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    File {
        /// The configured path.
        path: String,
        /// What went wrong.
        #[source]
        source: std::io::Error,
    },
    /// The environment variable is not set.
    #[error("environment variable {0} is not set")]
    Env(String),
    /// The file or variable is empty.
    #[error("{0} is empty")]
    Empty(String),
}

impl Secret {
    /// Wrap a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// Read a secret file; surrounding white space (a trailing newline) is not part of it.
    pub fn from_file(path: &Path) -> Result<Self, SecretError> {
        let text = std::fs::read_to_string(path).map_err(|source| SecretError::File {
            path: path.display().to_string(),
            source,
        })?;
        Self::non_empty(text.trim(), || path.display().to_string())
    }

    /// Read a secret from an environment variable.
    pub fn from_env(var: &str) -> Result<Self, SecretError> {
        let value = std::env::var(var).map_err(|_| SecretError::Env(var.to_string()))?;
        Self::non_empty(value.trim(), || var.to_string())
    }

    fn non_empty(value: &str, name: impl FnOnce() -> String) -> Result<Self, SecretError> {
        if value.is_empty() {
            return Err(SecretError::Empty(name()));
        }
        Ok(Secret(value.to_string()))
    }

    /// The secret's bytes, for signing and verifying.
    pub fn expose(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// The secret as text, for a header that carries it.
    pub fn expose_str(&self) -> &str {
        &self.0
    }

    /// Compare with `presented` in time independent of where they differ (both are hashed
    /// first, so neither content nor length leaks through timing).
    pub fn matches(&self, presented: &str) -> bool {
        let a = Sha256::digest(self.0.as_bytes());
        let b = Sha256::digest(presented.as_bytes());
        a.iter()
            .zip(b.iter())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
    }
}

/// The permission bits of `path` (`mode & 0o777`) when users other than the daemon's may read
/// or write it: any access for others, or access for a group the daemon is not in. `None`
/// when the file is private (or cannot be inspected; reading it reports that).
///
/// Group access for the daemon's own group is how containers share a mounted secret (Kubernetes:
/// `fsGroup` with `defaultMode: 0440`), so it is not warned about.
pub fn exposed_mode(path: &Path) -> Option<u32> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let meta = std::fs::metadata(path).ok()?;
    let mode = meta.permissions().mode() & 0o777;
    let others = mode & 0o007 != 0;
    let foreign_group = mode & 0o070 != 0 && !in_own_groups(meta.gid());
    (others || foreign_group).then_some(mode)
}

/// Whether `gid` is the daemon's effective group or one of its supplementary groups.
fn in_own_groups(gid: u32) -> bool {
    // SAFETY: getegid cannot fail; getgroups writes at most `n` entries into a buffer of `n`.
    unsafe {
        if libc::getegid() == gid {
            return true;
        }
        let n = libc::getgroups(0, std::ptr::null_mut());
        if n <= 0 {
            return false;
        }
        let mut groups = vec![0 as libc::gid_t; n as usize];
        let n = libc::getgroups(n, groups.as_mut_ptr());
        n > 0 && groups[..n as usize].contains(&gid)
    }
}

/// Warn about every file of `files` (config key, path) its group or other users may read or
/// write; returns how many there were.
pub fn warn_exposed_files(files: &[(String, PathBuf)]) -> usize {
    let mut exposed = 0;
    for (key, path) in files {
        if let Some(mode) = exposed_mode(path) {
            exposed += 1;
            tracing::warn!(
                key = %key,
                file = %path.display(),
                mode = %format!("{mode:04o}"),
                "a secret file is readable by other users; chmod 600 it (or 640 for the daemon's own group)"
            );
        }
    }
    exposed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_or_other_access_is_found() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        let chmod = |mode| std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode));
        chmod(0o600).unwrap();
        assert_eq!(exposed_mode(&p), None);
        // The test's own group is the daemon's group: sharing with it is fine.
        chmod(0o640).unwrap();
        assert_eq!(exposed_mode(&p), None);
        chmod(0o644).unwrap();
        assert_eq!(exposed_mode(&p), Some(0o644));
        chmod(0o604).unwrap();
        let files = vec![("admin.token_file".to_string(), p.clone())];
        assert_eq!(warn_exposed_files(&files), 1);
        assert_eq!(exposed_mode(&dir.path().join("missing")), None);
    }

    #[test]
    fn never_prints() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }

    #[test]
    fn matches_only_the_same_value() {
        let s = Secret::new("token-123");
        assert!(s.matches("token-123"));
        assert!(!s.matches("token-124"));
        assert!(!s.matches("token-1234"));
        assert!(!s.matches(""));
    }

    #[test]
    fn file_is_trimmed_and_empty_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s");
        std::fs::write(&p, "abc\n").unwrap();
        assert!(Secret::from_file(&p).unwrap().matches("abc"));
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(Secret::from_file(&p), Err(SecretError::Empty(_))));
        assert!(matches!(
            Secret::from_file(&dir.path().join("missing")),
            Err(SecretError::File { .. })
        ));
    }
}
