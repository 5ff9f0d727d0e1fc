//! Running the real sidecar binary against moto, and reading back its chunks.

use crate::moto::moto;
use crate::rig::Rig;
pub use crate::sidecar_proxy::{Mode, Proxy};
use logdrop::core::keys::ChunkKey;
use logdrop::core::segment::{HeadReader, PartSplitter, SegmentError, SegmentKey};
use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SidecarRig {
    pub rig: Rig,
    pub dir: tempfile::TempDir,
    pub extra_env: Vec<(String, String)>,
    pub endpoint: Option<String>,
    /// Run the sidecar as this user (the tests run as root, who reads any file).
    pub uid: Option<u32>,
    /// The sidecar's RLIMIT_NOFILE.
    pub nofile: Option<u64>,
}

/// The user `nobody`, to run a sidecar that root's files can refuse.
pub const NOBODY: u32 = 65534;

/// Uploaded chunks of one (file, generation): (start, end) -> decompressed body.
/// Keyed by the whole range, so two chunks with one start (an overlap) both show.
pub type Chunks = BTreeMap<(u64, u64), Vec<u8>>;

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
            uid: None,
            nofile: None,
        }
    }

    pub fn log_dir(&self) -> PathBuf {
        self.dir.path().join("logs")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.log_dir().join(name)
    }

    pub fn command(&self, args: &[&str]) -> Command {
        // LOGDROP_TEST_SIDECAR runs the suite against another build (e.g. an older one).
        let bin = std::env::var("LOGDROP_TEST_SIDECAR")
            .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sidecar").to_string());
        let mut cmd = Command::new(bin);
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
        let (uid, nofile) = (self.uid, self.nofile);
        if uid.is_some() || nofile.is_some() {
            if uid.is_some() {
                // nobody must reach the log directory inside root's 0700 tempdir.
                let mut perms = std::fs::metadata(self.dir.path()).unwrap().permissions();
                std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
                std::fs::set_permissions(self.dir.path(), perms).unwrap();
            }
            // SAFETY: only async-signal-safe calls between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    if let Some(n) = nofile {
                        let lim = libc::rlimit {
                            rlim_cur: n,
                            rlim_max: n,
                        };
                        if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    if let Some(u) = uid
                        && (libc::setgid(u) != 0 || libc::setuid(u) != 0)
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
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

    /// Every chunk in the bucket, by (file, generation), bodies decompressed:
    /// v1 chunks, and each part of a v2 segment as the range it carries.
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
            for (k, plain) in ranges(&key, &bodies[0]) {
                assert_eq!(plain.len() as u64, k.end - k.start, "{key}: body length");
                let chunks = out.entry((k.file, k.generation)).or_default();
                // One range in two segments (a part re-sent after a file
                // changed) must carry the same bytes: the shipper keeps one.
                if let Some(before) = chunks.get(&(k.start, k.end)) {
                    assert!(
                        *before == plain,
                        "{key}: a range sent twice with other bytes"
                    );
                }
                chunks.insert((k.start, k.end), plain);
            }
        }
        out
    }

    /// How many objects the bucket holds under the prefix, and how many are segments.
    pub async fn object_counts(&self) -> (usize, usize) {
        let page = self
            .rig
            .s3
            .client()
            .list_objects_v2()
            .bucket(&self.rig.bucket)
            .prefix("logs/")
            .send()
            .await
            .expect("list");
        let keys: Vec<&str> = page.contents().iter().filter_map(|o| o.key()).collect();
        let segments = keys
            .iter()
            .filter(|k| SegmentKey::parse(k, "logs").is_ok())
            .count();
        (keys.len(), segments)
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

/// The file ranges in one object, each decompressed: a v1 chunk is one, a
/// segment one per part (split as the shipper does: manifest, then lengths),
/// in the manifest's order.
pub fn ranges(key: &str, body: &[u8]) -> Vec<(ChunkKey, Vec<u8>)> {
    let gunzip = |g: &[u8]| {
        let mut plain = Vec::new();
        flate2::read::GzDecoder::new(g)
            .read_to_end(&mut plain)
            .expect("gzip");
        plain
    };
    let Ok(seg) = SegmentKey::parse(key, "logs") else {
        let k = ChunkKey::parse(key, "logs").expect("v1 or v2 key");
        return vec![(k, gunzip(body))];
    };
    let (manifest, rest) = HeadReader::default()
        .push(body)
        .expect("manifest")
        .expect("a whole manifest");
    let mut gz = vec![Vec::new(); manifest.parts.len()];
    let mut split = PartSplitter::new(&manifest);
    split
        .split(&rest, |i, b| -> Result<(), SegmentError> {
            gz[i].extend_from_slice(b);
            Ok(())
        })
        .expect("parts");
    split.finish().expect("every part whole");
    manifest
        .parts
        .iter()
        .zip(gz)
        .map(|(p, g)| (p.chunk_key(&seg), gunzip(&g)))
        .collect()
}

/// The chunks of one generation must tile `[0, len)` and rejoin to `content`.
pub fn assert_tiles(chunks: &Chunks, content: &[u8], what: &str) {
    let mut at = 0u64;
    let mut joined = Vec::with_capacity(content.len());
    for (&(start, end), body) in chunks {
        assert_eq!(
            start, at,
            "{what}: gap or overlap at {at} (chunk {start}-{end})"
        );
        joined.extend_from_slice(body);
        at = end;
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

/// `n` access lines, `GET /{i}` for `i` from `from`, all 200s of 5 bytes.
pub fn get_lines(from: usize, n: usize) -> Vec<u8> {
    (from..from + n)
        .map(|i| format!("10.0.0.1 - - [24/Nov/2026:10:00:00 +0000] \"GET /{i} HTTP/1.1\" 200 5\n"))
        .collect::<String>()
        .into_bytes()
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

/// Appends `content` to `path` in random-sized writes (often mid-line), with short pauses.
pub fn write_slowly(
    path: std::path::PathBuf,
    content: Vec<u8>,
    seed: u64,
    max_pause_ms: u64,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut rng = fastrand::Rng::with_seed(seed);
        let mut at = 0;
        while at < content.len() {
            let n = rng.usize(1..4000).min(content.len() - at);
            append(&path, &content[at..at + n]);
            at += n;
            std::thread::sleep(Duration::from_millis(rng.u64(0..=max_pause_ms)));
        }
    })
}

pub async fn wait_until_shipped(s: &SidecarRig, file: &str, generation: u64, len: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let chunks = s.chunks().await;
        let shipped = chunks
            .get(&(file.to_string(), generation))
            .and_then(|c| c.keys().map(|(_, e)| *e).max())
            .unwrap_or(0);
        if shipped >= len {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{file} gen {generation}: {shipped} of {len} shipped after 60 s\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the sidecar has logged `text` (60 s only guard against a hang).
pub async fn wait_for_log(s: &SidecarRig, text: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !s.log().contains(text) {
        assert!(
            Instant::now() < deadline,
            "no `{text}` after 60 s\n{}",
            s.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
