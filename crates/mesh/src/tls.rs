//! rustls and quinn configuration for every party.
//!
//! * TLS 1.3 only, ring only.
//! * The gateway offers client authentication on every connection but does
//!   not demand it, because the enrollment ALPN has no client certificate
//!   yet. The session ALPN requires one; the gateway closes any session
//!   connection without it (see `gateway`).
//! * A presented client certificate must chain to the gateway's CA, be in
//!   its validity period and not be revoked; otherwise the handshake fails
//!   with the matching TLS alert, which clients turn into a sentence.
//! * Enrolling nodes have no CA yet, only the pin in their token:
//!   [`PinnedCaVerifier`] accepts the gateway only if the chain it sends
//!   ends in a CA whose key hashes to the pin, and then verifies the server
//!   certificate against that CA as usual.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime, pem::PemObject};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, RootCertStore, SignatureScheme,
};

/// The one crypto provider: ring, with AES-128-GCM first.
///
/// ring's list starts with AES-256-GCM, a client offers suites in this
/// order and a rustls server takes the client's first that it supports,
/// so every connection used AES-256-GCM. AES-128-GCM does 10 AES rounds
/// to its 14 (QUIC's header protection too), on every byte of every hop,
/// and every QUIC endpoint must support it (RFC 9001, section 5.3).
/// AES-256-GCM and ChaCha20-Poly1305 stay offered, after it.
pub fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites
        .sort_by_key(|s| s.suite() != rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
    Arc::new(p)
}

/// A TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A private key's PEM could not be read.
    #[error("TLS setup failed: bad private key: {0}")]
    BadKey(String),
    /// A certificate's PEM could not be read, or held no certificate.
    #[error("TLS setup failed: bad certificate PEM: {0}")]
    BadCertificate(String),
    /// rustls refused the configuration (a key that does not match its
    /// certificate, a CA it cannot use).
    #[error("TLS setup failed: {0}")]
    Rustls(#[from] rustls::Error),
    /// The TLS configuration could not be turned into a QUIC one, or a
    /// verifier or transport setting could not be built.
    #[error("TLS setup failed: {0}")]
    Config(String),
}

fn err(e: impl std::fmt::Display) -> TlsError {
    TlsError::Config(e.to_string())
}

/// Parses a PEM private key.
pub fn parse_key(pem: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::BadKey(e.to_string()))
}

/// Parses PEM certificates.
pub fn parse_certs(pem: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(|e| TlsError::BadCertificate(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::BadCertificate("no certificate in PEM".into()));
    }
    Ok(certs)
}

/// Serials of revoked certificates, shared between the TLS verifier and the
/// gateway. Lookups take a read lock for a hash probe; never held across IO.
#[derive(Debug, Default)]
pub struct RevokedSerials(RwLock<HashSet<String>>);

impl RevokedSerials {
    /// Adds a serial (lowercase hex).
    pub fn insert(&self, serial: &str) {
        if let Ok(mut set) = self.0.write() {
            set.insert(serial.to_string());
        }
    }

    /// Whether a serial is revoked. A poisoned lock counts as revoked.
    pub fn contains(&self, serial: &str) -> bool {
        self.0
            .read()
            .map(|set| set.contains(serial))
            .unwrap_or(true)
    }
}

/// Checks client certificates: chain to our CA, validity, revocation.
#[derive(Debug)]
struct GatewayClientVerifier {
    inner: Arc<dyn ClientCertVerifier>,
    revoked: Arc<RevokedSerials>,
}

impl ClientCertVerifier for GatewayClientVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let serial = pki::serial_of(end_entity)
            .map_err(|_| rustls::Error::InvalidCertificate(CertificateError::BadEncoding))?;
        if self.revoked.contains(&serial) {
            return Err(rustls::Error::InvalidCertificate(CertificateError::Revoked));
        }
        Ok(verified)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Transport parameters for the gateway: idle timeout is the dead-node window.
