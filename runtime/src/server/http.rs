//! The HTTP layer: routes, auth, request log, the video routes and SSE (the OpenAI chat
//! completions are in [`super::openai`]). Requests go `http` -> `validate` (-> `Valid*`)
//! -> `schedule` (admission, 429) -> pipeline, on scenes from the `store`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::pipeline::Timings;
use crate::{Answer, Cancel, Loc3r, Scene};

use super::conn::{BodyCut, GuardedBody};
use super::error::{ApiError, ErrorCode};
use super::metrics::{Gauges, Metrics};
use super::openai::chat;
use super::schedule::{JobKind, Scheduler};
use super::store::{video_id_of_bytes, video_id_of_file, Source, Store, VideoInfo};
use super::validate::{self, Limits, ValidAsk};

pub struct AppState {
    pub model: Loc3r,
    pub model_name: String,
    pub store: Store,
    pub sched: Scheduler,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    /// sha256 of the API key (compared in constant time).
    pub api_key: Option<[u8; 32]>,
    pub body_limit: usize,
    /// `--body-timeout-s`: the longest wait for the next bytes of a request body (408 past it).
    pub body_timeout: Duration,
    /// Set when the server starts shutting down (request bodies still arriving are cut).
    pub shutdown: tokio::sync::watch::Sender<bool>,
    pub next_id: AtomicU64,
    pub registering: Registering,
}

pub(super) type St = State<Arc<AppState>>;
pub(super) type ApiResult<T = Response> = Result<T, ApiError>;

pub fn router(state: Arc<AppState>) -> Router {
    let limit = state.body_limit;
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route("/v1/videos", post(create_video).get(list_videos))
        .route("/v1/videos/{id}", get(get_video).delete(delete_video))
        .route("/v1/videos/{id}/localize", post(localize))
        .route("/v1/videos/{id}/ask", post(ask))
        .route("/v1/chat/completions", post(chat))
        .fallback(|| async { ApiError::not_found("no such route; see README.md, section Serving") })
        .method_not_allowed_fallback(|| async { ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route") })
        .layer(DefaultBodyLimit::max(limit))
        .layer(middleware::from_fn_with_state(state.clone(), around))
        .with_state(state)
}

/// Metrics label of a path (bounded cardinality: ids are replaced).
fn route_label(path: &str) -> &'static str {
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    match parts.as_slice() {
        ["", "healthz"] => "/healthz",
        ["", "metrics"] => "/metrics",
        ["", "v1", "models"] => "/v1/models",
        ["", "v1", "videos"] => "/v1/videos",
        ["", "v1", "videos", _] => "/v1/videos/{id}",
        ["", "v1", "videos", _, "localize"] => "/v1/videos/{id}/localize",
        ["", "v1", "videos", _, "ask"] => "/v1/videos/{id}/ask",
        ["", "v1", "chat", "completions"] => "/v1/chat/completions",
        _ => "other",
    }
}

/// Stage timings of a response, for the request log.
#[derive(Clone)]
struct StageTimings(Timings);

fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    diff == 0
}

