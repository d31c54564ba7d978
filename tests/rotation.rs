//! Certificates rotated 20 times, the way a Secret volume does it, while clients keep sending on
//! new and reused connections: no request may fail.

mod common;

use std::os::unix::fs::symlink;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

const ROTATIONS: usize = 20;

fn flip(root: &Path, target: &str) {
    symlink(target, root.join("..data_tmp")).unwrap();
    std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_rotations_under_load_fail_no_request() {
    common::install_crypto();
    let root = tempfile::tempdir().unwrap();
    let mut trusted = String::new();
    let mut leaves = Vec::new();
    for i in 0..=ROTATIONS {
        let dir = root.path().join(format!("..gen{i}"));
        std::fs::create_dir(&dir).unwrap();
        let issued = common::issue_certs(&dir);
        trusted.push_str(&issued.ca_pem);
        leaves.push(common::pem_to_der(&issued.cert_pem));
    }
    symlink("..gen0", root.path().join("..data")).unwrap();
    symlink("..data/tls.crt", root.path().join("tls.crt")).unwrap();
    symlink("..data/tls.key", root.path().join("tls.key")).unwrap();
    let server =
        common::TestServer::start_with(root.path(), &trusted, &["--cert-check-interval", "20ms"])
            .await;

    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let (stop, ok, failed, trusted, url) = (
            stop.clone(),
            ok.clone(),
            failed.clone(),
            trusted.clone(),
            server.url(),
        );
        clients.push(tokio::spawn(async move {
            // Workers 0 and 1 reuse one client (keep-alive, h1 and h2); 2 and 3 connect anew each time.
            let reused = common::client(&trusted, worker == 1);
            while !stop.load(Ordering::Relaxed) {
                let client = if worker < 2 {
                    reused.clone()
                } else {
                    common::client(&trusted, worker == 3)
                };
                let sent = common::post_review(&client, &url, common::FIXTURE)
                    .send()
                    .await;
                match sent {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    other => {
                        eprintln!("failed: {other:?}");
                        failed.fetch_add(1, Ordering::Relaxed)
                    }
                };
            }
        }));
    }
    for i in 1..=ROTATIONS {
        tokio::time::sleep(Duration::from_millis(150)).await;
        flip(root.path(), &format!("..gen{i}"));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    eprintln!("{ok} requests succeeded across {ROTATIONS} rotations");
    assert_eq!(failed, 0, "{failed} of {} requests failed", ok + failed);
    assert!(ok > 100, "only {ok} requests were sent");
    assert_eq!(
        common::presented_certificate(server.webhook, &trusted).await,
        leaves[ROTATIONS]
    );
    let metrics = server.metrics().await;
    assert!(
        metrics.contains(&format!(
            "kafka_listener_injector_certificate_reloads_total{{result=\"success\"}} {ROTATIONS}"
        )),
        "{metrics}"
    );
}