///
/// These are the limits of a peer nobody has identified yet: one
/// bidirectional stream, no unidirectional ones, and 64 KiB of connection
/// flow-control credit, so an unauthenticated connection can make the
/// gateway buffer at most 64 KiB. The gateway widens them per connection
/// once the peer's certificate says who it is.
pub fn server_transport(idle: Duration) -> Result<quinn::TransportConfig, TlsError> {
    let mut t = quinn::TransportConfig::default();
    t.max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle).map_err(err)?));
    t.max_concurrent_bidi_streams(1u32.into());
    t.max_concurrent_uni_streams(0u32.into());
    t.receive_window(UNIDENTIFIED_WINDOW.into());
    set_udp_payload_max(&mut t, UDP_PAYLOAD_DEFAULT);
    Ok(t)
}

/// Flow-control credit of a connection whose peer is not identified yet.
pub const UNIDENTIFIED_WINDOW: u32 = 64 * 1024;

/// Widens a connection's stream and flow-control limits to what a peer of
/// `role` needs, once its certificate has identified it, with a
/// connection flow-control window of `window` bytes.
pub fn widen_limits(conn: &quinn::Connection, role: proto::Role, window: u32) {
    let (bidi, uni): (u32, u32) = match role {
        // The control stream and a renewal; the gateway raises this to
        // what its jobs need once its hello says it (`node_job_streams`):
        // quinn allocates state for every stream a peer may open, so a
        // fixed 1024 cost every idle node about 60 KB. One heartbeat
        // stream.
        proto::Role::Node => (NODE_BASE_STREAMS, 4),
        // One stream per API call or followed job.
        proto::Role::Admin | proto::Role::Bot | proto::Role::User => (256, 0),
    };
    conn.set_max_concurrent_bi_streams(bidi.into());
    conn.set_max_concurrent_uni_streams(uni.into());
    conn.set_receive_window(window.into());
}

/// A node's connection window: it carries job output from every running
/// job. Only a node's current connection gets it.
pub const NODE_WINDOW: u32 = 64 << 20;

/// The window of an admin's or bot's `nth` live connection (1-based):
/// the first few get room for large requests and fast uploads, the rest a
/// small one, so one client certificate holds at most
/// `4 × 8 MiB + 60 × 512 KiB` (62 MiB) of unread data at the default cap
/// of 64 connections, not 512 MiB.
pub fn client_window(nth: usize) -> u32 {
    if nth <= 4 { 8 << 20 } else { 512 << 10 }
}

/// Bidirectional streams a node may open besides its jobs' (control,
/// renewal, a re-attach in flight).
pub const NODE_BASE_STREAMS: u32 = 8;

/// Forwards (`openclaw forward`) open to one node at once, waiting for it
/// included: each is a stream the node opens, so the gateway refuses more
/// and [`node_stream_limit`] leaves room for them beside the jobs'. Enough
/// for a browser on a notebook or dashboard (6 connections per host, plus
/// WebSockets); kept small because every stream a node may open costs the
/// gateway memory whether it is used or not.
pub const NODE_FORWARD_STREAMS: u32 = 32;

/// Copy streams (`openclaw cp`) open to one node at once, waiting for it
/// included, as [`NODE_FORWARD_STREAMS`] is for forwards: enough for the
/// CLI's window of files in flight from a few copies at once.
pub const NODE_COPY_STREAMS: u32 = 32;

/// Jobs a node's connection has streams for before the gateway
/// dispatches more ([`node_job_streams`] of 2 is 12 streams). Kept small
/// because the window is what a long-lived connection ends up holding:
/// quinn gives each stream id of the window its own receive state (about
/// 0.7 KB with its reassembly heap) the first time the node opens it, and
/// only recycles states once ids past the first window are used. A
/// window of 104 grew the gateway by about 0.7 KB a job for the first
/// hundred jobs of every node, for hours at a job a second over 100 nodes
/// (docs/PERFORMANCE.md, "soak"). The gateway's `Registry::make_room`
/// raises it before a dispatch that needs more, so this costs no job a
/// wait.
pub const NODE_IDLE_JOBS: u32 = 2;

/// Streams a node's connection gets for forwards and copies, on top of
/// its jobs', once the first forward or copy to it is asked for.
pub const NODE_SIDE_STREAMS: u32 = NODE_FORWARD_STREAMS + NODE_COPY_STREAMS;

/// The concurrent bidirectional streams a node running `jobs` jobs needs
/// while nobody has asked it for a forward or copy: two per job and its
/// own ([`node_stream_limit`] less [`NODE_SIDE_STREAMS`]).
pub fn node_job_streams(jobs: u32) -> u32 {
    2 * jobs.min(4096) + NODE_BASE_STREAMS
}