/// Auth, request id, one log line and the request metrics for every request.
async fn around(State(st): St, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let id = format!("req-{:08x}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let route = route_label(req.uri().path());
    let method = req.method().clone();
    let cut = BodyCut::default();
    let mut resp = if route != "/healthz" && !authorized(&st, &req) {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong API key: send `Authorization: Bearer <key>`").into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    } else {
        let req = if req.body().is_end_stream() { req } else { req.map(|b| Body::new(GuardedBody::new(b, st.body_timeout, &st.shutdown, cut.clone()))) };
        next.run(req).await
    };
    // A body cut for stalling or at shutdown: that is the answer, whatever the handler made
    // of the failed read; the rest of the body will not be read, so the connection closes.
    if let Some(e) = cut.error(st.body_timeout) {
        resp = e.into_response();
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let status = resp.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    st.metrics.request(route, status, secs);
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    let code = resp.extensions().get::<ErrorCode>().map(|c| c.0).unwrap_or("");
    let t = resp.extensions().get::<StageTimings>().map(|t| t.0.clone()).unwrap_or_default();
    tracing::info!(
        target: "loc3r::request",
        id = %id, method = %method, route, status, ms = format_args!("{:.1}", secs * 1000.0), error = code,
        decode_video_ms = format_args!("{:.1}", t.decode_video), cut3r_ms = format_args!("{:.1}", t.cut3r), siglip_ms = format_args!("{:.1}", t.siglip),
        prefill_ms = format_args!("{:.1}", t.prefill), first_token_ms = format_args!("{:.1}", t.first_token), decode_ms = format_args!("{:.1}", t.decode),
        "request"
    );
    resp
}

fn authorized(st: &AppState, req: &Request) -> bool {
    let Some(want) = &st.api_key else { return true };
    let Some(got) = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let Some(key) = got.strip_prefix("Bearer ") else {
        return false;
    };
    let got: [u8; 32] = Sha256::digest(key.trim().as_bytes()).into();
    constant_time_eq(&got, want)
}

pub(super) fn with_timings(mut r: Response, t: &Timings) -> Response {
    r.extensions_mut().insert(StageTimings(t.clone()));
    r
}

/// Maps an axum extractor rejection (too large, bad content type) to the JSON error shape.
fn rejection(status: StatusCode, text: String) -> ApiError {
    let code = match status {
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        _ => "invalid_request",
    };
    ApiError::new(status, code, text)
}

pub(super) async fn body_bytes(req: Request, st: &Arc<AppState>) -> ApiResult<Bytes> {
    let limit = st.body_limit;
    Bytes::from_request(req, st).await.map_err(|e| {
        let status = e.status();
        if status == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(status, "payload_too_large", format!("the request body is larger than the limit of {limit} bytes (see --max-body-mb)"))
        } else {
            rejection(status, e.body_text())
        }
    })
}

async fn healthz(State(st): St) -> Json<Value> {
    let (bytes, resident, videos) = st.store.usage();
    Json(json!({"status": "ok", "videos": videos, "sessions": resident, "cache_bytes": bytes, "inflight": st.sched.inflight()}))
}

async fn metrics(State(st): St) -> Response {
    let (cache_bytes, scenes_resident, videos) = st.store.usage();
    let text = st.metrics.render(&Gauges { cache_bytes, cache_budget_bytes: st.store.budget(), scenes_resident, videos, inflight: st.sched.inflight() });
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

async fn models(State(st): St) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": st.model_name, "object": "model", "created": 0, "owned_by": "loc3r"}]}))
}

/// What registering a video produced.
pub(super) struct Registered {
    pub(super) info: VideoInfo,
    created: bool,
    timings: Option<Timings>,
}

/// Registrations in progress by video id: concurrent registrations of one video share one
/// observation (single flight). The first runs it; the others wait for its result (its
/// error too). If the first is cancelled (its client went away) the next waiter runs it.
#[derive(Default)]
pub struct Registering(std::sync::Mutex<HashMap<String, Flight>>);

type Flight = Arc<tokio::sync::OnceCell<ApiResult<VideoInfo>>>;

impl Registering {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Flight>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Joins the flight of `id` (starting it if there is none).
    fn join<'a>(&'a self, id: &'a str) -> Boarded<'a> {
        let flight = self.lock().entry(id.to_string()).or_default().clone();
        Boarded { flights: self, id, flight }
    }
}

/// A registration's place in a flight; leaving (done or cancelled) removes a flight that
/// has landed (later registrations find the video in the store, or after an error try
/// again) or that nobody else waits for.
struct Boarded<'a> {
    flights: &'a Registering,
    id: &'a str,
    flight: Flight,
}

impl Drop for Boarded<'_> {
    fn drop(&mut self) {
        let mut flights = self.flights.lock();
        // Clones are taken under this lock: 2 = the map's and ours.
        let over = self.flight.initialized() || Arc::strong_count(&self.flight) == 2;
        if over && flights.get(self.id).is_some_and(|f| Arc::ptr_eq(f, &self.flight)) {
            flights.remove(self.id);
        }
    }
}

/// Registers (observes) a video unless its id is known already (idempotent); one
/// observation per id however many clients register it at once.
pub(super) async fn register(st: &Arc<AppState>, source: Source, content: Option<Bytes>, frames: usize) -> ApiResult<Registered> {
    // Hash off the async threads: videos can be large.
    let id = {
        let path = source.path().to_path_buf();
        let content = content.clone();
        tokio::task::spawn_blocking(move || match content {
            Some(b) => Ok(video_id_of_bytes(&b, frames)),
            None => video_id_of_file(&path, frames).map_err(|e| ApiError::unprocessable("invalid_video", format!("reading the video: {e}"))),
        })
        .await
        .map_err(|e| ApiError::internal(e.to_string()))??
    };
    if let Some(info) = st.store.get(&id) {
        return Ok(Registered { info, created: false, timings: None });
    }
    let boarded = st.registering.join(&id);
    let mut observed = None;
    let (slot, id_ref) = (&mut observed, id.as_str());
    let result = boarded
        .flight
        .get_or_init(|| async move {
            // Registered by a flight that ended between the look-up above and this one?
            if let Some(info) = st.store.get(id_ref) {
                return Ok(info);
            }
            let (info, timings) = observe_and_insert(st, id_ref, source, content, frames).await?;
            *slot = Some(timings);
            Ok(info)
        })
        .await
        .clone();
    drop(boarded);
    let info = result?;
    Ok(Registered { info, created: observed.is_some(), timings: observed })
}

