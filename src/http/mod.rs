//! The read-only HTTP listener (`http_listen`): health checks as Patroni answers them, for
//! HAProxy, ProxySQL and keepalived; `/metrics` for Prometheus; `/status` as the socket's.
//! Everything it says is read from the driver's published `StatusReport`; it takes no lock
//! the driver holds and changes nothing.
//!
//! Bounded before anything else: connections beyond `MAX_CONNECTIONS`, or beyond
//! `MAX_PER_ADDRESS` from one address (so one client cannot hold every place and starve the load
//! balancer's checks), are closed at accept,
//! headers must arrive within `HEADER_TIMEOUT` and fit `MAX_REQUEST_BYTES`, bodies are refused,
//! and each connection serves one request (checks and scrapes open one per request) within
//! `CONNECTION_DEADLINE`, so no connection idles.

pub mod health;
pub mod metrics;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gossip_ha_proto::api::StatusReport;
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ALLOW, CONTENT_LENGTH, CONTENT_TYPE, TRANSFER_ENCODING};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::tls::identity::IdentityHandle;
pub use metrics::Counters;

/// Connections served at once; more are closed at accept.
pub const MAX_CONNECTIONS: usize = 64;
/// Connections from one address at once: a load balancer checks with one at a time.
pub const MAX_PER_ADDRESS: usize = 8;
/// The whole request head; longer is answered 431 by hyper and closed.
pub const MAX_REQUEST_BYTES: usize = 16 * 1024;
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(5);
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Everything one connection may take: handshake, request, response to a slow reader.
pub const CONNECTION_DEADLINE: Duration = Duration::from_secs(15);
const ALLOWED: &str = "GET, HEAD, OPTIONS";

/// What the handlers read.
#[derive(Clone)]
pub struct HttpState {
    pub status: watch::Receiver<Arc<StatusReport>>,
    pub counters: Arc<Counters>,
    /// The driver's clock origin: a report's `uptime_ms` against it says how old the report is.
    pub started: Instant,
    /// A report older than this means the driver is stuck: `/liveness` answers 503.
    pub stale_after: Duration,
}

/// Serves until `stop` turns true; connections still open then are dropped.
pub async fn serve(
    listener: TcpListener,
    state: HttpState,
    tls: Option<IdentityHandle>,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let per_address: PerAddress = Arc::default();
    let mut tasks = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            accepted = listener.accept() => accepted,
            Some(_) = tasks.join_next(), if !tasks.is_empty() => continue,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of descriptors, most likely: wait instead of spinning.
                tracing::warn!("http: accept failed: {err}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Some(place) = AddressPlace::take(&per_address, peer.ip()) else {
            tracing::debug!(%peer, "http: {MAX_PER_ADDRESS} connections open from this address, closing this one");
            drop(stream);
            continue;
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::debug!(%peer, "http: {MAX_CONNECTIONS} connections open, closing this one");
            drop(stream);
            continue;
        };
        let (state, tls) = (state.clone(), tls.clone());
        tasks.spawn(async move {
            let served = tokio::time::timeout(CONNECTION_DEADLINE, connection(stream, peer, state, tls)).await;
            if served.is_err() {
                tracing::debug!(%peer, "http: connection cut at the {} s deadline", CONNECTION_DEADLINE.as_secs());
            }
            drop((slot, place));
        });
    }
    tasks.shutdown().await;
}

type PerAddress = Arc<Mutex<HashMap<IpAddr, usize>>>;

/// One of an address's `MAX_PER_ADDRESS` places, given back when dropped.
struct AddressPlace {
    counts: PerAddress,
    ip: IpAddr,
}

