//! A throw-away PKI for TLS tests, made afresh with rcgen: a CA, a server certificate for
//! `127.0.0.1` and `localhost`, a client certificate, and a second CA nobody trusts. Written
//! to a scratch directory removed afterwards: no key is checked in.

use std::path::PathBuf;

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose};

use super::TempDir;

/// PEM files of a throw-away PKI, removed with the directory.
pub struct Pki {
    /// Holds the files; removed on drop.
    pub dir: TempDir,
    pub ca: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
    /// Signed by `ca`, but for a name the tests never dial.
    pub misnamed_cert: PathBuf,
    pub misnamed_key: PathBuf,
    /// A CA that signed nothing the server knows.
    pub other_ca: PathBuf,
    /// A client certificate signed by `other_ca`.
    pub rogue_cert: PathBuf,
    pub rogue_key: PathBuf,
}

pub fn new_ca(name: &str) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let key = KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

pub fn new_leaf(names: &[&str], eku: ExtendedKeyUsagePurpose, ca: &Certificate, ca_key: &KeyPair) -> (Certificate, KeyPair) {
    let mut params = CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    params.distinguished_name.push(DnType::CommonName, names[0]);
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![eku];
    params.use_authority_key_identifier_extension = true;
    let key = KeyPair::generate().unwrap();
    (params.signed_by(&key, ca, ca_key).unwrap(), key)
}

impl Pki {
    pub fn new() -> Pki {
        let dir = TempDir::new("pki");
        let write = |name: &str, pem: String| {
            let p = dir.0.join(name);
            std::fs::write(&p, pem).unwrap();
            p
        };
        let (ca, ca_key) = new_ca("natsu test CA");
        let (server, server_key) = new_leaf(&["localhost", "127.0.0.1"], ExtendedKeyUsagePurpose::ServerAuth, &ca, &ca_key);
        let (client, client_key) = new_leaf(&["natsu-client"], ExtendedKeyUsagePurpose::ClientAuth, &ca, &ca_key);
        let (misnamed, misnamed_key) = new_leaf(&["elsewhere.example"], ExtendedKeyUsagePurpose::ServerAuth, &ca, &ca_key);
        let (other, other_key) = new_ca("untrusted CA");
        let (rogue, rogue_key) = new_leaf(&["rogue-client"], ExtendedKeyUsagePurpose::ClientAuth, &other, &other_key);
        Pki {
            ca: write("ca.pem", ca.pem()),
            server_cert: write("server.pem", server.pem()),
            server_key: write("server-key.pem", server_key.serialize_pem()),
            client_cert: write("client.pem", client.pem()),
            client_key: write("client-key.pem", client_key.serialize_pem()),
            misnamed_cert: write("misnamed.pem", misnamed.pem()),
            misnamed_key: write("misnamed-key.pem", misnamed_key.serialize_pem()),
            other_ca: write("other-ca.pem", other.pem()),
            rogue_cert: write("rogue.pem", rogue.pem()),
            rogue_key: write("rogue-key.pem", rogue_key.serialize_pem()),
            dir,
        }
    }

    /// A file in the scratch directory (for a config file).
    pub fn file(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.0.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }
}
