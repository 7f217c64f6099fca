//! One error type for the whole HTTP layer, mapped to a status code once (as TGI's
//! `From<InferError> for (StatusCode, Json<ErrorResponse>)`). The body is always
//! `{"error": {"code": "...", "message": "..."}}`; `code` doubles as the metrics label.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

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
    pub fn overloaded() -> Self {
        Self::new(StatusCode::TOO_MANY_REQUESTS, "overloaded", "the model queue is full; retry with backoff")
    }
    pub fn timeout(secs: f64) -> Self {
        Self::new(StatusCode::GATEWAY_TIMEOUT, "timeout", format!("the request took longer than {secs:.0} s (see --request-timeout-s)"))
    }

    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }
}

impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> Self {
        use crate::Error as E;
        match &e {
            E::Video(_) => Self::unprocessable("invalid_video", format!("the video could not be read: {e}")),
            E::Preprocess(_) => Self::unprocessable("invalid_video", e.to_string()),
            E::Input(_) => Self::unprocessable("invalid_input", e.to_string()),
            // Input errors for the command line, but on a server the operator's fault.
            E::Bundle(_) | E::DeviceUnavailable { .. } | E::OrtMissing(_) => Self::internal(e.to_string()),
            _ if e.is_input_error() => Self::unprocessable("invalid_input", e.to_string()),
            _ => Self::internal(e.to_string()),
        }
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
