//! HTTP/1.1 message heads and bodies as the proxy reads and relays them: framing,
//! headers, chunked bodies, and the one rewrite (`Location`).

use std::io;

use tokio::io::{AsyncBufRead, AsyncBufReadExt};

use super::*;

/// How a message body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Empty,
    Length(u64),
    Chunked,
    /// Until the connection closes (answers without length nor chunking).
    UntilClose,
}

/// A request head, kept raw to be forwarded byte for byte.
#[derive(Debug)]
pub(super) struct RequestHead {
    pub(super) raw: Vec<u8>,
    pub(super) method: String,
    pub(super) target: String,
    pub(super) framing: Framing,
    /// The connection ends after this exchange (`Connection: close`, or HTTP/1.0).
    pub(super) close: bool,
    pub(super) expect_continue: bool,
}

impl RequestHead {
    pub(super) fn parse(lines: Vec<Vec<u8>>) -> Option<RequestHead> {
        let request_line = String::from_utf8(lines.first()?.clone()).ok()?;
        let mut parts = request_line.split_whitespace();
        let method = parts.next()?.to_string();
        let target = parts.next()?.to_string();
        let version = parts.next()?.to_string();
        let headers = Headers::parse(&lines[1..])?;
        let framing = if headers.chunked() {
            Framing::Chunked
        } else {
            match headers.content_length()? {
                Some(n) if n > 0 => Framing::Length(n),
                _ => Framing::Empty,
            }
        };
        let close = headers.has_token("connection", "close")
            || (version == "HTTP/1.0" && !headers.has_token("connection", "keep-alive"));
        Some(RequestHead {
            raw: lines.concat(),
            expect_continue: headers.has_token("expect", "100-continue"),
            method,
            target,
            framing,
            close,
        })
    }
}

/// A response head: the raw lines (for relaying) and what framing needs.
#[derive(Debug)]
pub(super) struct ResponseHead {
    pub(super) lines: Vec<Vec<u8>>,
    pub(super) status: u16,
    pub(super) headers: Headers,
    pub(super) close: bool,
}

impl ResponseHead {
    pub(super) fn parse(lines: Vec<Vec<u8>>) -> Option<ResponseHead> {
        let status_line = std::str::from_utf8(lines.first()?).ok()?;
        let mut parts = status_line.split_whitespace();
        let version = parts.next()?;
        let status = parts.next()?.parse().ok()?;
        let headers = Headers::parse(&lines[1..])?;
        let close = headers.has_token("connection", "close")
            || (version == "HTTP/1.0" && !headers.has_token("connection", "keep-alive"));
        Some(ResponseHead {
            lines,
            status,
            headers,
            close,
        })
    }

    pub(super) fn raw(&self) -> Vec<u8> {
        self.lines.concat()
    }

    /// RFC 9112 section 6.3, for the answers a registry gives.
    pub(super) fn framing(&self, request_method: &str) -> Framing {
        if request_method.eq_ignore_ascii_case("HEAD")
            || (100..200).contains(&self.status)
            || self.status == 204
            || self.status == 304
        {
            return Framing::Empty;
        }
        if self.headers.chunked() {
            return Framing::Chunked;
        }
        match self.headers.content_length() {
            Some(Some(0)) => Framing::Empty,
            Some(Some(n)) => Framing::Length(n),
            _ => Framing::UntilClose,
        }
    }

    /// The head with `Location` rewritten to point at the proxy.
    pub(super) fn rewritten(&self, upstream: &str, proxy: &str) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let rewritten = (i > 0)
                .then(|| std::str::from_utf8(line).ok())
                .flatten()
                .and_then(|text| text.split_once(':'))
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("location"))
                .and_then(|(name, value)| {
                    rewrite_location(value.trim(), upstream, proxy)
                        .map(|value| format!("{name}: {value}\r\n"))
                });
            match rewritten {
                Some(new) => out.extend_from_slice(new.as_bytes()),
                None => out.extend_from_slice(line),
            }
        }
        out
    }
}

/// `location` pointing at the proxy instead of `upstream`, when it is an absolute URL
/// naming `upstream`; `None` when it needs no change (relative, or another host).
/// A request head without the header lines named `name` (lower case).
pub(super) fn without_header(raw: &[u8], name: &str) -> Vec<u8> {
    raw.split_inclusive(|&b| b == b'\n')
        .filter(|line| {
            let field = line.split(|&b| b == b':').next().unwrap_or_default();
            !(line.contains(&b':') && field.eq_ignore_ascii_case(name.as_bytes()))
        })
        .flatten()
        .copied()
        .collect()
}

pub fn rewrite_location(location: &str, upstream: &str, proxy: &str) -> Option<String> {
    for scheme in ["http://", "https://"] {
        let Some(rest) = location.strip_prefix(scheme) else {
            continue;
        };
        let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if authority.eq_ignore_ascii_case(upstream) {
            return Some(format!("{scheme}{proxy}{tail}"));
        }
    }
    None
}

/// Header fields, names lowercased.
#[derive(Debug)]
pub(super) struct Headers(Vec<(String, String)>);

