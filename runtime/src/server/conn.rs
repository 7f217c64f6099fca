//! Connections under the router: our own accept loop on hyper's HTTP/1 connection
//! (`axum::serve` has no read timeouts), so that a slow or stalled client cannot hold a
//! socket, or the shutdown, for long:
//! - a connection must send a complete request head within `--header-timeout-s` of opening
//!   or of its previous response (so this is also the idle keep-alive timeout), else it is
//!   closed;
//! - a request body that stalls (no bytes) for `--body-timeout-s` is cut: the request gets
//!   408 ([`GuardedBody`], wrapped around every body by `http::around`);
//! - on shutdown the listener closes, connections that never sent a whole request head and
//!   idle keep-alive ones are closed at once, bodies still arriving are cut (503), and the
//!   requests in flight finish (within `--shutdown-timeout-s`, see [`super::serve`]).
//!
//! Requests hyper cannot parse (a head over its buffer or header-count limit, a malformed
//! head, a URI too long) never reach the router: hyper answers them itself with an empty
//! body. [`JsonParseErrors`] gives those answers the same JSON error body as every other
//! error.

use std::future::Future;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use axum::http::StatusCode;
use axum::Router;
use hyper::body::{Frame, Incoming, SizeHint};
use hyper::service::Service as _;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio::sync::watch;

use super::error::ApiError;

/// Serves `app` on `listener` until `stop` resolves, then shuts down as the module says:
/// sets `shutdown` (which cuts bodies still arriving) and returns once every connection
/// is closed.
pub(super) async fn serve(listener: TcpListener, app: Router, header_timeout: Duration, shutdown: watch::Sender<bool>, stop: impl Future<Output = ()>) {
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    // Every connection task holds a sender; `recv` is None once all are gone.
    let (open_tx, mut open_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut stop = pin!(stop);
    loop {
        let (tcp, peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait instead of spinning.
                    tracing::error!(error = %e, "accepting a connection failed; retrying in 1 s");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        // No Nagle delay: streamed tokens go out as they are decoded.
        let _ = tcp.set_nodelay(true);
        // Whether the connection ever got a whole request head (then it is not closed
        // under a request in flight at shutdown).
        let got_request = Arc::new(AtomicBool::new(false));
        let svc = {
            let got_request = got_request.clone();
            let router = TowerToHyperService::new(app.clone());
            hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
                got_request.store(true, Ordering::Relaxed);
                router.call(req)
            })
        };
        let conn = http.serve_connection(TokioIo::new(JsonParseErrors::new(tcp)), svc);
        let mut stopping = shutdown.subscribe();
        let open = open_tx.clone();
        tokio::spawn(async move {
            let _open = open;
            let mut conn = pin!(conn);
            tokio::select! {
                r = conn.as_mut() => {
                    if let Err(e) = r {
                        tracing::debug!(%peer, error = %e, "connection closed");
                    }
                    return;
                }
                _ = stopping.wait_for(|s| *s) => {}
            }
            if !got_request.load(Ordering::Relaxed) {
                // Nothing or a partial request head: nothing to finish; dropping closes it.
                return;
            }
            // Idle keep-alive connections close now; one with a request in flight after
            // its response.
            conn.as_mut().graceful_shutdown();
            if let Err(e) = conn.await {
                tracing::debug!(%peer, error = %e, "connection closed");
            }
        });
    }
    drop(listener);
    shutdown.send_replace(true);
    drop(open_tx);
    let _ = open_rx.recv().await;
}

/// Errors of one incoming connection, not of the listener (as hyper's and axum's loops).
fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind as K;
    matches!(e.kind(), K::ConnectionRefused | K::ConnectionAborted | K::ConnectionReset)
}

/// A connection's byte stream that rewrites hyper's automatic answers to requests it could
/// not parse (400, 414, 431 with `connection: close` and an empty body: hyper writes them
/// in one piece before closing, and the router's own errors always carry a JSON body) into
/// the same status with the API's JSON error body.
struct JsonParseErrors<I> {
    io: I,
    /// Our replacement for an automatic answer and how much of it is written.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<I> JsonParseErrors<I> {
    fn new(io: I) -> Self {
        JsonParseErrors { io, replacing: None }
    }
}

