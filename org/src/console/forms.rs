//! The one way a console form reaches a handler: [`Post`] checks, in this order, the session,
//! the `Origin` header (when the browser sends one, it must be the console's), and the CSRF
//! token; only then is the form itself read. A handler that takes `Post<T>` cannot forget
//! any of them.

use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::{header, StatusCode};
use axum::Form;
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::ConsoleError;
use super::session::Session;
use super::Shared;

/// The form field that carries the CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// A checked form post: the admin who sent it and its fields (the CSRF token removed).
pub struct Post<T> {
    pub session: Session,
    pub form: T,
}

/// A form with no fields but the CSRF token.
#[derive(Deserialize)]
pub struct Csrf {}

impl<T: DeserializeOwned + Send> FromRequest<Shared> for Post<T> {
    type Rejection = ConsoleError;

    async fn from_request(req: Request, state: &Shared) -> Result<Self, ConsoleError> {
        let (mut parts, body) = req.into_parts();
        let session = Session::from_request_parts(&mut parts, state).await?;
        if let Some(origin) = parts.headers.get(header::ORIGIN) {
            if origin.as_bytes() != state.origin.as_bytes() {
                return Err(ConsoleError::Csrf);
            }
        }
        let Form(pairs) =
            Form::<Vec<(String, String)>>::from_request(Request::from_parts(parts, body), state)
                .await
                .map_err(|e| match e.status() {
                    StatusCode::PAYLOAD_TOO_LARGE => {
                        ConsoleError::Status(e.status(), e.body_text())
                    }
                    // No form at all (or not a form) carries no CSRF token either.
                    _ => ConsoleError::Csrf,
                })?;
        let mut fields = serde_json::Map::new();
        let mut csrf = None;
        for (k, v) in pairs {
            if k == CSRF_FIELD {
                csrf = Some(v);
            } else {
                fields.insert(k, serde_json::Value::String(v));
            }
        }
        session.check_csrf(csrf.as_deref().unwrap_or(""))?;
        let form = serde_json::from_value(serde_json::Value::Object(fields))
            .map_err(|e| ConsoleError::bad_request(format!("the form is incomplete: {e}")))?;
        Ok(Post { session, form })
    }
}
