//! One error type for the whole HTTP layer; a library error's status comes from its fault
//! class, in [`status_of`] only. The body is always
//! `{"error": {"code": "...", "message": "..."}}`; `code` doubles as the metrics label.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::error::Fault;
use crate::stages::video::VideoError;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into() }
    }
    /// Malformed request: bad JSON, wrong types, missing fields.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    /// Well-formed but unusable input: out-of-range options, a video that does not decode.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden_path", message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// The server cannot take work now (shutting down); another instance or a retry may.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn overloaded() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "the model queue is full; retry with backoff")
    }
    pub fn timeout(secs: f64) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("the request took longer than {secs:.0} s (see --request-timeout-s)"))
    }
    /// 504 for a job of `kind` past its deadline of `timeout`, naming the flag that sets it.
    pub fn timeout_of(kind: super::schedule::JobKind, timeout: std::time::Duration) -> Self {
        match kind {
            super::schedule::JobKind::Request => Self::timeout(timeout.as_secs_f64()),
            super::schedule::JobKind::Observe => Self::new(
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                format!("observing the video took longer than {:.0} s (see --observe-timeout-s); it was stopped", timeout.as_secs_f64()),
            ),
        }
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

/// The HTTP status of a library error of class `fault`. The bundle is the operator's, not
/// the client's: on a server a bundle problem is a server failure.
pub fn status_of(fault: Fault) -> StatusCode {
    match fault {
        Fault::Input => StatusCode::UNPROCESSABLE_ENTITY,
        Fault::Bundle | Fault::Internal | Fault::Runtime => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        if let E::Cancelled(why) = &e {
            // The job saw its deadline (or its request was dropped) before the timer fired.
            return Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("the work was stopped: {why}"));
        }
        let fault = e.fault();
        let code = match (fault, &e) {
            (Fault::Input, E::Video(_) | E::Preprocess(_)) => "invalid_video",
            (Fault::Input, _) => "invalid_input",
            (Fault::Bundle, _) => "bundle_error",
            (Fault::Internal, _) => "internal",
            (Fault::Runtime, _) => "runtime_error",
        };
        let message = match &e {
            // The path would be the server's own upload file: say only what is wrong.
            E::Video(VideoError::TooManyPixels { width, height, max, .. }) => {
                format!("the video has frames of {width}x{height} pixels, more than this server's limit of {max} pixels per frame (--max-pixels); downscale it")
            }
            E::Video(_) => format!("the video could not be read: {}", e.with_sources()),
            _ => e.with_sources(),
        };
        Self::new(status_of(fault), code, message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.status, axum::Json(self.body())).into_response();
        r.extensions_mut().insert(ErrorCode(self.code));
        r
    }
}

/// Stored on error responses so the request log and metrics can show the code.
#[derive(Debug, Clone, Copy)]
pub struct ErrorCode(pub &'static str);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_fault_class_has_its_status() {
        let cases = [
            (crate::Error::Input("`frames` must be at least 1".into()), 422, "invalid_input"),
            (crate::Error::Video(VideoError::ZeroSamples), 422, "invalid_video"),
            (crate::Error::Bundle("decoder.onnx has no output `logits`".into()), 500, "bundle_error"),
            (crate::Error::Internal("the `heads` session was poisoned".into()), 500, "internal"),
            (crate::Error::OrtMissing("libonnxruntime.so not found".into()), 500, "runtime_error"),
        ];
        for (e, status, code) in cases {
            let api = ApiError::from(e);
            assert_eq!((api.status.as_u16(), api.code), (status, code), "{}", api.message);
        }
    }

    #[test]
    fn an_ort_failure_is_a_500_whose_message_carries_the_ort_error() {
        crate::ort_env::init().expect("ONNX Runtime is installed for the tests");
        let api = ApiError::from(crate::Error::ort("running decoder", ort::Error::new("out of memory")));
        assert_eq!((api.status, api.code), (StatusCode::INTERNAL_SERVER_ERROR, "runtime_error"));
        assert_eq!(api.message, "ONNX Runtime failed running decoder: out of memory");
    }
}
