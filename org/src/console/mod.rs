//! The admin console (docs/console.md): server-rendered pages under `/console` for the
//! organisation's administrators, who sign in with a passkey. The console is a WebAuthn
//! relying party of its own (webauthn-rs); its id is the public URL's host.

mod admins;
mod audit_log;
mod ceremony;
mod error;
mod forms;
mod import;
mod key_actions;
mod keys_list;
mod on_behalf;
mod pages;
mod policy_editor;
pub mod scim;
mod scim_discovery;
mod scim_groups;
mod session;
mod sql_filter;
mod views;

use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use url::Url;
use webauthn_rs::{Webauthn, WebauthnBuilder};

use crate::api::AppState;

pub use admins::create_admin_link;
pub use session::{CookiePolicy, Role};

/// Request paths that carry an admin enrolment token (kept out of the request log).
pub const ENROL_PREFIX: &str = "/console/enrol/";

pub struct Console {
    pub app: Arc<AppState>,
    pub webauthn: Webauthn,
    pub cookies: CookiePolicy,
    /// The public URL's origin (`scheme://host[:port]`), what a same-origin form's `Origin`
    /// header carries.
    pub origin: String,
    /// How far this process has verified the audit chain (the audit page continues from it).
    pub audit_chain: std::sync::Mutex<audit_log::ChainCheck>,
}

type Shared = Arc<Console>;

impl Console {
    /// The console for the server at `app.public_url`.
    pub fn new(app: Arc<AppState>) -> Result<Self, String> {
        let url = Url::parse(&app.public_url).map_err(|e| format!("bad --public-url: {e}"))?;
        let rp_id = url
            .host_str()
            .ok_or("--public-url has no host")?
            .to_string();
        let webauthn = WebauthnBuilder::new(&rp_id, &url)
            .and_then(|b| b.rp_name(&app.org.name).build())
            .map_err(|e| format!("cannot set up the console's WebAuthn relying party: {e}"))?;
        Ok(Self {
            cookies: CookiePolicy::for_public_url(&url),
            origin: url.origin().ascii_serialization(),
            audit_chain: Default::default(),
            webauthn,
            app,
        })
    }

    /// The console's routes, to be nested under `/console`.
    pub fn router(self) -> Router {
        Router::new()
            .route("/", get(pages::home))
            .route("/login", get(ceremony::sign_in_page))
            .route("/login/start", post(ceremony::sign_in_start))
            .route("/login/finish", post(ceremony::sign_in_finish))
            .route("/enrol/{token}", get(ceremony::enrol_page))
            .route("/enrol/{token}/start", post(ceremony::enrol_start))
            .route("/enrol/{token}/finish", post(ceremony::enrol_finish))
            .route("/logout", post(session::sign_out))
            .route("/keys", get(pages::keys))
            .route("/keys/invite", post(pages::invite))
            .route("/keys/{id}", get(on_behalf::user_page))
            .route("/keys/{id}/registrations", post(on_behalf::start))
            .route("/registrations/{id}", get(on_behalf::page))
            .route("/registrations/{id}/status", get(on_behalf::status))
            .route("/keys/{id}/suspend", post(key_actions::suspend))
            .route("/keys/{id}/resume", post(key_actions::resume))
            .route(
                "/keys/{id}/revoke",
                get(key_actions::confirm_revoke).post(key_actions::revoke),
            )
            .route("/invites/{id}/resend", post(pages::resend))
            .route("/import", get(import::page))
            .route("/import/preview", post(import::preview))
            .route("/import/commit", post(import::commit))
            .route("/audit", get(pages::audit))
            .route("/audit/export", get(pages::audit_export))
            .route("/api-keys", get(pages::api_keys))
            .route("/api-keys/create", post(pages::create_api_key))
            .route("/api-keys/{id}/revoke", post(pages::revoke_api_key))
            .route(
                "/policy",
                get(policy_editor::page).post(policy_editor::save),
            )
            .route("/attestation-root.pem", get(pages::attestation_root))
            .route("/admins", get(admins::page))
            .route("/admins/invite", post(admins::invite))
            .route("/admins/{id}/role", post(admins::change_role))
            .route("/admins/{id}/remove", post(admins::remove))
            .route("/static/console.css", get(stylesheet))
            .route("/static/console.js", get(script))
            .fallback(|| async {
                error::ConsoleError::Status(StatusCode::NOT_FOUND, "There is no such page.".into())
            })
            .layer(middleware::from_fn(security_headers))
            .with_state(Arc::new(self))
    }
}

/// The console's routes when it cannot run at this public URL: every page answers `503`
/// with the reason.
pub fn unavailable(reason: String) -> Router {
    let message = format!(
        "The admin console is off on this server: {reason}. Passkeys need the server's \
         --public-url to name a domain (e.g. http://localhost:8080 or https://keys.example.com), \
         not an IP address."
    );
    Router::new().fallback(move || {
        let message = message.clone();
        async move { error::ConsoleError::Status(StatusCode::SERVICE_UNAVAILABLE, message) }
    })
}

async fn stylesheet() -> Response {
    (
        [(header::CONTENT_TYPE, "text/css; charset=utf-8")],
        include_str!("../../templates/console/console.css"),
    )
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../templates/console/console.js"),
    )
        .into_response()
}

/// Every console response: no inline script or style, no framing, no caching (pages show
/// one-time secrets), no referrer to other sites (enrolment links carry a token). Not
/// `no-referrer`: with it, a browser sends `Origin: null` on the console's own form posts.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
             connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}
