//! The browser's side of hybrid (caBLE v2, CTAP 2.2 §11.5): the QR code, the advert read with
//! the EID key, the tunnel joined at `/cable/connect`, the Noise initiator, CTAP requests in
//! type-1 messages, and the checks a relying party makes on what comes back. Written apart from
//! the phone's session code; it takes only the shared primitives (QR encoding, key derivation,
//! Noise, the frame crypter) from the engine.

use std::net::TcpStream;
use std::time::Duration;

use ciborium::value::Value;
use p256::SecretKey;
use pocketkey_core::hybrid::advert::{self, EidPlaintext};
use pocketkey_core::hybrid::crypter::Crypter;
use pocketkey_core::hybrid::keys;
use pocketkey_core::hybrid::noise::Initiator;
use pocketkey_core::hybrid::qr::QrCode;
use pocketkey_core::hybrid::session::{encode_message, MessageType, PostHandshake};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::stream::MaybeTlsStream;
use tungstenite::{Message, WebSocket};

use crate::cose::ES256;
use crate::responses::flags::{AT, UP, UV};
use crate::responses::{decode_response, Assertion, Registration};
use crate::{sha256, GetAssertion, MakeCredential};

/// How long a read on the tunnel waits for the phone.
pub const WAIT: Duration = Duration::from_secs(30);

pub type Ws = WebSocket<MaybeTlsStream<TcpStream>>;

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Hex digits to bytes; `None` for an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    if text.len() % 2 != 0 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).ok())
        .collect()
}

pub struct Browser {
    pub key: SecretKey,
    pub secret: [u8; 16],
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        let key = SecretKey::random(&mut rand_core::OsRng);
        let mut secret = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut secret);
        Self { key, secret }
    }

    /// The `FIDO:/` text of the QR code a browser would show.
    pub fn qr(&self) -> String {
        QrCode::new(self.key.public_key(), self.secret).to_url()
    }

    /// Decrypts the advert with the EID key, as the browser does with every BLE advert;
    /// `None` when it is not the advert for this QR code.
    pub fn read_advert(&self, service_data: &[u8]) -> Option<EidPlaintext> {
        advert::decrypt(&keys::eid_key(&self.secret), service_data).ok()
    }

    /// `/cable/connect/<routing id>/<tunnel id>` with subprotocol fido.cable.
    pub fn connect(&self, relay_url: &str, eid: &EidPlaintext) -> Result<Ws, String> {
        let url = format!(
            "{}/cable/connect/{}/{}",
            relay_url.trim_end_matches('/'),
            hex(&eid.routing_id),
            hex(&keys::tunnel_id(&self.secret))
        );
        let mut request = url.into_client_request().map_err(|e| e.to_string())?;
        request.headers_mut().insert(
            "Sec-WebSocket-Protocol",
            HeaderValue::from_static("fido.cable"),
        );
        let (ws, response) =
            tungstenite::connect(request).map_err(|e| format!("join the tunnel: {e}"))?;
        if response
            .headers()
            .get("sec-websocket-protocol")
            .map(|v| v.as_bytes())
            != Some(b"fido.cable")
        {
            return Err("the tunnel server did not accept subprotocol fido.cable".into());
        }
        if let MaybeTlsStream::Plain(tcp) = ws.get_ref() {
            tcp.set_read_timeout(Some(WAIT))
                .map_err(|e| e.to_string())?;
        }
        Ok(ws)
    }

    /// The handshake with the right PSK; returns the transport crypter and the phone's first
    /// message.
    pub fn handshake(
        &self,
        ws: &mut Ws,
        eid: &EidPlaintext,
    ) -> Result<(Crypter, PostHandshake), String> {
        let psk = keys::psk(&self.secret, &eid.to_bytes());
        let (initiator, msg1) = Initiator::start(&self.key, &psk).map_err(|e| e.to_string())?;
        ws.send(Message::Binary(msg1.to_vec().into()))
            .map_err(|e| e.to_string())?;
        let answer = recv(ws).ok_or("no handshake answer from the phone")?;
        if answer.len() != 81 {
            return Err(format!("handshake answer of {} bytes", answer.len()));
        }
        let done = initiator
            .finish(&answer)
            .map_err(|e| format!("the phone did not authenticate: {e}"))?;
        let mut crypter = Crypter::new(&done.keys);
        let first = recv(ws).ok_or("no post-handshake message")?;
        let first = crypter
            .decrypt(&first)
            .map_err(|e| format!("post-handshake message: {e}"))?;
        let post = PostHandshake::decode(&first)
            .ok_or("the post-handshake message is not {1: getInfo, 3: features}")?;
        Ok((crypter, post))
    }
}

