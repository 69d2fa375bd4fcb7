//! TLS for client connections (rustls with the ring provider).
//!
//! NATS upgrades in place: the server sends INFO in plain text, saying `tls_required`, and
//! the client then runs the TLS handshake on the same socket before CONNECT.

use std::path::PathBuf;
use std::sync::Arc;

use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::ClientConfig;

use super::error::{Error, Result};
pub(crate) use crate::net::Transport;

/// TLS settings of a client (see [`Options`](super::Options)'s `tls_*` calls).
#[derive(Clone, Default)]
pub struct TlsOptions {
    /// Use TLS even if the server does not ask for it (a `tls://` URL also says so).
    pub required: bool,
    /// PEM files of CAs to trust; empty means the system's roots.
    pub root_cas: Vec<PathBuf>,
    /// PEM certificate chain and key to present when the server verifies clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// A complete rustls configuration, used as is instead of the fields above.
    pub config: Option<Arc<ClientConfig>>,
}

impl TlsOptions {
    /// Build the rustls configuration these options describe.
    pub(crate) fn client_config(&self) -> Result<Arc<ClientConfig>> {
        if let Some(c) = &self.config {
            return Ok(c.clone());
        }
        let mut roots = rustls::RootCertStore::empty();
        if self.root_cas.is_empty() {
            let found = rustls_native_certs::load_native_certs();
            for cert in found.certs {
                let _ = roots.add(cert);
            }
        }
        for path in &self.root_cas {
            for cert in read_certs(path)? {
                roots.add(cert).map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
            }
        }
        let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.client_cert {
            Some((cert, key)) => {
                let chain = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key)
                    .map_err(|e| Error::Tls(format!("{}: {e}", key.display())))?;
                builder.with_client_auth_cert(chain, key).map_err(|e| Error::Tls(e.to_string()))?
            }
            None => builder.with_no_client_auth(),
        };
        Ok(Arc::new(config))
    }
}

fn read_certs(path: &PathBuf) -> Result<Vec<CertificateDer<'static>>> {
    let certs: std::result::Result<Vec<_>, _> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?
        .collect();
    let certs = certs.map_err(|e| Error::Tls(format!("{}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(Error::Tls(format!("{}: no certificate found", path.display())));
    }
    Ok(certs)
}

/// Run the TLS handshake over a connected socket.
pub(crate) async fn upgrade(config: Arc<ClientConfig>, host: &str, tcp: TcpStream) -> Result<Transport> {
    let name = ServerName::try_from(host.trim_start_matches('[').trim_end_matches(']').to_string())
        .map_err(|e| Error::Tls(format!("server name {host}: {e}")))?;
    let stream = futures_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await
        .map_err(|e| Error::Tls(e.to_string()))?;
    Ok(Transport::ClientTls(Box::new(stream)))
}
