//! The agent-to-agent transfer channel for physical resyncs (DESIGN §2): a DB agent serves a
//! streamed `mariabackup` of its own database to another cluster member, over mutual TLS (plain
//! TCP only on loopback), in length-prefixed postcard frames. No SSH, no rsync, no copy staged
//! on the sender's disk. One transfer at a time; every read and write is bounded. Connections
//! are capped in all and per source address, excess ones closed at accept, and a peer has a
//! few seconds for its handshake and request; refusals are reported once per (address, reason).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gossip_ha_proto::gossip::Role;
use gossip_ha_proto::wire::{self, TransferFrame, TransferRequest};
use mysql_async::Opts;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::core::authority::AuthorityPolicy;
use crate::db::repair::tools::{self, ClientOptions};
use crate::tls::frame::{read_frame, write_frame};
use crate::tls::identity::{certificate_names, grants_of, handshake_reason, IdentityHandle, TlsIdentity};
use crate::tls::refusals::{Counts, Held, Refusals};

const CHUNK_BYTES: usize = 64 * 1024;
/// A peer that stops reading or sending for this long during a transfer is dropped.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// A fetching peer completes its handshake and sends its request at once.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections being handled at once: one backup is sent at a time, the others are answered
/// "busy" or refused; this many keeps a retrying peer from finding the port closed.
pub const MAX_CONNECTIONS: usize = 16;
/// Connections one address may hold at once: a peer fetches one backup.
const MAX_CONNECTIONS_PER_SOURCE: usize = 2;

/// Told what the service did, for the agent's events.
pub type Report = Arc<dyn Fn(String) + Send + Sync>;

/// What the serving side needs to back up its local database.
pub struct BackupSource {
    /// The local database, admin user.
    pub local: Opts,
    /// Scratch space for `mariabackup --target-dir` (it keeps only metadata there when streaming).
    pub work_dir: PathBuf,
    /// Bounds one whole backup.
    pub timeout: Duration,
    pub cluster_id: String,
    /// Pandora's `ha_hosts`: only these hosts may ask (empty: not known here, any DB node may).
    pub ha_hosts: Vec<String>,
    /// DB nodes whose claims this agent's gossip accepts (their database in `ha_hosts`), kept
    /// current by the driver: they may ask whatever address their connection comes from.
    pub members: DbMembers,
}

/// Names of the DB nodes the agent currently hears with accepted DB claims.
pub type DbMembers = Arc<std::sync::RwLock<std::collections::BTreeSet<String>>>;

/// Who asks for a backup, as far as the connection proves it.
enum Requester {
    /// Plain TCP on loopback: no identity (tests and demos on one machine).
    Loopback,
    /// Mutual TLS: the client certificate and the address the connection came from.
    Certified {
        certificate: CertificateDer<'static>,
        ip: std::net::IpAddr,
    },
}

impl Requester {
    /// A backup holds every row and the users' password hashes: it goes only to a `db`
    /// certificate that names the node the request says it is from, of a host in `ha_hosts`.
    fn authorize(&self, request: &TransferRequest, ha_hosts: &[String], members: &DbMembers) -> Result<(), String> {
        let Requester::Certified { certificate, ip } = self else {
            return Ok(());
        };
        let grants = grants_of(certificate)?;
        if !grants.roles.contains(&Role::Db) {
            return Err(format!(
                "`{}` asked for a backup, but its certificate grants {grants}, not db",
                request.node_name
            ));
        }
        if !certificate_names(certificate, &request.node_name) {
            return Err(format!(
                "the request says it is from `{}`, but the certificate is for another node",
                request.node_name
            ));
        }
        let policy = AuthorityPolicy {
            ha_hosts: ha_hosts.to_vec(),
        };
        // A DB node heard with its database in ha_hosts may ask from any of its addresses (the
        // gossip network may not be the database's); otherwise the asking address must be listed.
        let member = members.read().is_ok_and(|members| members.contains(&request.node_name));
        if !member && !policy.lists_database(&request.node_name, &SocketAddr::new(*ip, 0).to_string()) {
            return Err(format!(
                "`{}` ({ip}) asked for a backup, but neither is in ha_hosts ({})",
                request.node_name,
                ha_hosts.join(",")
            ));
        }
        Ok(())
    }
}

fn client_certificate<S>(stream: &tokio_rustls::server::TlsStream<S>) -> Option<CertificateDer<'static>> {
    stream.get_ref().1.peer_certificates()?.first().cloned()
}