impl Headers {
    pub(super) fn parse(lines: &[Vec<u8>]) -> Option<Headers> {
        let mut fields = Vec::new();
        for line in lines {
            let text = std::str::from_utf8(line).ok()?.trim_end();
            if text.is_empty() {
                continue;
            }
            let (name, value) = text.split_once(':')?;
            fields.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        Some(Headers(fields))
    }

    pub(super) fn values<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether a comma-separated header `name` holds `token` (case-insensitive).
    pub(super) fn has_token(&self, name: &str, token: &str) -> bool {
        self.values(name)
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    }

    pub(super) fn chunked(&self) -> bool {
        self.has_token("transfer-encoding", "chunked")
    }

    /// `None`: malformed; `Some(None)`: absent.
    pub(super) fn content_length(&self) -> Option<Option<u64>> {
        match self.values("content-length").next() {
            None => Some(None),
            Some(v) => v.parse().ok().map(Some),
        }
    }
}

/// Reads a message head: its lines (CRLF included) up to and including the empty line.
/// `Ok(None)` when the peer closed cleanly before sending anything. Requests may be
/// preceded by empty lines, which are skipped (RFC 9112 section 2.2).
pub(super) async fn read_head<R: AsyncBufRead + Unpin>(
    r: &mut R,
    skip_leading_empty: bool,
) -> io::Result<Option<Vec<Vec<u8>>>> {
    let mut lines: Vec<Vec<u8>> = Vec::new();
    let mut total = 0;
    loop {
        let mut line = Vec::new();
        let n = read_line(r, &mut line, MAX_HEAD - total).await?;
        if n == 0 {
            return if lines.is_empty() {
                Ok(None)
            } else {
                Err(io::ErrorKind::UnexpectedEof.into())
            };
        }
        total += n;
        let empty = line == b"\r\n" || line == b"\n";
        if empty && lines.is_empty() && skip_leading_empty {
            continue;
        }
        lines.push(line);
        if empty {
            if lines.len() == 1 {
                return Err(io::Error::new(io::ErrorKind::InvalidData, "empty head"));
            }
            return Ok(Some(lines));
        }
    }
}

/// Appends one line (up to and including '\n', or to EOF) to `out`; fails past `limit`
/// bytes. Returns the number of bytes read.
pub(super) async fn read_line<R: AsyncBufRead + Unpin>(
    r: &mut R,
    out: &mut Vec<u8>,
    limit: usize,
) -> io::Result<usize> {
    let start = out.len();
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(out.len() - start);
        }
        let (take, done) = match buf.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        out.extend_from_slice(&buf[..take]);
        r.consume(take);
        if out.len() - start > limit {
            return Err(io::Error::new(io::ErrorKind::InvalidData, "line too long"));
        }
        if done {
            return Ok(out.len() - start);
        }
    }
}

/// Streams a body from `r` to `sink` as it is framed, framing bytes included (chunk
/// sizes, trailers), so the receiver sees the same message. `ends_message`: the body's
/// last piece is the message's last byte (false when the message head came after, never).
/// Returns `Ok(false)` when the sink stopped it.
pub(super) async fn copy_body<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
    framing: Framing,
    ends_message: bool,
) -> io::Result<bool> {
    match framing {
        Framing::Empty => Ok(true),
        Framing::Length(n) => copy_exact(r, sink, n, ends_message).await,
        Framing::Chunked => copy_chunked(r, sink, ends_message).await,
        Framing::UntilClose => copy_to_eof(r, sink).await,
    }
}

/// Copies exactly `n` bytes; `ends_message`: their last one is the message's last.
pub(super) async fn copy_exact<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
    n: u64,
    ends_message: bool,
) -> io::Result<bool> {
    let mut left = n;
    while left > 0 {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let take = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        let last = ends_message && take as u64 == left;
        let go_on = sink.put(&buf[..take], last).await?;
        r.consume(take);
        left -= take as u64;
        if !go_on {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Copies a chunked body: size lines, data, the last chunk and the trailers.
pub(super) async fn copy_chunked<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
    ends_message: bool,
) -> io::Result<bool> {
    loop {
        let size_line = read_required_line(r).await?;
        let size = chunk_size(&size_line)?;
        if !sink.put(&size_line, false).await? {
            return Ok(false);
        }
        if size == 0 {
            // Trailer fields, then the empty line ending the message.
            loop {
                let line = read_required_line(r).await?;
                let end = line == b"\r\n" || line == b"\n";
                if !sink.put(&line, end && ends_message).await? {
                    return Ok(false);
                }
                if end {
                    return Ok(true);
                }
            }
        }
        if !copy_exact(r, sink, size, false).await? {
            return Ok(false);
        }
        let crlf = read_required_line(r).await?;
        if !sink.put(&crlf, false).await? {
            return Ok(false);
        }
    }
}

pub(super) async fn copy_to_eof<R: AsyncBufRead + Unpin, S: Sink>(
    r: &mut R,
    sink: &mut S,
) -> io::Result<bool> {
    loop {
        let buf = r.fill_buf().await?;
        if buf.is_empty() {
            return Ok(true);
        }
        let len = buf.len();
        let go_on = sink.put(buf, false).await?;
        r.consume(len);
        if !go_on {
            return Ok(false);
        }
    }
}

/// A line of a chunked body; EOF before its end is an error.
pub(super) async fn read_required_line<R: AsyncBufRead + Unpin>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    read_line(r, &mut line, MAX_HEAD).await?;
    if !line.ends_with(b"\n") {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(line)
}

/// The size of a chunk from its size line ("1a2b;ext=1\r\n").
pub(super) fn chunk_size(line: &[u8]) -> io::Result<u64> {
    let text = std::str::from_utf8(line).map_err(|_| io::ErrorKind::InvalidData)?;
    let hex = text.split(';').next().unwrap_or_default().trim();
    u64::from_str_radix(hex, 16)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad chunk size"))
}