/// The JSON answer for hyper's automatic answer `head`, if `head` is one.
fn json_parse_error(head: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(head).ok()?;
    let (status, code, message) = match text.get(..13)? {
        "HTTP/1.1 400 " => (StatusCode::BAD_REQUEST, "invalid_request", "the request head is malformed (request line or a header)"),
        "HTTP/1.1 414 " => (StatusCode::URI_TOO_LONG, "uri_too_long", "the request URI is too long"),
        "HTTP/1.1 431 " => {
            (StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE, "headers_too_large", "the request headers are too large or too many; send fewer and smaller headers")
        }
        _ => return None,
    };
    let lower = text.to_ascii_lowercase();
    if !(lower.ends_with("\r\n\r\n") && lower.contains("\r\ncontent-length: 0\r\n") && lower.contains("\r\nconnection: close\r\n")) {
        return None;
    }
    let body = ApiError::new(status, code, message).body().to_string();
    let reason = status.canonical_reason().unwrap_or("");
    let mut out =
        format!("HTTP/1.1 {} {reason}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n", status.as_u16(), body.len())
            .into_bytes();
    out.extend_from_slice(body.as_bytes());
    Some(out)
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for JsonParseErrors<I> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut tokio::io::ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for JsonParseErrors<I> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() {
            if let Some(json) = json_parse_error(buf) {
                this.replacing = Some((json, 0));
            }
        }
        if let Some((json, written)) = &mut this.replacing {
            while *written < json.len() {
                match Pin::new(&mut this.io).poll_write(cx, &json[*written..]) {
                    Poll::Ready(Ok(0)) => return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into())),
                    Poll::Ready(Ok(n)) => *written += n,
                    other => return other,
                }
            }
            // hyper's own bytes count as written: they were replaced.
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut this.io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

const NOT_CUT: u8 = 0;
const STALLED: u8 = 1;
const SHUTTING_DOWN: u8 = 2;

/// Whether (and why) a [`GuardedBody`] was cut; shared with the middleware, which then
/// answers [`BodyCut::error`] whatever the handler made of the failed read.
#[derive(Clone, Default)]
pub(super) struct BodyCut(Arc<AtomicU8>);

impl BodyCut {
    pub(super) fn error(&self, idle: Duration) -> Option<ApiError> {
        match self.0.load(Ordering::Relaxed) {
            STALLED => Some(ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                "body_timeout",
                format!("the request body stalled: no bytes for {} s (see --body-timeout-s)", idle.as_secs_f64()),
            )),
            SHUTTING_DOWN => Some(ApiError::unavailable("the server is shutting down and the request body had not fully arrived; retry")),
            _ => None,
        }
    }
}

/// A request body that fails (and marks its [`BodyCut`]) when no bytes arrive for `idle`,
/// or when the server starts shutting down while it waits for bytes.
pub(super) struct GuardedBody {
    inner: Body,
    idle: Duration,
    /// Armed while the body waits for bytes; reset by every frame.
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    waiting: bool,
    shutdown: Pin<Box<dyn Future<Output = ()> + Send>>,
    cut: BodyCut,
}

impl GuardedBody {
    pub(super) fn new(inner: Body, idle: Duration, shutdown: &watch::Sender<bool>, cut: BodyCut) -> Self {
        let mut rx = shutdown.subscribe();
        let shutdown = Box::pin(async move {
            let _ = rx.wait_for(|s| *s).await;
        });
        GuardedBody { inner, idle, timer: None, waiting: false, shutdown, cut }
    }
}

