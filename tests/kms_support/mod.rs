//! Loopback stub servers shared by the `kms_*` integration tests (127.0.0.1:0 only).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// One request as the stub saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub n: usize,
    pub method: Method,
    pub uri: Uri,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Captured {
    pub fn query(&self) -> BTreeMap<String, String> {
        decode_form(self.uri.query().unwrap_or_default())
    }

    pub fn form(&self) -> BTreeMap<String, String> {
        decode_form(std::str::from_utf8(&self.body).unwrap_or_default())
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    }
}

/// `application/x-www-form-urlencoded` decoding (`+` is a space).
pub fn decode_form(text: &str) -> BTreeMap<String, String> {
    reqwest::Url::parse(&format!("http://x/?{text}"))
        .unwrap()
        .query_pairs()
        .into_owned()
        .collect()
}

/// `None` means: never answer (the client must time out).
pub type Behaviour = Arc<dyn Fn(&Captured) -> Option<Response> + Send + Sync>;

pub struct Stub {
    pub addr: SocketAddr,
    pub hits: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Captured>>>,
}

impl Stub {
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }

    pub fn last(&self) -> Captured {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request")
    }
}

pub async fn spawn(behaviour: Behaviour) -> Stub {
    let hits = Arc::new(AtomicUsize::new(0));
    let requests = Arc::new(Mutex::new(Vec::new()));
    let (h, r) = (hits.clone(), requests.clone());
    let handler = move |method: Method, uri: Uri, headers: HeaderMap, body: Bytes| {
        let (hits, requests, behaviour) = (h.clone(), r.clone(), behaviour.clone());
        async move {
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            let captured = Captured {
                n,
                method,
                uri,
                headers,
                body,
            };
            requests.lock().unwrap().push(captured.clone());
            match behaviour(&captured) {
                Some(response) => response,
                None => std::future::pending::<Response>().await,
            }
        }
    };
    let app = axum::Router::new().fallback(handler);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Stub {
        addr,
        hits,
        requests,
    }
}

/// A JSON answer with `x-acs-request-id`.
pub fn json(status: u16, body: serde_json::Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap();
    let request_id = body
        .get("RequestId")
        .and_then(|v| v.as_str())
        .unwrap_or("stub-request")
        .to_string();
    (
        status,
        [
            ("content-type", "application/json".to_string()),
            ("x-acs-request-id", request_id),
        ],
        body.to_string(),
    )
        .into_response()
}

/// A KMS error body in the gateway shape.
pub fn kms_error(status: u16, code: &str, message: &str, n: usize) -> Response {
    json(
        status,
        serde_json::json!({
            "RequestId": format!("req-{n}"),
            "HostId": "kms.cn-hangzhou.aliyuncs.com",
            "Code": code,
            "Message": message,
            "Recommend": format!("https://api.aliyun.com/troubleshoot?q={code}&requestId=req-{n}"),
            "HttpStatus": status,
        }),
    )
}

/// A TCP listener that reads a little of each request and drops the connection.
pub async fn spawn_dropper() -> (SocketAddr, Arc<AtomicUsize>) {
    use tokio::io::AsyncReadExt;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepts = Arc::new(AtomicUsize::new(0));
    let counter = accepts.clone();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            let mut buf = [0u8; 1024];
            let _ = socket.read(&mut buf).await;
            drop(socket);
        }
    });
    (addr, accepts)
}

/// Verifies a V3 or classic RPC signature the way a gateway does, using `kmsync::kms::sign`.
pub fn verify_signature(req: &Captured, secret: &str) -> Result<(), String> {
    use kmsync::kms::sign;
    if let Some(auth) = req.header("authorization") {
        let parsed = sign::parse_v3_authorization(&auth).ok_or("malformed Authorization")?;
        let mut headers = BTreeMap::new();
        for name in &parsed.signed_headers {
            let value = req
                .header(name)
                .ok_or(format!("signed header {name} missing"))?;
            headers.insert(name.clone(), value);
        }
        let payload = sign::sha256_hex(&req.body);
        if req.header("x-acs-content-sha256").as_deref() != Some(payload.as_str()) {
            return Err("payload hash mismatch".into());
        }
        let canonical =
            sign::v3_canonical_request(req.method.as_str(), "/", &req.query(), &headers, &payload);
        let expected = sign::v3_signature(secret, &sign::v3_string_to_sign(&canonical));
        return (expected == parsed.signature)
            .then_some(())
            .ok_or_else(|| "V3 signature mismatch".to_string());
    }
    let mut params = req.query();
    params.extend(req.form());
    let given = params.remove("Signature").ok_or("no signature")?;
    let expected = sign::rpc_signature(
        secret,
        &sign::rpc_string_to_sign(req.method.as_str(), &params),
    );
    (expected == given)
        .then_some(())
        .ok_or_else(|| "RPC signature mismatch".to_string())
}
