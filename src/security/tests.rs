//! Mutual TLS between nodes, end to end on loopback sockets: raft streams, snapshot
//! streams and node-to-node HTTP, with certificates from a CA made for each test, and the
//! attacks TLS is there to stop (no certificate, another CA's, a client's, a store
//! claiming to be another, an address that leads to the wrong store), plus rotation.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tinykv_actors::Transport;
use tinykv_proto::eraftpb::{self, ConfState, MessageType, SnapshotMetadata};
use tinykv_proto::metapb::{Peer, RegionEpoch};
use tinykv_proto::raft_serverpb::RaftMessage;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::runtime::Handle;
use tokio::sync::mpsc;

use super::certs::CertAuthority;
use super::*;
use crate::config::StoreAddress;
use crate::server::address_book::AddressBook;
use crate::server::peer_api::Identity;
use crate::server::peer_listener::{PeerListener, RaftInbound};
use crate::server::raft_transport::{Hello, TcpTransport, RAFT_PREFACE};

const WAIT: Duration = Duration::from_secs(10);

/// A CA and the directory its certificates are written to.
struct Pki {
    dir: tempfile::TempDir,
    ca: CertAuthority,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().unwrap();
        let ca = CertAuthority::generate("test CA").unwrap();
        std::fs::write(dir.path().join("ca.pem"), &ca.issued.cert_pem).unwrap();
        Pki { dir, ca }
    }

    /// Issues a certificate for `identity` into `<name>.pem` and `<name>.key`; returns
    /// the files of a node using it.
    fn issue(&self, name: &str, identity: CertIdentity) -> TlsFiles {
        let issued = self
            .ca
            .issue(&identity, &["127.0.0.1".into(), "localhost".into()], 1)
            .unwrap();
        let cert = self.dir.path().join(format!("{name}.pem"));
        let key = self.dir.path().join(format!("{name}.key"));
        std::fs::write(&cert, issued.cert_pem).unwrap();
        std::fs::write(&key, issued.key_pem).unwrap();
        TlsFiles {
            ca: self.dir.path().join("ca.pem"),
            cert,
            key,
        }
    }

    /// The TLS setup of store `id`.
    fn store(&self, id: u64) -> Tls {
        tls(self.issue(&format!("store-{id}"), CertIdentity::Store(id)))
    }
}

fn tls(files: TlsFiles) -> Tls {
    let credentials = Credentials::load(files, crypto_provider()).unwrap();
    Tls::new(Arc::new(credentials), false).unwrap()
}

fn hello(store_id: u64) -> Hello {
    Hello {
        cluster_id: 1,
        store_id,
    }
}

/// A message from store `from` to store `to`.
fn message(from: u64, to: u64, region_id: u64) -> RaftMessage {
    RaftMessage {
        region_id,
        from_peer: Some(Peer {
            id: from,
            store_id: from,
        }),
        to_peer: Some(Peer {
            id: to,
            store_id: to,
        }),
        ..Default::default()
    }
}

/// Stores 1 to 3, store `listening` at `addr`.
fn book(listening: u64, addr: &str) -> AddressBook {
    AddressBook::new((1..=3).map(|id| StoreAddress {
        id,
        raft_addr: if id == listening {
            addr.to_string()
        } else {
            format!("127.0.0.1:{}", 10 + id)
        },
        http_addr: "127.0.0.1:1".into(),
    }))
}

/// Starts store `own`'s peer listener with `tls`; returns its address and what it
/// delivers.
async fn start_listener(own: u64, tls: Tls) -> (String, mpsc::UnboundedReceiver<RaftMessage>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let (tx, rx) = mpsc::unbounded_channel();
    let peers = PeerListener::new(Identity::new(1, own), Handle::current(), Some(tls));
    peers.serve_raft(RaftInbound {
        own: hello(own),
        addresses: book(own, &addr),
        deliver: Arc::new(move |msg| {
            let _ = tx.send(msg);
        }),
    });
    tokio::spawn(peers.run(listener));
    (addr, rx)
}

/// Whether nothing is delivered for a while (a refused stream delivers nothing, ever).
async fn nothing_arrives(rx: &mut mpsc::UnboundedReceiver<RaftMessage>) -> bool {
    tokio::time::timeout(Duration::from_millis(500), rx.recv())
        .await
        .is_err()
}

fn refused(listener: &str, reason: &str) -> u64 {
    crate::metrics::CONNECTIONS_REFUSED
        .with_label_values(&[listener, reason])
        .get()
}

