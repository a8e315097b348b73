//! Certificates for a cluster, made without OpenSSL: a CA, and certificates it signs for
//! nodes and users (`tinykv-ctl certs`, `make certs`, and the tests' secure clusters).
//!
//! A node's certificate names its store (`tinykv://store/<id>`, see
//! [`super::identity`]) and the host names and addresses clients and peers dial it by,
//! and serves both as server and as client certificate: a node accepts connections and
//! opens them. A user's certificate names the user. Keys are ECDSA P-256; the CA is
//! valid for ten years, what it signs for one (rotate by signing a new one and
//! replacing the files: nodes reload them, see [`super::credentials`]).

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use time::{Duration, OffsetDateTime};

use super::identity::CertIdentity;

/// A certificate and its private key, both PEM.
#[derive(Debug, Clone)]
pub struct IssuedCert {
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key (PKCS#8), PEM.
    pub key_pem: String,
}

/// A CA that can sign certificates for a cluster.
pub struct CertAuthority {
    issuer: Issuer<'static, KeyPair>,
    /// The CA's own certificate and key.
    pub issued: IssuedCert,
}

impl CertAuthority {
    /// A new CA named `name`, valid for ten years from now.
    pub fn generate(name: &str) -> Result<CertAuthority, String> {
        let key = KeyPair::generate().map_err(|e| format!("generating the CA key: {e}"))?;
        let mut params = CertificateParams::default();
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, name);
        subject.push(DnType::OrganizationName, "TinyKV-rs");
        params.distinguished_name = subject;
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(3650);
        let cert = params
            .self_signed(&key)
            .map_err(|e| format!("signing the CA certificate: {e}"))?;
        let issued = IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        Ok(CertAuthority {
            issuer: Issuer::new(params, key),
            issued,
        })
    }

    /// The CA of an existing certificate and key (PEM), to sign more with.
    pub fn load(cert_pem: &str, key_pem: &str) -> Result<CertAuthority, String> {
        let key = KeyPair::from_pem(key_pem).map_err(|e| format!("the CA key: {e}"))?;
        let issuer = Issuer::from_ca_cert_pem(cert_pem, key)
            .map_err(|e| format!("the CA certificate: {e}"))?;
        // The key pair moved into the issuer; keep the PEM the caller gave.
        Ok(CertAuthority {
            issuer,
            issued: IssuedCert {
                cert_pem: cert_pem.to_string(),
                key_pem: key_pem.to_string(),
            },
        })
    }

    /// A certificate for `identity`, valid for `hosts` (DNS names or IP addresses) and
    /// for `days` days from now.
    pub fn issue(
        &self,
        identity: &CertIdentity,
        hosts: &[String],
        days: i64,
    ) -> Result<IssuedCert, String> {
        let key = KeyPair::generate().map_err(|e| format!("generating a key: {e}"))?;
        let mut params =
            CertificateParams::new(hosts.to_vec()).map_err(|e| format!("host names: {e}"))?;
        let uri = identity
            .uri()
            .try_into()
            .map_err(|e| format!("identity URI: {e}"))?;
        params.subject_alt_names.push(SanType::URI(uri));
        let mut subject = DistinguishedName::new();
        subject.push(DnType::CommonName, identity.to_string());
        subject.push(DnType::OrganizationName, "TinyKV-rs");
        params.distinguished_name = subject;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = match identity {
            CertIdentity::Store(_) => vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
            CertIdentity::User(_) => vec![ExtendedKeyUsagePurpose::ClientAuth],
        };
        let now = OffsetDateTime::now_utc();
        params.not_before = now - Duration::hours(1);
        params.not_after = now + Duration::days(days);
        let cert = params
            .signed_by(&key, &self.issuer)
            .map_err(|e| format!("signing the certificate: {e}"))?;
        Ok(IssuedCert {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

#[cfg(test)]
mod tests {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    use super::*;

    #[test]
    fn issued_certificates_name_their_identity() {
        let ca = CertAuthority::generate("test CA").unwrap();
        let node = ca
            .issue(
                &CertIdentity::Store(3),
                &["127.0.0.1".into(), "localhost".into()],
                1,
            )
            .unwrap();
        let der = CertificateDer::from_pem_slice(node.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            CertIdentity::of_certificate(&der),
            Ok(CertIdentity::Store(3))
        );
        let again = CertAuthority::load(&ca.issued.cert_pem, &ca.issued.key_pem).unwrap();
        let user = again
            .issue(&CertIdentity::User("ops".into()), &[], 1)
            .unwrap();
        let der = CertificateDer::from_pem_slice(user.cert_pem.as_bytes()).unwrap();
        assert_eq!(
            CertIdentity::of_certificate(&der),
            Ok(CertIdentity::User("ops".into()))
        );
        let ca_der = CertificateDer::from_pem_slice(ca.issued.cert_pem.as_bytes()).unwrap();
        assert!(
            CertIdentity::of_certificate(&ca_der).is_err(),
            "a CA is nobody"
        );
    }
}
