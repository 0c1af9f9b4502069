//! Cryptographic material on disk and the process's TLS provider: what both the ledger (its
//! signing key) and identity (the dev issuer's key, JWKS over HTTPS) need, below both.

use std::path::Path;

use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};

/// Loads an Ed25519 private key (PKCS#8 PEM) from `path`; if it is missing and `generate` is set,
/// generates one and writes it with mode 0600. Returns the key and whether it was generated.
pub fn ed25519_key_file(path: &Path, generate: bool) -> Result<(SigningKey, bool), String> {
    if path.exists() || !generate {
        let pem = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let key = SigningKey::from_pkcs8_pem(&pem)
            .map_err(|e| format!("not an Ed25519 PKCS#8 key: {e}"))?;
        return Ok((key, false));
    }
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| format!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&seed);
    let pem = key
        .to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF)
        .map_err(|e| e.to_string())?;
    // Replicas sharing a keys folder may start together: the key appears whole or not at all
    // (written aside, then linked into place, which fails if another got there first), and the
    // one that lost uses the winner's.
    let aside = path.with_extension(format!("new-{}", uuid::Uuid::new_v4().simple()));
    write_private_file(&aside, pem.as_bytes()).map_err(|e| e.to_string())?;
    let linked = std::fs::hard_link(&aside, path);
    let _ = std::fs::remove_file(&aside);
    match linked {
        Ok(()) => Ok((key, true)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => ed25519_key_file(path, false),
        Err(e) => Err(e.to_string()),
    }
}

/// Writes a secret file readable only by its owner, creating its folder (0700) if needed.
pub fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        let mut builder = std::fs::DirBuilder::new();
        builder.recursive(true);
        #[cfg(unix)]
        builder.mode(0o700);
        builder.create(dir)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut file = options.open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Installs ring as the process's rustls provider, once. reqwest is built without a default TLS
/// provider (the default, aws-lc, needs cmake and a C toolchain to build); every HTTP client this
/// crate builds calls this first, so library users and tests need not know.
pub fn install_crypto_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // Err means another provider is installed already, which serves as well.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