#[tokio::test]
async fn stores_exchange_raft_messages_and_snapshots_over_mutual_tls() {
    let pki = Pki::new();
    let (addr, mut inbox) = start_listener(2, pki.store(2)).await;
    let transport =
        TcpTransport::new(book(2, &addr), hello(1), Handle::current()).with_tls(Some(pki.store(1)));
    for region in 1..=20 {
        transport.send(message(1, 2, region));
    }
    for region in 1..=20 {
        let got = tokio::time::timeout(WAIT, inbox.recv())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(got.region_id, region);
    }
    // A snapshot travels on a TLS stream of its own, acknowledged through the session.
    let mut snapshot = message(1, 2, 21);
    snapshot.region_epoch = Some(RegionEpoch {
        conf_ver: 1,
        version: 1,
    });
    snapshot.message = Some(eraftpb::Message {
        msg_type: MessageType::MsgSnapshot as i32,
        to: 2,
        from: 1,
        term: 3,
        snapshot: Some(eraftpb::Snapshot {
            data: vec![7u8; 3 * crate::server::raft_transport::SNAPSHOT_CHUNK_BYTES + 5],
            metadata: Some(SnapshotMetadata {
                conf_state: Some(ConfState {
                    voters: vec![1, 2],
                    ..Default::default()
                }),
                index: 10,
                term: 3,
            }),
        }),
        ..Default::default()
    });
    transport.send(snapshot.clone());
    let got = tokio::time::timeout(WAIT, inbox.recv())
        .await
        .unwrap()
        .unwrap();
    assert!(got == snapshot, "the snapshot arrives intact");
}

#[tokio::test]
async fn a_store_claiming_another_store_than_its_certificate_is_refused() {
    let pki = Pki::new();
    let (addr, mut inbox) = start_listener(2, pki.store(2)).await;
    let before = refused("peer", "identity_mismatch");
    // Store 3's certificate, introducing itself as store 1 (whose messages it forges).
    let forger =
        TcpTransport::new(book(2, &addr), hello(1), Handle::current()).with_tls(Some(pki.store(3)));
    forger.send(message(1, 2, 7));
    assert!(
        nothing_arrives(&mut inbox).await,
        "a forged stream delivers nothing"
    );
    assert!(refused("peer", "identity_mismatch") > before);
}

#[tokio::test]
async fn a_dial_that_reaches_another_store_sends_it_nothing() {
    let pki = Pki::new();
    // Store 3 listens where the address book says store 2 is (a stale or poisoned
    // address): it completes the handshake, and must then read nothing.
    let impostor = pki.store(3);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let transport =
        TcpTransport::new(book(2, &addr), hello(1), Handle::current()).with_tls(Some(pki.store(1)));
    transport.send(message(1, 2, 9));
    let (tcp, _) = listener.accept().await.unwrap();
    let mut conn = impostor.accept_peer(tcp).await.unwrap();
    assert_eq!(conn.peer_identity(), Some(CertIdentity::Store(1)));
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, conn.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "the sender checks whom it reached before it writes a byte: {read:?}"
    );
}

#[tokio::test]
async fn connections_without_a_store_certificate_cannot_send_a_byte() {
    let pki = Pki::new();
    let (addr, mut inbox) = start_listener(2, pki.store(2)).await;
    let opening = |store: u64| {
        let mut bytes = RAFT_PREFACE.to_vec();
        bytes.extend_from_slice(&hello(store).encode());
        bytes
    };

    // Plaintext: the TLS handshake fails on the first bytes.
    let handshakes_before = refused("peer", "tls_handshake");
    let mut plain = TcpStream::connect(&addr).await.unwrap();
    let _ = plain.write_all(&opening(1)).await;
    let mut buf = [0u8; 64];
    let _ = tokio::time::timeout(WAIT, plain.read(&mut buf)).await;

    // A certificate from another CA.
    let stranger = Pki::new().store(1);
    let tcp = TcpStream::connect(&addr).await.unwrap();
    if let Ok(mut conn) = stranger.connect(tcp, &addr).await {
        let _ = conn.write_all(&opening(1)).await;
        let _ = conn.flush().await;
        let _ = tokio::time::timeout(WAIT, conn.read(&mut buf)).await;
    }
    assert!(nothing_arrives(&mut inbox).await);
    assert!(refused("peer", "tls_handshake") >= handshakes_before + 2);

    // A client's certificate, signed by the right CA, names no store.
    let not_a_store_before = refused("peer", "not_a_store");
    let user = pki.issue("user-ops", CertIdentity::User("ops".into()));
    let user_tls = tls(user);
    let tcp = TcpStream::connect(&addr).await.unwrap();
    // The client's verifier requires a store on the other side, which there is.
    let mut conn = user_tls.connect(tcp, &addr).await.unwrap();
    let _ = conn.write_all(&opening(1)).await;
    let _ = conn.flush().await;
    let _ = tokio::time::timeout(WAIT, conn.read(&mut buf)).await;
    assert!(nothing_arrives(&mut inbox).await);
    assert!(refused("peer", "not_a_store") > not_a_store_before);
}

