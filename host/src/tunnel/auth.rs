//! `auth.rs` owns the client's credentials: loading the private key
//! (OpenSSH, PEM or PKCS#8; ed25519, ecdsa or rsa; encrypted with a
//! passphrase), the ssh-agent, and logging in with them. RSA keys always
//! sign with rsa-sha2-256/512, never SHA-1.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use russh::client::{AuthResult, Handle};
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{Algorithm, HashAlg, PrivateKey, PrivateKeyWithHashAlg};

use crate::config::TunnelConfig;

/// What the tunnel logs in with, loaded once at start-up.
pub struct Credentials {
    /// The key file's key, decrypted; `None` with agent-only login.
    key: Option<(PathBuf, Arc<PrivateKey>)>,
    /// The agent socket, asked on every login (keys may be added later).
    agent: Option<PathBuf>,
}

impl Credentials {
    /// Reads and decrypts the key file; every failure names the file and
    /// the fix.
    pub fn load(config: &TunnelConfig) -> Result<Self> {
        let key = match &config.key {
            Some(path) => Some((path.clone(), Arc::new(load_key(path, config)?))),
            None => None,
        };
        Ok(Self {
            key,
            agent: config.agent.clone(),
        })
    }

    /// A short description for logs: which key, by fingerprint.
    pub fn describe(&self) -> String {
        match (&self.key, &self.agent) {
            (Some((path, key)), _) => format!(
                "key `{}` ({} {})",
                path.display(),
                key.algorithm(),
                key.public_key().fingerprint(HashAlg::Sha256)
            ),
            (None, Some(sock)) => format!("ssh-agent at `{}`", sock.display()),
            (None, None) => "no key".into(),
        }
    }

    /// Logs in as `user`: agent identities first (as OpenSSH does), then
    /// the key file.
    pub async fn authenticate<H: russh::client::Handler>(
        &self,
        session: &mut Handle<H>,
        user: &str,
    ) -> Result<()> {
        let rsa_hash = match session.best_supported_rsa_hash().await {
            // The server named its preference, or said nothing: use SHA-256
            // rather than ever falling back to SHA-1.
            Ok(Some(Some(hash))) => Some(hash),
            _ => Some(HashAlg::Sha256),
        };
        if let Some(sock) = &self.agent {
            match try_agent(session, user, sock, rsa_hash).await {
                Ok(true) => return Ok(()),
                Ok(false) => {}
                Err(e) => tracing::warn!("ssh-agent at `{}` unusable: {e:#}", sock.display()),
            }
        }
        if let Some((path, key)) = &self.key {
            let hash = if matches!(key.algorithm(), Algorithm::Rsa { .. }) {
                rsa_hash
            } else {
                None
            };
            let result = session
                .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::clone(key), hash))
                .await
                .context("SSH login failed")?;
            if let AuthResult::Success = result {
                return Ok(());
            }
            bail!(
                "the bastion refused key `{}` ({}) for user `{user}`: add its public key to \
                 ~{user}/.ssh/authorized_keys on the bastion, or set SSH_KEY/SSH_USER to the right ones",
                path.display(),
                key.public_key().fingerprint(HashAlg::Sha256)
            );
        }
        bail!(
            "the bastion refused every ssh-agent key for user `{user}` and no SSH_KEY file is set"
        )
    }
}

async fn try_agent<H: russh::client::Handler>(
    session: &mut Handle<H>,
    user: &str,
    sock: &Path,
    rsa_hash: Option<HashAlg>,
) -> Result<bool> {
    let mut agent = AgentClient::connect_uds(sock).await?;
    for identity in agent.request_identities().await? {
        let AgentIdentity::PublicKey { key, .. } = identity else {
            continue;
        };
        let hash = matches!(key.algorithm(), Algorithm::Rsa { .. })
            .then_some(rsa_hash)
            .flatten();
        let result = session
            .authenticate_publickey_with(user, key, hash, &mut agent)
            .await
            .map_err(|e| anyhow::anyhow!("agent signing failed: {e:?}"))?;
        if let AuthResult::Success = result {
            return Ok(true);
        }
    }
    Ok(false)
}

fn load_key(path: &Path, config: &TunnelConfig) -> Result<PrivateKey> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "cannot read SSH key `{}`: set SSH_KEY to a readable private key file",
            path.display()
        )
    })?;
    warn_if_exposed(path);
    let passphrase = config.passphrase.as_ref().map(|p| p.expose());
    russh::keys::decode_secret_key(&text, passphrase).map_err(|e| {
        use russh::keys::Error as E;
        match (&e, passphrase) {
            (E::KeyIsEncrypted, None) => anyhow::anyhow!(
                "SSH key `{}` is encrypted: set SSH_KEY_PASSPHRASE (or SSH_KEY_PASSPHRASE_FILE)",
                path.display()
            ),
            (E::KeyIsEncrypted, Some(_)) | (E::Pkcs8(_), Some(_)) | (E::SshKey(_), Some(_)) => anyhow::anyhow!(
                "cannot decrypt SSH key `{}` with the given passphrase ({e}): check SSH_KEY_PASSPHRASE",
                path.display()
            ),
            _ => anyhow::anyhow!(
                "SSH key `{}` is not a private key burrow can read ({e}): use an OpenSSH, PEM or \
                 PKCS#8 ed25519, ecdsa or rsa key",
                path.display()
            ),
        }
    })
}

/// Like OpenSSH, complain about a private key others can read; unlike
/// OpenSSH, still use it (a mounted secret's mode is not always ours to set).
fn warn_if_exposed(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(meta) = std::fs::metadata(path) {
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                "permissions {mode:04o} for SSH key `{}` are too open: it is readable by others; \
                 run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
}
