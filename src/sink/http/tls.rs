//! Which certificate authorities the https sinks (Kafka REST Proxy, Backstop) trust: Mozilla's
//! public roots built into the binary (webpki-roots), or, when the sink sets `ca_file`, only the
//! certificates of that PEM file (like curl's `--cacert`). The file is read when the
//! configuration is built (main thread at start-up, the ingest thread at a reload), so
//! `--check-config` and a reload refuse a file that is missing or holds no certificate; each
//! sink's worker thread then builds its HTTP agent from what was read.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use ureq::tls::{Certificate, PemItem, RootCerts, TlsConfig};

/// The certificates of a `ca_file`, and where they came from.
#[derive(Clone)]
pub struct CaFile {
    path: PathBuf,
    certs: Arc<Vec<Certificate<'static>>>,
}

impl CaFile {
    /// Reads every `CERTIFICATE` block of the PEM file at `path` (other blocks, such as keys, are
    /// ignored). Fails when the file cannot be read, is not PEM, or holds no certificate.
    pub fn load(path: &Path) -> Result<CaFile, String> {
        let shown = path.display();
        let pem = std::fs::read(path).map_err(|e| format!("{shown}: {e}"))?;
        let mut certs = Vec::new();
        for item in ureq::tls::parse_pem(&pem) {
            if let PemItem::Certificate(c) = item.map_err(|e| format!("{shown}: {e}"))? {
                certs.push(c);
            }
        }
        if certs.is_empty() {
            return Err(format!("{shown}: no certificate (-----BEGIN CERTIFICATE-----) in it"));
        }
        Ok(CaFile { path: path.to_path_buf(), certs: Arc::new(certs) })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How many certificates the file holds.
    pub fn certificate_count(&self) -> usize {
        self.certs.len()
    }
}

/// A section's `ca_file`, read now; only for an https URL (`https`), else an error under
/// `section`.
pub fn ca_file_for(
    path: Option<&Path>,
    https: bool,
    section: &str,
) -> Result<Option<CaFile>, crate::settings::ConfigError> {
    use crate::settings::ConfigError;
    let Some(path) = path else { return Ok(None) };
    if !https {
        return Err(ConfigError(format!("{section}.ca_file is set but the url is not https")));
    }
    CaFile::load(path).map(Some).map_err(|e| ConfigError(format!("{section}.ca_file: {e}")))
}

/// Printed (`--check-config`) as its path, which reads back to the same certificates.
impl serde::Serialize for CaFile {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.path.display().to_string())
    }
}

impl std::fmt::Debug for CaFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CaFile({}, {} certificates)", self.path.display(), self.certs.len())
    }
}

/// Same file, same certificates (a reload that rewrote the file is a change).
impl PartialEq for CaFile {
    fn eq(&self, other: &CaFile) -> bool {
        self.path == other.path
            && self.certs.len() == other.certs.len()
            && self.certs.iter().zip(other.certs.iter()).all(|(a, b)| a.der() == b.der())
    }
}

/// The TLS settings of a sink's HTTP agent: the built-in public roots, or only `ca`'s
/// certificates. Verification is never switched off.
pub fn tls_config(ca: Option<&CaFile>) -> TlsConfig {
    let builder = TlsConfig::builder();
    match ca {
        Some(ca) => builder.root_certs(RootCerts::Specific(Arc::clone(&ca.certs))).build(),
        None => builder.build(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tls").join(name)
    }

    #[test]
    fn reads_the_certificates_of_a_pem_file() {
        let ca = CaFile::load(&fixture("self-signed.crt.pem")).unwrap();
        assert_eq!(ca.certificate_count(), 1);
        let der = std::fs::read(fixture("self-signed.crt.der")).unwrap();
        assert_eq!(ca.certs[0].der(), der.as_slice());
        assert_eq!(ca, CaFile::load(&fixture("self-signed.crt.pem")).unwrap());
    }

    #[test]
    fn refuses_a_missing_file_and_one_without_certificates() {
        let missing = CaFile::load(&fixture("no-such.pem")).unwrap_err();
        assert!(missing.contains("no-such.pem") && missing.contains("No such file"), "{missing}");
        // DER is not PEM: nothing in it parses as a certificate block.
        let der = CaFile::load(&fixture("self-signed.crt.der")).unwrap_err();
        assert!(der.contains("no certificate"), "{der}");
    }
}
