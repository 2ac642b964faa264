//! The console's HTML, rendered by askama from `org/templates/console/` (escaped by default).

use askama::Template;

use super::admins::AdminRow;
use super::error::ConsoleError;
use super::import::ImportRow;
use super::key_actions::KeySummary;
use super::on_behalf::{UserPage, DEFAULT_ORIGIN};
use super::pages::{ApiKeyRow, AuditFilter, KeyFilter, KeyRow};
use super::policy_editor::PolicyForm;
use super::session::{Role, Session};
use super::Console;
use crate::audit;
use crate::org::Policy;
use crate::policy::Invalid;
use crate::registrations::Registration;

/// What every page's frame shows: the organisation, the admin, the navigation.
pub struct Chrome<'a> {
    pub org_name: &'a str,
    pub signed_in: bool,
    pub email: &'a str,
    pub role_label: &'static str,
    pub owner: bool,
    pub manages_keys: bool,
    pub csrf: &'a str,
    /// The navigation entry of this page.
    pub current: &'static str,
}

impl<'a> Chrome<'a> {
    fn signed_in(console: &'a Console, session: &'a Session, current: &'static str) -> Self {
        Self {
            org_name: &console.app.org.name,
            signed_in: true,
            email: &session.email,
            role_label: session.role.label(),
            owner: session.role.is_owner(),
            manages_keys: session.role.manages_keys(),
            csrf: &session.csrf,
            current,
        }
    }
    fn signed_out(org_name: &'a str) -> Self {
        Self {
            org_name,
            signed_in: false,
            email: "",
            role_label: "",
            owner: false,
            manages_keys: false,
            csrf: "",
            current: "",
        }
    }
}

fn render(t: &impl Template) -> Result<String, ConsoleError> {
    t.render().map_err(ConsoleError::internal)
}

#[derive(Template)]
#[template(path = "console/error.html")]
struct ErrorPage<'a> {
    chrome: Chrome<'a>,
    title: &'a str,
    message: &'a str,
}

/// An error page; it needs no session or database, so it cannot fail itself.
pub fn error_page(title: &str, message: &str) -> String {
    ErrorPage {
        chrome: Chrome::signed_out("PocketKey"),
        title,
        message,
    }
    .render()
    .unwrap_or_else(|_| "error".into())
}

#[derive(Template)]
#[template(path = "console/sign_in.html")]
struct SignIn<'a> {
    chrome: Chrome<'a>,
}

pub fn sign_in(console: &Console) -> Result<String, ConsoleError> {
    render(&SignIn {
        chrome: Chrome::signed_out(&console.app.org.name),
    })
}

#[derive(Template)]
#[template(path = "console/enrol.html")]
struct Enrol<'a> {
    chrome: Chrome<'a>,
    email: Option<&'a str>,
    role: &'a str,
}

pub fn enrol(console: &Console, email: Option<&str>, role: &str) -> Result<String, ConsoleError> {
    render(&Enrol {
        chrome: Chrome::signed_out(&console.app.org.name),
        email,
        role,
    })
}

#[derive(Template)]
#[template(path = "console/keys.html")]
struct Keys<'a> {
    chrome: Chrome<'a>,
    filter: &'a KeyFilter,
    rows: &'a [KeyRow],
    notice: Option<&'a str>,
    statuses: [&'static str; 4],
    /// The next page's link, if there is one.
    next: Option<String>,
}

pub fn keys(
    console: &Console,
    session: &Session,
    filter: &KeyFilter,
    rows: &[KeyRow],
    notice: Option<&str>,
    next: Option<String>,
    limit: i64,
) -> Result<String, ConsoleError> {
    let next = next.map(|after| {
        let q = encode(&[
            ("q", &filter.q),
            ("status", &filter.status),
            ("stale_days", &filter.stale_days),
            ("after", &after),
            ("limit", &limit.to_string()),
        ]);
        format!("/console/keys?{q}")
    });
    render(&Keys {
        chrome: Chrome::signed_in(console, session, "keys"),
        filter,
        rows,
        notice,
        statuses: ["invited", "active", "suspended", "revoked"],
        next,
    })
}

#[derive(Template)]
#[template(path = "console/audit.html")]
struct Audit<'a> {
    chrome: Chrome<'a>,
    filter: &'a AuditFilter,
    entries: &'a [audit::Entry],
    /// "intact: N entries" or where it breaks.
    chain_ok: bool,
    chain_text: String,
    export_query: String,
    /// The next (older) page's link, if there is one.
    older: Option<String>,
}

/// A query string of the pairs whose values are not blank.
fn encode(pairs: &[(&str, &str)]) -> String {
    let mut url = url::Url::parse("http://x/").expect("a fixed URL parses");
    {
        let mut q = url.query_pairs_mut();
        for (k, v) in pairs {
            if !v.is_empty() {
                q.append_pair(k, v);
            }
        }
    }
    url.query().unwrap_or("").to_string()
}

fn query_string(filter: &AuditFilter) -> String {
    encode(&[
        ("user", &filter.user),
        ("rp", &filter.rp),
        ("action", &filter.action),
        ("from", &filter.from),
        ("to", &filter.to),
    ])
}