impl AddressPlace {
    fn take(counts: &PerAddress, ip: IpAddr) -> Option<AddressPlace> {
        let mut held = counts.lock().ok()?;
        let count = held.entry(ip).or_default();
        if *count >= MAX_PER_ADDRESS {
            return None;
        }
        *count += 1;
        Some(AddressPlace {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for AddressPlace {
    fn drop(&mut self) {
        if let Ok(mut held) = self.counts.lock() {
            if let Some(count) = held.get_mut(&self.ip) {
                *count -= 1;
                if *count == 0 {
                    held.remove(&self.ip);
                }
            }
        }
    }
}

async fn connection(stream: TcpStream, peer: SocketAddr, state: HttpState, tls: Option<IdentityHandle>) {
    match tls {
        None => serve_http(stream, peer, state).await,
        Some(identity) => {
            let acceptor = match server_config(&identity) {
                Ok(config) => tokio_rustls::TlsAcceptor::from(config),
                Err(err) => return tracing::warn!("http: no TLS configuration: {err}"),
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, peer, state).await,
                Ok(Err(err)) => tracing::debug!(%peer, "http: TLS handshake failed: {err}"),
                Err(_) => tracing::debug!(%peer, "http: no TLS handshake within {HANDSHAKE_TIMEOUT:?}"),
            }
        }
    }
}

/// The cluster certificate, without asking for a client's: load balancers' checks and
/// scrapers rarely hold a cluster certificate, and nothing here changes anything. Built from the
/// current identity on each connection, so a SIGHUP reload takes effect at once.
fn server_config(identity: &IdentityHandle) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let current = identity.current();
    let key = rustls::sign::CertifiedKey::new(vec![current.leaf.clone()], current.signing_key.clone());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(Arc::new(rustls::sign::SingleCertAndKey::from(key)));
    Ok(Arc::new(config))
}

async fn serve_http<S>(stream: S, peer: SocketAddr, state: HttpState)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |request| {
        let response = answer(&state, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_REQUEST_BYTES)
        .keep_alive(false)
        .serve_connection(TokioIo::new(stream), service)
        .await;
    if let Err(err) = served {
        tracing::debug!(%peer, "http: {err}");
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    response
}

fn with_type(mut response: Response<Full<Bytes>>, content_type: &'static str) -> Response<Full<Bytes>> {
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// One request's response. HEAD gets GET's status and headers (hyper sends no body for it);
/// OPTIONS, which HAProxy's plain `option httpchk` sends, gets GET's status with `Allow` and
/// no body, as Patroni answers it.
fn answer(state: &HttpState, request: &Request<Incoming>) -> Response<Full<Bytes>> {
    let has_body = request.headers().contains_key(TRANSFER_ENCODING)
        || request
            .headers()
            .get(CONTENT_LENGTH)
            .is_some_and(|length| length.as_bytes() != b"0");
    if has_body {
        return text(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request bodies are not accepted\n".into(),
        );
    }
    let method = request.method();
    if method != Method::GET && method != Method::HEAD && method != Method::OPTIONS {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not served\n"));
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(ALLOWED));
        return response;
    }
    let mut response = route(state, request.uri().path(), request.uri().query());
    if method == Method::OPTIONS {
        *response.body_mut() = Full::new(Bytes::new());
        response.headers_mut().insert(ALLOW, HeaderValue::from_static(ALLOWED));
    }
    response
}

fn route(state: &HttpState, path: &str, query: Option<&str>) -> Response<Full<Bytes>> {
    let report = state.status.borrow().clone();
    let alive = liveness(state, &report);
    let check = match path {
        // A stuck driver's last report would go on saying "primary": every role check fails.
        "/primary" | "/master" | "/read-write" | "/replica" | "/read-only" | "/health" if !alive.ok => alive,
        "/primary" | "/master" | "/read-write" => health::primary(&report),
        "/replica" => match health::lag_limit(query) {
            Ok(limit) => health::replica(&report, limit),
            Err(message) => return text(StatusCode::BAD_REQUEST, format!("{message}\n")),
        },
        "/read-only" => health::read_only(&report),
        "/health" => health::health(&report),
        "/liveness" => alive,
        "/metrics" => {
            let body = metrics::render(&report, &state.counters);
            return with_type(
                text(StatusCode::OK, body),
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            );
        }
        "/status" => {
            return match serde_json::to_string(&*report) {
                Ok(json) => with_type(text(StatusCode::OK, json + "\n"), "application/json"),
                Err(err) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{err}\n")),
            }
        }
        _ => return text(StatusCode::NOT_FOUND, format!("no such endpoint: {path}\n")),
    };
    let status = if check.ok {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    text(status, check.reason + "\n")
}

/// 200 while the driver keeps publishing; a stuck driver leaves its report aging.
fn liveness(state: &HttpState, report: &StatusReport) -> health::Answer {
    let age_ms = (state.started.elapsed().as_millis() as u64).saturating_sub(report.uptime_ms);
    let ok = age_ms <= state.stale_after.as_millis() as u64;
    health::Answer {
        ok,
        reason: if ok {
            format!("the agent runs (status published {age_ms} ms ago)")
        } else {
            format!("the agent's driver has not published its status for {age_ms} ms")
        },
    }
}
