//! TLS for the serve loop (rustls with the ring provider): TLS 1.2 and 1.3 only, ALPN `h2`
//! and `http/1.1` on one port, several certificates chosen by SNI with the first as the
//! default (clients without SNI), session resumption on (stateful cache and tickets).
//!
//! Certificates and keys are PEM files. Loading checks what can be checked before a client
//! sees it: the files exist and parse, hold a chain and a usable key, and the key matches the
//! certificate; each problem names its file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// One certificate chain with its key, and the server names (SNI) it answers.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CertSpec {
    /// PEM file: the certificate, then its intermediates.
    pub cert: PathBuf,
    /// PEM file: the private key (PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// Server names this certificate answers (`example.com`, `*.example.com`); the first
    /// certificate also answers clients that send no or an unknown name.
    #[serde(default)]
    pub names: Vec<String>,
}

/// Why a TLS configuration cannot be used; each names the file at fault.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// No certificate configured.
    #[error("no certificate configured")]
    NoCertificate,
    /// A file could not be read or is not PEM of the expected kind.
    #[error("{path}: {why}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        why: String,
    },
    /// The key does not belong to the certificate.
    #[error("{key} does not match the certificate in {cert}")]
    KeyMismatch {
        /// The certificate file.
        cert: PathBuf,
        /// The key file.
        key: PathBuf,
    },
    /// The certificate is outside its validity period now.
    #[error("{path}: certificate {why}")]
    NotValidNow {
        /// The certificate file.
        path: PathBuf,
        /// "expired on …" or "not valid before …".
        why: String,
    },
    /// A server name is not a DNS name.
    #[error("{cert}: server name {name:?} is not a DNS name")]
    BadName {
        /// The certificate file it was given for.
        cert: PathBuf,
        /// The name.
        name: String,
    },
}

fn file_err(path: &Path, why: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        why: why.to_string(),
    }
}

/// Loads one chain and key, checking that they belong together.
pub fn load(spec: &CertSpec) -> Result<CertifiedKey, TlsError> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&spec.cert)
        .map_err(|e| file_err(&spec.cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_err(&spec.cert, e))?;
    if chain.is_empty() {
        return Err(file_err(&spec.cert, "no CERTIFICATE block in the file"));
    }
    check_validity(&spec.cert, &chain[0], std::time::SystemTime::now())?;
    let key = PrivateKeyDer::from_pem_file(&spec.key).map_err(|e| file_err(&spec.key, e))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| file_err(&spec.key, format!("unusable private key: {e}")))?;
    let ck = CertifiedKey::new(chain, signer);
    ck.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: spec.cert.clone(),
        key: spec.key.clone(),
    })?;
    Ok(ck)
}

/// Whether the leaf certificate `der` is within its validity period at `now` (browsers
/// refuse it otherwise, so a start or reload must not put it in service).
pub fn check_validity(
    path: &Path,
    der: &CertificateDer<'_>,
    now: std::time::SystemTime,
) -> Result<(), TlsError> {
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| file_err(path, format!("not an X.509 certificate: {e}")))?;
    let now = now
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let v = cert.validity();
    let bad = |why: String| TlsError::NotValidNow {
        path: path.to_path_buf(),
        why,
    };
    if now > v.not_after.timestamp() {
        return Err(bad(format!("expired on {}", v.not_after)));
    }
    if now < v.not_before.timestamp() {
        return Err(bad(format!("not valid before {}", v.not_before)));
    }
    Ok(())
}

/// Certificates by server name, with a default.
#[derive(Debug)]
pub struct SniCerts {
    by_name: HashMap<String, Arc<CertifiedKey>>,
    default: Arc<CertifiedKey>,
}

impl SniCerts {
    /// Loads every certificate in `specs` (the first is the default).
    pub fn load(specs: &[CertSpec]) -> Result<Self, TlsError> {
        let mut by_name = HashMap::new();
        let mut default = None;
        for spec in specs {
            let ck = Arc::new(load(spec)?);
            for name in &spec.names {
                let n = name.trim_end_matches('.').to_ascii_lowercase();
                let host = n.strip_prefix("*.").unwrap_or(&n);
                if rustls_pki_types::DnsName::try_from(host).is_err() {
                    return Err(TlsError::BadName {
                        cert: spec.cert.clone(),
                        name: name.clone(),
                    });
                }
                by_name.entry(n).or_insert_with(|| ck.clone());
            }
            default.get_or_insert(ck);
        }
        Ok(Self {
            by_name,
            default: default.ok_or(TlsError::NoCertificate)?,
        })
    }

    /// The certificate for server name `name` (exact, then `*.parent`, then the default).
    pub fn pick(&self, name: Option<&str>) -> Arc<CertifiedKey> {
        let Some(name) = name.map(|n| n.trim_end_matches('.').to_ascii_lowercase()) else {
            return self.default.clone();
        };
        if let Some(c) = self.by_name.get(&name) {
            return c.clone();
        }
        name.split_once('.')
            .and_then(|(_, parent)| self.by_name.get(&format!("*.{parent}")))
            .unwrap_or(&self.default)
            .clone()
    }
}