pub fn audit(
    console: &Console,
    session: &Session,
    filter: &AuditFilter,
    entries: &[audit::Entry],
    chain: &Result<i64, audit::Broken>,
    next: Option<i64>,
    limit: i64,
) -> Result<String, ConsoleError> {
    let (chain_ok, chain_text) = match chain {
        Ok(n) => (true, format!("Chain intact: {n} entries verified.")),
        Err(b) => (
            false,
            format!("Chain broken at entry {}: {}.", b.seq, b.reason),
        ),
    };
    let export_query = query_string(filter);
    let older = next.map(|before| {
        let sep = if export_query.is_empty() { "" } else { "&" };
        format!("/console/audit?{export_query}{sep}before={before}&limit={limit}")
    });
    render(&Audit {
        chrome: Chrome::signed_in(console, session, "audit"),
        filter,
        entries,
        chain_ok,
        chain_text,
        export_query,
        older,
    })
}

#[derive(Template)]
#[template(path = "console/api_keys.html")]
struct ApiKeys<'a> {
    chrome: Chrome<'a>,
    rows: &'a [ApiKeyRow],
    new_secret: Option<&'a str>,
    notice: Option<&'a str>,
}

pub fn api_keys(
    console: &Console,
    session: &Session,
    rows: &[ApiKeyRow],
    new_secret: Option<&str>,
    notice: Option<&str>,
) -> Result<String, ConsoleError> {
    render(&ApiKeys {
        chrome: Chrome::signed_in(console, session, "api-keys"),
        rows,
        new_secret,
        notice,
    })
}

#[derive(Template)]
#[template(path = "console/policy.html")]
struct PolicyPage<'a> {
    chrome: Chrome<'a>,
    policy: &'a Policy,
    /// The stale-key policy's period in days; `None` when off.
    stale_days: Option<u16>,
    /// The editor's values: the stored policy, or what was posted when refused.
    form: &'a PolicyForm,
    error: Option<&'a Invalid>,
    notice: Option<&'a str>,
}

impl PolicyPage<'_> {
    /// The refusal to show next to `field`, if it is the field at fault.
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error
            .filter(|e| e.field == field)
            .map(|e| e.message.as_str())
    }
}

pub fn policy(
    console: &Console,
    session: &Session,
    policy: &Policy,
    stale_days: Option<u16>,
    form: &PolicyForm,
    error: Option<&Invalid>,
    notice: Option<&str>,
) -> Result<String, ConsoleError> {
    render(&PolicyPage {
        chrome: Chrome::signed_in(console, session, "policy"),
        policy,
        stale_days,
        form,
        error,
        notice,
    })
}

#[derive(Template)]
#[template(path = "console/admins.html")]
struct Admins<'a> {
    chrome: Chrome<'a>,
    admins: &'a [AdminRow],
    new_link: Option<&'a str>,
    notice: Option<&'a str>,
    roles: [(&'static str, &'static str); 3],
}

pub fn admins(
    console: &Console,
    session: &Session,
    admins: &[AdminRow],
    new_link: Option<&str>,
    notice: Option<&str>,
) -> Result<String, ConsoleError> {
    render(&Admins {
        chrome: Chrome::signed_in(console, session, "admins"),
        admins,
        new_link,
        notice,
        roles: [Role::Owner, Role::KeyAdmin, Role::Auditor].map(|r| (r.as_str(), r.label())),
    })
}

#[derive(Template)]
#[template(path = "console/import.html")]
struct Import<'a> {
    chrome: Chrome<'a>,
    csv: &'a str,
    rows: Option<&'a [ImportRow]>,
    good: usize,
    /// After the commit: how many were invited.
    invited: Option<usize>,
}

pub fn import(
    console: &Console,
    session: &Session,
    csv: &str,
    rows: Option<&[ImportRow]>,
    invited: Option<usize>,
) -> Result<String, ConsoleError> {
    render(&Import {
        chrome: Chrome::signed_in(console, session, "keys"),
        csv,
        good: rows.map_or(0, |r| r.iter().filter(|r| r.ok()).count()),
        rows,
        invited,
    })
}

#[derive(Template)]
#[template(path = "console/revoke.html")]
struct ConfirmRevoke<'a> {
    chrome: Chrome<'a>,
    key: &'a KeySummary,
}

pub fn confirm_revoke(
    console: &Console,
    session: &Session,
    key: &KeySummary,
) -> Result<String, ConsoleError> {
    render(&ConfirmRevoke {
        chrome: Chrome::signed_in(console, session, "keys"),
        key,
    })
}

#[derive(Template)]
#[template(path = "console/user.html")]
struct User<'a> {
    chrome: Chrome<'a>,
    page: &'a UserPage,
    default_origin: &'static str,
    /// The server posts completed registrations to Graph (`serve --graph-url`).
    posts_to_graph: bool,
}

pub fn user(console: &Console, session: &Session, page: &UserPage) -> Result<String, ConsoleError> {
    render(&User {
        chrome: Chrome::signed_in(console, session, "keys"),
        page,
        default_origin: DEFAULT_ORIGIN,
        posts_to_graph: console.app.graph.is_some(),
    })
}

#[derive(Template)]
#[template(path = "console/registration.html")]
struct RegistrationPage<'a> {
    chrome: Chrome<'a>,
    r: &'a Registration,
    graph_body: Option<&'a str>,
}

pub fn registration(
    console: &Console,
    session: &Session,
    r: &Registration,
    graph_body: Option<&str>,
) -> Result<String, ConsoleError> {
    render(&RegistrationPage {
        chrome: Chrome::signed_in(console, session, "keys"),
        r,
        graph_body,
    })
}
