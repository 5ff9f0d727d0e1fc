//! The sidecar image as a task runs it: built from the Dockerfile with the
//! static musl binary (`make sidecar`), run by podman with runc as the task
//! definition runs it (read-only root, no capabilities), against moto.

use crate::moto::moto;
use crate::rig::*;
use std::io::Read;
use std::path::PathBuf;
use std::process::Command;

const TAG: &str = "localhost/logdrop-sidecar:it";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn podman() -> Command {
    let mut cmd = Command::new("podman");
    // Where the host refuses rlimits (CI's nested containers), see the file.
    if std::env::var_os("CONTAINERS_CONF").is_none() {
        cmd.env("CONTAINERS_CONF", root().join("scripts/containers.conf"));
    }
    cmd
}

fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e} (make test installs podman and runc)"));
    assert!(
        out.status.success(),
        "{what}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Every object under `prefix`, in key order, gunzipped.
async fn objects(rig: &Rig, prefix: &str) -> Vec<Vec<u8>> {
    let list = rig
        .s3
        .client()
        .list_objects_v2()
        .bucket(&rig.bucket)
        .prefix(prefix)
        .send()
        .await
        .expect("list");
    let mut keys: Vec<String> = list
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_string))
        .collect();
    keys.sort();
    let mut out = Vec::new();
    for key in keys {
        let body = rig
            .s3
            .client()
            .get_object()
            .bucket(&rig.bucket)
            .key(&key)
            .send()
            .await
            .expect("get object")
            .body
            .collect()
            .await
            .expect("body")
            .to_vec();
        out.push(body);
    }
    out
}

fn gunzip(gz: &[u8]) -> Vec<u8> {
    let mut content = Vec::new();
    flate2::read::MultiGzDecoder::new(gz)
        .read_to_end(&mut content)
        .expect("gunzip");
    content
}

/// What the sidecar shipped of `file`: its layout v1 chunks in key order
/// (which is file order) and its parts of the task's v2 segments (in
/// sequence order), joined.
async fn shipped(rig: &Rig, file: &str) -> Vec<u8> {
    let mut content = Vec::new();
    for body in objects(rig, &format!("logs/{}/{TASK}/{file}/0/", rig.cluster)).await {
        content.extend(gunzip(&body));
    }
    for body in objects(rig, &format!("logs/{}/{TASK}/segment/", rig.cluster)).await {
        let mut head = logdrop::core::segment::HeadReader::default();
        let (manifest, rest) = head.push(&body).expect("segment").expect("manifest");
        let mut at = 0usize;
        for part in &manifest.parts {
            let len = part.bytes as usize;
            if part.file == file {
                content.extend(gunzip(&rest[at..at + len]));
            }
            at += len;
        }
    }
    content
}

#[tokio::test]
async fn image_ships_the_log_directory_once() {
    let binary = root().join("target/sidecar-x86_64-unknown-linux-musl");
    assert!(
        binary.exists(),
        "{} is missing: run `make sidecar` (make test does)",
        binary.display()
    );
    run(
        Command::new(root().join("scripts/build-image.sh"))
            .arg(TAG)
            .env("ARCH", "x86_64")
            .env("CONTAINER_TOOL", "podman"),
        "build the image",
    );
    let size = run(
        podman().args(["image", "inspect", "--format", "{{.Size}}", TAG]),
        "inspect",
    );
    let size: u64 = String::from_utf8_lossy(&size.stdout)
        .trim()
        .parse()
        .expect("size");
    let binary_size = std::fs::metadata(&binary).expect("binary").len();
    eprintln!("image {TAG}: {size} bytes (binary {binary_size})");
    // The binary, a CA bundle (about 300 KB) and metadata: nothing else.
    assert!(size < binary_size + 1_000_000, "{size} bytes");

    // Without a CA bundle a scratch image cannot verify S3's certificate
    // (UnknownIssuer): the image carries the pinned one where rustls looks.
    let id = run(podman().args(["create", TAG]), "create a container");
    let id = String::from_utf8_lossy(&id.stdout).trim().to_string();
    let copied = tempfile::tempdir().expect("tempdir");
    let cp = podman()
        .args(["cp", &format!("{id}:/etc/ssl/certs/ca-certificates.crt")])
        .arg(copied.path())
        .output();
    let _ = podman().args(["rm", &id]).output();
    assert!(
        cp.is_ok_and(|o| o.status.success()),
        "no CA bundle in the image"
    );
    let bundle = std::fs::read(copied.path().join("ca-certificates.crt")).expect("bundle");
    let certificates = bundle
        .windows(27)
        .filter(|w| w == b"-----BEGIN CERTIFICATE-----")
        .count();
    assert!(
        certificates > 100,
        "{certificates} certificates in the bundle"
    );

    let rig = Rig::new("image").await;
    let logs = tempfile::tempdir().expect("tempdir");
    let files = [
        "catalina.2026-11-24.log",
        "localhost_access_log.2026-11-24.txt",
    ];
    for file in files {
        std::fs::write(logs.path().join(file), corpus(file)).expect("write log");
    }
    let mount = format!("{}:/usr/local/tomcat/logs", logs.path().display());
    let mut cmd = podman();
    cmd.args(["--runtime", "runc", "run", "--rm", "--network", "host"])
        .args(["--read-only", "--cap-drop", "ALL", "-v", &mount])
        .args(["-e", &format!("LOGDROP_BUCKET={}", rig.bucket)])
        .args(["-e", &format!("LOGDROP_CLUSTER={}", rig.cluster)])
        .args(["-e", &format!("LOGDROP_TASK_ID={TASK}")]);
    for (k, v) in moto().env() {
        cmd.args(["-e", &format!("{k}={v}")]);
    }
    let out = run(cmd.args([TAG, "--once"]), "run the image");
    eprintln!(
        "sidecar in the image:\n{}",
        String::from_utf8_lossy(&out.stdout)
    );

    for file in files {
        let got = shipped(&rig, file).await;
        assert!(
            got == corpus(file),
            "{file}: {} bytes shipped of {}",
            got.len(),
            corpus(file).len()
        );
    }
    // State version 2: the task record, one record per file, the segment counter.
    let state = logs.path().join(".logdrop");
    for name in ["task.json", "segment.json"] {
        assert!(state.join(name).exists(), "{name} written on the volume");
    }
    let records = std::fs::read_dir(state.join("files")).map_or(0, |d| d.count());
    assert_eq!(records, files.len(), "one record per file on the volume");
    let _ = podman().args(["rmi", "-f", TAG]).output();
}