impl HttpBody for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let why = match this.cut.0.load(Ordering::Relaxed) {
            NOT_CUT => {
                if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
                    this.waiting = false;
                    return Poll::Ready(frame);
                }
                if this.shutdown.as_mut().poll(cx).is_ready() {
                    SHUTTING_DOWN
                } else {
                    let deadline = tokio::time::Instant::now() + this.idle;
                    let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                    if !this.waiting {
                        timer.as_mut().reset(deadline);
                        this.waiting = true;
                    }
                    if timer.as_mut().poll(cx).is_pending() {
                        return Poll::Pending;
                    }
                    STALLED
                }
            }
            why => why,
        };
        this.cut.0.store(why, Ordering::Relaxed);
        let what = if why == STALLED { "the request body stalled (--body-timeout-s)" } else { "the server is shutting down" };
        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(std::io::ErrorKind::TimedOut, what)))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hypers_automatic_answers_get_the_json_error_body() {
        let auto = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Mon, 07 Dec 2026 15:45:45 GMT\r\n\r\n";
        let out = String::from_utf8(json_parse_error(auto).unwrap()).unwrap();
        let (head, body) = out.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 ") && head.contains(&format!("content-length: {}", body.len())), "{head}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"]["code"], "headers_too_large");
        // The router's answers (a body, or keep-alive) pass unchanged.
        assert!(json_parse_error(b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 20\r\n\r\n").is_none());
        assert!(json_parse_error(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n").is_none());
        assert!(json_parse_error(b"HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n\r\n").is_none());
    }

    async fn read_all(mut body: GuardedBody) -> Result<Bytes, axum::Error> {
        let mut out = Vec::new();
        while let Some(frame) = std::future::poll_fn(|cx| Pin::new(&mut body).poll_frame(cx)).await {
            if let Ok(data) = frame?.into_data() {
                out.extend_from_slice(&data);
            }
        }
        Ok(out.into())
    }

    /// A body that sends `first`, then what is sent on the channel (nothing: it stalls).
    fn trickle(first: &'static [u8]) -> (Body, tokio::sync::mpsc::Sender<Result<Bytes, std::io::Error>>) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        tx.try_send(Ok(Bytes::from_static(first))).unwrap();
        (Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)), tx)
    }

    #[tokio::test]
    async fn a_stalled_body_is_cut_after_the_idle_timeout_with_408() {
        let (shutdown, _) = watch::channel(false);
        let (body, _tx) = trickle(b"abcd");
        let cut = BodyCut::default();
        let idle = Duration::from_millis(300);
        let start = std::time::Instant::now();
        assert!(read_all(GuardedBody::new(body, idle, &shutdown, cut.clone())).await.is_err());
        assert!(start.elapsed() >= idle);
        assert_eq!(cut.error(idle).map(|e| (e.status.as_u16(), e.code)), Some((408, "body_timeout")));
    }

    #[tokio::test]
    async fn a_slow_body_that_keeps_sending_is_not_cut() {
        let (shutdown, _) = watch::channel(false);
        let (body, tx) = trickle(b"a");
        let cut = BodyCut::default();
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                tx.send(Ok(Bytes::from_static(b"b"))).await.unwrap();
            }
        });
        // 0.5 s in all, more than the idle timeout, but never idle for long.
        let idle = Duration::from_millis(400);
        let r = read_all(GuardedBody::new(body, idle, &shutdown, cut.clone())).await;
        assert_eq!(r.unwrap(), Bytes::from_static(b"abbbbb"));
        assert!(cut.error(idle).is_none());
    }

    #[tokio::test]
    async fn shutdown_cuts_a_body_that_waits_for_bytes_with_503() {
        let (shutdown, _) = watch::channel(false);
        let (body, _tx) = trickle(b"abcd");
        let cut = BodyCut::default();
        let idle = Duration::from_secs(600);
        let reader = tokio::spawn(read_all(GuardedBody::new(body, idle, &shutdown, cut.clone())));
        tokio::time::sleep(Duration::from_millis(100)).await;
        shutdown.send_replace(true);
        let r = tokio::time::timeout(Duration::from_secs(60), reader).await.expect("cut at shutdown, not at the idle timeout");
        assert!(r.unwrap().is_err());
        assert_eq!(cut.error(idle).map(|e| (e.status.as_u16(), e.code)), Some((503, "unavailable")));
    }
}