/// Observes a video (on the scheduler) and adds it to the store.
async fn observe_and_insert(st: &Arc<AppState>, id: &str, source: Source, content: Option<Bytes>, frames: usize) -> ApiResult<(VideoInfo, Timings)> {
    let source = match source {
        Source::Upload(_) => Source::Upload(st.store.upload_path(id)),
        s => s,
    };
    let model = st.model.clone();
    let path = source.path().to_path_buf();
    let upload = content.filter(|_| matches!(source, Source::Upload(_)));
    let spec = st.store.frame_spec(frames);
    let metrics = st.metrics.clone();
    let scene = st
        .sched
        .observe(move |cancel| {
            if let Some(bytes) = &upload {
                std::fs::write(&path, bytes).map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
            }
            metrics.observation();
            let r = model.observe_video_cancellable(&path, &spec, cancel);
            if r.is_err() && upload.is_some() {
                let _ = std::fs::remove_file(&path);
            }
            Ok(r?)
        })
        .await?;
    let timings = scene.observe_timings.clone();
    st.metrics.stages(&timings);
    let info = st.store.insert(id, source, frames, scene);
    Ok((info, timings))
}

fn registered_response(r: Registered) -> Response {
    let status = if r.created { StatusCode::CREATED } else { StatusCode::OK };
    let mut body = serde_json::to_value(&r.info).unwrap_or_default();
    body["created"] = r.created.into();
    if let Some(t) = &r.timings {
        body["timings_ms"] = serde_json::to_value(t).unwrap_or_default();
    }
    let resp = (status, Json(body)).into_response();
    match &r.timings {
        Some(t) => with_timings(resp, t),
        None => resp,
    }
}

/// `POST /v1/videos`: multipart upload (`file`, optional `frames`) or JSON `{path, frames?}`.
async fn create_video(State(st): St, req: Request) -> ApiResult {
    let ctype = req.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("").to_ascii_lowercase();
    if ctype.starts_with("multipart/form-data") {
        let mut mp = Multipart::from_request(req, &st).await.map_err(|e| rejection(e.status(), e.body_text()))?;
        let mut file = None;
        let mut frames = None;
        while let Some(field) = mp.next_field().await.map_err(|e| rejection(e.status(), format!("reading the multipart body: {}", e.body_text())))? {
            let name = field.name().unwrap_or("").to_string();
            if (matches!(name.as_str(), "file" | "video") && file.is_some()) || (name == "frames" && frames.is_some()) {
                return Err(ApiError::bad_request(format!(
                    "the multipart body has a second `{name}` part; send one video (`file`) and at most one `frames` per request"
                )));
            }
            match name.as_str() {
                "file" | "video" => file = Some(field.bytes().await.map_err(|e| rejection(e.status(), e.body_text()))?),
                "frames" => {
                    let t = field.text().await.map_err(|e| rejection(e.status(), e.body_text()))?;
                    frames = Some(t.trim().parse::<usize>().map_err(|_| ApiError::bad_request(format!("`frames` must be a positive integer, got {t:?}")))?);
                }
                other => return Err(ApiError::bad_request(format!("unknown multipart field `{other}`; send `file` and optionally `frames`"))),
            }
        }
        let Some(file) = file else {
            return Err(ApiError::bad_request("the multipart body has no `file` field"));
        };
        if file.is_empty() {
            return Err(ApiError::unprocessable("invalid_video", "the uploaded file is empty"));
        }
        let frames = validate::frames(frames, &st.limits)?;
        Ok(registered_response(register(&st, Source::Upload(PathBuf::new()), Some(file), frames).await?))
    } else if ctype.is_empty() || ctype.starts_with("application/json") {
        let body = body_bytes(req, &st).await?;
        let r: validate::VideoPathRequest = validate::parse_json(&body)?;
        let frames = validate::frames(r.frames, &st.limits)?;
        let path = validate::allowed_path(&r.path, &st.limits)?;
        Ok(registered_response(register(&st, Source::Path(path), None, frames).await?))
    } else {
        Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            format!("content type `{ctype}`: send multipart/form-data (field `file`) or application/json `{{\"path\": ...}}`"),
        ))
    }
}