/// The concurrent bidirectional streams a node that runs at most
/// `max_jobs` jobs at once needs: two per job (its report stream and its
/// standard input's), the forwards and copies the gateway lets open to
/// it, and its own. Forwards, copies and input never take the streams
/// jobs report on.
pub fn node_stream_limit(max_jobs: u32) -> u32 {
    node_job_streams(max_jobs) + NODE_SIDE_STREAMS
}

/// Transport parameters for clients and nodes: keep the connection alive
/// well inside the gateway's idle timeout.
pub fn client_transport(
    keep_alive: Duration,
    idle: Duration,
) -> Result<quinn::TransportConfig, TlsError> {
    let mut t = quinn::TransportConfig::default();
    t.keep_alive_interval(Some(keep_alive));
    t.max_idle_timeout(Some(quinn::IdleTimeout::try_from(idle).map_err(err)?));
    set_udp_payload_max(&mut t, UDP_PAYLOAD_DEFAULT);
    Ok(t)
}

/// Smallest and largest UDP payload path MTU discovery may try: QUIC's
/// guaranteed minimum (every path carries 1,200 bytes), and the largest
/// that still fits quinn's segmentation offload: quinn hands the kernel up
/// to 10 datagrams in one send (GSO), and the kernel refuses a batch over
/// 64 KiB (65,507 bytes of UDP payload on IPv4), which quinn counts as
/// lost. Measured on loopback: at 8,192 bytes a datagram every full batch
/// was refused, quinn declared a black hole and fell back to 1,200 bytes
/// for a minute; at 6,550 nothing was lost.
pub const UDP_PAYLOAD_RANGE: (u16, u16) = (1200, 6550);

/// What path MTU discovery tries when no config raises it: quinn's own
/// bound. Larger (up to [`UDP_PAYLOAD_RANGE`]) is opt-in, `udp_payload_max`
/// in gateway.toml / node.toml: with it on by default, the close a
/// one-shot CLI or the gateway sends was lost often enough to leave
/// sessions lingering (races::one_shot_cli_commands_close_their_connections_at_once
/// failed every run; bad_input::unknown_stream_kinds_close_the_session
/// under load), and the end-to-end output figures moved by less than
/// their noise (docs/PERFORMANCE.md, section "thru").
pub const UDP_PAYLOAD_DEFAULT: u16 = 1452;

/// Checks `value` of config `key` as a UDP payload bound: a clear error
/// naming the key, the range and a value to use when it is out of range.
pub fn check_udp_payload_max(key: &str, value: i64) -> Result<u16, String> {
    let (lo, hi) = UDP_PAYLOAD_RANGE;
    match u16::try_from(value) {
        Ok(v) if (lo..=hi).contains(&v) => Ok(v),
        _ => Err(format!(
            "{key} = {value} is outside {lo}..{hi} (bytes of UDP payload); e.g. 1452 for a path through tunnels, or remove it to let path MTU discovery find the largest"
        )),
    }
}

/// Lets path MTU discovery grow this connection's datagrams up to `max`
/// bytes of UDP payload (clamped to [`UDP_PAYLOAD_RANGE`]).
///
/// Both transports default to the largest, so a connection finds what its
/// path allows up to it: 6,550 on loopback (MTU 65,536) or a jumbo-frame
/// link, 1,472 on Ethernet (quinn's own default stops at 1,452, whatever
/// the link). Fewer, larger
/// datagrams mean fewer packets to encrypt, acknowledge and hand to the
/// kernel for the same bytes. A probe larger than the local interface's MTU
/// fails in the kernel (EMSGSIZE, which quinn treats as a lost probe)
/// without reaching the wire; a probe lost on the path lowers the bound,
/// and quinn's black-hole detection falls back to 1,200 if larger
/// datagrams stop arriving. The binary search costs a few lost probes
/// while the connection starts (the data itself goes at 1,200 bytes or
/// more meanwhile); a node on a long path can stop it early with
/// `udp_payload_max` in node.toml, a gateway in gateway.toml.
pub fn set_udp_payload_max(t: &mut quinn::TransportConfig, max: u16) {
    let mut m = quinn::MtuDiscoveryConfig::default();
    m.upper_bound(max.clamp(UDP_PAYLOAD_RANGE.0, UDP_PAYLOAD_RANGE.1));
    t.mtu_discovery_config(Some(m));
}

