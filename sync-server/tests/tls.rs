//! TLS termination with a self-signed certificate made here: HTTPS works
//! for a client that trusts it, and the port does not answer plain HTTP.

mod common;

use common::TestServer;
use sync_server::config::TlsFiles;

#[tokio::test]
async fn the_server_speaks_https_with_the_configured_certificate() {
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("certificate");
    let dir = tempfile::tempdir().unwrap();
    let cert_path = dir.path().join("cert.pem");
    let key_path = dir.path().join("key.pem");
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key_pair.serialize_pem()).unwrap();
    let files = TlsFiles {
        cert: cert_path,
        key: key_path,
    };
    let server = TestServer::start_with(move |config| config.tls = Some(files)).await;

    let client = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(cert.pem().as_bytes()).unwrap())
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let url = format!("https://localhost:{}/healthz", server.addr.port());
    let response = client.get(&url).send().await.expect("HTTPS request");
    assert_eq!(response.status(), 200);
    let url = format!(
        "https://localhost:{}/api/docs/acme/none",
        server.addr.port()
    );
    assert_eq!(client.get(&url).send().await.unwrap().status(), 404);

    // A client that does not trust the certificate is refused.
    let untrusting = reqwest::Client::builder()
        .resolve("localhost", server.addr)
        .build()
        .unwrap();
    let error = untrusting
        .get(format!("https://localhost:{}/healthz", server.addr.port()))
        .send()
        .await
        .expect_err("an untrusted certificate was accepted");
    assert!(error.is_connect(), "{error}");

    // Plain HTTP on the TLS port gets no HTTP answer.
    let plain = reqwest::get(server.http("/healthz")).await;
    assert!(plain.is_err(), "plain HTTP was answered: {plain:?}");

    server.stop().await;
}
