//! oidc-provider (npm), run by Node from `tests/oidc/provider.mjs`.

use serde::Deserialize;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// What the provider script announces on its `READY` line.
#[derive(Debug, Deserialize)]
pub struct Announced {
    pub issuer: String,
    pub resource: String,
    pub redirect_uri: String,
    pub kid: String,
}

/// A running oidc-provider; killed (by its PID) when dropped. It also exits
/// by itself when its stdin, held here, closes.
pub struct OidcTestProvider {
    child: Child,
    pub issuer: String,
    pub resource: String,
    pub redirect_uri: String,
    pub kid: String,
    _log: tempfile::NamedTempFile,
}

/// The provider script's directory, from this crate's tests or from
/// another workspace crate that includes this file by path.
fn script_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../connectors/tests/oidc")
}

/// One `npm ci` at a time, even when several tests start providers at once.
static INSTALL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn ensure_installed() {
    let dir = script_dir();
    let _guard = INSTALL.lock().await;
    if dir.join("node_modules/oidc-provider/package.json").exists() {
        return;
    }
    let output = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
        .current_dir(&dir)
        .output()
        .await
        .unwrap_or_else(|err| {
            panic!("cannot run npm ({err}): Node.js 20+ and npm are needed for the OIDC tests (scripts/deps.sh installs them)")
        });
    assert!(
        output.status.success(),
        "`npm ci` in {} failed ({}), so the OIDC test provider (npm package oidc-provider) is missing:\n{}",
        dir.display(),
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

impl OidcTestProvider {
    /// Installs the npm dependencies if needed, starts the provider on
    /// 127.0.0.1 with a random port and waits for it to be ready.
    pub async fn start() -> Self {
        ensure_installed().await;
        let log = tempfile::NamedTempFile::new().expect("temp file for the provider's log");
        let mut child = Command::new("node")
            .arg("provider.mjs")
            .current_dir(script_dir())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log.reopen().expect("reopen log")))
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| {
                panic!("cannot start node ({err}): Node.js 20+ is needed for the OIDC tests")
            });
        let stdout = child.stdout.take().expect("piped stdout");
        let mut lines = BufReader::new(stdout).lines();
        let ready = tokio::time::timeout(Duration::from_secs(60), async {
            while let Some(line) = lines.next_line().await.ok().flatten() {
                if let Some(json) = line.strip_prefix("READY ") {
                    return Some(json.to_owned());
                }
            }
            None
        })
        .await
        .ok()
        .flatten();
        let Some(json) = ready else {
            let _ = child.start_kill();
            let log_text = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!(
                "the OIDC test provider (node tests/oidc/provider.mjs) did not start:\n{log_text}"
            );
        };
        // Keep draining stdout so the provider never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        let announced: Announced = serde_json::from_str(&json).expect("READY line is JSON");
        Self {
            child,
            issuer: announced.issuer,
            resource: announced.resource,
            redirect_uri: announced.redirect_uri,
            kid: announced.kid,
            _log: log,
        }
    }

    /// Makes the provider sign with a new key (the old one stays in its
    /// JWKS). Returns the new key id.
    pub async fn rotate_keys(&self) -> String {
        #[derive(Deserialize)]
        struct Rotated {
            kid: String,
        }
        let response = reqwest::Client::new()
            .post(format!("{}/admin/rotate", self.issuer))
            .send()
            .await
            .expect("rotate request");
        assert!(
            response.status().is_success(),
            "rotate: {}",
            response.status()
        );
        let body = response.bytes().await.expect("rotate body");
        serde_json::from_slice::<Rotated>(&body)
            .expect("rotate JSON")
            .kid
    }

    /// The provider's stderr so far, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self._log.path()).unwrap_or_default()
    }
}

impl Drop for OidcTestProvider {
    fn drop(&mut self) {
        // By PID, at once; `kill_on_drop` would do the same a moment later.
        let _ = self.child.start_kill();
    }
}