/// Serves backups until `stop`.
pub async fn serve(
    listener: TcpListener,
    tls: Option<IdentityHandle>,
    source: Arc<BackupSource>,
    report: Report,
    mut stop: watch::Receiver<bool>,
) {
    let busy = Arc::new(Semaphore::new(1));
    let counts = Counts::<IpAddr>::default();
    let refusals = Arc::new(refusals_reported_to(report.clone()));
    let mut tasks = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = stopped(&mut stop) => break,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    tracing::warn!("transfer accept failed: {err}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Refused at once, before any task: the stream closes here.
        let place = match counts.take(peer.ip(), admit) {
            Ok(place) => place,
            Err(reason) => {
                refusals.refuse(peer.ip(), reason);
                continue;
            }
        };
        let (tls, source, report, busy, refusals) = (
            tls.clone(),
            source.clone(),
            report.clone(),
            busy.clone(),
            refusals.clone(),
        );
        tasks.spawn(async move {
            match serve_connection(stream, peer, tls, &source, &busy).await {
                Ok(line) => report(format!("{line} to {}", peer.ip())),
                Err(err) => refusals.refuse(peer.ip(), err),
            }
            drop(place);
        });
    }
    tasks.shutdown().await;
}

/// The cap on connections in all and from one address.
fn admit(held: Held) -> Result<(), String> {
    if held.total >= MAX_CONNECTIONS {
        return Err(format!("{MAX_CONNECTIONS} transfer connections already open"));
    }
    if held.from_source >= MAX_CONNECTIONS_PER_SOURCE {
        return Err(format!(
            "{MAX_CONNECTIONS_PER_SOURCE} transfer connections from it already open"
        ));
    }
    Ok(())
}

/// Failed transfers become one report per (address, reason), without the peer's port.
fn refusals_reported_to(report: Report) -> Refusals {
    Refusals::new(Arc::new(move |peer, reason| {
        report(format!("backup for {peer} not sent: {reason}"))
    }))
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    tls: Option<IdentityHandle>,
    source: &BackupSource,
    busy: &Semaphore,
) -> Result<String, String> {
    match tls {
        Some(identity) => {
            let acceptor = TlsAcceptor::from(identity.current().server.clone());
            let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream))
                .await
                .map_err(|_| format!("no TLS handshake within {} s", HANDSHAKE_TIMEOUT.as_secs()))?
                .map_err(|err| format!("TLS handshake failed: {}", handshake_reason(&err)))?;
            let certificate = client_certificate(&stream).ok_or("no client certificate")?;
            let requester = Requester::Certified {
                certificate,
                ip: peer.ip(),
            };
            send_backup(stream, source, busy, requester).await
        }
        None if peer.ip().is_loopback() => send_backup(stream, source, busy, Requester::Loopback).await,
        None => Err("plain transfer refused off loopback (configure [tls])".into()),
    }
}

async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live across an await of the caller.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

async fn send_backup<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    source: &BackupSource,
    busy: &Semaphore,
    requester: Requester,
) -> Result<String, String> {
    let request = tokio::time::timeout(FIRST_REQUEST_TIMEOUT, read_frame(&mut stream))
        .await
        .map_err(|_| format!("no request within {} s", FIRST_REQUEST_TIMEOUT.as_secs()))?
        .map_err(|err| err.to_string())?;
    let request: TransferRequest = wire::decode(&request)?;
    let refuse = |message: String| TransferFrame::End { ok: false, message };
    if request.cluster_id != source.cluster_id {
        let why = format!(
            "cluster `{}` asked, this is `{}`",
            request.cluster_id, source.cluster_id
        );
        let _ = write_frame(&mut stream, &wire::encode(&refuse(why.clone()))).await;
        return Err(why);
    }
    if let Err(why) = requester.authorize(&request, &source.ha_hosts, &source.members) {
        let _ = write_frame(&mut stream, &wire::encode(&refuse(why.clone()))).await;
        return Err(why);
    }
    let Ok(_slot) = busy.try_acquire() else {
        let why = "another backup is being sent; try again later".to_string();
        let _ = write_frame(&mut stream, &wire::encode(&refuse(why.clone()))).await;
        return Err(why);
    };
    let started = Instant::now();
    let work = source.work_dir.join(format!("backup-{}", crate::clock::unix_ms()));
    std::fs::create_dir_all(&work).map_err(|err| format!("{}: {err}", work.display()))?;
    let sent = stream_backup(&mut stream, source, &work).await;
    let _ = std::fs::remove_dir_all(&work);
    let end = match &sent {
        Ok(bytes) => TransferFrame::End {
            ok: true,
            message: format!("{bytes} bytes"),
        },
        Err(err) => refuse(err.clone()),
    };
    write_frame(&mut stream, &wire::encode(&end))
        .await
        .map_err(|err| err.to_string())?;
    let _ = stream.shutdown().await;
    let bytes = sent?;
    Ok(format!(
        "sent a physical backup ({:.1} MiB in {:.1} s) for {}",
        bytes as f64 / 1_048_576.0,
        started.elapsed().as_secs_f64(),
        request.node_name
    ))
}

