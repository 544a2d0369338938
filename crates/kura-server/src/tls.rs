//! TLS: the configured certificate and key, or a self-signed certificate generated once under
//! `<state>/tls/` (for the listen address and `localhost`) when none is configured; nodes
//! starting together on one shared state directory take a lock so that one of them generates
//! it and the others serve the same pair. rustls
//! runs on the ring provider, installed explicitly (two providers compiled in would panic).

use std::path::{Path, PathBuf};

use axum_server::tls_rustls::RustlsConfig;

use crate::config::ServerConfig;
use crate::error::ServeError;

pub fn install_crypto_provider() {
    // Err means a provider is already installed for the process, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The certificate and key files to serve: configured, or generated on first start.
pub fn certificate_files(config: &ServerConfig) -> Result<(PathBuf, PathBuf), ServeError> {
    if let (Some(cert), Some(key)) = (&config.tls.cert, &config.tls.key) {
        return Ok((cert.clone(), key.clone()));
    }
    let dir = config.state_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServeError::Io { path, source }
    };
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    // Several nodes on one state directory: without the lock two of them could each write a
    // key and a certificate and leave a mismatched pair. Released when `lock` is dropped.
    let lock_path = dir.join(".generate.lock");
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io(&lock_path)(e.into()))?;
    if cert.is_file() && key.is_file() {
        return Ok((cert, key));
    }
    let mut names = vec!["localhost".to_string(), config.listen.ip().to_string()];
    if let Some(host) = config.public_url.as_ref().and_then(|u| u.host_str()) {
        names.push(host.trim_matches(['[', ']']).to_string());
    }
    names.dedup();
    let generated = rcgen::generate_simple_self_signed(names)
        .map_err(|e| ServeError::Tls(format!("cannot generate a certificate: {e}")))?;
    write_private(&key, generated.key_pair.serialize_pem().as_bytes()).map_err(io(&key))?;
    std::fs::write(&cert, generated.cert.pem()).map_err(io(&cert))?;
    tracing::info!("generated a self-signed certificate {}", cert.display());
    Ok((cert, key))
}

/// Writes a secret file readable by its owner only (mode 0600), synced.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

pub async fn rustls_config(config: &ServerConfig) -> Result<RustlsConfig, ServeError> {
    install_crypto_provider();
    let (cert, key) = certificate_files(config)?;
    RustlsConfig::from_pem_file(&cert, &key)
        .await
        .map_err(|e| ServeError::Tls(format!("{} / {}: {e}", cert.display(), key.display())))
}
