//! A small blocking HTTP/1.1 server: one request per connection, a thread
//! per connection up to a cap, bounded heads and bodies, and timeouts.
//!
//! It serves the agent's page, which has one reader (the person, on
//! 127.0.0.1) and lives in a binary with no async runtime; hyper, which the
//! collector serves with, would bring tokio into the agent. Every answer
//! carries [`crate::SECURITY_HEADERS`] and `Connection: close`, so a browser's
//! idle keep-alive connection never holds a thread.

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// The most a request's line and headers may take.
pub const MAX_HEAD: usize = 16 * 1024;
/// The most a request's body may take (the pages' forms are a few fields).
pub const MAX_BODY: usize = 16 * 1024;
/// Connections served at once; more wait in the kernel's backlog.
pub const MAX_CONNECTIONS: usize = 16;
/// How long a connection may take to send its whole request (not each
/// read: a client sending a byte at a time gets no longer), and to take
/// the answer.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// A request, read whole.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path, without its query.
    pub path: String,
    query: String,
    /// Header names in lower case.
    headers: Vec<(String, String)>,
    /// The body, at most [`MAX_BODY`] bytes.
    pub body: Vec<u8>,
}

impl Request {
    /// A request as a test or a caller builds it (the server parses the wire).
    pub fn new(method: &str, target: &str, headers: &[(&str, &str)], body: &[u8]) -> Request {
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        Request {
            method: method.to_owned(),
            path: path.to_owned(),
            query: query.to_owned(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), (*v).to_owned()))
                .collect(),
            body: body.to_vec(),
        }
    }

    /// The first header called `name` (any case), if it is text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of cookie `name`.
    pub fn cookie(&self, name: &str) -> Option<&str> {
        crate::cookie(
            self.headers
                .iter()
                .filter(|(k, _)| k == "cookie")
                .map(|(_, v)| v.as_str()),
            name,
        )
    }

    /// Query parameter `name`, decoded; `None` when absent or not UTF-8.
    pub fn query(&self, name: &str) -> Option<String> {
        pair(&self.query, name)
    }

    /// Form field `name` of an `application/x-www-form-urlencoded` body.
    pub fn form(&self, name: &str) -> Option<String> {
        let form = self
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        if !form {
            return None;
        }
        pair(std::str::from_utf8(&self.body).ok()?, name)
    }
}

/// The value of `name` in `a=1&b=2`, decoded.
fn pair(text: &str, name: &str) -> Option<String> {
    text.split('&')
        .filter_map(|p| p.split_once('=').or(Some((p, ""))))
        .find_map(|(k, v)| (decode(k).as_deref() == Some(name)).then(|| decode(v)))
        .flatten()
}

/// A form-encoded component: `+` is a space, `%XX` a byte; the bytes must be UTF-8.
fn decode(s: &str) -> Option<String> {
    let mut out = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'+' => out.push(b' '),
            b'%' => {
                let hi = char::from(bytes.next()?).to_digit(16)?;
                let lo = char::from(bytes.next()?).to_digit(16)?;
                out.push(u8::try_from(hi * 16 + lo).ok()?);
            }
            b => out.push(b),
        }
    }
    String::from_utf8(out).ok()
}