async fn stream_backup<S: AsyncWrite + Unpin>(
    stream: &mut S,
    source: &BackupSource,
    work: &std::path::Path,
) -> Result<u64, String> {
    let options = ClientOptions::write(work, "backup", &source.local, None).map_err(|err| err.to_string())?;
    let args = vec![
        options.arg(),
        "--backup".into(),
        "--stream=xbstream".into(),
        format!("--target-dir={}", work.display()),
    ];
    let mut child = tools::spawn("mariabackup", &args, false, true).map_err(|err| err.to_string())?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let copy = async {
        let mut buffer = vec![0u8; CHUNK_BYTES];
        let mut sent = 0u64;
        loop {
            let read = stdout.read(&mut buffer).await.map_err(|err| err.to_string())?;
            if read == 0 {
                return Ok::<u64, String>(sent);
            }
            let frame = wire::encode(&TransferFrame::Data(buffer[..read].to_vec()));
            tokio::time::timeout(IDLE_TIMEOUT, write_frame(stream, &frame))
                .await
                .map_err(|_| "the receiver stopped reading".to_string())?
                .map_err(|err| err.to_string())?;
            sent += read as u64;
        }
    };
    let sent = match tokio::time::timeout(source.timeout, copy).await {
        Ok(sent) => sent?,
        Err(_) => return Err(format!("the backup took over {} s", source.timeout.as_secs())),
    };
    tools::finish("mariabackup", child)
        .await
        .map_err(|err| err.to_string())?;
    Ok(sent)
}

/// Asks `addr` (the transfer service of `source_node`) for a backup and writes it into `sink`, calling
/// `progress` with the bytes received so far. Returns the bytes received.
pub async fn fetch_backup<W: AsyncWrite + Unpin>(
    addr: SocketAddr,
    source_node: &str,
    tls: Option<&TlsIdentity>,
    request: &TransferRequest,
    sink: &mut W,
    mut progress: impl FnMut(u64),
    stop: &watch::Receiver<bool>,
) -> Result<u64, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(10), TcpStream::connect(addr))
        .await
        .map_err(|_| format!("{addr}: no answer within 10 s"))?
        .map_err(|err| format!("{addr}: {err}"))?;
    match tls {
        Some(identity) => {
            let name = ServerName::IpAddress(addr.ip().into());
            let stream = TlsConnector::from(identity.client.clone())
                .connect(name, tcp)
                .await
                .map_err(|err| format!("{addr}: TLS handshake failed: {err}"))?;
            let certificate = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first());
            // The backup must come from the node this one is rebuilt from, and a DB node.
            if certificate.is_some_and(|cert| !certificate_names(cert, source_node)) {
                return Err(format!("{addr}: its certificate is not for {source_node}"));
            }
            match certificate.map(grants_of) {
                Some(Ok(grants)) if grants.roles.contains(&Role::Db) => {}
                Some(Ok(grants)) => return Err(format!("{addr}: its certificate grants {grants}, not db")),
                Some(Err(err)) => return Err(format!("{addr}: {err}")),
                None => return Err(format!("{addr}: no server certificate")),
            }
            receive(stream, request, sink, &mut progress, stop).await
        }
        None if addr.ip().is_loopback() => receive(tcp, request, sink, &mut progress, stop).await,
        None => Err(format!(
            "{addr} is off loopback: a transfer there needs mutual TLS ([tls])"
        )),
    }
}

async fn receive<S: AsyncRead + AsyncWrite + Unpin, W: AsyncWrite + Unpin>(
    mut stream: S,
    request: &TransferRequest,
    sink: &mut W,
    progress: &mut impl FnMut(u64),
    stop: &watch::Receiver<bool>,
) -> Result<u64, String> {
    write_frame(&mut stream, &wire::encode(request))
        .await
        .map_err(|err| err.to_string())?;
    let mut received = 0u64;
    loop {
        if *stop.borrow() {
            return Err("interrupted by shutdown".into());
        }
        let frame = tokio::time::timeout(IDLE_TIMEOUT, read_frame(&mut stream))
            .await
            .map_err(|_| "the sender went silent for 60 s".to_string())?
            .map_err(|err| format!("the transfer broke off: {err}"))?;
        match wire::decode::<TransferFrame>(&frame)? {
            TransferFrame::Data(bytes) => {
                sink.write_all(&bytes)
                    .await
                    .map_err(|err| format!("cannot write the backup locally: {err}"))?;
                received += bytes.len() as u64;
                progress(received);
            }
            TransferFrame::End { ok: true, .. } => return Ok(received),
            TransferFrame::End { ok: false, message } => return Err(format!("the sender failed: {message}")),
        }
    }
}
