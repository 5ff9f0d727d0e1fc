//! Just enough HTTP/1.1 for the fault proxy: one request per connection,
//! read whole, forwarded whole.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

pub struct RawRequest {
    pub bytes: Vec<u8>,
}

/// Reads one request (head and body, `Content-Length` or chunked) as raw bytes.
pub async fn read_request(client: &mut TcpStream) -> std::io::Result<Option<RawRequest>> {
    let mut buf = Vec::new();
    let head_end = loop {
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if !read_more(client, &mut buf).await? {
            return Ok(None);
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    if let Some(len) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        while buf.len() < head_end + len {
            if !read_more(client, &mut buf).await? {
                return Ok(None);
            }
        }
    } else if header(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        // Walk the chunks: size line, data, CRLF; a zero size, trailers, CRLF ends it.
        let mut at = head_end;
        loop {
            let line_end = loop {
                if let Some(i) = find(&buf[at..], b"\r\n") {
                    break at + i;
                }
                if !read_more(client, &mut buf).await? {
                    return Ok(None);
                }
            };
            let size_text = String::from_utf8_lossy(&buf[at..line_end]).to_string();
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .unwrap_or(0);
            if size == 0 {
                loop {
                    if find(&buf[line_end..], b"\r\n\r\n").is_some() {
                        return Ok(Some(RawRequest { bytes: buf }));
                    }
                    if !read_more(client, &mut buf).await? {
                        return Ok(None);
                    }
                }
            }
            at = line_end + 2 + size + 2;
            while buf.len() < at {
                if !read_more(client, &mut buf).await? {
                    return Ok(None);
                }
            }
        }
    }
    Ok(Some(RawRequest { bytes: buf }))
}

async fn read_more(r: &mut (impl AsyncRead + Unpin), buf: &mut Vec<u8>) -> std::io::Result<bool> {
    let mut chunk = [0u8; 16 * 1024];
    let n = r.read(&mut chunk).await?;
    buf.extend_from_slice(&chunk[..n]);
    Ok(n > 0)
}

/// Sends the request upstream with `Connection: close`; returns the whole answer,
/// rewritten to say `Connection: close` too.
pub async fn forward(upstream: &str, raw: &[u8], head_end: usize) -> std::io::Result<Vec<u8>> {
    let mut up = TcpStream::connect(upstream).await?;
    up.write_all(&close_connection(&raw[..head_end])).await?;
    up.write_all(&raw[head_end..]).await?;
    let mut response = Vec::new();
    up.read_to_end(&mut response).await?;
    let head_end = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let mut out = close_connection(&response[..head_end]);
    out.extend_from_slice(&response[head_end..]);
    Ok(out)
}

/// The head with any `Connection` header replaced by `Connection: close`.
fn close_connection(head: &[u8]) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut lines: Vec<&str> = text
        .split("\r\n")
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .collect();
    // `lines` ends with two empty strings (the blank line); insert before them.
    let at = lines.len().saturating_sub(2);
    lines.insert(at, "Connection: close");
    lines.join("\r\n").into_bytes()
}

pub async fn answer(
    client: &mut TcpStream,
    status: u16,
    ctype: &str,
    body: &str,
) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        500 => "Internal Server Error",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    client.write_all(response.as_bytes()).await?;
    client.shutdown().await
}

/// Closes with a TCP reset instead of an orderly close.
pub fn reset(client: TcpStream) -> std::io::Result<()> {
    // A zero linger never blocks: the close sends RST at once.
    #[allow(deprecated)]
    client.set_linger(Some(std::time::Duration::ZERO))?;
    drop(client);
    Ok(())
}

pub fn header(head: &str, name: &str) -> Option<String> {
    head.split("\r\n").skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}