/// The next binary message; `None` once the tunnel is closed.
pub fn recv(ws: &mut Ws) -> Option<Vec<u8>> {
    loop {
        match ws.read() {
            Ok(Message::Binary(bytes)) => return Some(bytes.to_vec()),
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

pub fn send(ws: &mut Ws, crypter: &mut Crypter, kind: MessageType, payload: &[u8]) {
    let frame = crypter.encrypt(&encode_message(kind, payload)).unwrap();
    let _ = ws.send(Message::Binary(frame.into()));
}

/// A CTAP request (command ‖ CBOR) in a type-1 message; returns status ‖ CBOR, or `None` when
/// the tunnel closed first.
pub fn ctap(ws: &mut Ws, crypter: &mut Crypter, request: &[u8]) -> Option<Vec<u8>> {
    send(ws, crypter, MessageType::Ctap, request);
    let reply = crypter.decrypt(&recv(ws)?).ok()?;
    assert_eq!(reply[0], MessageType::Ctap as u8, "type byte");
    Some(reply[1..].to_vec())
}

pub fn client_data_hash(rp_id: &str, challenge: &str) -> Vec<u8> {
    // The browser's clientDataJSON, reduced to what the hash needs to be unique.
    let client_data =
        format!(r#"{{"type":"webauthn","challenge":"{challenge}","origin":"https://{rp_id}"}}"#);
    sha256(client_data.as_bytes()).to_vec()
}

pub fn make_credential(rp_id: &str, cdh: &[u8]) -> Vec<u8> {
    MakeCredential::new(rp_id, &format!("alice@{rp_id}"))
        .client_data_hash(cdh)
        .rp_name("Hybrid")
        .user_id(b"user-1")
        .user_display_name("Alice")
        .rk(true)
        .uv(true)
        .encode()
}

pub fn get_assertion(rp_id: &str, cdh: &[u8], credential_id: &[u8]) -> Vec<u8> {
    GetAssertion::new(rp_id)
        .client_data_hash(cdh)
        .allow(credential_id)
        .uv(true)
        .encode()
}

/// What a registration followed by a sign-in proved.
pub struct Verified {
    pub credential_id: Vec<u8>,
    pub sign_count: u32,
}

/// Registers a credential for `rp_id` and signs in with it, checking both as a relying party
/// would: packed self attestation, rpIdHash, UP and UV, the AAGUID of getInfo, the assertion
/// signature over authData ‖ clientDataHash under the registered COSE key, a rising counter.
/// `Err` names the CTAP status when the phone refused; failed checks panic.
pub fn register_and_sign_in(
    ws: &mut Ws,
    crypter: &mut Crypter,
    aaguid: &[u8],
    rp_id: &str,
) -> Result<Verified, String> {
    let cdh = client_data_hash(rp_id, "register-challenge");
    let made = ctap(ws, crypter, &make_credential(rp_id, &cdh))
        .ok_or("the tunnel closed before the makeCredential answer")?;
    let made =
        decode_response(&made).map_err(|status| format!("makeCredential status {status:#04x}"))?;
    let reg = Registration::parse(&made);
    assert_eq!(reg.key().alg(), ES256, "credential algorithm");
    reg.verify_self_attestation(&cdh);
    assert_eq!(reg.parsed.rp_id_hash, sha256(rp_id.as_bytes()), "rpIdHash");
    assert_eq!(
        reg.parsed.flags & (UP | UV | AT),
        UP | UV | AT,
        "flags {:#04x}",
        reg.parsed.flags
    );
    assert_eq!(
        reg.parsed.aaguid.map(Vec::from).as_deref(),
        Some(aaguid),
        "AAGUID as in getInfo"
    );

    let cdh = client_data_hash(rp_id, "sign-in-challenge");
    let got = ctap(ws, crypter, &get_assertion(rp_id, &cdh, &reg.id()))
        .ok_or("the tunnel closed before the getAssertion answer")?;
    let got =
        decode_response(&got).map_err(|status| format!("getAssertion status {status:#04x}"))?;
    let signed_in = Assertion::parse(&got);
    assert_eq!(signed_in.credential_id, reg.id(), "credential id");
    signed_in.verify(reg.key(), rp_id, &cdh);
    assert_eq!(signed_in.parsed.flags & (UP | UV), UP | UV, "flags");
    assert!(
        signed_in.parsed.sign_count > reg.parsed.sign_count,
        "counter {} after {}",
        signed_in.parsed.sign_count,
        reg.parsed.sign_count
    );
    // A relying party rejects a signature over anything else.
    let mut other = signed_in.auth_data.clone();
    other[33] ^= 1;
    assert!(!reg
        .key()
        .verify(&[&other[..], &cdh].concat(), &signed_in.signature));
    Ok(Verified {
        credential_id: reg.id(),
        sign_count: signed_in.parsed.sign_count,
    })
}

/// The AAGUID getInfo names (key 3).
pub fn info_aaguid(info: &Value) -> Option<Vec<u8>> {
    crate::cbor::get(info, 3).map(crate::cbor::as_bytes)
}