async fn list_videos(State(st): St) -> Json<Value> {
    Json(json!({"videos": st.store.list()}))
}

async fn get_video(State(st): St, Path(id): Path<String>) -> ApiResult<Json<VideoInfo>> {
    st.store.get(&id).map(Json).ok_or_else(|| ApiError::not_found(format!("no video `{id}`")))
}

async fn delete_video(State(st): St, Path(id): Path<String>) -> ApiResult<Json<Value>> {
    if st.store.delete(&id) {
        Ok(Json(json!({"video_id": id, "deleted": true})))
    } else {
        Err(ApiError::not_found(format!("no video `{id}`")))
    }
}

pub(super) fn pose_json(p: &crate::Localization) -> Value {
    json!({"position": p.position, "yaw_deg": p.yaw_deg, "orientation_probs": p.orientation_probs, "orientation_confident": p.orientation_confident})
}

async fn localize(State(st): St, Path(id): Path<String>, req: Request) -> ApiResult {
    let body = body_bytes(req, &st).await?;
    let r: validate::LocalizeRequest = if body.iter().all(u8::is_ascii_whitespace) { Default::default() } else { validate::parse_json(&body)? };
    let situation = validate::check_situation(r.situation, &st.limits)?;
    let (scene, observed) = st.store.scene(&id, &st.model, &st.sched).await?;
    let start = Instant::now();
    let pose = st.sched.run(move |_| Ok(scene.localize(situation.as_deref())?)).await?;
    let own = Timings { prefill: start.elapsed().as_secs_f64() * 1000.0, ..Timings::default() };
    st.metrics.stages(&own);
    let mut t = own;
    if let Some(observed) = &observed {
        t.include_observe(observed);
    }
    let mut body = pose_json(&pose);
    body["video_id"] = id.into();
    Ok(with_timings(Json(body).into_response(), &t))
}

/// One step of a generation, as TGI's `InferStreamResponse`: SSE and JSON fold the same stream.
pub(super) enum GenEvent {
    Token(String),
    End(Box<Answer>),
    Error(ApiError),
}

/// Runs a question on the pool, sending every text piece; stops when the receiver is gone
/// (client disconnected) or when `cancel` fires (the deadline: then an error event, 504).
fn generate(scene: Arc<Scene>, ask: ValidAsk, cancel: &Cancel, tx: tokio::sync::mpsc::Sender<GenEvent>) -> Result<(), ApiError> {
    let mut timed_out = false;
    let r = scene.ask_streaming(ask.situation.as_deref(), &ask.question, &ask.gen, |piece| {
        match send_unless_cancelled(&tx, GenEvent::Token(piece.to_string()), cancel) {
            Sent::Yes => true,
            Sent::ReceiverGone => false,
            Sent::Cancelled => {
                timed_out = true;
                false
            }
        }
    });
    let ev = match r {
        Ok(_) if timed_out => GenEvent::Error(ApiError::timeout(0.0).with_message("the answer was cut at the request deadline (see --request-timeout-s)")),
        Ok(a) => GenEvent::End(Box::new(a)),
        Err(e) => GenEvent::Error(e.into()),
    };
    // Past the deadline the receiver may be a client that stopped reading: the worker must
    // not wait for it, so the last event is offered once and dropped if there is no room.
    if let Err(tokio::sync::mpsc::error::TrySendError::Full(ev)) = tx.try_send(ev) {
        if !cancel.is_cancelled() {
            send_unless_cancelled(&tx, ev, cancel);
        }
    }
    Ok(())
}

enum Sent {
    Yes,
    ReceiverGone,
    Cancelled,
}

/// Sends on the bounded channel from a worker thread, waiting while it is full (the client
/// reads slower than tokens come) but never past `cancel`: a client that stops reading an
/// SSE stream fills the channel, and a plain `blocking_send` would then hold the worker
/// forever, deadline or not.
fn send_unless_cancelled(tx: &tokio::sync::mpsc::Sender<GenEvent>, mut ev: GenEvent, cancel: &Cancel) -> Sent {
    use tokio::sync::mpsc::error::TrySendError;
    let mut wait = std::time::Duration::from_micros(200);
    loop {
        if cancel.is_cancelled() {
            return Sent::Cancelled;
        }
        match tx.try_send(ev) {
            Ok(()) => return Sent::Yes,
            Err(TrySendError::Closed(_)) => return Sent::ReceiverGone,
            Err(TrySendError::Full(back)) => {
                ev = back;
                std::thread::sleep(wait);
                wait = (wait * 2).min(std::time::Duration::from_millis(20));
            }
        }
    }
}