/// An answer.
#[derive(Debug, Clone)]
pub struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// An answer with this status, content type and body.
    pub fn new(status: u16, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        Response {
            status,
            headers: vec![("content-type".to_owned(), content_type.to_owned())],
            body: body.into(),
        }
    }

    /// An HTML page.
    pub fn html(status: u16, body: String) -> Response {
        Response::new(status, "text/html; charset=utf-8", body)
    }

    /// `303 See Other` to `location` (after a form, so reloading does not post it again).
    pub fn redirect(location: &str) -> Response {
        Response::new(303, "text/plain; charset=utf-8", "").with_header("location", location)
    }

    /// The answer with one more header.
    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// The status code.
    pub fn status(&self) -> u16 {
        self.status
    }

    /// The first header called `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body.
    pub fn body(&self) -> &[u8] {
        &self.body
    }

    /// The answer on the wire, with the security headers, its length and
    /// `Connection: close`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut head = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (k, v) in crate::SECURITY_HEADERS
            .iter()
            .map(|(k, v)| (*k, *v))
            .chain(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            // A header value never carries a line break into the answer.
            let v: String = v.chars().filter(|c| !c.is_control()).collect();
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str(&format!(
            "content-length: {}\r\nconnection: close\r\n\r\n",
            self.body.len()
        ));
        let mut out = head.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        303 => "See Other",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Content Too Large",
        421 => "Misdirected Request",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// Why a connection's bytes are not a request we serve.
#[derive(Debug, PartialEq, Eq)]
enum Refusal {
    Malformed,
    HeadTooLarge,
    BodyTooLarge,
    NoLength,
}

impl Refusal {
    fn response(&self) -> Response {
        let (status, text) = match self {
            Refusal::Malformed => (400, "malformed request"),
            Refusal::HeadTooLarge => (431, "request head too large"),
            Refusal::BodyTooLarge => (413, "request body too large"),
            Refusal::NoLength => (411, "a body needs a Content-Length"),
        };
        Response::new(status, "text/plain; charset=utf-8", text)
    }
}

/// One read; `None` when the deadline passed first (a read timeout).
fn read_some(stream: &mut impl Read, buf: &mut [u8]) -> io::Result<Option<usize>> {
    match stream.read(buf) {
        Ok(n) => Ok(Some(n)),
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

/// Reads one request from `stream`. `Ok(None)` means the peer closed or
/// timed out before sending one (a browser's speculative connection).
fn read_request(stream: &mut impl Read) -> io::Result<Result<Option<Request>, Refusal>> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    let (head_len, mut request) = loop {
        let n = match read_some(stream, &mut chunk)? {
            Some(0) | None => return Ok(Ok(None)),
            Some(n) => n,
        };
        buf.extend_from_slice(&chunk[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut parsed = httparse::Request::new(&mut headers);
        match parsed.parse(&buf) {
            Ok(httparse::Status::Complete(len)) => {
                let (Some(method), Some(target)) = (parsed.method, parsed.path) else {
                    return Ok(Err(Refusal::Malformed));
                };
                let mut fields = Vec::with_capacity(parsed.headers.len());
                for h in parsed.headers.iter() {
                    let Ok(value) = std::str::from_utf8(h.value) else {
                        return Ok(Err(Refusal::Malformed));
                    };
                    fields.push((h.name, value));
                }
                break (len, Request::new(method, target, &fields, &[]));
            }
            Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Ok(Err(Refusal::HeadTooLarge)),
            Err(httparse::Error::TooManyHeaders) => return Ok(Err(Refusal::HeadTooLarge)),
            Err(_) => return Ok(Err(Refusal::Malformed)),
        }
    };
    if head_len > MAX_HEAD {
        return Ok(Err(Refusal::HeadTooLarge));
    }
    if request.header("transfer-encoding").is_some() {
        return Ok(Err(Refusal::NoLength));
    }
    let length = match request.header("content-length") {
        None => 0,
        Some(v) => match v.trim().parse::<usize>() {
            Ok(n) => n,
            Err(_) => return Ok(Err(Refusal::Malformed)),
        },
    };
    if length > MAX_BODY {
        return Ok(Err(Refusal::BodyTooLarge));
    }
    let mut body = buf.split_off(head_len);
    while body.len() < length {
        let n = match read_some(stream, &mut chunk)? {
            // The peer hung up before the body it announced.
            Some(0) => return Ok(Err(Refusal::Malformed)),
            Some(n) => n,
            None => return Ok(Ok(None)),
        };
        body.extend_from_slice(&chunk[..n]);
    }
    body.truncate(length);
    request.body = body;
    Ok(Ok(Some(request)))
}

/// What serves requests: called on the connection's thread.
pub type Handler = Arc<dyn Fn(&Request) -> Response + Send + Sync>;

/// Which connections are served at all, asked before a byte is read.
pub type Admit = Arc<dyn Fn(&TcpStream) -> bool + Send + Sync>;

/// A stream whose reads share one deadline.
struct Deadlined<'a> {
    stream: &'a TcpStream,
    deadline: Instant,
}

impl Read for Deadlined<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = self.deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut stream = self.stream;
        stream.read(buf)
    }
}

fn serve_connection(mut stream: TcpStream, handler: &Handler) -> io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut reader = Deadlined {
        stream: &stream,
        deadline: Instant::now() + REQUEST_TIMEOUT,
    };
    let response = match read_request(&mut reader)? {
        Ok(None) => return Ok(()),
        Ok(Some(request)) => handler(&request),
        Err(refusal) => refusal.response(),
    };
    stream.write_all(&response.to_bytes())?;
    stream.flush()
}

