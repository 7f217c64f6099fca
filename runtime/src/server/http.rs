//! The HTTP layer: routes, auth, request log, SSE and the OpenAI shapes. Requests go
//! `http` -> `validate` (-> `Valid*`) -> `schedule` (admission, 429) -> pipeline.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, Multipart, Path, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::pipeline::Timings;
use crate::{Answer, Loc3r, Scene};

use super::error::{ApiError, ErrorCode};
use super::metrics::{Gauges, Metrics};
use super::schedule::{observe, video_id_of_bytes, video_id_of_file, Scheduler, Source, Store, VideoInfo};
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
    pub next_id: AtomicU64,
}

type St = State<Arc<AppState>>;
type ApiResult<T = Response> = Result<T, ApiError>;

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
    let mut resp = if route != "/healthz" && !authorized(&st, &req) {
        let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", "missing or wrong API key: send `Authorization: Bearer <key>`").into_response();
        r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        r
    } else {
        next.run(req).await
    };
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

fn with_timings(mut r: Response, t: &Timings) -> Response {
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

async fn body_bytes(req: Request, st: &Arc<AppState>) -> ApiResult<Bytes> {
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
struct Registered {
    info: VideoInfo,
    created: bool,
    timings: Option<Timings>,
}

/// Registers (observes) a video unless its id is known already (idempotent).
async fn register(st: &Arc<AppState>, source: Source, content: Option<Bytes>, frames: usize) -> ApiResult<Registered> {
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
    let source = match source {
        Source::Upload(_) => Source::Upload(st.store.upload_path(&id)),
        s => s,
    };
    let model = st.model.clone();
    let path = source.path().to_path_buf();
    let upload = content.filter(|_| matches!(source, Source::Upload(_)));
    let observed = st
        .sched
        .run(move |_| {
            if let Some(bytes) = &upload {
                std::fs::write(&path, bytes).map_err(|e| ApiError::internal(format!("storing the upload: {e}")))?;
            }
            let r = observe(&model, &path, frames);
            if r.is_err() && upload.is_some() {
                let _ = std::fs::remove_file(&path);
            }
            r
        })
        .await?;
    let timings = observed.scene.observe_timings.clone();
    st.metrics.stages(&timings);
    let info = st.store.insert(&id, source, frames, observed);
    Ok(Registered { info, created: true, timings: Some(timings) })
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
            match field.name().unwrap_or("") {
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

fn pose_json(p: &crate::Localization) -> Value {
    json!({"position": p.position, "yaw_deg": p.yaw_deg, "orientation_probs": p.orientation_probs, "orientation_confident": p.orientation_confident})
}

async fn localize(State(st): St, Path(id): Path<String>, req: Request) -> ApiResult {
    let body = body_bytes(req, &st).await?;
    let r: validate::LocalizeRequest = if body.iter().all(u8::is_ascii_whitespace) { Default::default() } else { validate::parse_json(&body)? };
    let situation = validate::check_situation(r.situation, &st.limits)?;
    let (scene, observed) = st.store.scene(&id, &st.model, &st.sched).await?;
    let start = Instant::now();
    let pose = st.sched.run(move |_| Ok(scene.localize(situation.as_deref())?)).await?;
    let mut t = observed.unwrap_or_default();
    t.prefill = start.elapsed().as_secs_f64() * 1000.0;
    st.metrics.stages(&Timings { prefill: t.prefill, ..Timings::default() });
    let mut body = pose_json(&pose);
    body["video_id"] = id.into();
    Ok(with_timings(Json(body).into_response(), &t))
}

/// One step of a generation, as TGI's `InferStreamResponse`: SSE and JSON fold the same stream.
enum GenEvent {
    Token(String),
    End(Box<Answer>),
    Error(ApiError),
}

/// Runs a question on the pool, sending every text piece; stops when the receiver is gone
/// (client disconnected) or at the deadline (then an error event, 504).
fn generate(scene: Arc<Scene>, ask: ValidAsk, deadline: Instant, tx: tokio::sync::mpsc::Sender<GenEvent>) -> Result<(), ApiError> {
    let mut timed_out = false;
    let r = scene.ask_streaming(ask.situation.as_deref(), &ask.question, &ask.gen, |piece| {
        if Instant::now() > deadline {
            timed_out = true;
            return false;
        }
        tx.blocking_send(GenEvent::Token(piece.to_string())).is_ok()
    });
    let ev = match r {
        Ok(_) if timed_out => GenEvent::Error(ApiError::timeout(0.0).with_message("the answer was cut at the request deadline (see --request-timeout-s)")),
        Ok(a) => GenEvent::End(Box::new(a)),
        Err(e) => GenEvent::Error(e.into()),
    };
    let _ = tx.blocking_send(ev);
    Ok(())
}

impl ApiError {
    fn with_message(mut self, m: &str) -> Self {
        self.message = m.to_string();
        self
    }
}

/// Admits a question and starts it; events arrive on the returned channel.
fn start_generation(st: &Arc<AppState>, scene: Arc<Scene>, ask: ValidAsk) -> ApiResult<tokio::sync::mpsc::Receiver<GenEvent>> {
    let admitted = st.sched.admit()?;
    let (tx, rx) = tokio::sync::mpsc::channel(256);
    let err_tx = tx.clone();
    tokio::spawn(async move {
        if let Err(e) = admitted.run(move |deadline| generate(scene, ask, deadline, tx)).await {
            let _ = err_tx.send(GenEvent::Error(e)).await;
        }
    });
    Ok(rx)
}

/// Folds a generation stream into the final answer.
async fn fold(mut rx: tokio::sync::mpsc::Receiver<GenEvent>) -> ApiResult<Answer> {
    while let Some(ev) = rx.recv().await {
        match ev {
            GenEvent::Token(_) => {}
            GenEvent::End(a) => return Ok(*a),
            GenEvent::Error(e) => return Err(e),
        }
    }
    Err(ApiError::internal("the generation ended without an answer"))
}

fn usage(a: &Answer) -> Value {
    json!({"prompt_tokens": a.tokens.prompt, "completion_tokens": a.tokens.generated, "total_tokens": a.tokens.prompt + a.tokens.generated})
}

fn record(st: &AppState, a: &Answer) {
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

// ---- OpenAI-compatible chat completions ----

#[derive(Debug, Deserialize)]
struct ChatRequest {
    model: Option<String>,
    messages: Vec<ChatMessage>,
    video_id: Option<String>,
    situation: Option<String>,
    frames: Option<usize>,
    #[serde(default)]
    stream: bool,
    max_tokens: Option<usize>,
    max_completion_tokens: Option<usize>,
    temperature: Option<f32>,
    top_p: Option<f32>,
    seed: Option<u64>,
    n: Option<usize>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    content: Option<Content>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Part {
    Text { text: String },
    VideoUrl { video_url: UrlRef },
    ImageUrl {},
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum UrlRef {
    Url(String),
    Obj { url: String },
}

impl UrlRef {
    fn url(&self) -> &str {
        match self {
            UrlRef::Url(u) | UrlRef::Obj { url: u } => u,
        }
    }
}

/// The video, question and situation of a chat request.
struct ChatInputs {
    video_url: Option<String>,
    question: String,
    situation: Option<String>,
}

fn chat_inputs(r: &ChatRequest) -> ApiResult<ChatInputs> {
    let mut video_url = None;
    let mut system = Vec::new();
    let mut question = None;
    for m in &r.messages {
        let mut text = Vec::new();
        match &m.content {
            None => {}
            Some(Content::Text(t)) => text.push(t.clone()),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p {
                        Part::Text { text: t } => text.push(t.clone()),
                        Part::VideoUrl { video_url: u } => video_url = Some(u.url().to_string()),
                        Part::ImageUrl {} => {
                            return Err(ApiError::unprocessable("invalid_input", "image_url parts are not supported; send the video as a video_url part"))
                        }
                    }
                }
            }
        }
        match m.role.as_str() {
            "system" | "developer" => system.push(text.join("\n")),
            "user" => question = Some(text.join("\n")),
            "assistant" | "tool" => {}
            other => return Err(ApiError::bad_request(format!("unknown message role `{other}`"))),
        }
    }
    let Some(question) = question else {
        return Err(ApiError::unprocessable("invalid_input", "no user message: the last user message is the question"));
    };
    let situation = r.situation.clone().or_else(|| Some(system.join("\n")).filter(|s| !s.trim().is_empty()));
    Ok(ChatInputs { video_url, question, situation })
}

/// Resolves the chat request's video to a registered id (registering it if needed).
async fn chat_video(st: &Arc<AppState>, url: Option<&str>, video_id: Option<&str>, frames: Option<usize>) -> ApiResult<String> {
    let Some(url) = url else {
        return video_id
            .map(str::to_string)
            .ok_or_else(|| ApiError::unprocessable("invalid_input", "no video: add a video_url content part (file:// or data:) or a `video_id` field"));
    };
    let frames = validate::frames(frames, &st.limits)?;
    if let Some(rest) = url.strip_prefix("file://") {
        let path = validate::allowed_path(rest, &st.limits)?;
        return Ok(register(st, Source::Path(path), None, frames).await?.info.video_id);
    }
    if let Some(rest) = url.strip_prefix("data:") {
        let Some((meta, data)) = rest.split_once(',') else {
            return Err(ApiError::bad_request("a data: URL needs a comma before its payload"));
        };
        if !meta.ends_with(";base64") {
            return Err(ApiError::bad_request("data: URLs must be base64 (`data:video/mp4;base64,...`)"));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data.trim())
            .map_err(|e| ApiError::bad_request(format!("the data: URL is not valid base64: {e}")))?;
        if bytes.is_empty() {
            return Err(ApiError::unprocessable("invalid_video", "the data: URL holds no bytes"));
        }
        return Ok(register(st, Source::Upload(PathBuf::new()), Some(Bytes::from(bytes)), frames).await?.info.video_id);
    }
    Err(ApiError::unprocessable("invalid_input", "video_url must be file:// (under --allow-dir) or data:...;base64; remote URLs are not fetched"))
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn loc3r_field(video_id: &str, a: &Answer) -> Value {
    let mut v = pose_json(&a.pose);
    v["video_id"] = video_id.into();
    v["timings_ms"] = serde_json::to_value(&a.timings_ms).unwrap_or_default();
    v
}

async fn chat(State(st): St, req: Request) -> ApiResult {
    let body = body_bytes(req, &st).await?;
    let r: ChatRequest = validate::parse_json(&body)?;
    if r.n.is_some_and(|n| n != 1) {
        return Err(ApiError::unprocessable("invalid_input", "only n = 1 is supported"));
    }
    let inputs = chat_inputs(&r)?;
    let valid = validate::ask(
        validate::AskRequest {
            situation: inputs.situation,
            question: inputs.question,
            max_new_tokens: r.max_completion_tokens.or(r.max_tokens),
            temperature: r.temperature,
            top_p: r.top_p,
            top_k: None,
            seed: r.seed,
            stream: r.stream,
        },
        &st.limits,
    )?;
    let video_id = chat_video(&st, inputs.video_url.as_deref(), r.video_id.as_deref(), r.frames).await?;
    let (scene, _) = st.store.scene(&video_id, &st.model, &st.sched).await?;
    let max_tokens = valid.gen.max_new_tokens;
    let rx = start_generation(&st, scene, valid)?;
    let id = format!("chatcmpl-{}", st.next_id.fetch_add(1, Ordering::Relaxed));
    let created = unix_now();
    let model = r.model.clone().unwrap_or_else(|| st.model_name.clone());
    let finish = move |a: &Answer| {
        if a.tokens.generated >= max_tokens {
            "length"
        } else {
            "stop"
        }
    };
    if !r.stream {
        let a = fold(rx).await?;
        record(&st, &a);
        let body = json!({
            "id": id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": a.answer}, "logprobs": null, "finish_reason": finish(&a)}],
            "usage": usage(&a),
            "loc3r": loc3r_field(&video_id, &a),
        });
        return Ok(with_timings(Json(body).into_response(), &a.timings_ms));
    }
    let chunk = {
        let (id, model) = (id.clone(), model.clone());
        move |delta: Value, finish_reason: Value| json!({"id": id, "object": "chat.completion.chunk", "created": created, "model": model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish_reason}]})
    };
    // Forward generation events as OpenAI chunks (the end event becomes two: the last
    // chunk with finish_reason, usage and the pose, then `[DONE]`).
    let (etx, erx) = tokio::sync::mpsc::channel::<Event>(256);
    let st2 = st.clone();
    tokio::spawn(async move {
        let mut rx = rx;
        let mut out = vec![Event::default().data(chunk(json!({"role": "assistant", "content": ""}), Value::Null).to_string())];
        loop {
            for ev in out.drain(..) {
                if etx.send(ev).await.is_err() {
                    return; // client gone; dropping `rx` stops the generation
                }
            }
            match rx.recv().await {
                None => return,
                Some(GenEvent::Token(t)) => out.push(Event::default().data(chunk(json!({"content": t}), Value::Null).to_string())),
                Some(GenEvent::End(a)) => {
                    record(&st2, &a);
                    let mut last = chunk(json!({}), finish(&a).into());
                    last["usage"] = usage(&a);
                    last["loc3r"] = loc3r_field(&video_id, &a);
                    out.push(Event::default().data(last.to_string()));
                    out.push(Event::default().data("[DONE]"));
                }
                // OpenAI clients raise on a data object with an `error` key.
                Some(GenEvent::Error(e)) => out.push(Event::default().data(e.body().to_string())),
            }
        }
    });
    let all = ReceiverStream::new(erx).map(Ok::<_, Infallible>);
    Ok(Sse::new(all).keep_alive(KeepAlive::default()).into_response())
}
