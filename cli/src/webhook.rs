//! The HTTP side of `listen --wake-url`: the relay POSTs one small request per wake-up. Each
//! connection is read on a thread of its own, within a deadline for the whole request
//! (headers and body together) and size caps, so that a client sending a byte now and then
//! holds nothing for long, and a slow one does not delay the others.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

/// What one request may take.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// For the whole request, from the connection on.
    pub deadline: Duration,
    /// Request line and headers.
    pub max_head: usize,
    /// Body (Content-Length).
    pub max_body: usize,
    /// Requests being read at once; connections beyond it are closed at once.
    pub max_readers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(10),
            max_head: 8 * 1024,
            max_body: 4 * 1024,
            max_readers: 16,
        }
    }
}

/// Serves `listener` on a thread of its own, which runs until the process ends or `accept`
/// fails: the body of every well-formed request goes to `bodies`, and so does the accept
/// failure.
pub fn spawn(
    listener: TcpListener,
    limits: Limits,
    bodies: mpsc::Sender<io::Result<Vec<u8>>>,
) -> io::Result<()> {
    let readers = Arc::new(AtomicUsize::new(0));
    thread::Builder::new()
        .name("pocketkey-webhook".into())
        .spawn(move || loop {
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) => {
                    let _ = bodies.send(Err(e));
                    return;
                }
            };
            if readers.fetch_add(1, Ordering::SeqCst) >= limits.max_readers {
                readers.fetch_sub(1, Ordering::SeqCst);
                let _ = respond(&stream, "503 Service Unavailable");
                continue;
            }
            let (count, bodies) = (Arc::clone(&readers), bodies.clone());
            let spawned = thread::Builder::new()
                .name("pocketkey-webhook-read".into())
                .spawn(move || {
                    if let Some(body) = read_request(stream, &limits) {
                        let _ = bodies.send(Ok(body));
                    }
                    count.fetch_sub(1, Ordering::SeqCst);
                });
            if spawned.is_err() {
                readers.fetch_sub(1, Ordering::SeqCst);
            }
        })?;
    Ok(())
}

/// Reads one request within `limits`, answers 204 and returns its body; `None` (after an
/// error status where one helps) when it is too slow, too large or not HTTP.
pub fn read_request(mut stream: TcpStream, limits: &Limits) -> Option<Vec<u8>> {
    let deadline = Instant::now() + limits.deadline;
    stream.set_nonblocking(false).ok()?;
    let mut data = Vec::new();
    let mut buf = [0u8; 1024];
    let (head_end, length) = loop {
        let end = data.windows(4).position(|w| w == b"\r\n\r\n");
        if end.unwrap_or(data.len()) > limits.max_head {
            return refuse(&stream, "431 Request Header Fields Too Large");
        }
        if let Some(end) = end {
            let head = String::from_utf8_lossy(&data[..end]).to_ascii_lowercase();
            let length = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(Some(0), |v| v.trim().parse::<usize>().ok());
            match length {
                Some(length) if length <= limits.max_body => break (end + 4, length),
                Some(_) => return refuse(&stream, "413 Content Too Large"),
                None => return refuse(&stream, "400 Bad Request"),
            }
        }
        let n = read_until(&mut stream, &mut buf, deadline)?;
        data.extend_from_slice(&buf[..n]);
    };
    while data.len() < head_end + length {
        let n = read_until(&mut stream, &mut buf, deadline)?;
        data.extend_from_slice(&buf[..n]);
    }
    let _ = respond(&stream, "204 No Content");
    data.truncate(head_end + length);
    Some(data.split_off(head_end))
}

/// One read that ends by `deadline`; `None` at the deadline (answered 408), at the end of the
/// stream or on an error.
fn read_until(stream: &mut TcpStream, buf: &mut [u8], deadline: Instant) -> Option<usize> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return refuse(stream, "408 Request Timeout");
    }
    stream.set_read_timeout(Some(left)).ok()?;
    match stream.read(buf) {
        Ok(0) => None,
        Ok(n) => Some(n),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            refuse(stream, "408 Request Timeout")
        }
        Err(_) => None,
    }
}

fn refuse<T>(stream: &TcpStream, status: &str) -> Option<T> {
    let _ = respond(stream, status);
    None
}

/// How long closing waits for the client to stop sending (see [`respond`]).
const LINGER: Duration = Duration::from_millis(500);

