//! The policy page and its editor (owners only): the fields `pocketkey-org policy set` sets,
//! checked and stored by the same function (`policy::check`, `policy::set_as`), with the admin
//! as the `policy.change` actor. A refused value is shown next to its field.

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::error::ConsoleError;
use super::forms::Post;
use super::pages::NoticeQuery;
use super::session::Session;
use super::{views, Shared};
use crate::org::Policy;
use crate::policy::{self, Change, Invalid};

/// The editor's fields as text, as shown and as posted.
#[derive(Deserialize, Default)]
pub struct PolicyForm {
    /// A checkbox: present (`on`) when checked.
    #[serde(default)]
    pub user_verification_required: Option<String>,
    #[serde(default)]
    pub min_pin_length: String,
    /// RP ids separated by commas or spaces.
    #[serde(default)]
    pub enterprise_rp_ids: String,
    /// RP ids separated by commas or spaces; blank for any.
    #[serde(default)]
    pub allowed_rp_ids: String,
}

impl PolicyForm {
    pub fn from_policy(p: &Policy) -> Self {
        Self {
            user_verification_required: p.user_verification_required.then(|| "on".into()),
            min_pin_length: p.min_pin_length.to_string(),
            enterprise_rp_ids: p.enterprise_rp_ids.join(", "),
            allowed_rp_ids: p.allowed_rp_ids.join(", "),
        }
    }

    pub fn uv(&self) -> bool {
        self.user_verification_required.is_some()
    }

    fn ids(text: &str) -> Vec<String> {
        text.split(|c: char| c == ',' || c.is_whitespace())
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    /// The whole policy as a change: every field replaced by what the form says.
    fn change(&self) -> Result<Change, Invalid> {
        let min_pin_length = self.min_pin_length.trim().parse().map_err(|_| Invalid {
            field: "min_pin_length",
            message: "the minimum PIN length is a whole number, 4 to 63".into(),
        })?;
        let change = Change {
            enterprise_rp_ids: Some(Self::ids(&self.enterprise_rp_ids)),
            allowed_rp_ids: Some(Self::ids(&self.allowed_rp_ids)),
            user_verification_required: Some(self.uv()),
            min_pin_length: Some(min_pin_length),
        };
        policy::check(&change)?;
        Ok(change)
    }
}

fn notice(code: Option<&str>) -> Option<&'static str> {
    (code? == "saved").then_some("Policy saved; keys receive it at their next sync.")
}

async fn render(
    state: &Shared,
    session: &Session,
    form: &PolicyForm,
    error: Option<&Invalid>,
    notice: Option<&str>,
) -> Result<String, ConsoleError> {
    let policy = policy::load(&state.app.pool)
        .await
        .map_err(ConsoleError::internal)?;
    let stale_days = crate::stale::load(&state.app.pool)
        .await
        .map_err(ConsoleError::internal)?;
    views::policy(state, session, &policy, stale_days, form, error, notice)
}

/// `GET /console/policy`: the policy for everyone; the editor for owners.
pub async fn page(
    State(state): State<Shared>,
    session: Session,
    Query(q): Query<NoticeQuery>,
) -> Result<Response, ConsoleError> {
    let current = policy::load(&state.app.pool)
        .await
        .map_err(ConsoleError::internal)?;
    let form = PolicyForm::from_policy(&current);
    let notice = notice(q.notice.as_deref());
    Ok(Html(render(&state, &session, &form, None, notice).await?).into_response())
}

/// `POST /console/policy`: saves the whole policy (owners only), or shows the page again
/// with the refused field marked and nothing stored.
pub async fn save(
    State(state): State<Shared>,
    Post { session, form }: Post<PolicyForm>,
) -> Result<Response, ConsoleError> {
    session.require(session.role.is_owner())?;
    match form.change() {
        Ok(change) => {
            policy::set_as(&state.app.pool, change, &session.actor())
                .await
                .map_err(|e| match e {
                    crate::org::OrgError::Other(m) => ConsoleError::bad_request(m),
                    other => ConsoleError::internal(other),
                })?;
            Ok(Redirect::to("/console/policy?notice=saved").into_response())
        }
        Err(invalid) => {
            let html = render(&state, &session, &form, Some(&invalid), None).await?;
            Ok((StatusCode::BAD_REQUEST, Html(html)).into_response())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rp_ids_split_on_commas_and_spaces_and_a_bad_one_names_its_field() {
        let form = PolicyForm {
            user_verification_required: None,
            min_pin_length: " 8 ".into(),
            enterprise_rp_ids: "corp.example, login.example.org\nother.example".into(),
            allowed_rp_ids: "".into(),
        };
        let change = form.change().unwrap();
        assert_eq!(
            change.enterprise_rp_ids.unwrap(),
            ["corp.example", "login.example.org", "other.example"]
        );
        assert_eq!(change.allowed_rp_ids.unwrap(), Vec::<String>::new());
        assert_eq!(change.user_verification_required, Some(false));
        assert_eq!(change.min_pin_length, Some(8));
        let bad = PolicyForm {
            allowed_rp_ids: "Corp.Example".into(),
            ..form
        };
        assert_eq!(bad.change().unwrap_err().field, "allowed_rp_ids");
        let bad = PolicyForm {
            min_pin_length: "3".into(),
            allowed_rp_ids: String::new(),
            ..bad
        };
        assert_eq!(bad.change().unwrap_err().field, "min_pin_length");
        let bad = PolicyForm {
            min_pin_length: "six".into(),
            ..bad
        };
        assert_eq!(bad.change().unwrap_err().field, "min_pin_length");
    }
}
