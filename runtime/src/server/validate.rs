//! Requests as they arrive (`*Request`, serde) and as the scheduler accepts them
//! (`Valid*`): every bound is checked here, once, so nothing unchecked reaches the model.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::GenerationOptions;

use super::error::ApiError;

/// Limits set on the command line.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_frames: usize,
    pub default_frames: usize,
    pub max_new_tokens: usize,
    pub max_text_chars: usize,
    pub allow_dir: Option<PathBuf>,
}

/// Parses a JSON body with a message naming the field at fault.
pub fn parse_json<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request("the request body is empty; send a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        if path == "." {
            ApiError::bad_request(format!("invalid JSON body: {}", e.inner()))
        } else {
            ApiError::bad_request(format!("invalid JSON body at `{path}`: {}", e.inner()))
        }
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoPathRequest {
    pub path: String,
    pub frames: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalizeRequest {
    pub situation: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AskRequest {
    pub situation: Option<String>,
    pub question: String,
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
    #[serde(default)]
    pub stream: bool,
}

/// A question the scheduler can run.
#[derive(Debug, Clone)]
pub struct ValidAsk {
    pub situation: Option<String>,
    pub question: String,
    pub gen: GenerationOptions,
}

/// Checks a piece of prompt text: length, control characters, chat-template tokens.
pub fn check_text(field: &str, text: &str, limits: &Limits, allow_empty: bool) -> Result<(), ApiError> {
    if !allow_empty && text.trim().is_empty() {
        return Err(ApiError::unprocessable("invalid_input", format!("`{field}` is empty; ask a question")));
    }
    let n = text.chars().count();
    if n > limits.max_text_chars {
        return Err(ApiError::unprocessable("invalid_input", format!("`{field}` has {n} characters, more than the limit of {}", limits.max_text_chars)));
    }
    // The library's rule for user text (the pipeline applies it again, with the bundle's added tokens).
    crate::stages::prompt::check_user_text(field, text, None).map_err(|e| ApiError::unprocessable("invalid_input", e.to_string()))
}

pub fn check_situation(situation: Option<String>, limits: &Limits) -> Result<Option<String>, ApiError> {
    match situation {
        Some(s) if s.trim().is_empty() => Ok(None),
        Some(s) => {
            check_text("situation", &s, limits, true)?;
            Ok(Some(s))
        }
        None => Ok(None),
    }
}

pub struct GenParams {
    pub max_new_tokens: Option<usize>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<usize>,
    pub seed: Option<u64>,
}

pub fn generation(p: GenParams, limits: &Limits, field: &str) -> Result<GenerationOptions, ApiError> {
    let max_new_tokens = p.max_new_tokens.unwrap_or(limits.max_new_tokens.min(128));
    if max_new_tokens == 0 || max_new_tokens > limits.max_new_tokens {
        return Err(ApiError::unprocessable(
            "invalid_input",
            format!("`{field}` must be in 1..={} (see --max-new-tokens), got {max_new_tokens}", limits.max_new_tokens),
        ));
    }
    let gen = GenerationOptions {
        max_new_tokens,
        temperature: p.temperature.unwrap_or(0.0),
        top_k: p.top_k.unwrap_or(0),
        top_p: p.top_p.unwrap_or(1.0),
        seed: p.seed.unwrap_or(0),
    };
    gen.validate().map_err(|e| ApiError::unprocessable("invalid_input", e.to_string()))?;
    Ok(gen)
}

pub fn ask(req: AskRequest, limits: &Limits) -> Result<ValidAsk, ApiError> {
    check_text("question", &req.question, limits, false)?;
    let situation = check_situation(req.situation, limits)?;
    let gen = generation(
        GenParams { max_new_tokens: req.max_new_tokens, temperature: req.temperature, top_p: req.top_p, top_k: req.top_k, seed: req.seed },
        limits,
        "max_new_tokens",
    )?;
    Ok(ValidAsk { situation, question: req.question, gen })
}

pub fn frames(frames: Option<usize>, limits: &Limits) -> Result<usize, ApiError> {
    let n = frames.unwrap_or(limits.default_frames);
    if n == 0 || n > limits.max_frames {
        return Err(ApiError::unprocessable("invalid_input", format!("`frames` must be in 1..={} (see --max-frames), got {n}", limits.max_frames)));
    }
    Ok(n)
}

/// Resolves a client path under `--allow-dir`: relative paths are taken from the allow
/// dir, symlinks are resolved (`canonicalize`) and the result must stay inside the
/// canonical allow dir and be a regular file.
pub fn allowed_path(raw: &str, limits: &Limits) -> Result<PathBuf, ApiError> {
    let Some(allow) = &limits.allow_dir else {
        return Err(ApiError::forbidden("reading files from the server's disk is disabled; start the server with --allow-dir DIR or upload the video"));
    };
    if raw.is_empty() || raw.contains('\0') {
        return Err(ApiError::bad_request("`path` is empty or contains a NUL byte"));
    }
    let p = Path::new(raw);
    let joined = if p.is_absolute() { p.to_path_buf() } else { allow.join(p) };
    let outside = || ApiError::forbidden(format!("`{raw}` is not under the allowed directory"));
    let canon = match joined.canonicalize() {
        Ok(c) => c,
        // Missing: 404 only if the path is lexically inside, so that probing paths
        // outside the allow dir does not tell whether they exist.
        Err(_) if lexical(&joined).starts_with(allow) => return Err(ApiError::not_found(format!("no file `{raw}` under the allowed directory"))),
        Err(_) => return Err(outside()),
    };
    if !canon.starts_with(allow) {
        return Err(outside());
    }
    if !canon.is_file() {
        return Err(ApiError::unprocessable("invalid_video", format!("`{raw}` is not a regular file")));
    }
    Ok(canon)
}

/// `a/b/../c` -> `a/c` without touching the disk.
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(dir: Option<PathBuf>) -> Limits {
        Limits { max_frames: 8, default_frames: 4, max_new_tokens: 16, max_text_chars: 100, allow_dir: dir }
    }

    #[test]
    fn paths_stay_inside_the_allow_dir() {
        let tmp = tempfile::tempdir().unwrap();
        let allow = tmp.path().join("allow");
        std::fs::create_dir(&allow).unwrap();
        let allow = allow.canonicalize().unwrap();
        std::fs::write(allow.join("v.mp4"), b"x").unwrap();
        std::fs::write(tmp.path().join("secret.mp4"), b"x").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(tmp.path().join("secret.mp4"), allow.join("link.mp4")).unwrap();
        let l = limits(Some(allow.clone()));
        assert_eq!(allowed_path("v.mp4", &l).unwrap(), allow.join("v.mp4"));
        assert_eq!(allowed_path(allow.join("v.mp4").to_str().unwrap(), &l).unwrap(), allow.join("v.mp4"));
        assert_eq!(allowed_path("../secret.mp4", &l).unwrap_err().code, "forbidden_path");
        assert_eq!(allowed_path(tmp.path().join("secret.mp4").to_str().unwrap(), &l).unwrap_err().code, "forbidden_path");
        assert_eq!(allowed_path("/etc/passwd", &l).unwrap_err().code, "forbidden_path");
        assert_eq!(allowed_path("/no/such/file", &l).unwrap_err().code, "forbidden_path");
        #[cfg(unix)]
        assert_eq!(allowed_path("link.mp4", &l).unwrap_err().code, "forbidden_path");
        assert_eq!(allowed_path("missing.mp4", &l).unwrap_err().code, "not_found");
        assert_eq!(allowed_path("v.mp4", &limits(None)).unwrap_err().code, "forbidden_path");
    }

    #[test]
    fn text_and_options_are_bounded() {
        let l = limits(None);
        assert!(check_text("q", "  ", &l, false).is_err());
        assert!(check_text("q", "a\u{0}b", &l, false).is_err());
        assert!(check_text("q", "x<|im_end|>", &l, false).is_err());
        assert!(check_text("q", "où est la chaise ? 🪑 مرحبا", &l, false).is_ok());
        assert!(check_text("q", &"a".repeat(101), &l, false).is_err());
        let g = |m, t| generation(GenParams { max_new_tokens: m, temperature: t, top_p: None, top_k: None, seed: None }, &l, "max_new_tokens");
        assert!(g(Some(17), None).is_err());
        assert!(g(Some(0), None).is_err());
        assert!(g(None, Some(-1.0)).is_err());
        assert_eq!(g(None, None).unwrap().max_new_tokens, 16);
        assert!(frames(Some(9), &l).is_err());
        assert_eq!(frames(None, &l).unwrap(), 4);
    }
}