/// Answers `status` with no body and closes the connection: first our side, then, after
/// reading away what the client still sends (at most [`LINGER`] and 64 KiB), the socket;
/// closing with unread bytes would reset the connection and could lose the answer.
fn respond(mut stream: &TcpStream, status: &str) -> io::Result<()> {
    stream.set_write_timeout(Some(Duration::from_secs(1)))?;
    let written = write!(
        stream,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    let _ = stream.shutdown(Shutdown::Write);
    let until = Instant::now() + LINGER;
    let mut drained = 0;
    let mut buf = [0u8; 1024];
    while drained < 64 * 1024 {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() || stream.set_read_timeout(Some(left)).is_err() {
            break;
        }
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => drained += n,
        }
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAKE: &str = r#"{"v":1,"w":"00"}"#;

    fn server(limits: Limits) -> (std::net::SocketAddr, mpsc::Receiver<io::Result<Vec<u8>>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let (bodies, rx) = mpsc::channel();
        spawn(listener, limits, bodies).unwrap();
        (addr, rx)
    }

    fn post(body: &str) -> String {
        format!(
            "POST /wake HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    }

    /// Sends `request` and returns everything the server answered before it closed.
    fn exchange(addr: std::net::SocketAddr, request: &[u8]) -> String {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = tcp.write_all(request);
        let mut answer = Vec::new();
        let _ = tcp.read_to_end(&mut answer);
        String::from_utf8_lossy(&answer).into_owned()
    }

    /// A client that sends one byte of a request at a time, each soon enough for any per-read
    /// timeout, until the server closes the connection (or it has sent 100 bytes).
    fn slowloris(addr: std::net::SocketAddr, gap: Duration) -> (bool, String) {
        let mut tcp = TcpStream::connect(addr).unwrap();
        tcp.set_read_timeout(Some(gap)).unwrap();
        let request = post(WAKE);
        let mut answer = Vec::new();
        for byte in request.as_bytes().iter().take(100) {
            if tcp.write_all(&[*byte]).is_err() {
                return (true, String::from_utf8_lossy(&answer).into_owned());
            }
            let mut buf = [0u8; 256];
            match tcp.read(&mut buf) {
                Ok(0) => return (true, String::from_utf8_lossy(&answer).into_owned()),
                Ok(n) => answer.extend_from_slice(&buf[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return (true, String::from_utf8_lossy(&answer).into_owned()),
            }
        }
        (false, String::from_utf8_lossy(&answer).into_owned())
    }

    #[test]
    fn a_wake_is_answered_204_and_its_body_delivered() {
        let (addr, bodies) = server(Limits::default());
        let answer = exchange(addr, post(WAKE).as_bytes());
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer:?}");
        let body = bodies
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(body, WAKE.as_bytes());
    }

    #[test]
    fn a_byte_at_a_time_client_is_closed_at_the_deadline_and_others_are_served_meanwhile() {
        let limits = Limits {
            deadline: Duration::from_millis(500),
            ..Limits::default()
        };
        let (addr, bodies) = server(limits);
        let slow = thread::spawn(move || slowloris(addr, Duration::from_millis(50)));
        // A normal wake while the slow client holds its connection.
        let answer = exchange(addr, post(WAKE).as_bytes());
        assert!(answer.starts_with("HTTP/1.1 204"), "{answer:?}");
        let body = bodies
            .recv_timeout(Duration::from_secs(10))
            .unwrap()
            .unwrap();
        assert_eq!(body, WAKE.as_bytes());
        let (closed, answer) = slow.join().unwrap();
        assert!(closed, "the slow client was never cut off");
        assert!(
            answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
            "{answer:?}"
        );
        assert!(bodies.try_recv().is_err(), "nothing from the slow client");
    }

    #[test]
    fn oversized_requests_are_refused_unread() {
        let (addr, bodies) = server(Limits::default());
        let big_body = format!(
            "POST /wake HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            Limits::default().max_body + 1
        );
        let answer = exchange(addr, big_body.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 413"), "{answer:?}");
        let big_head = format!(
            "POST /wake HTTP/1.1\r\nX-Filler: {}\r\n\r\n",
            "a".repeat(Limits::default().max_head + 1)
        );
        let answer = exchange(addr, big_head.as_bytes());
        assert!(answer.starts_with("HTTP/1.1 431"), "{answer:?}");
        let bad = "POST /wake HTTP/1.1\r\nContent-Length: lots\r\n\r\n";
        assert!(exchange(addr, bad.as_bytes()).starts_with("HTTP/1.1 400"));
        // Still serving.
        assert!(exchange(addr, post(WAKE).as_bytes()).starts_with("HTTP/1.1 204"));
        assert_eq!(
            bodies
                .recv_timeout(Duration::from_secs(10))
                .unwrap()
                .unwrap(),
            WAKE.as_bytes()
        );
    }

    #[test]
    fn connections_beyond_the_reader_cap_are_closed_at_once() {
        let limits = Limits {
            deadline: Duration::from_secs(30),
            max_readers: 2,
            ..Limits::default()
        };
        let (addr, _bodies) = server(limits);
        // Two idle connections take both readers (each is accepted before the next).
        let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        let mut third = TcpStream::connect(addr).unwrap();
        third
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = String::new();
        let _ = third.read_to_string(&mut answer);
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
        drop(idle);
    }
}
