//! Every refusal and failure the API answers with: `{"kind": ..., "message": ...}`
//! with a fixed set of kinds, so clients can act on the kind and show the message.
//! A caller without a valid certificate gets no answer at all: the TLS
//! handshake refuses it.

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// The request is malformed (bad JSON, a missing field, a bad name).
    BadRequest,
    /// The caller's role may not do this.
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// Another mutating action is running.
    Conflict,
    /// The body is larger than the API takes.
    TooLarge,
    /// The machine refused the change (a bad config, an update that does not verify).
    Refused,
    /// A part of the machine (cairn-init, the updater) did not answer.
    Unavailable,
    Internal,
}

impl Kind {
    /// Every kind (the OpenAPI document must name each).
    #[cfg(test)]
    pub const ALL: [Kind; 9] = [
        Kind::BadRequest,
        Kind::Forbidden,
        Kind::NotFound,
        Kind::MethodNotAllowed,
        Kind::Conflict,
        Kind::TooLarge,
        Kind::Refused,
        Kind::Unavailable,
        Kind::Internal,
    ];

    pub fn status(self) -> u16 {
        match self {
            Kind::BadRequest => 400,
            Kind::Forbidden => 403,
            Kind::NotFound => 404,
            Kind::MethodNotAllowed => 405,
            Kind::Conflict => 409,
            Kind::TooLarge => 413,
            Kind::Refused => 422,
            Kind::Unavailable => 503,
            Kind::Internal => 500,
        }
    }
}

#[derive(Debug, Clone, Serialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct ApiError {
    pub kind: Kind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: Kind, message: impl Into<String>) -> ApiError {
        ApiError { kind, message: message.into() }
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