impl ResolvesServerCert for SniCerts {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.pick(hello.server_name()))
    }
}

/// Certificates that can be replaced while serving: handshakes after [`Self::replace`] get
/// the new ones, connections already open keep theirs.
#[derive(Debug)]
pub struct Certs(std::sync::RwLock<Arc<SniCerts>>);

impl Certs {
    /// Serving `certs` until replaced.
    pub fn new(certs: SniCerts) -> Arc<Self> {
        Arc::new(Self(std::sync::RwLock::new(Arc::new(certs))))
    }

    /// Serves `certs` from the next handshake on.
    pub fn replace(&self, certs: SniCerts) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(certs);
    }

    fn current(&self) -> Arc<SniCerts> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl ResolvesServerCert for Certs {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current().pick(hello.server_name()))
    }
}

/// A TLS acceptor serving `certs`: TLS 1.2 and 1.3, ALPN h2 then http/1.1, resumption on.
pub fn acceptor(certs: Arc<Certs>) -> Result<tokio_rustls::TlsAcceptor, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    // Resumption: a session cache for TLS 1.2 ids and 1.3 stateful resumption, and tickets.
    cfg.session_storage = rustls::server::ServerSessionMemoryCache::new(16 * 1024);
    cfg.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(cfg)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`, written as PEM files in `dir`.
    fn cert(dir: &Path, tag: &str, names: &[&str]) -> CertSpec {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        let (cp, kp) = (
            dir.join(format!("{tag}.crt")),
            dir.join(format!("{tag}.key")),
        );
        std::fs::write(&cp, c.cert.pem()).unwrap();
        std::fs::write(&kp, c.signing_key.serialize_pem()).unwrap();
        CertSpec {
            cert: cp,
            key: kp,
            names: names.iter().map(|s| s.to_string()).collect(),
        }
    }

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("tls-test-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn picks_by_name_with_a_default() {
        let d = tmp("sni");
        let a = cert(&d, "a", &["a.test"]);
        let b = cert(&d, "b", &["*.b.test"]);
        let certs = SniCerts::load(&[a.clone(), b]).unwrap();
        let der = |c: Arc<CertifiedKey>| c.cert[0].clone();
        let a_der = der(certs.pick(Some("a.test")));
        assert_eq!(der(certs.pick(None)), a_der, "no SNI: the default");
        assert_eq!(der(certs.pick(Some("unknown.test"))), a_der);
        assert_ne!(der(certs.pick(Some("x.b.test"))), a_der, "wildcard");
        assert_eq!(
            der(certs.pick(Some("A.TEST."))),
            a_der,
            "case and trailing dot"
        );
        assert!(acceptor(Certs::new(certs)).is_ok());
    }

    #[test]
    fn bad_files_are_named() {
        let d = tmp("bad");
        let a = cert(&d, "a", &["a.test"]);
        let b = cert(&d, "b", &["b.test"]);
        let missing = CertSpec {
            cert: d.join("nope.crt"),
            ..a.clone()
        };
        let e = load(&missing).unwrap_err().to_string();
        assert!(e.contains("nope.crt"), "{e}");
        let swapped = CertSpec {
            key: b.key.clone(),
            ..a.clone()
        };
        assert!(matches!(load(&swapped), Err(TlsError::KeyMismatch { .. })));
        std::fs::write(d.join("junk.key"), "not a key").unwrap();
        let junk = CertSpec {
            key: d.join("junk.key"),
            ..a.clone()
        };
        let e = load(&junk).unwrap_err().to_string();
        assert!(e.contains("junk.key"), "{e}");
        let key_as_cert = CertSpec {
            cert: a.key.clone(),
            ..a.clone()
        };
        assert!(
            load(&key_as_cert)
                .unwrap_err()
                .to_string()
                .contains("no CERTIFICATE")
        );
        // Expired and not yet valid certificates are refused with the file named.
        for (tag, from, to, word) in [
            ("old", (2000, 1, 1), (2001, 1, 1), "expired"),
            ("new", (2090, 1, 1), (2091, 1, 1), "not valid before"),
        ] {
            let mut p = rcgen::CertificateParams::new(vec!["a.test".to_string()]).unwrap();
            p.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
            p.not_after = rcgen::date_time_ymd(to.0, to.1, to.2);
            let k = rcgen::KeyPair::generate().unwrap();
            let c = p.self_signed(&k).unwrap();
            let (cp, kp) = (d.join(format!("{tag}.crt")), d.join(format!("{tag}.key")));
            std::fs::write(&cp, c.pem()).unwrap();
            std::fs::write(&kp, k.serialize_pem()).unwrap();
            let e = load(&CertSpec {
                cert: cp,
                key: kp,
                names: vec![],
            })
            .unwrap_err()
            .to_string();
            assert!(e.contains(&format!("{tag}.crt")) && e.contains(word), "{e}");
        }
        let bad_name = CertSpec {
            names: vec!["not a name".into()],
            ..a
        };
        assert!(matches!(
            SniCerts::load(&[bad_name]),
            Err(TlsError::BadName { .. })
        ));
    }
}
