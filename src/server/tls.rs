//! TLS for client connections (rustls with the ring provider).
//!
//! As nats-server: the INFO goes out in plain text saying `tls_required`, then the handshake
//! runs on the same socket before the client may send anything else. With `allow_non_tls`
//! the INFO says `tls_available` instead, and the client's first byte decides: a TLS
//! handshake record starts the handshake, anything else is the plain protocol. One provider and one
//! protocol-version set (TLS 1.2 and 1.3, rustls's safe defaults: AEAD suites with forward
//! secrecy only) whatever the configuration says, so no setting can weaken it.

use std::sync::Arc;
use std::time::Duration;

use futures_rustls::TlsAcceptor;
use glommio::net::TcpStream;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;

use super::options::Tls;
use crate::net::Transport;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_certs(path: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {path}: {e}"))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("error parsing X509 certificate/key pair: {path}: {e}"))?;
    if certs.is_empty() {
        return Err(format!("error parsing X509 certificate/key pair: {path}: no certificate found"));
    }
    Ok(certs)
}

/// Build the server configuration once (at start and on reload); errors name the file.
///
/// ```no_run
/// use natsu::server::options::Tls;
/// let tls = Tls { cert_file: "server-cert.pem".into(), key_file: "server-key.pem".into(), ..Default::default() };
/// let config = natsu::server::tls::server_config(&tls).expect("readable PEM files");
/// assert!(config.alpn_protocols.is_empty());
/// ```
pub fn server_config(tls: &Tls) -> Result<Arc<ServerConfig>, String> {
    let chain = read_certs(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {}: {e}", tls.key_file))?;
    let builder = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.verify {
        let mut roots = rustls::RootCertStore::empty();
        match &tls.ca_file {
            Some(ca) => {
                for cert in read_certs(ca).map_err(|e| e.replace("X509 certificate/key pair", "CA file"))? {
                    roots.add(cert).map_err(|e| format!("CA file {ca}: {e}"))?;
                }
            }
            // nats-server verifies against the system's pool when no CA file is given.
            None => {
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
            }
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("client certificate verification: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {e}"))?;
    Ok(Arc::new(config))
}

/// The first byte of every TLS connection: a handshake record (a ClientHello), which no
/// NATS protocol line starts with.
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// With `allow_non_tls`: whether the client, which has the INFO, starts a TLS handshake.
/// Its first byte is looked at without being consumed (MSG_PEEK), so either way the bytes
/// reach whoever reads next: rustls or the protocol parser.
///
/// As nats-server: a client that sends nothing within the TLS `timeout` is served in plain
/// text (its TLS handshake, if it starts one later, then fails), and so is one that closed or
/// broke its connection (the reader finds out).
pub async fn client_starts_tls(tcp: &TcpStream, timeout: Duration) -> bool {
    let peek = async {
        let mut first = [0u8; 1];
        matches!(tcp.peek(&mut first).await, Ok(1) if first[0] == TLS_HANDSHAKE_RECORD)
    };
    futures_lite::future::or(peek, async {
        glommio::timer::sleep(timeout).await;
        false
    })
    .await
}

/// Run the server side of the handshake, bounded by `timeout`.
pub async fn accept(config: Arc<ServerConfig>, tcp: TcpStream, timeout: Duration) -> Result<Transport, String> {
    let handshake = async {
        TlsAcceptor::from(config)
            .accept(tcp)
            .await
            .map(|s| Transport::ServerTls(Box::new(s)))
            .map_err(|e| e.to_string())
    };
    futures_lite::future::or(handshake, async {
        glommio::timer::sleep(timeout).await;
        Err("TLS handshake timeout".to_string())
    })
    .await
}
