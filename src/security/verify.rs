//! The rustls hooks that read a node's current [`Credentials`] on every handshake.
//!
//! - [`CurrentKey`] presents the node's certificate, as server and as client;
//! - [`ClusterClients`] checks a connecting node's (or user's) certificate against the
//!   cluster's CA;
//! - [`ClusterServers`] checks the certificate of a node this one dials: signed by the
//!   cluster's CA and naming a store. Host names are not checked: nodes find each other
//!   by address, several may share a host, and what a node must be is a store id, which
//!   the caller compares with the store it meant to reach (the raft transport does, after
//!   the handshake). Clients of the client API check host names as usual.
//!
//! Because they read the credentials at each use, a reload takes effect for the next
//! handshake without rebuilding any configuration.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::client::ResolvesClientCert;
use rustls::crypto::{verify_tls12_signature, verify_tls13_signature, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ParsedCertificate, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, Error, SignatureScheme};

use super::credentials::Credentials;
use super::identity::CertIdentity;

/// Presents the node's current certificate.
#[derive(Clone)]
pub struct CurrentKey(pub Arc<Credentials>);

impl std::fmt::Debug for CurrentKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CurrentKey({})", self.0.identity())
    }
}

impl ResolvesServerCert for CurrentKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }
}

impl ResolvesClientCert for CurrentKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current().key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Requires a client certificate signed by the cluster's CA.
#[derive(Clone)]
pub struct ClusterClients(pub Arc<Credentials>);

impl std::fmt::Debug for ClusterClients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterClients")
    }
}

impl ClientCertVerifier for ClusterClients {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, Error> {
        self.0
            .current()
            .client_required
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, algorithms(&self.0))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, algorithms(&self.0))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms(&self.0).supported_schemes()
    }
}

/// Requires a server certificate signed by the cluster's CA that names a store.
#[derive(Clone)]
pub struct ClusterServers(pub Arc<Credentials>);

impl std::fmt::Debug for ClusterServers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterServers")
    }
}

impl ServerCertVerifier for ClusterServers {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        let parsed = ParsedCertificate::try_from(end_entity)?;
        let algorithms = algorithms(&self.0).all;
        verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.0.current().roots,
            intermediates,
            now,
            algorithms,
        )?;
        match CertIdentity::of_certificate(end_entity) {
            Ok(CertIdentity::Store(_)) => Ok(ServerCertVerified::assertion()),
            Ok(other) => Err(Error::General(format!(
                "the peer's certificate names {other}, not a store"
            ))),
            Err(why) => Err(Error::General(format!("the peer's certificate: {why}"))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(message, cert, dss, algorithms(&self.0))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(message, cert, dss, algorithms(&self.0))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        algorithms(&self.0).supported_schemes()
    }
}

/// The signature algorithms of the credentials' cryptography.
fn algorithms(credentials: &Credentials) -> &WebPkiSupportedAlgorithms {
    &credentials.provider().signature_verification_algorithms
}