/// Smallest and largest congestion floor a node may set.
pub const CONGESTION_FLOOR_RANGE: (u64, u64) = (16 << 10, 64 << 20);

/// quinn's CUBIC with a floor under its congestion window: the window CUBIC
/// computes, but never less than `floor` bytes. On a link that drops
/// packets at random (radio, satellite), a loss-based controller reads each
/// drop as congestion and sits at its two-packet minimum; with a floor the
/// sender keeps `floor` bytes in flight, paced over the round trip, and
/// retransmits what is lost. It does not back off below the floor, so it is
/// only for links the lab owns, never for shared paths: opt-in per node
/// (`congestion_floor` in node.toml).
#[derive(Debug)]
struct FlooredFactory {
    floor: u64,
}

impl quinn::congestion::ControllerFactory for FlooredFactory {
    fn build(
        self: Arc<Self>,
        now: std::time::Instant,
        current_mtu: u16,
    ) -> Box<dyn quinn::congestion::Controller> {
        let inner = Arc::new(quinn::congestion::CubicConfig::default()).build(now, current_mtu);
        Box::new(Floored {
            inner,
            floor: self.floor,
        })
    }
}

struct Floored {
    inner: Box<dyn quinn::congestion::Controller>,
    floor: u64,
}

impl quinn::congestion::Controller for Floored {
    fn on_sent(&mut self, now: std::time::Instant, bytes: u64, last_packet_number: u64) {
        self.inner.on_sent(now, bytes, last_packet_number);
    }

    fn on_ack(
        &mut self,
        now: std::time::Instant,
        sent: std::time::Instant,
        bytes: u64,
        app_limited: bool,
        rtt: &quinn_proto::RttEstimator,
    ) {
        self.inner.on_ack(now, sent, bytes, app_limited, rtt);
    }

    fn on_end_acks(
        &mut self,
        now: std::time::Instant,
        in_flight: u64,
        app_limited: bool,
        largest_packet_num_acked: Option<u64>,
    ) {
        self.inner
            .on_end_acks(now, in_flight, app_limited, largest_packet_num_acked);
    }

    fn on_congestion_event(
        &mut self,
        now: std::time::Instant,
        sent: std::time::Instant,
        is_persistent_congestion: bool,
        lost_bytes: u64,
    ) {
        self.inner
            .on_congestion_event(now, sent, is_persistent_congestion, lost_bytes);
    }

    fn on_mtu_update(&mut self, new_mtu: u16) {
        self.inner.on_mtu_update(new_mtu);
    }

    fn window(&self) -> u64 {
        self.inner.window().max(self.floor)
    }

    fn clone_box(&self) -> Box<dyn quinn::congestion::Controller> {
        Box::new(Floored {
            inner: self.inner.clone_box(),
            floor: self.floor,
        })
    }

    fn initial_window(&self) -> u64 {
        self.inner.initial_window().max(self.floor)
    }

    fn into_any(self: Box<Self>) -> Box<dyn std::any::Any> {
        self
    }
}

/// Puts a floor of `floor` bytes under the congestion window of
/// connections made with `t` (see [`FlooredFactory`]); clamped to
/// [`CONGESTION_FLOOR_RANGE`].
pub fn set_congestion_floor(t: &mut quinn::TransportConfig, floor: u64) {
    let floor = floor.clamp(CONGESTION_FLOOR_RANGE.0, CONGESTION_FLOOR_RANGE.1);
    t.congestion_controller_factory(Arc::new(FlooredFactory { floor }));
}

