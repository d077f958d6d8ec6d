//! Load tools for the benchmarks in `bench/`; see the binaries.

/// The bytes of every benchmark object: a 251-byte cycle, so a body cut or shifted anywhere
/// does not match the original.
pub fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

pub mod tls {
    //! TLS client configurations for the load tools (rustls, ring provider).
    //!
    //! The benchmark's certificate is a throwaway one, and what is measured is the server:
    //! the client accepts any certificate and skips the signature check, which keeps its own
    //! work per handshake (and so its share of the load core) as small as TLS allows.

    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use rustls::NamedGroup;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::client::{
        ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
    };
    use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
    use rustls::{DigitallySignedStruct, SignatureScheme};

    /// Accepts every certificate and signature.
    #[derive(Debug)]
    struct AcceptAny(Vec<SignatureScheme>);

    impl ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp_response: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn verify_tls13_signature(
            &self,
            _message: &[u8],
            _cert: &CertificateDer<'_>,
            _dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            Ok(HandshakeSignatureValid::assertion())
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.0.clone()
        }
    }

    /// Resumable sessions for one server. rustls's own cache keeps at most 8 TLS 1.3 tickets
    /// per server: a loader with more handshakes in flight than that would find it empty and
    /// fall back to full handshakes. Tickets are single-use (each resumption earns new ones).
    #[derive(Debug, Default)]
    struct Stash {
        kx: Mutex<Option<NamedGroup>>,
        tls12: Mutex<Option<Tls12ClientSessionValue>>,
        tls13: Mutex<VecDeque<Tls13ClientSessionValue>>,
    }

    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|p| p.into_inner())
    }

    impl ClientSessionStore for Stash {
        fn set_kx_hint(&self, _: ServerName<'static>, group: NamedGroup) {
            *lock(&self.kx) = Some(group);
        }

        fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
            *lock(&self.kx)
        }

        fn set_tls12_session(&self, _: ServerName<'static>, value: Tls12ClientSessionValue) {
            *lock(&self.tls12) = Some(value);
        }

        fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
            lock(&self.tls12).clone()
        }

        fn remove_tls12_session(&self, _: &ServerName<'static>) {
            *lock(&self.tls12) = None;
        }

        fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
            let mut q = lock(&self.tls13);
            if q.len() >= 4096 {
                q.pop_front();
            }
            q.push_back(value);
        }

        fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
            lock(&self.tls13).pop_back()
        }
    }

    /// A client speaking TLS 1.2 when `tls12`, else TLS 1.3, offering `alpn`, that resumes
    /// sessions (tickets or session IDs, for one server only) when `resume` is set and never
    /// otherwise.
    pub fn client(
        tls12: bool,
        resume: bool,
        alpn: &[&[u8]],
    ) -> Result<Arc<rustls::ClientConfig>, rustls::Error> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let schemes = provider
            .signature_verification_algorithms
            .supported_schemes();
        let versions: &[&rustls::SupportedProtocolVersion] = if tls12 {
            &[&rustls::version::TLS12]
        } else {
            &[&rustls::version::TLS13]
        };
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(schemes)))
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        cfg.resumption = if resume {
            Resumption::store(Arc::new(Stash::default()))
        } else {
            Resumption::disabled()
        };
        Ok(Arc::new(cfg))
    }
}