impl ApiError {
    fn with_message(mut self, m: &str) -> Self {
        self.message = m.to_string();
        self
    }
}

/// Admits a question and starts it; events arrive on the returned channel.
pub(super) fn start_generation(st: &Arc<AppState>, scene: Arc<Scene>, ask: ValidAsk) -> ApiResult<tokio::sync::mpsc::Receiver<GenEvent>> {
    let admitted = st.sched.admit(JobKind::Request)?;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let err_tx = tx.clone();
    tokio::spawn(async move {
        if let Err(e) = admitted.run(move |cancel| generate(scene, ask, cancel, tx)).await {
            let _ = err_tx.send(GenEvent::Error(e)).await;
        }
    });
    Ok(rx)
}

/// Folds a generation stream into the final answer.
pub(super) async fn fold(mut rx: tokio::sync::mpsc::Receiver<GenEvent>) -> ApiResult<Answer> {
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Token(_) => {}
            GenEvent::End(a) => return Ok(*a),
            GenEvent::Error(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the generation ended without an answer"))
}

pub(super) fn usage(a: &Answer) -> Value {
    json!({"prompt_tokens": a.tokens.prompt, "completion_tokens": a.tokens.generated, "total_tokens": a.tokens.prompt + a.tokens.generated})
}

pub(super) fn record(st: &AppState, a: &Answer) {
    st.metrics.stages(&a.timings_ms);
    st.metrics.tokens(a.tokens.generated, a.timings_ms.decode);
}

fn answer_json(id: &str, a: &Answer) -> Value {
    let mut v = pose_json(&a.pose);
    v["video_id"] = id.into();
    v["answer"] = a.answer.clone().into();
    v["usage"] = usage(a);
    v["timings_ms"] = serde_json::to_value(&a.timings_ms).unwrap_or_default();
    v
}

fn sse_error(e: &ApiError) -> Event {
    Event::default().event("error").data(e.body().to_string())
}

async fn ask(State(st): St, Path(id): Path<String>, req: Request) -> ApiResult {
    let body = body_bytes(req, &st).await?;
    let r: validate::AskRequest = validate::parse_json(&body)?;
    let stream = r.stream;
    let valid = validate::ask(r, &st.limits)?;
    let (scene, _) = st.store.scene(&id, &st.model, &st.sched).await?;
    let rx = start_generation(&st, scene, valid)?;
    if !stream {
        let a = fold(rx).await?;
        record(&st, &a);
        return Ok(with_timings(Json(answer_json(&id, &a)).into_response(), &a.timings_ms));
    }
    let st2 = st.clone();
    let events = ReceiverStream::new(rx).map(move |ev| {
        Ok::<_, Infallible>(match ev {
            GenEvent::Token(t) => Event::default().event("token").data(json!({"token": t}).to_string()),
            GenEvent::End(a) => {
                record(&st2, &a);
                Event::default().event("end").data(answer_json(&id, &a).to_string())
            }
            GenEvent::Error(e) => sse_error(&e),
        })
    });
    Ok(Sse::new(events).keep_alive(KeepAlive::default()).into_response())
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn a_reader_that_stops_reading_holds_the_worker_only_until_the_deadline() {
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        let cancel = Cancel::with_deadline(Instant::now() + Duration::from_millis(300));
        assert!(matches!(send_unless_cancelled(&tx, GenEvent::Token("a".into()), &cancel), Sent::Yes));
        // The channel is full and nobody reads: the send gives up at the deadline.
        let start = Instant::now();
        assert!(matches!(send_unless_cancelled(&tx, GenEvent::Token("b".into()), &cancel), Sent::Cancelled));
        let waited = start.elapsed();
        assert!(waited >= Duration::from_millis(250) && waited < Duration::from_secs(30), "{waited:?}");
        drop(rx);
        let open = Cancel::new();
        assert!(matches!(send_unless_cancelled(&tx, GenEvent::Token("c".into()), &open), Sent::ReceiverGone));
    }

    #[test]
    fn a_slow_reader_gets_every_event() {
        let (tx, mut rx) = tokio::sync::mpsc::channel(1);
        let reader = std::thread::spawn(move || {
            let mut n = 0;
            while let Some(GenEvent::Token(_)) = rx.blocking_recv() {
                std::thread::sleep(Duration::from_millis(2));
                n += 1;
            }
            n
        });
        let cancel = Cancel::new();
        for i in 0..50 {
            assert!(matches!(send_unless_cancelled(&tx, GenEvent::Token(i.to_string()), &cancel), Sent::Yes));
        }
        drop(tx);
        assert_eq!(reader.join().unwrap(), 50);
    }
}