/// The gateway's server configuration: both ALPNs, optional client auth.
pub fn server_config(
    chain_pem: &str,
    key_pem: &str,
    ca_pem: &str,
    revoked: Arc<RevokedSerials>,
    transport: quinn::TransportConfig,
) -> Result<quinn::ServerConfig, TlsError> {
    let provider = provider();
    let roots = roots(ca_pem)?;
    let inner = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .allow_unauthenticated()
    .build()
    .map_err(err)?;
    let verifier = Arc::new(GatewayClientVerifier { inner, revoked });
    let mut tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(parse_certs(chain_pem)?, parse_key(key_pem)?)?;
    tls.alpn_protocols = proto::ALPN_SESSIONS_SERVED
        .iter()
        .map(|a| a.to_vec())
        .chain([proto::ALPN_ENROLL.to_vec()])
        .collect();
    tls.max_early_data_size = 0;
    let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls).map_err(err)?;
    let mut config = quinn::ServerConfig::with_crypto(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// Trust anchors from PEM.
fn roots(ca_pem: &str) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for ca in parse_certs(ca_pem)? {
        roots.add(ca)?;
    }
    Ok(roots)
}

/// TLS 1.3, ring, the gateway verified against `ca_pem`: every session client starts here.
fn session_builder(
    ca_pem: &str,
) -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>, TlsError>
{
    Ok(rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots(ca_pem)?))
}

/// A session client: verifies the gateway against `ca_pem`, presents a
/// client certificate.
pub fn session_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    session_client_config_for(ca_pem, cert_pem, key_pem, transport, proto::ALPN_SESSION)
}

/// [`session_client_config`] offering `alpn` instead of the current
/// session ALPN: what an older or newer peer would offer (tests).
pub fn session_client_config_for(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    transport: quinn::TransportConfig,
    alpn: &[u8],
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = session_builder(ca_pem)?
        .with_client_auth_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)?;
    tls.alpn_protocols = vec![alpn.to_vec()];
    finish_client(tls, transport)
}

/// A session client with no client certificate. Only for tests and probes:
/// the gateway refuses such sessions.
pub fn anonymous_session_client_config(
    ca_pem: &str,
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    let mut tls = session_builder(ca_pem)?.with_no_client_auth();
    tls.alpn_protocols = vec![proto::ALPN_SESSION.to_vec()];
    finish_client(tls, transport)
}

fn finish_client(
    tls: rustls::ClientConfig,
    transport: quinn::TransportConfig,
) -> Result<quinn::ClientConfig, TlsError> {
    let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls).map_err(err)?;
    let mut config = quinn::ClientConfig::new(Arc::new(quic));
    config.transport_config(Arc::new(transport));
    Ok(config)
}

/// The outcome of pin verification, for error messages.
#[derive(Debug, Default)]
pub struct PinCheck(Mutex<Option<String>>);

impl PinCheck {
    /// Why the gateway was refused, if it was.
    pub fn failure(&self) -> Option<String> {
        self.0.lock().ok().and_then(|g| g.clone())
    }

    fn fail(&self, why: String) -> rustls::Error {
        if let Ok(mut g) = self.0.lock() {
            *g = Some(why.clone());
        }
        rustls::Error::General(why)
    }
}

/// Accepts a gateway only if its chain ends in a CA matching the token's pin.
#[derive(Debug)]
pub struct PinnedCaVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
    check: Arc<PinCheck>,
}

