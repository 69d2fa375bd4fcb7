//! TLS for client connections and routes (rustls with the ring provider).
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
use rustls::{ClientConfig, RootCertStore, ServerConfig};

use super::options::Tls;
use crate::net::Transport;

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The provider a server side uses: its cipher suites in the order nats-server (Go, on a CPU
/// with AES instructions) prefers them, AES-128-GCM first. The server picks by its own order
/// (`ignore_client_order`), as Go's does: a client that lists AES-256-GCM first (rustls,
/// OpenSSL) gets AES-128-GCM from nats-server and the same from natsu, which costs about a
/// quarter less CPU per byte.
fn server_provider() -> Arc<rustls::crypto::CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    let aes128 = |s: &rustls::SupportedCipherSuite| format!("{:?}", s.suite()).contains("AES_128");
    // A stable sort: the rest keep the provider's order.
    p.cipher_suites.sort_by_key(|s| !aes128(s));
    Arc::new(p)
}

/// The certificate chain and key `tls` names.
fn cert_and_key(tls: &Tls) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), String> {
    let chain = read_certs(&tls.cert_file)?;
    let key = PrivateKeyDer::from_pem_file(&tls.key_file)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {}: {e}", tls.key_file))?;
    Ok((chain, key))
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
    let (chain, key) = cert_and_key(tls)?;
    let builder = ServerConfig::builder_with_provider(server_provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let builder = if tls.verify {
        let roots = root_store(tls.ca_file.as_deref())?;
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .map_err(|e| format!("client certificate verification: {e}"))?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder
        .with_single_cert(chain, key)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {e}"))?;
    config.ignore_client_order = true;
    Ok(Arc::new(config))
}

/// The certificates to verify peers against: the CA file's, or without one the system's, as
/// nats-server does (it verifies against the system's pool when no CA file is given).
fn root_store(ca_file: Option<&str>) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    match ca_file {
        Some(ca) => {
            for cert in read_certs(ca).map_err(|e| e.replace("X509 certificate/key pair", "CA file"))? {
                roots.add(cert).map_err(|e| format!("CA file {ca}: {e}"))?;
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    Ok(roots)
}

/// The soliciting side of a TLS route (`cluster { tls { ... } }`): it presents the route
/// certificate as its client certificate, since the accepting side always asks for one (as
/// nats-server, routes are mutual TLS whatever `verify` says), and verifies the peer
/// against `ca_file`, or the system's roots without one. The certificate therefore has to
/// allow both server and client authentication (or name no extended key usage).
///
/// Connect with the route URL's host as the server name: `ServerName::try_from(host)`, an
/// IP address (`127.0.0.1`, `::1` without brackets) being checked against the
/// certificate's IP SANs.
///
/// ```no_run
/// # async fn dial(tcp: glommio::net::TcpStream) -> std::io::Result<()> {
/// use natsu::server::options::Tls;
/// use rustls::pki_types::ServerName;
/// let tls = Tls { cert_file: "route-cert.pem".into(), key_file: "route-key.pem".into(), ca_file: Some("ca.pem".into()), ..Default::default() };
/// let config = natsu::server::tls::route_client_config(&tls).expect("readable PEM files");
/// let name = ServerName::try_from("127.0.0.1").unwrap();
/// let stream = futures_rustls::TlsConnector::from(config).connect(name, tcp).await?;
/// # Ok(()) }
/// ```
pub fn route_client_config(tls: &Tls) -> Result<Arc<ClientConfig>, String> {
    let (chain, key) = cert_and_key(tls)?;
    let roots = root_store(tls.ca_file.as_deref())?;
    if roots.is_empty() {
        return Err("cluster tls needs ca_file: the system has no root certificates to verify routes against".into());
    }
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("error parsing X509 certificate/key pair: {e}"))?;
    Ok(Arc::new(config))
}

/// The dialling side of a TLS leaf-node connection (`leafnodes { remotes: [ { tls {...} } ] }`):
/// it verifies the hub against `ca_file` (the system's roots without one) and presents a
/// client certificate only when the block names one, as a nats-server leaf does.
pub fn leaf_client_config(tls: &Tls) -> Result<Arc<ClientConfig>, String> {
    let roots = root_store(tls.ca_file.as_deref())?;
    let builder = ClientConfig::builder_with_provider(provider()).with_safe_default_protocol_versions().map_err(|e| e.to_string())?.with_root_certificates(roots);
    let config = if tls.cert_file.is_empty() {
        builder.with_no_client_auth()
    } else {
        let (chain, key) = cert_and_key(tls)?;
        builder.with_client_auth_cert(chain, key).map_err(|e| format!("error parsing X509 certificate/key pair: {e}"))?
    };
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
            .accept(crate::net::TlsTcp::new(tcp))
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

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
    use rustls::pki_types::ServerName;

    /// The server side prefers AES-128-GCM in TLS 1.3 and 1.2, as nats-server does; every
    /// suite of the provider is still offered.
    #[test]
    fn server_prefers_aes_128_gcm() {
        let names: Vec<String> = server_provider().cipher_suites.iter().map(|s| format!("{:?}", s.suite())).collect();
        assert_eq!(names.len(), rustls::crypto::ring::default_provider().cipher_suites.len());
        assert_eq!(names[0], "TLS13_AES_128_GCM_SHA256", "{names:?}");
        let first_12 = names.iter().find(|n| n.starts_with("TLS_ECDHE")).unwrap();
        assert!(first_12.contains("AES_128_GCM"), "{names:?}");
    }

    /// A scratch directory removed on drop.
    struct Dir(std::path::PathBuf);
    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A CA and, signed by it, a route certificate for 127.0.0.1 good for both ends of a
    /// route; `Tls` for it in a scratch directory.
    fn route_pki(tag: &str) -> (Dir, Tls) {
        let dir = Dir(std::env::temp_dir().join(format!("natsu-route-tls-{tag}-{}", std::process::id())));
        std::fs::create_dir_all(&dir.0).unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca_key = KeyPair::generate().unwrap();
        let ca = ca.self_signed(&ca_key).unwrap();
        let mut leaf = CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
        leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = leaf.signed_by(&key, &ca, &ca_key).unwrap();
        let write = |name: &str, pem: String| {
            let p = dir.0.join(name);
            std::fs::write(&p, pem).unwrap();
            p.display().to_string()
        };
        let tls = Tls { cert_file: write("route.pem", cert.pem()), key_file: write("route-key.pem", key.serialize_pem()), ca_file: Some(write("ca.pem", ca.pem())), ..Tls::default() };
        (dir, tls)
    }

    /// Both ends of a route built from one `cluster { tls }` complete a mutual handshake in
    /// memory, the soliciting end naming the peer by IP address.
    #[test]
    fn route_tls_is_mutual() {
        let (_dir, tls) = route_pki("mutual");
        let client = route_client_config(&tls).unwrap();
        let server = server_config(&Tls { verify: true, ..tls.clone() }).unwrap();
        let mut c = rustls::ClientConnection::new(client, ServerName::try_from("127.0.0.1").unwrap()).unwrap();
        let mut s = rustls::ServerConnection::new(server).unwrap();
        for _ in 0..10 {
            let mut buf = Vec::new();
            while c.wants_write() {
                c.write_tls(&mut buf).unwrap();
            }
            while !buf.is_empty() {
                s.read_tls(&mut buf.as_slice()).map(|n| buf.drain(..n)).unwrap();
                s.process_new_packets().unwrap();
            }
            while s.wants_write() {
                s.write_tls(&mut buf).unwrap();
            }
            while !buf.is_empty() {
                c.read_tls(&mut buf.as_slice()).map(|n| buf.drain(..n)).unwrap();
                c.process_new_packets().unwrap();
            }
        }
        assert!(!c.is_handshaking() && !s.is_handshaking());
        // The accepting end saw the soliciting end's certificate.
        assert_eq!(s.peer_certificates().map(<[_]>::len), Some(1));

        // A name the certificate does not carry fails the handshake.
        let mut c = rustls::ClientConnection::new(route_client_config(&tls).unwrap(), ServerName::try_from("127.0.0.2").unwrap()).unwrap();
        let mut s = rustls::ServerConnection::new(server_config(&Tls { verify: true, ..tls.clone() }).unwrap()).unwrap();
        let mut buf = Vec::new();
        c.write_tls(&mut buf).unwrap();
        s.read_tls(&mut buf.as_slice()).unwrap();
        s.process_new_packets().unwrap();
        buf.clear();
        while s.wants_write() {
            s.write_tls(&mut buf).unwrap();
        }
        c.read_tls(&mut buf.as_slice()).unwrap();
        let e = c.process_new_packets().unwrap_err();
        assert!(format!("{e:?}").contains("NotValidForName"), "{e:?}");
    }

    #[test]
    fn route_client_config_errors() {
        let (_dir, tls) = route_pki("errors");
        let e = route_client_config(&Tls { cert_file: "/nonexistent/route.pem".into(), ..tls.clone() }).unwrap_err();
        assert!(e.starts_with("error parsing X509 certificate/key pair: /nonexistent/route.pem"), "{e}");
        let e = route_client_config(&Tls { ca_file: Some("/nonexistent/ca.pem".into()), ..tls }).unwrap_err();
        assert!(e.starts_with("error parsing CA file: /nonexistent/ca.pem"), "{e}");
    }
}
