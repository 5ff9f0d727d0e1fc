//! A TCP proxy in front of moto whose behaviour a test switches at any
//! moment: forward, refuse, never answer, or pass requests on and lose the answers.

use crate::moto::moto;
use std::io::Read;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};

/// What the proxy in front of moto does with a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Mode {
    Forward = 0,
    /// Close every connection at once (S3 unreachable).
    Refuse = 1,
    /// Accept and read, never answer (a hung endpoint).
    Blackhole = 2,
    /// Pass requests on to moto but never relay its answers (stored, answer lost).
    Swallow = 3,
}

/// A TCP proxy to moto whose behaviour the test switches at any moment.
pub struct Proxy {
    pub addr: std::net::SocketAddr,
    mode: Arc<AtomicU8>,
    /// Connections left unanswered, and reads of answers dropped: a test
    /// knows an upload can no longer finish once either has happened.
    lost: Arc<AtomicUsize>,
}

impl Proxy {
    pub fn start() -> Proxy {
        let upstream = moto().endpoint.trim_start_matches("http://").to_string();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mode = Arc::new(AtomicU8::new(Mode::Forward as u8));
        let lost = Arc::new(AtomicUsize::new(0));
        let (m, l) = (mode.clone(), lost.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(client) = conn else { continue };
                let now = m.load(Ordering::SeqCst);
                if now == Mode::Refuse as u8 {
                    drop(client);
                    continue;
                }
                if now == Mode::Blackhole as u8 {
                    l.fetch_add(1, Ordering::SeqCst);
                    std::thread::spawn(move || {
                        let mut c = client;
                        let _ = std::io::copy(&mut c, &mut std::io::sink());
                    });
                    continue;
                }
                let Ok(server) = std::net::TcpStream::connect(&upstream) else {
                    continue;
                };
                let (mut c2, mut s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
                let (mut c1, mut s1) = (client, server);
                let (up, down, dropped) = (m.clone(), m.clone(), l.clone());
                std::thread::spawn(move || relay(&mut c1, &mut s1, &up, None));
                std::thread::spawn(move || relay(&mut s2, &mut c2, &down, Some(&dropped)));
            }
        });
        Proxy { addr, mode, lost }
    }

    /// How many connections were left unanswered or answers dropped so far.
    pub fn lost(&self) -> usize {
        self.lost.load(Ordering::SeqCst)
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }
}

/// Copies `from` to `to` until either end closes; answers are dropped while
/// swallowing, and the connection is cut when the proxy starts refusing.
fn relay(
    from: &mut std::net::TcpStream,
    to: &mut std::net::TcpStream,
    mode: &AtomicU8,
    answers: Option<&AtomicUsize>,
) {
    use std::io::Write;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let now = mode.load(Ordering::SeqCst);
        if now == Mode::Refuse as u8 {
            break;
        }
        if let Some(dropped) = answers
            && now == Mode::Swallow as u8
        {
            dropped.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        if to.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = to.shutdown(std::net::Shutdown::Both);
    let _ = from.shutdown(std::net::Shutdown::Both);
}