/// Serves `listener` with `handler`, one thread per connection (at most
/// [`MAX_CONNECTIONS`]) that `admit` lets in, until `running` returns false
/// (asked every 50 ms); then waits up to [`REQUEST_TIMEOUT`] for the
/// answers being written.
pub fn serve(
    listener: &TcpListener,
    handler: Handler,
    admit: Admit,
    running: &dyn Fn() -> bool,
) -> io::Result<()> {
    listener.set_nonblocking(true)?;
    let active = Arc::new(AtomicUsize::new(0));
    while running() {
        if active.load(Ordering::SeqCst) >= MAX_CONNECTIONS {
            thread::sleep(Duration::from_millis(20));
            continue;
        }
        match listener.accept() {
            Ok((stream, _)) => {
                if !admit(&stream) {
                    continue;
                }
                active.fetch_add(1, Ordering::SeqCst);
                let (handler, done) = (Arc::clone(&handler), Arc::clone(&active));
                let spawned = thread::Builder::new()
                    .name("hush-web".into())
                    .spawn(move || {
                        // The slot is given back however the thread ends,
                        // a panicking handler included.
                        let _slot = Slot(done);
                        // A peer that hangs up mid-answer is its own business.
                        let _ = serve_connection(stream, &handler);
                    });
                if spawned.is_err() {
                    active.fetch_sub(1, Ordering::SeqCst);
                    thread::sleep(Duration::from_millis(50));
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                thread::sleep(Duration::from_millis(50));
            }
            // A connection reset before it was accepted, or out of file
            // descriptors for a moment: the next accept may succeed.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::ConnectionAborted
                        | io::ErrorKind::ConnectionReset
                        | io::ErrorKind::Interrupted
                ) => {}
            Err(e) if e.raw_os_error() == Some(24) || e.raw_os_error() == Some(23) => {
                thread::sleep(Duration::from_millis(100));
            }
            Err(e) => return Err(e),
        }
    }
    let deadline = Instant::now() + REQUEST_TIMEOUT;
    while active.load(Ordering::SeqCst) > 0 && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(20));
    }
    Ok(())
}

/// One of the [`MAX_CONNECTIONS`] slots, given back when dropped.
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Whether the other end of a loopback connection belongs to this
/// process's user. On Linux the kernel's socket table (`/proc/net/tcp`,
/// `tcp6`) names the owner of the peer's socket; a connection from another
/// user's process, or one the table does not show, is refused. Elsewhere
/// (no such table) every connection passes, and the secrets carry the load.
pub fn same_user(stream: &TcpStream) -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt;
        let (Ok(peer), Ok(local), Ok(me)) = (
            stream.peer_addr(),
            stream.local_addr(),
            std::fs::metadata("/proc/self").map(|m| m.uid()),
        ) else {
            return false;
        };
        socket_owner(peer, local).is_some_and(|uid| uid == me)
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = stream;
        true
    }
}

/// The uid owning the established socket whose local end is `peer` and
/// remote end `local`, from the kernel's table. A client that reached an
/// IPv4 listener through an IPv6 socket is listed in `tcp6`, under the
/// IPv4-mapped form of both addresses.
#[cfg(target_os = "linux")]
fn socket_owner(peer: std::net::SocketAddr, local: std::net::SocketAddr) -> Option<u32> {
    use std::net::SocketAddr::{V4, V6};
    use std::net::SocketAddrV6;
    match (peer, local) {
        (V4(p), V4(l)) => owner_in("/proc/net/tcp", &v4(p), &v4(l)).or_else(|| {
            let mapped = |a: std::net::SocketAddrV4| {
                SocketAddrV6::new(a.ip().to_ipv6_mapped(), a.port(), 0, 0)
            };
            owner_in("/proc/net/tcp6", &v6(mapped(p)), &v6(mapped(l)))
        }),
        (V6(p), V6(l)) => owner_in("/proc/net/tcp6", &v6(p), &v6(l)),
        _ => None,
    }
}

/// The uid in `file` of the established socket from `want_local` to `want_remote`.
#[cfg(target_os = "linux")]
fn owner_in(file: &str, want_local: &str, want_remote: &str) -> Option<u32> {
    // Read line by line and stop at the socket: the kernel walks its whole
    // connection table to write the file, so the rest is not asked for.
    use std::io::BufRead;
    let table = std::io::BufReader::new(std::fs::File::open(file).ok()?);
    table
        .lines()
        .skip(1)
        .map_while(Result::ok)
        .find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid ...
            // Only an established socket (st 01): one closing or closed is
            // listed under uid 0 whoever opened it.
            (fields.len() > 7
                && fields[1] == want_local
                && fields[2] == want_remote
                && fields[3] == "01")
                .then(|| fields[7].parse().ok())
                .flatten()
        })
}

