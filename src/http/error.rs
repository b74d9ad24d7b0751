//! One error type for the transport, mapped to a status and a JSON body in one place. Internal causes are
//! logged, never sent; authentication failures carry no detail at all.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("malformed request: {0}")]
    BadRequest(String),
    #[error("unauthorized ({0})")]
    Unauthorized(&'static str),
    #[error("forbidden ({0})")]
    Forbidden(&'static str),
    #[error("not found")]
    NotFound,
    #[error("request body too large")]
    PayloadTooLarge,
    #[error("unsupported media type")]
    UnsupportedMediaType,
    #[error("temporarily unavailable: {0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized(_) => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound => "not_found",
            ApiError::PayloadTooLarge => "payload_too_large",
            ApiError::UnsupportedMediaType => "unsupported_media_type",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal => "internal",
        }
    }

    /// What the client may read: the parse error for its own malformed input, nothing for auth failures
    /// (the reason goes to the log) and nothing internal.
    fn public_message(&self) -> Option<String> {
        match self {
            ApiError::BadRequest(m) => Some(m.clone()),
            ApiError::PayloadTooLarge => Some("the request body exceeds the size limit".into()),
            ApiError::UnsupportedMediaType => Some("expected application/json".into()),
            ApiError::Unavailable(_) => Some("try again later".into()),
            _ => None,
        }
    }

    pub fn into_response_plain(self) -> Response {
        let error = match self.public_message() {
            Some(m) => json!({ "code": self.code(), "message": m }),
            None => json!({ "code": self.code() }),
        };
        (self.status(), Json(json!({ "error": error }))).into_response()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match &self {
            ApiError::Unauthorized(reason) | ApiError::Forbidden(reason) => {
                tracing::warn!(status = self.status().as_u16(), reason, "request refused");
            }
            ApiError::Unavailable(cause) => tracing::error!(cause, "request failed"),
            ApiError::BadRequest(m) => tracing::info!(message = m, "malformed request"),
            _ => {}
        }
        self.into_response_plain()
    }
}
