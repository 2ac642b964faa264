//! The invite e-mail (text and HTML parts) and where it goes: an SMTP server (`--smtp`),
//! else the outbox, as `.eml` files.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::AsyncSmtpTransport;
use lettre::{Address, AsyncTransport, Message, Tokio1Executor};

/// Deadline for each step of an SMTP exchange (connect, each command): well inside the
/// request's own deadline, so a stalled mail server gets a typed error, not a 408.
const SMTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where invite mails go.
pub enum Mailer {
    Outbox(PathBuf),
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Why a mail was not handed over. The messages name no secret (no link, no URL password).
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    #[error("the mail server did not take the invite: {0}")]
    Smtp(String),
    #[error("cannot write the invite to the outbox: {0}")]
    Outbox(std::io::Error),
}

impl Mailer {
    /// `smtp://HOST:PORT` (plain; `?tls=required` for STARTTLS), `smtps://HOST:PORT` (TLS),
    /// with optional `user:password@`: lettre's URL forms. TLS is rustls with the web PKI roots.
    pub fn smtp(url: &str) -> Result<Self, String> {
        if !(url.starts_with("smtp://") || url.starts_with("smtps://")) {
            return Err("--smtp must be an smtp:// or smtps:// URL".into());
        }
        // lettre's error for a bad URL does not repeat it; the URL may carry a password.
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            .map_err(|e| format!("bad --smtp URL: {e}"))?
            .timeout(Some(SMTP_TIMEOUT))
            .build();
        Ok(Self::Smtp(transport))
    }

    /// Hands `message` over: to the SMTP server (accepted by it for delivery) or into the
    /// outbox as `<name>.eml`.
    pub async fn send(&self, name: &str, message: Message) -> Result<(), SendError> {
        match self {
            Self::Smtp(transport) => transport
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| SendError::Smtp(e.to_string())),
            Self::Outbox(dir) => {
                let (dir, name, mail) = (dir.clone(), name.to_string(), message.formatted());
                tokio::task::spawn_blocking(move || write_outbox(&dir, &name, &mail))
                    .await
                    .map_err(|e| SendError::Outbox(std::io::Error::other(e)))?
                    .map(|_| ())
                    .map_err(SendError::Outbox)
            }
        }
    }
}

use crate::pages::escape;

pub struct Invite<'a> {
    pub org_name: &'a str,
    pub to_email: &'a Address,
    pub to_name: &'a str,
    /// `<public-url>/activate/<token>`: a secret, written only into the mail.
    pub link: &'a str,
    pub expires_at: &'a str,
}

/// The message (RFC 5322), ready to send or to save as `.eml`.
pub fn build(from: &Mailbox, invite: &Invite<'_>) -> Result<Message, String> {
    let text = format!(
        "Hello {name},\n\n{org} invites you to set up your PocketKey security key.\n\n\
         Open this link on your phone to activate it:\n{link}\n\n\
         The link works once and expires on {expires}.\n\
         If you did not expect this e-mail, ignore it.\n",
        name = invite.to_name,
        org = invite.org_name,
        link = invite.link,
        expires = invite.expires_at,
    );
    let html = format!(
        "<!DOCTYPE html><html><body>\
         <p>Hello {name},</p>\
         <p>{org} invites you to set up your PocketKey security key.</p>\
         <p><a href=\"{link}\">Activate</a> (open this link on your phone)</p>\
         <p>The link works once and expires on {expires}.</p>\
         <p>If you did not expect this e-mail, ignore it.</p>\
         </body></html>",
        name = escape(invite.to_name),
        org = escape(invite.org_name),
        link = escape(invite.link),
        expires = escape(invite.expires_at),
    );
    let to = Mailbox::new(Some(invite.to_name.to_string()), invite.to_email.clone());
    let message = Message::builder()
        .from(from.clone())
        .to(to)
        .subject(format!("Activate your {} security key", invite.org_name))
        .multipart(MultiPart::alternative_plain_html(text, html))
        .map_err(|e| format!("cannot build the invite mail: {e}"))?;
    Ok(message)
}

/// Writes `<outbox>/<name>.eml` through a temporary file and a rename, so a reader of the
/// outbox never sees half a mail. The file is 0600: it holds an activation link.
pub fn write_outbox(outbox: &Path, name: &str, mail: &[u8]) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::create_dir_all(outbox)?;
    let tmp = outbox.join(format!(".{name}.tmp"));
    let path = outbox.join(format!("{name}.eml"));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(mail)?;
    f.sync_all()?;
    fs::rename(&tmp, &path)?;
    Ok(path)
}