#[tokio::test]
async fn node_to_node_http_presents_the_store_certificate() {
    let pki = Pki::new();
    let (addr, _inbox) = start_listener(2, pki.store(2)).await;
    let store1 = pki.store(1);
    let http = NodeHttp::build(Some(&store1), WAIT, "test", |b| b.timeout(WAIT)).unwrap();
    let url = http.url(&addr, crate::server::peer_api::IDENTITY_PATH);
    assert!(url.starts_with("https://"));
    let body = http
        .client()
        .get(url.clone())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let answer: crate::server::peer_api::IdentityView = serde_json::from_slice(&body).unwrap();
    assert_eq!(answer.store_id, 2);

    // Without a certificate, or over plaintext, there is no answer at all.
    let plain = NodeHttp::build(None, WAIT, "test", |b| b.timeout(WAIT)).unwrap();
    assert!(plain
        .client()
        .get(plain.url(&addr, crate::server::peer_api::IDENTITY_PATH))
        .send()
        .await
        .is_err());
    let anonymous = ClientTlsFiles {
        ca: pki.dir.path().join("ca.pem"),
        cert_and_key: None,
    }
    .http_client_builder()
    .unwrap()
    .build()
    .unwrap();
    assert!(anonymous.get(url).send().await.is_err());
}

#[tokio::test]
async fn a_rotated_certificate_is_used_without_a_restart() {
    let pki = Pki::new();
    let files = pki.issue("store-2", CertIdentity::Store(2));
    let credentials = Arc::new(Credentials::load(files.clone(), crypto_provider()).unwrap());
    let serial = |c: &Credentials| c.current().key.cert[0].clone();
    let first = serial(&credentials);
    assert!(
        !credentials.reload_if_changed().unwrap(),
        "nothing changed yet"
    );

    // A half-written file is refused, and the old certificate stays.
    std::fs::write(&files.cert, "-----BEGIN CERTIFICATE-----\nAAAA").unwrap();
    assert!(credentials.reload_if_changed().is_err());
    assert_eq!(serial(&credentials), first);

    // A certificate naming another store is refused: a node never becomes another.
    let other = pki.ca.issue(&CertIdentity::Store(3), &[], 1).unwrap();
    write_pair(&files, &other.cert_pem, &other.key_pem);
    let err = credentials.reload_if_changed().unwrap_err();
    assert!(err.contains("store 3"), "{err}");
    assert_eq!(serial(&credentials), first);

    // A new certificate for the same store is taken.
    let renewed = pki.ca.issue(&CertIdentity::Store(2), &[], 30).unwrap();
    write_pair(&files, &renewed.cert_pem, &renewed.key_pem);
    assert!(credentials.reload_if_changed().unwrap());
    assert_ne!(serial(&credentials), first);
    assert_eq!(credentials.identity(), CertIdentity::Store(2));

    // And handshakes present it from then on.
    let tls = Tls::new(credentials.clone(), false).unwrap();
    let (addr, _inbox) = start_listener(2, tls).await;
    let tcp = TcpStream::connect(&addr).await.unwrap();
    let conn = pki.store(1).connect(tcp, &addr).await.unwrap();
    let Conn::Tls(stream) = &conn else {
        panic!("a TLS connection")
    };
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].clone();
    assert_eq!(presented, serial(&credentials));
}

/// Replaces the certificate and key of `files`, making sure their stamp changes.
fn write_pair(files: &TlsFiles, cert_pem: &str, key_pem: &str) {
    std::fs::write(&files.key, key_pem).unwrap();
    std::fs::write(&files.cert, cert_pem).unwrap();
    bump_mtime(&files.cert);
}

/// Moves a file's modification time forward, so that a rewrite within the same
/// timestamp tick (and of the same size) still counts as a change.
fn bump_mtime(path: &Path) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    let later = std::time::SystemTime::now() + Duration::from_secs(2);
    file.set_modified(later).unwrap();
}
