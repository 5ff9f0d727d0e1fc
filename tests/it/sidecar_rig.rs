//! Running the real sidecar binary against moto, and reading back its chunks.

use crate::moto::moto;
use crate::rig::Rig;
use logdrop::core::keys::ChunkKey;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SidecarRig {
    pub rig: Rig,
    pub dir: tempfile::TempDir,
    pub extra_env: Vec<(String, String)>,
    pub endpoint: Option<String>,
}

/// Uploaded chunks of one (file, generation): start -> (end, decompressed body).
pub type Chunks = BTreeMap<u64, (u64, Vec<u8>)>;

impl SidecarRig {
    pub async fn new(name: &str) -> SidecarRig {
        let rig = Rig::new(name).await;
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("logs")).expect("log dir");
        SidecarRig {
            rig,
            dir,
            extra_env: Vec::new(),
            endpoint: None,
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.log_dir().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sidecar"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default());
        for (k, v) in moto().env() {
            cmd.env(k, v);
        }
        if let Some(e) = &self.endpoint {
            cmd.env("AWS_ENDPOINT_URL", e);
        }
        cmd.env("LOGDROP_BUCKET", &self.rig.bucket)
            .env("LOGDROP_LOG_DIR", self.log_dir())
            .env("LOGDROP_CLUSTER", &self.rig.cluster)
            .env("LOGDROP_TASK_ID", crate::rig::TASK)
            .env("LOGDROP_POLL_INTERVAL", "20ms")
            .env("LOGDROP_FLUSH_INTERVAL", "100ms")
            .env("LOGDROP_HOLD_TIMEOUT", "300ms")
            .env("LOGDROP_CHUNK_BYTES", "16384")
            .env("RUST_LOG", "info");
        for (k, v) in &self.extra_env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("sidecar.log"))
            .expect("log file");
        let log2 = log.try_clone().expect("log file");
        cmd.stdin(Stdio::null()).stdout(log).stderr(log2);
        cmd
    }

    pub fn spawn(&self) -> Running {
        Running(self.command(&[]).spawn().expect("spawn sidecar"))
    }

    pub fn once(&self) {
        let status = self.command(&["--once"]).status().expect("run --once");
        assert!(status.success(), "--once failed: {}", self.log());
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sidecar.log")).unwrap_or_default()
    }

    /// Every chunk in the bucket, by (file, generation), bodies decompressed.
    /// With versioning on, every upload of a key is checked to be identical.
    pub async fn chunks(&self) -> BTreeMap<(String, u64), Chunks> {
        let client = self.rig.s3.client();
        let mut out: BTreeMap<(String, u64), Chunks> = BTreeMap::new();
        let mut versions: BTreeMap<String, Vec<Vec<u8>>> = BTreeMap::new();
        let mut key_marker: Option<String> = None;
        let mut version_marker: Option<String> = None;
        loop {
            let page = client
                .list_object_versions()
                .bucket(&self.rig.bucket)
                .prefix("logs/")
                .set_key_marker(key_marker.clone())
                .set_version_id_marker(version_marker.clone())
                .send()
                .await
                .expect("list versions");
            for v in page.versions() {
                let key = v.key().expect("key").to_string();
                let obj = client
                    .get_object()
                    .bucket(&self.rig.bucket)
                    .key(&key)
                    .set_version_id(v.version_id().map(str::to_string))
                    .send()
                    .await
                    .expect("get");
                versions
                    .entry(key)
                    .or_default()
                    .push(obj.body.collect().await.expect("body").to_vec());
            }
            if page.is_truncated() != Some(true) {
                break;
            }
            key_marker = page.next_key_marker().map(str::to_string);
            version_marker = page.next_version_id_marker().map(str::to_string);
        }
        for (key, bodies) in versions {
            assert!(
                bodies.windows(2).all(|w| w[0] == w[1]),
                "{key} was uploaded twice with different bytes"
            );
            let k = ChunkKey::parse(&key, "logs").expect("v1 key");
            let mut plain = Vec::new();
            flate2::read::GzDecoder::new(&bodies[0][..])
                .read_to_end(&mut plain)
                .expect("gzip");
            assert_eq!(plain.len() as u64, k.end - k.start, "{key}: body length");
            out.entry((k.file, k.generation))
                .or_default()
                .insert(k.start, (k.end, plain));
        }
        out
    }

    pub async fn enable_versioning(&self) {
        let conf = aws_sdk_s3::types::VersioningConfiguration::builder()
            .status(aws_sdk_s3::types::BucketVersioningStatus::Enabled)
            .build();
        self.rig
            .s3
            .client()
            .put_bucket_versioning()
            .bucket(&self.rig.bucket)
            .versioning_configuration(conf)
            .send()
            .await
            .expect("versioning");
    }
}

/// The chunks of one generation must tile `[0, len)` and rejoin to `content`.
pub fn assert_tiles(chunks: &Chunks, content: &[u8], what: &str) {
    let mut at = 0u64;
    let mut joined = Vec::with_capacity(content.len());
    for (&start, (end, body)) in chunks {
        assert_eq!(start, at, "{what}: gap or overlap at {at}");
        joined.extend_from_slice(body);
        at = *end;
    }
    assert_eq!(
        at,
        content.len() as u64,
        "{what}: shipped {at} of {} bytes",
        content.len()
    );
    assert!(
        joined == content,
        "{what}: chunks do not rejoin to the file"
    );
}

/// A sidecar process that is killed if the test ends before it does.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

impl std::ops::Deref for Running {
    type Target = Child;
    fn deref(&self) -> &Child {
        &self.0
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.0
    }
}

pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

pub fn signal(child: &Child, sig: i32) {
    // SAFETY: sending a signal to our own child process.
    unsafe {
        libc::kill(child.id() as i32, sig);
    }
}

pub fn append(path: &Path, bytes: &[u8]) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open for append");
    f.write_all(bytes).expect("append");
}

/// Peak resident memory of a running process, from /proc.
pub fn peak_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}
