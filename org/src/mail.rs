//! The invite e-mail (text and HTML parts) and the outbox it is written to as `.eml` files
//! when no SMTP server is configured.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use lettre::message::{Mailbox, MultiPart};
use lettre::{Address, Message};

use crate::pages::escape;

pub struct Invite<'a> {
    pub org_name: &'a str,
    pub to_email: &'a Address,
    pub to_name: &'a str,
    /// `<public-url>/activate/<token>`: a secret, written only into the mail.
    pub link: &'a str,
    pub expires_at: &'a str,
}

/// The formatted message (RFC 5322), ready to send or to save as `.eml`.
pub fn build(from: &Mailbox, invite: &Invite<'_>) -> Result<Vec<u8>, String> {
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
    Ok(message.formatted())
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
