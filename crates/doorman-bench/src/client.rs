//! A minimal HTTP/1.1 keep-alive client: one hyper connection per load
//! task, no pool, no redirects, no cookies — the least client work per
//! request, so the load generator steals as little CPU as possible from
//! the server it measures on the same box.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt as _, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// A request that can be sent many times (bodies and headers are cheap
/// `Bytes` clones).
#[derive(Clone, Debug)]
pub struct Template {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Template {
    /// A `GET` of `path_and_query`.
    pub fn get(path_and_query: &str) -> Result<Self, String> {
        Self::new(Method::GET, path_and_query, Bytes::new())
    }

    /// A `POST` of a form body.
    pub fn post_form(path: &str, body: String) -> Result<Self, String> {
        Self::new(Method::POST, path, Bytes::from(body))?
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
    }

    /// A `POST` of a JSON body.
    pub fn post_json(path: &str, body: &serde_json::Value) -> Result<Self, String> {
        Self::new(Method::POST, path, Bytes::from(body.to_string()))?
            .header(header::CONTENT_TYPE, "application/json")
    }

    fn new(method: Method, path: &str, body: Bytes) -> Result<Self, String> {
        let uri: Uri = path
            .parse()
            .map_err(|e| format!("bad path {path:?}: {e}"))?;
        Ok(Self {
            method,
            uri,
            headers: HeaderMap::new(),
            body,
        })
    }

    /// Adds a header.
    pub fn header(mut self, name: HeaderName, value: &str) -> Result<Self, String> {
        let value =
            HeaderValue::from_str(value).map_err(|e| format!("bad header value {name}: {e}"))?;
        self.headers.append(name, value);
        Ok(self)
    }

    fn request(&self, host: &HeaderValue) -> Result<Request<Full<Bytes>>, String> {
        let mut req = Request::builder()
            .method(self.method.clone())
            .uri(self.uri.clone())
            .body(Full::new(self.body.clone()))
            .map_err(|e| e.to_string())?;
        let h = req.headers_mut();
        h.insert(header::HOST, host.clone());
        for (name, value) in &self.headers {
            h.append(name, value.clone());
        }
        Ok(req)
    }
}

/// A response, fully read.
#[derive(Debug)]
pub struct Reply {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl Reply {
    /// The body as text, shortened, for error messages.
    pub fn describe(&self) -> String {
        let text = String::from_utf8_lossy(&self.body);
        let short: String = text.chars().take(300).collect();
        format!("{} {}", self.status.as_u16(), short)
    }

    /// A header as text.
    pub fn header(&self, name: HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body as JSON.
    pub fn json(&self) -> Result<serde_json::Value, String> {
        serde_json::from_slice(&self.body).map_err(|_| format!("not JSON: {}", self.describe()))
    }
}

/// One keep-alive connection; reconnects when the server closed it.
pub struct Conn {
    addr: SocketAddr,
    host: HeaderValue,
    tx: Option<SendRequest<Full<Bytes>>>,
}

impl Conn {
    /// A connection to `addr` (opened on first use).
    pub fn new(addr: SocketAddr) -> Result<Self, String> {
        let host = HeaderValue::from_str(&addr.to_string()).map_err(|e| e.to_string())?;
        Ok(Self {
            addr,
            host,
            tx: None,
        })
    }

    async fn connect(&mut self) -> Result<(), String> {
        let stream = TcpStream::connect(self.addr)
            .await
            .map_err(|e| format!("connect {}: {e}", self.addr))?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let (tx, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            // Ends when the server or we close the connection.
            let _ = conn.await;
        });
        self.tx = Some(tx);
        Ok(())
    }

    /// Sends a request and reads the whole response.
    pub async fn send(&mut self, template: &Template) -> Result<Reply, String> {
        if self.tx.as_ref().is_none_or(SendRequest::is_closed) {
            self.connect().await?;
        }
        let req = template.request(&self.host)?;
        let Some(tx) = self.tx.as_mut() else {
            return Err("not connected".into());
        };
        let sent = async {
            tx.ready().await?;
            let res = tx.send_request(req).await?;
            let (parts, body) = res.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, hyper::Error>(Reply {
                status: parts.status,
                headers: parts.headers,
                body,
            })
        }
        .await;
        sent.map_err(|e| {
            self.tx = None;
            format!("transport: {e}")
        })
    }
}
