//! A plain HTTP server that knows nothing of narun or NATS: the proxy-mode
//! demo. It listens on 127.0.0.1:$PORT (default 8000) and answers every
//! request with a greeting (GET) or the request body (POST).
//!
//! Deployed with `http:` in its spec, each replica runs under
//! `narun bridge`, which sets `PORT` and serves the app's NATS Micro
//! service by forwarding requests here. Std only, on purpose: any HTTP
//! server works the same way.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

/// Requests bodies larger than this are refused (413).
const MAX_BODY: usize = 16 << 20;

fn main() -> std::io::Result<()> {
    let port: u16 = std::env::var("PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(8000);
    let listener = TcpListener::bind(("127.0.0.1", port))?;
    println!("plain-http listening on 127.0.0.1:{port}");
    for conn in listener.incoming() {
        let Ok(conn) = conn else { continue };
        std::thread::spawn(move || {
            let _ = serve(conn);
        });
    }
    Ok(())
}

/// Serve one keep-alive connection.
fn serve(conn: TcpStream) -> std::io::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut out = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or("").to_owned(),
            parts.next().unwrap_or("/").to_owned(),
        );
        let mut length = 0usize;
        let mut close = false;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h)? == 0 {
                return Ok(());
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                match k.trim().to_ascii_lowercase().as_str() {
                    "content-length" => length = v.trim().parse().unwrap_or(0),
                    "connection" => close = v.trim().eq_ignore_ascii_case("close"),
                    _ => {}
                }
            }
        }
        if length > MAX_BODY {
            respond(&mut out, "413 Content Too Large", b"too large\n")?;
            return Ok(());
        }
        let mut body = vec![0u8; length];
        reader.read_exact(&mut body)?;
        match method.as_str() {
            "POST" | "PUT" => respond(&mut out, "200 OK", &body)?,
            _ if path.ends_with("/missing") => respond(&mut out, "404 Not Found", b"not here\n")?,
            _ => respond(
                &mut out,
                "200 OK",
                format!(
                    "hello from plain-http (pid {}), you asked for {path}\n",
                    std::process::id()
                )
                .as_bytes(),
            )?,
        }
        if close {
            return Ok(());
        }
    }
}

fn respond(out: &mut TcpStream, status: &str, body: &[u8]) -> std::io::Result<()> {
    write!(
        out,
        "HTTP/1.1 {status}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )?;
    out.write_all(body)
}
