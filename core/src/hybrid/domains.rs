//! Tunnel server domains and their 16-bit ids (the last two bytes of the EID).
//!
//! - ids 0..=255 are *assigned*: 0 `cable.ua5v.com`, 1 `cable.auth.com`; the rest are not
//!   assigned (yet) and are invalid.
//! - ids 256..=65535 are *hashed*: SHA-256 of `"caBLEv2 tunnel server domain"` ‖ id (u16 LE) ‖
//!   0x00; the first 8 bytes as a little-endian u64: its low 2 bits pick the TLD (`.com`, `.org`,
//!   `.net`, `.info`), the rest, 5 bits at a time from the low end, base32 letters
//!   (`a-z2-7`) after `cable.`. Anyone can compute them, so any browser knows every hashed id.
//!
//! A browser only knows the assigned domains that existed when it was built; the QR code says how
//! many (key 2). A phone must not send a browser to an assigned domain it does not know:
//! [`check_browser_knows`].

use sha2::{Digest, Sha256};
use thiserror::Error;

/// The assigned tunnel server domains, by id.
pub const ASSIGNED_DOMAINS: [&str; 2] = ["cable.ua5v.com", "cable.auth.com"];
/// The first hashed domain id; ids below it are assigned (or unassigned, hence invalid).
pub const FIRST_HASHED_ID: u16 = 256;
/// How many assigned domains a browser whose QR code omits key 2 is taken to know: such codes
/// predate the field and with it every domain but the first.
pub const KNOWN_DOMAINS_WHEN_ABSENT: u64 = 1;

const HASH_PREFIX: &[u8] = b"caBLEv2 tunnel server domain";
const BASE32: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const TLDS: [&str; 4] = [".com", ".org", ".net", ".info"];

/// Why a domain id cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DomainError {
    #[error("tunnel domain id {0} is in the assigned range (< 256) but not assigned")]
    Unassigned(u16),
    #[error("tunnel domain id {id} is assigned, but the browser knows only the first {known} assigned domains")]
    UnknownToBrowser { id: u16, known: u64 },
}

/// The domain name of a tunnel server id.
pub fn decode(id: u16) -> Result<String, DomainError> {
    if id < FIRST_HASHED_ID {
        return ASSIGNED_DOMAINS
            .get(usize::from(id))
            .map(|d| (*d).to_string())
            .ok_or(DomainError::Unassigned(id));
    }
    let mut input = Vec::with_capacity(HASH_PREFIX.len() + 3);
    input.extend_from_slice(HASH_PREFIX);
    input.extend_from_slice(&id.to_le_bytes());
    input.push(0);
    let digest = Sha256::digest(&input);
    let mut value = u64::from_le_bytes(digest[..8].try_into().expect("8 of 32 bytes"));
    let tld = TLDS[(value & 3) as usize];
    value >>= 2;
    let mut name = String::from("cable.");
    while value != 0 {
        name.push(char::from(BASE32[(value & 31) as usize]));
        value >>= 5;
    }
    name.push_str(tld);
    Ok(name)
}

/// Whether the browser that showed a QR code with `known_domains` (key 2, if present) can reach
/// the tunnel server `id`. Hashed ids always; assigned ids only below the number it knows.
pub fn check_browser_knows(id: u16, known_domains: Option<u64>) -> Result<(), DomainError> {
    decode(id)?;
    let known = known_domains.unwrap_or(KNOWN_DOMAINS_WHEN_ABSENT);
    if id < FIRST_HASHED_ID && u64::from(id) >= known {
        return Err(DomainError::UnknownToBrowser { id, known });
    }
    Ok(())
}

/// The phone's tunnel URL: `wss://<domain>/cable/new/<TUNNEL ID in upper-case hex>`.
pub fn new_tunnel_url(domain: &str, tunnel_id: &[u8; 16]) -> String {
    format!("wss://{domain}/cable/new/{}", upper_hex(tunnel_id))
}

/// The browser's tunnel URL: `wss://<domain>/cable/connect/<ROUTING ID>/<TUNNEL ID>` (hex).
pub fn connect_tunnel_url(domain: &str, routing_id: &[u8; 3], tunnel_id: &[u8; 16]) -> String {
    format!(
        "wss://{domain}/cable/connect/{}/{}",
        upper_hex(routing_id),
        upper_hex(tunnel_id)
    )
}

fn upper_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assigned_and_unassigned() {
        assert_eq!(decode(0).unwrap(), "cable.ua5v.com");
        assert_eq!(decode(1).unwrap(), "cable.auth.com");
        for id in 2..FIRST_HASHED_ID {
            assert_eq!(decode(id), Err(DomainError::Unassigned(id)));
        }
    }

    #[test]
    fn hashed_names_have_the_expected_shape() {
        for id in [256u16, 1000, 65535] {
            let name = decode(id).unwrap();
            assert!(name.starts_with("cable."), "{name}");
            assert!(TLDS.iter().any(|t| name.ends_with(t)), "{name}");
        }
        assert_ne!(decode(256).unwrap(), decode(257).unwrap());
    }

    #[test]
    fn browser_knowledge() {
        assert_eq!(check_browser_knows(0, Some(2)), Ok(()));
        assert_eq!(check_browser_knows(1, Some(2)), Ok(()));
        assert_eq!(
            check_browser_knows(1, Some(1)),
            Err(DomainError::UnknownToBrowser { id: 1, known: 1 })
        );
        assert_eq!(
            check_browser_knows(0, Some(0)),
            Err(DomainError::UnknownToBrowser { id: 0, known: 0 })
        );
        assert_eq!(check_browser_knows(0, None), Ok(()));
        assert_eq!(
            check_browser_knows(1, None),
            Err(DomainError::UnknownToBrowser { id: 1, known: 1 })
        );
        assert_eq!(check_browser_knows(256, Some(0)), Ok(()));
        assert_eq!(
            check_browser_knows(2, Some(10)),
            Err(DomainError::Unassigned(2))
        );
    }

    #[test]
    fn urls() {
        let id = [0xab; 16];
        assert_eq!(
            new_tunnel_url("cable.ua5v.com", &id),
            format!("wss://cable.ua5v.com/cable/new/{}", "AB".repeat(16))
        );
        assert_eq!(
            connect_tunnel_url("x.example", &[1, 2, 0xfe], &[0; 16]),
            format!("wss://x.example/cable/connect/0102FE/{}", "00".repeat(16))
        );
    }
}
