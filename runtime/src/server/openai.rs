//! OpenAI-compatible chat completions (`POST /v1/chat/completions`): the chat request's
//! messages become a situation (system/developer) and a question (the last user message),
//! its `video_url` part (file:// or data:) or `video_id` field picks the video, and the
//! answer comes back as a `chat.completion` or as `chat.completion.chunk` SSE events, with
//! the pose in an extra `loc3r` field.

use std::convert::Infallible;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::IntoResponse;
use axum::Json;
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::StreamExt;

use crate::Answer;

use super::error::ApiError;
use super::http::{body_bytes, fold, pose_json, record, register, start_generation, usage, with_timings, ApiResult, AppState, GenEvent, St};
use super::store::Source;
use super::validate;

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
    Url(VideoUrl),
    Obj { url: VideoUrl },
}

impl UrlRef {
    fn into_url(self) -> VideoUrl {
        match self {
            UrlRef::Url(u) | UrlRef::Obj { url: u } => u,
        }
    }
}

/// A `video_url` part's URL. A `data:` URL's payload is decoded while the request is parsed,
/// from the request body's own bytes (serde hands the visitor the unescaped string in place):
/// the base64 text is never copied into a `String`, so a large inline video costs its body
/// plus its decoded bytes, not several copies of both.
#[derive(Debug)]
enum VideoUrl {
    /// `file://` path, as written after the scheme (and `localhost`).
    File(String),
    Data(Bytes),
    /// Not usable; why, as the client should read it (a 4xx, raised after parsing so that
    /// the message survives serde's untagged-enum matching).
    Invalid {
        status: axum::http::StatusCode,
        message: String,
    },
}

impl<'de> Deserialize<'de> for VideoUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = VideoUrl;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a URL string")
            }
            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<VideoUrl, E> {
                Ok(VideoUrl::parse(url))
            }
        }
        d.deserialize_str(Visitor)
    }
}

impl VideoUrl {
    fn parse(url: &str) -> VideoUrl {
        use axum::http::StatusCode;
        let invalid = |status, message: &str| VideoUrl::Invalid { status, message: message.to_string() };
        if let Some(rest) = url.strip_prefix("file://") {
            // RFC 8089: `file://localhost/p` is `file:///p`. Other hosts are remote files.
            let rest = rest.strip_prefix("localhost/").map_or(rest.to_string(), |p| format!("/{p}"));
            return VideoUrl::File(rest);
        }
        let Some(rest) = url.strip_prefix("data:") else {
            return invalid(StatusCode::UNPROCESSABLE_ENTITY, "video_url must be file:// (under --allow-dir) or data:...;base64; remote URLs are not fetched");
        };
        let Some((meta, data)) = rest.split_once(',') else {
            return invalid(StatusCode::BAD_REQUEST, "a data: URL needs a comma before its payload");
        };
        if !meta.ends_with(";base64") {
            return invalid(StatusCode::BAD_REQUEST, "data: URLs must be base64 (`data:video/mp4;base64,...`)");
        }
        match base64::engine::general_purpose::STANDARD.decode(data.trim()) {
            Ok(bytes) if bytes.is_empty() => invalid(StatusCode::UNPROCESSABLE_ENTITY, "the data: URL holds no bytes"),
            Ok(bytes) => VideoUrl::Data(Bytes::from(bytes)),
            Err(e) => invalid(StatusCode::BAD_REQUEST, &format!("the data: URL is not valid base64: {e}")),
        }
    }
}

/// The video, question and situation of a chat request.
struct ChatInputs {
    video_url: Option<VideoUrl>,
    question: String,
    situation: Option<String>,
}

/// Takes the request's messages apart (the video's bytes move, they are not copied).
fn chat_inputs(r: &mut ChatRequest) -> ApiResult<ChatInputs> {
    let mut video_url = None;
    let mut system = Vec::new();
    let mut question = None;
    for m in std::mem::take(&mut r.messages) {
        let mut text = Vec::new();
        match m.content {
            None => {}
            Some(Content::Text(t)) => text.push(t),
            Some(Content::Parts(parts)) => {
                for p in parts {
                    match p {
                        Part::Text { text: t } => text.push(t),
                        Part::VideoUrl { video_url: u } => {
                            if video_url.is_some() {
                                return Err(ApiError::bad_request("the messages hold two video_url parts; send one video per request"));
                            }
                            video_url = Some(u.into_url());
                        }
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
    if video_url.is_some() && r.video_id.is_some() {
        return Err(ApiError::bad_request("the request names a video twice (a video_url part and `video_id`); send one of them"));
    }
    let situation = r.situation.clone().or_else(|| Some(system.join("\n")).filter(|s| !s.trim().is_empty()));
    Ok(ChatInputs { video_url, question, situation })
}

/// Resolves the chat request's video to a registered id (registering it if needed).
async fn chat_video(st: &Arc<AppState>, url: Option<VideoUrl>, video_id: Option<&str>, frames: Option<usize>) -> ApiResult<String> {
    let Some(url) = url else {
        return video_id
            .map(str::to_string)
            .ok_or_else(|| ApiError::unprocessable("invalid_input", "no video: add a video_url content part (file:// or data:) or a `video_id` field"));
    };
    let frames = validate::frames(frames, &st.limits)?;
    match url {
        VideoUrl::File(rest) => {
            let path = validate::allowed_path(&rest, &st.limits)?;
            Ok(register(st, Source::Path(path), None, frames).await?.info.video_id)
        }
        VideoUrl::Data(bytes) => Ok(register(st, Source::Upload(PathBuf::new()), Some(bytes), frames).await?.info.video_id),
        VideoUrl::Invalid { status, message } if status == axum::http::StatusCode::BAD_REQUEST => Err(ApiError::bad_request(message)),
        VideoUrl::Invalid { message, .. } => Err(ApiError::unprocessable("invalid_input", message)),
    }
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

pub(super) async fn chat(State(st): St, req: Request) -> ApiResult {
    let body = body_bytes(req, &st).await?;
    let mut r: ChatRequest = validate::parse_json(&body)?;
    // The request body is not needed past parsing; an inline video's decoded bytes are.
    drop(body);
    if r.n.is_some_and(|n| n != 1) {
        return Err(ApiError::unprocessable("invalid_input", "only n = 1 is supported"));
    }
    let inputs = chat_inputs(&mut r)?;
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
    let video_id = chat_video(&st, inputs.video_url, r.video_id.as_deref(), r.frames).await?;
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
