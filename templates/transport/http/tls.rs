//! TLS for pushes to `https://` addresses (manifest `push: https`): rustls with the ring
//! provider, TLS 1.2 and 1.3, trusting the platform's root certificates plus those of
//! `--transports-http-push-ca-file` (a private CA). The CA file is read and checked at start-up;
//! the platform's roots at the first https:// push, so a server that never pushes over TLS does
//! not spend its start-up reading them.

use std::sync::{Arc, OnceLock};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, RootCertStore};
use tokio_rustls::TlsConnector;

const FLAG: &str = "--transports-http-push-ca-file";

/// The client side of TLS for pushes. The default trusts nothing; `Config::load` replaces it
/// with [`Tls::load`].
#[derive(Clone, Default)]
pub struct Tls(Option<Arc<Trust>>);

/// What a push trusts: the CA file's certificates, and the connector that adds the platform's
/// roots to them, made at the first https:// push.
struct Trust {
    ca_file: RootCertStore,
    connector: OnceLock<Result<TlsConnector, String>>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() { "Tls(loaded)" } else { "Tls(none)" })
    }
}

impl Tls {
    /// Trusts, when `ca_file` is set, every certificate in it (PEM), and the platform's roots.
    /// A CA file that cannot be read, is not PEM or holds no usable certificate is an error that
    /// names the flag and the path.
    pub fn load(ca_file: &str) -> Result<Tls, String> {
        let mut roots = RootCertStore::empty();
        if !ca_file.is_empty() {
            let pem = std::fs::read(ca_file).map_err(|e| format!("{FLAG}: cannot read {ca_file}: {e}"))?;
            let certs = CertificateDer::pem_slice_iter(&pem)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("{FLAG}: {ca_file} is not a PEM file of certificates: {e}"))?;
            if certs.is_empty() {
                return Err(format!("{FLAG}: {ca_file} holds no PEM certificate (-----BEGIN CERTIFICATE-----)"));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{FLAG}: {ca_file} holds a certificate that cannot be trusted as a CA: {e}"))?;
            }
        }
        Ok(Tls(Some(Arc::new(Trust { ca_file: roots, connector: OnceLock::new() }))))
    }

    /// Opens TLS over `tcp` to `host` (a DNS name or an IP address, as in the push address),
    /// verifying its certificate; a failure says why and, when the issuer is unknown, how to
    /// trust it.
    pub async fn connect(&self, host: &str, tcp: TcpStream) -> Result<TlsStream<TcpStream>, String> {
        let Some(trust) = &self.0 else { return Err("TLS is not set up".into()) };
        let connector = trust.connector.get_or_init(|| trust.connector()).as_ref().map_err(Clone::clone)?;
        let name = ServerName::try_from(host.to_string()).map_err(|_| format!("TLS: {host} is not a host name"))?;
        connector.connect(name, tcp).await.map_err(|e| {
            match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer)) => format!(
                    "TLS: certificate not trusted (unknown issuer); if a private CA signed it, \
                     give that CA with {FLAG}"
                ),
                Some(refused @ rustls::Error::InvalidCertificate(_)) => format!("TLS: {refused}"),
                Some(other) => format!("TLS handshake failed: {other}"),
                None => format!("TLS handshake failed: {e}"),
            }
        })
    }
}

impl Trust {
    /// The CA file's certificates plus the platform's roots, as a connector.
    fn connector(&self) -> Result<TlsConnector, String> {
        let mut roots = self.ca_file.clone();
        // Unreadable or unparsable platform certificates are skipped, as every TLS client does.
        let (platform, _) = roots.add_parsable_certificates(rustls_native_certs::load_native_certs().certs);
        if platform == 0 && self.ca_file.is_empty() {
            crate::log!(Warn, "no platform root certificates found: https:// pushes will fail until {FLAG} names a CA file");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(TlsConnector::from(Arc::new(config)))
    }
}
