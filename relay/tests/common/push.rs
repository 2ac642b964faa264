//! Push targets for the relay's tests: a phone registering one, a webhook target, and a
//! webhook endpoint that accepts every push.

use std::net::SocketAddr;

use pocketkey_core::pairing::mailbox::MailboxKeys;
use pocketkey_core::pairing::relay::{PushProvider as Kind, PushTarget, RelayFrame, WakeId};
use pocketkey_core::pairing::Role;
use tokio::net::TcpListener;

use super::mailbox::{attach, frame, put};

/// A phone attaches to `keys`, registers `target`, and reads the answer.
pub async fn register(addr: SocketAddr, keys: &MailboxKeys, target: PushTarget) -> RelayFrame {
    let mut phone = attach(addr, keys, Role::Phone).await;
    assert!(matches!(frame(&mut phone).await, RelayFrame::Peer { .. }));
    put(&mut phone, RelayFrame::PushRegister(target)).await;
    frame(&mut phone).await
}

pub fn webhook(url: String) -> PushTarget {
    PushTarget {
        provider: Kind::Webhook,
        target: url,
        environment: None,
        wake: WakeId::random(),
    }
}

/// A webhook endpoint that answers 204 to everything.
pub async fn sink() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(|_request| async {
                    let mut response =
                        hyper::Response::new(http_body_util::Empty::<hyper::body::Bytes>::new());
                    *response.status_mut() = hyper::StatusCode::NO_CONTENT;
                    Ok::<_, std::convert::Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}
