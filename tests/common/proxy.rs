//! A TCP proxy in front of a test server that cuts connections on purpose: the first
//! `cuts` connections whose responses pass `cut_after` bytes are closed mid-stream, as a
//! dropped network connection would be.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

pub struct Proxy {
    /// `http://127.0.0.1:<port>`.
    pub endpoint: String,
    /// Connections cut so far.
    pub cut: Arc<AtomicUsize>,
}

impl Proxy {
    /// Forwards to `upstream` (`127.0.0.1:<port>`).
    pub fn start(upstream: &str, cut_after: usize, cuts: usize) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let cut = Arc::new(AtomicUsize::new(0));
        let upstream = upstream.to_string();
        let counter = cut.clone();
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(&upstream) else {
                    continue;
                };
                let counter = counter.clone();
                let (mut c_in, mut s_out) =
                    (client.try_clone().unwrap(), server.try_clone().unwrap());
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut c_in, &mut s_out);
                    let _ = s_out.shutdown(Shutdown::Write);
                });
                std::thread::spawn(move || {
                    let (mut s_in, mut c_out) = (server, client);
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut passed = 0usize;
                    loop {
                        let n = match s_in.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(n) => n,
                        };
                        if passed + n > cut_after && counter.load(Ordering::SeqCst) < cuts {
                            counter.fetch_add(1, Ordering::SeqCst);
                            let _ = c_out.write_all(&buf[..cut_after.saturating_sub(passed)]);
                            let _ = c_out.shutdown(Shutdown::Both);
                            let _ = s_in.shutdown(Shutdown::Both);
                            return;
                        }
                        passed += n;
                        if c_out.write_all(&buf[..n]).is_err() {
                            break;
                        }
                    }
                    let _ = c_out.shutdown(Shutdown::Write);
                });
            }
        });
        Proxy {
            endpoint: format!("http://127.0.0.1:{port}"),
            cut,
        }
    }
}