/// An IPv4 socket address as the kernel's table writes it: the address's
/// four bytes as a native-endian word in hex, then the port.
#[cfg(target_os = "linux")]
fn v4(a: std::net::SocketAddrV4) -> String {
    format!(
        "{:08X}:{:04X}",
        u32::from_ne_bytes(a.ip().octets()),
        a.port()
    )
}

/// An IPv6 socket address as the kernel's table writes it: four native-endian words.
#[cfg(target_os = "linux")]
fn v6(a: std::net::SocketAddrV6) -> String {
    let o = a.ip().octets();
    let mut out = String::new();
    for word in o.chunks(4) {
        out.push_str(&format!(
            "{:08X}",
            u32::from_ne_bytes([word[0], word[1], word[2], word[3]])
        ));
    }
    format!("{out}:{:04X}", a.port())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn read(bytes: &[u8]) -> Result<Option<Request>, Refusal> {
        read_request(&mut &bytes[..]).unwrap()
    }

    #[test]
    fn a_form_post_is_read_with_its_fields_decoded() {
        let r = read(b"POST /pause?x=%2F HTTP/1.1\r\nHost: 127.0.0.1:9\r\nCookie: a=1; s=z\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 23\r\n\r\ncsrf=ab%2Bc&note=a+b%21")
            .unwrap()
            .unwrap();
        assert_eq!((r.method.as_str(), r.path.as_str()), ("POST", "/pause"));
        assert_eq!(r.query("x").as_deref(), Some("/"));
        assert_eq!(r.header("HOST"), Some("127.0.0.1:9"));
        assert_eq!(r.cookie("s"), Some("z"));
        assert_eq!(r.form("csrf").as_deref(), Some("ab+c"));
        assert_eq!(r.form("note").as_deref(), Some("a b!"));
        assert_eq!(r.form("absent"), None);
    }

    #[test]
    fn bad_requests_are_refused_with_their_reason() {
        assert_eq!(read(b"NOT HTTP\r\n\r\n").unwrap_err(), Refusal::Malformed);
        let mut huge = b"GET / HTTP/1.1\r\nX: ".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD + 10));
        assert_eq!(read(&huge).unwrap_err(), Refusal::HeadTooLarge);
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nContent-Length: 99999\r\n\r\n").unwrap_err(),
            Refusal::BodyTooLarge
        );
        assert_eq!(
            read(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n").unwrap_err(),
            Refusal::NoLength
        );
        assert!(
            read(b"GET / HT").unwrap().is_none(),
            "a peer that hangs up sent nothing"
        );
        assert_eq!(decode("%zz"), None);
        assert_eq!(decode("%ff"), None, "not UTF-8");
    }

    #[test]
    fn a_connection_of_this_user_is_admitted_and_a_slow_one_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        assert!(same_user(&server), "this process's own connection");
        drop(client);

        // A client that sends a byte a second never finishes its request
        // within the deadline, however many reads it makes.
        let mut slow = TcpStream::connect(addr).unwrap();
        let (server, _) = listener.accept().unwrap();
        let feeder = thread::spawn(move || {
            for b in b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" {
                if slow.write_all(&[*b]).is_err() {
                    break;
                }
                thread::sleep(Duration::from_millis(500));
            }
        });
        let started = Instant::now();
        let handler: Handler = Arc::new(|_| Response::new(200, "text/plain", "hi"));
        serve_connection(server, &handler).unwrap();
        let took = started.elapsed();
        assert!(
            took >= REQUEST_TIMEOUT && took < REQUEST_TIMEOUT + Duration::from_secs(2),
            "{took:?}"
        );
        feeder.join().unwrap();
    }

    #[test]
    fn answers_carry_the_security_headers_and_no_injected_line() {
        let bytes = Response::redirect("/x\r\nSet-Cookie: evil=1").to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("HTTP/1.1 303 See Other\r\n"));
        assert!(text.contains("\r\nlocation: /xSet-Cookie: evil=1\r\n"));
        assert!(!text.contains("\r\nSet-Cookie"));
        for (k, v) in crate::SECURITY_HEADERS {
            assert!(text.contains(&format!("\r\n{k}: {v}\r\n")), "{k}");
        }
        assert!(text.ends_with("content-length: 0\r\nconnection: close\r\n\r\n"));
    }
}
