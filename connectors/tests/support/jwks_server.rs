//! A JWKS *file server*: serves one JSON document over HTTP, and counts how
//! often it was fetched. Not an OIDC provider (the full flow runs against
//! oidc-provider): it lets tests sign tokens with keys they made, to reach
//! the cases a real provider will not produce (expired, `alg: none`,
//! tampered).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct JwksServer {
    pub url: url::Url,
    document: Arc<Mutex<String>>,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl JwksServer {
    /// Serves `document` at `http://127.0.0.1:<random>/jwks.json`.
    pub async fn start(document: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind JWKS server");
        let addr = listener.local_addr().expect("local addr");
        let document = Arc::new(Mutex::new(document));
        let hits = Arc::new(AtomicUsize::new(0));
        let (doc, count) = (document.clone(), hits.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (doc, count) = (doc.clone(), count.clone());
                tokio::spawn(async move {
                    // One request per connection; its headers fit in 8 KiB.
                    let mut buf = vec![0u8; 8192];
                    let mut read = 0;
                    while !buf[..read].windows(4).any(|w| w == b"\r\n\r\n") && read < buf.len() {
                        match socket.read(&mut buf[read..]).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => read += n,
                        }
                    }
                    count.fetch_add(1, Ordering::SeqCst);
                    let body = doc.lock().unwrap().clone();
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                    let _ = socket.shutdown().await;
                });
            }
        });
        Self {
            url: format!("http://{addr}/jwks.json").parse().expect("url"),
            document,
            hits,
            task,
        }
    }

    /// Replaces the document (the provider rotated its keys).
    pub fn set(&self, document: String) {
        *self.document.lock().unwrap() = document;
    }

    /// How many times the document was fetched.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