impl ServerCertVerifier for PinnedCaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let ca = intermediates
            .iter()
            .position(|c| pki::spki_pin(c).is_ok_and(|p| pki::constant_time_eq(&p, &self.pin)));
        let Some(ca) = ca.and_then(|i| intermediates.get(i).map(|c| (i, c))) else {
            let got = intermediates
                .last()
                .and_then(|c| pki::spki_pin(c).ok())
                .map(|p| format!("sha256:{}", pki::hex(&p)))
                .unwrap_or_else(|| "no CA certificate".into());
            return Err(self.check.fail(format!(
                "the gateway's CA does not match the token's pin (token pins sha256:{}, gateway sent {got}); \
                 the gateway's CA may have been rotated since the token was made (ask for a new token), \
                 or you may be talking to the wrong gateway or a machine in the middle",
                pki::hex(&self.pin)
            )));
        };
        let (at, ca) = ca;
        // The rest of the chain may link the server certificate to the
        // pinned CA: during a CA rotation the gateway sends the new CA
        // cross-signed by the old one, so tokens made before it still work.
        let rest: Vec<CertificateDer<'_>> = intermediates
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != at)
            .map(|(_, c)| c.clone())
            .collect();
        let mut roots = RootCertStore::empty();
        roots
            .add(ca.clone().into_owned())
            .map_err(|e| self.check.fail(format!("bad CA certificate: {e}")))?;
        let inner = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            self.provider.clone(),
        )
        .build()
        .map_err(|e| self.check.fail(format!("bad CA certificate: {e}")))?;
        inner
            .verify_server_cert(end_entity, &rest, server_name, ocsp_response, now)
            .map_err(|e| {
                self.check.fail(format!(
                    "the gateway's certificate is not valid under the pinned CA: {e}"
                ))
            })
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("TLS 1.2 is not accepted".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// An enrollment client: no client certificate, gateway checked by pin.
pub fn enroll_client_config(
    pin: [u8; 32],
    transport: quinn::TransportConfig,
) -> Result<(quinn::ClientConfig, Arc<PinCheck>), TlsError> {
    let provider = provider();
    let check = Arc::new(PinCheck::default());
    let verifier = Arc::new(PinnedCaVerifier {
        pin,
        provider: provider.clone(),
        check: check.clone(),
    });
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    tls.alpn_protocols = vec![proto::ALPN_ENROLL.to_vec()];
    Ok((finish_client(tls, transport)?, check))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_800_000_000;

    #[test]
    fn tls_errors_say_which_input_was_bad() {
        assert!(matches!(parse_key("not a key"), Err(TlsError::BadKey(_))));
        assert!(matches!(parse_certs(""), Err(TlsError::BadCertificate(_))));
        let e = parse_certs("-----BEGIN CERTIFICATE-----\n!!\n-----END CERTIFICATE-----\n");
        assert!(matches!(e, Err(TlsError::BadCertificate(_))), "{e:?}");
    }

    fn der(pem: &str) -> CertificateDer<'static> {
        CertificateDer::from(pki::pem_to_der(pem, "CERTIFICATE").unwrap())
    }

    fn verify(roots_pem: &[&str], chain: &[CertificateDer<'static>]) -> Result<(), rustls::Error> {
        let mut roots = RootCertStore::empty();
        for pem in roots_pem {
            roots.add(der(pem)).unwrap();
        }
        let v = rustls::client::WebPkiServerVerifier::builder_with_provider(
            Arc::new(roots),
            provider(),
        )
        .build()
        .unwrap();
        let name = ServerName::try_from(proto::GATEWAY_SERVER_NAME).unwrap();
        let at = UnixTime::since_unix_epoch(Duration::from_secs(NOW + 60));
        v.verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
            .map(|_| ())
    }

    fn pinned(pin: [u8; 32], chain: &[CertificateDer<'static>]) -> Result<(), rustls::Error> {
        let v = PinnedCaVerifier {
            pin,
            provider: provider(),
            check: Arc::new(PinCheck::default()),
        };
        let name = ServerName::try_from(proto::GATEWAY_SERVER_NAME).unwrap();
        let at = UnixTime::since_unix_epoch(Duration::from_secs(NOW + 60));
        v.verify_server_cert(&chain[0], &chain[1..], &name, &[], at)
            .map(|_| ())
    }

    /// Two peers built on the mesh's provider agree on AES-128-GCM (ring
    /// alone would give AES-256-GCM), and still agree with a peer that
    /// offers only AES-256-GCM.
    #[test]
    fn peers_negotiate_aes_128_gcm_first() {
        // rustls checks the certificate against the real clock.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            - 60;
        let (ca_pem, ca_key) = pki::generate_ca("gw", now).unwrap();
        let ca = pki::Ca::load(&ca_pem, &ca_key).unwrap();
        let (leaf, key) = ca.issue_server("gw", 3600, now).unwrap();
        let server = |p: Arc<CryptoProvider>| {
            rustls::ServerConfig::builder_with_provider(p)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_no_client_auth()
                .with_single_cert(
                    vec![CertificateDer::from(leaf.der.clone())],
                    parse_key(&key).unwrap(),
                )
                .unwrap()
        };
        let client = |p: Arc<CryptoProvider>| {
            let mut roots = RootCertStore::empty();
            roots.add(der(&ca_pem)).unwrap();
            rustls::ClientConfig::builder_with_provider(p)
                .with_protocol_versions(&[&rustls::version::TLS13])
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth()
        };
        let agree = |c: rustls::ClientConfig, s: rustls::ServerConfig| {
            let name = ServerName::try_from(proto::GATEWAY_SERVER_NAME).unwrap();
            let mut c = rustls::ClientConnection::new(Arc::new(c), name).unwrap();
            let mut s = rustls::ServerConnection::new(Arc::new(s)).unwrap();
            for _ in 0..10 {
                let mut wire = Vec::new();
                c.write_tls(&mut wire).unwrap();
                s.read_tls(&mut &wire[..]).unwrap();
                s.process_new_packets().unwrap();
                wire.clear();
                s.write_tls(&mut wire).unwrap();
                c.read_tls(&mut &wire[..]).unwrap();
                c.process_new_packets().unwrap();
                if !c.is_handshaking() && !s.is_handshaking() {
                    break;
                }
            }
            let suite = |n: Option<rustls::SupportedCipherSuite>| n.map(|x| x.suite());
            let got = suite(c.negotiated_cipher_suite());
            assert_eq!(got, suite(s.negotiated_cipher_suite()));
            got
        };
        assert_eq!(
            agree(client(provider()), server(provider())),
            Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
        );
        let only_256 = Arc::new(CryptoProvider {
            cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_256_GCM_SHA384],
            ..rustls::crypto::ring::default_provider()
        });
        assert_eq!(
            agree(client(only_256), server(provider())),
            Some(rustls::CipherSuite::TLS13_AES_256_GCM_SHA384)
        );
    }

    /// The floor holds under loss and persistent congestion, and the window
    /// above it is CUBIC's own.
    #[test]
    fn the_congestion_floor_holds_under_loss() {
        use quinn::congestion::ControllerFactory as _;
        let now = std::time::Instant::now();
        let floor = 256 << 10;
        let mut c = Arc::new(FlooredFactory { floor }).build(now, 1200);
        let mut plain = Arc::new(quinn::congestion::CubicConfig::default()).build(now, 1200);
        assert_eq!(c.initial_window(), floor);
        for _ in 0..20 {
            c.on_congestion_event(now, now, true, 1200);
            plain.on_congestion_event(now, now, true, 1200);
        }
        assert!(
            plain.window() < 10_000,
            "CUBIC collapses: {}",
            plain.window()
        );
        assert_eq!(c.window(), floor);
        assert_eq!(c.clone_box().window(), floor);
        let mut t = quinn::TransportConfig::default();
        set_congestion_floor(&mut t, 1);
        set_congestion_floor(&mut t, u64::MAX);
    }

    /// The chain a gateway sends while it rotates its CA (server certificate
    /// from the new CA, the new CA cross-signed by the old, the old CA)
    /// verifies for a peer that trusts only the old CA, only the new one,
    /// or both, and for join tokens pinning either; a chain without the
    /// twin does not verify for a peer of the old CA.
    #[test]
    fn the_rotation_chain_verifies_under_either_ca() {
        let (old_pem, old_key) = pki::generate_ca("gw", NOW).unwrap();
        let old = pki::Ca::load(&old_pem, &old_key).unwrap();
        let next = pki::generate_next_ca("gw", &old, NOW).unwrap();
        let new = pki::Ca::load(&next.cert_pem, &next.key_pem).unwrap();
        let (leaf, _) = new.issue_server("gw", 3600, NOW).unwrap();
        let leaf = CertificateDer::from(leaf.der);
        let overlap = [leaf.clone(), der(&next.cross_pem), der(&old_pem)];
        verify(&[&old_pem], &overlap).unwrap();
        verify(&[&next.cert_pem], &overlap).unwrap();
        verify(&[&next.cert_pem, &old_pem], &overlap).unwrap();
        pinned(old.pin(), &overlap).unwrap();
        pinned(new.pin(), &overlap).unwrap();

        let after = [leaf.clone(), der(&next.cert_pem)];
        verify(&[&next.cert_pem], &after).unwrap();
        assert!(
            verify(&[&old_pem], &after).is_err(),
            "old CA alone after finish"
        );
        assert!(pinned(old.pin(), &after).is_err(), "old pin after finish");
        pinned(new.pin(), &after).unwrap();

        // A stranger's CA cross-signing nothing of ours proves nothing.
        let (other_pem, _) = pki::generate_ca("gw", NOW).unwrap();
        assert!(verify(&[&other_pem], &overlap).is_err());
    }
}
