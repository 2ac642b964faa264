//! The console's errors: an HTML page with a status for a person, or a redirect to sign-in.
//! Causes of internal errors go to the log only.

use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};

use crate::error::ApiError;

#[derive(Debug)]
pub enum ConsoleError {
    /// No live session on a page: go and sign in.
    SignIn,
    /// No live session on an action: refused (a redirect would hide that nothing happened).
    SessionEnded,
    /// The form's CSRF token is missing or not this session's, or it came from another origin.
    Csrf,
    /// The admin's role does not allow this.
    Forbidden,
    /// A one-time link that is unknown, used, expired (one answer for all).
    LinkNotValid,
    /// Bad input, with a message safe to show.
    Status(StatusCode, String),
}

impl ConsoleError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::Status(StatusCode::BAD_REQUEST, message.into())
    }
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        let e = ApiError::internal(cause);
        Self::Status(e.status, e.message)
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        Self::Status(e.status, e.message)
    }
}

impl From<sqlx::Error> for ConsoleError {
    fn from(e: sqlx::Error) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Self::SignIn => return Redirect::to("/console/login").into_response(),
            Self::SessionEnded => (
                StatusCode::UNAUTHORIZED,
                "Signed out",
                "Your session has ended. Sign in again; nothing was changed.".to_string(),
            ),
            Self::Csrf => (
                StatusCode::FORBIDDEN,
                "Form expired",
                "This form did not come from your current console session. Reload the page \
                 and try again; nothing was changed."
                    .to_string(),
            ),
            Self::Forbidden => (
                StatusCode::FORBIDDEN,
                "Not allowed",
                "Your role does not allow this; nothing was changed.".to_string(),
            ),
            Self::LinkNotValid => (
                StatusCode::NOT_FOUND,
                "Link not valid",
                "This link is not valid. Ask an owner of the console for a new one.".to_string(),
            ),
            Self::Status(status, message) => (status, "Error", message),
        };
        (status, Html(super::views::error_page(title, &message))).into_response()
    }
}
