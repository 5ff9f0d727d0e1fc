//! A real Tomcat (Debian's `tomcat10`, installed by `make tomcat`) with its
//! default buffered `AccessLogValve`: a 128,000-char buffer written out when
//! full — in the middle of a line — and flushed by the engine's background
//! thread every `backgroundProcessorDelay` (10 s). The real sidecar follows
//! its logs directory while requests (404s and 500s too, so the JULI logs get
//! stack traces) hit it and is SIGKILLed and restarted during the load; then
//! Tomcat stops (its shutdown hook flushes the valve) and the sidecar drains.
//!
//! Every file must be in S3 exactly (parts tile it byte for byte), no part may
//! end inside a line Tomcat had not finished, and through the shipper every
//! access-log line is exactly one event. The load runs in rounds: a burst that
//! fills the valve's buffer at least once, then a wait for the background flush
//! that finishes the burst's last line; so each round leaves the file ending
//! mid-line for most of the 10 s period, the case that used to split lines.
//!
//! `LOGDROP_TEST_SIDECAR=/path/to/sidecar` runs it against another build; the
//! figures (events exact, lines split, forced cuts) are printed before the
//! assertions, so an older build still reports them.

use crate::rig::*;
use crate::sidecar_rig::*;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Where Debian's tomcat10 puts Tomcat's jars and scripts (CATALINA_HOME).
const CATALINA_HOME: &str = "/usr/share/tomcat10";
/// Rounds of load; each is a burst of requests, then the valve's background flush.
const ROUNDS: usize = 5;
/// Requests per round: ~520 bytes of access log each, so a burst writes about
/// twice the valve's 128,000-char buffer.
const PER_ROUND: usize = 400;
/// SIGKILL and restart the sidecar when these requests (numbered from 0 over
/// the whole run) have been answered: in the middle of bursts.
const KILL_AFTER_REQUEST: [usize; 3] = [250, 1_130, 1_790];
/// ... and right after these rounds' bursts, while the file ends mid-line.
const KILL_AFTER_ROUND: [usize; 2] = [1, 3];

fn free_port() -> u16 {
    let l = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind a free port");
    l.local_addr().expect("local addr").port()
}

/// `$JAVA_HOME/bin/java` if set, else `java` on the PATH.
fn java() -> PathBuf {
    std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|j| j.exists())
        .unwrap_or_else(|| PathBuf::from("java"))
}

/// The request a number stands for: mostly pages, every 10th a 404, every
/// 20th a JSP that throws (a 500 with a stack trace in `localhost.*.log`).
/// A padded query string of varying length makes the access-log lines long,
/// so the valve's buffer fills, and ends, at varying places in a line.
fn request(i: usize, rng: &mut fastrand::Rng) -> (String, u16) {
    let pad: String = (0..rng.usize(250..650))
        .map(|_| rng.alphanumeric())
        .collect();
    let (path, status) = match i % 20 {
        7 => ("/boom.jsp", 500),
        3 | 13 => ("/missing", 404),
        n if n % 2 == 0 => ("/index.html", 200),
        _ => ("/boom.jsp", 200),
    };
    let fail = if status == 500 { "&fail=1" } else { "" };
    (format!("{path}?n={i:06}{fail}&pad={pad}"), status)
}

/// One GET on a new connection; the response's status code.
fn get(port: u16, path: &str) -> std::io::Result<u16> {
    let mut conn = TcpStream::connect((Ipv4Addr::LOCALHOST, port))?;
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    let head = String::from_utf8_lossy(&answer[..answer.len().min(12)]).to_string();
    head.strip_prefix("HTTP/1.1 ")
        .and_then(|s| s.get(..3))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP answer: {head:?}")))
}

/// Tomcat running from its Debian jars with `base` as CATALINA_BASE (its
/// `logs/` is the directory the sidecar follows). Killed if the test ends first.
struct Tomcat {
    child: Child,
    port: u16,
}

impl Tomcat {
    fn start(base: &Path) -> Tomcat {
        let home = Path::new(CATALINA_HOME);
        assert!(
            home.join("bin/bootstrap.jar").exists(),
            "{CATALINA_HOME} is missing: run `make tomcat` (make test does it)"
        );
        let port = free_port();
        write_base(base, port);
        let out = std::fs::File::create(base.join("tomcat.out")).expect("tomcat.out");
        let mut cmd = Command::new(java());
        cmd.current_dir(base)
            .env("TZ", "UTC")
            .arg("-Duser.timezone=UTC")
            .arg(format!(
                "-Djava.util.logging.config.file={}",
                base.join("conf/logging.properties").display()
            ))
            .arg("-Djava.util.logging.manager=org.apache.juli.ClassLoaderLogManager")
            .arg(format!("-Dcatalina.base={}", base.display()))
            .arg(format!("-Dcatalina.home={CATALINA_HOME}"))
            .arg(format!("-Djava.io.tmpdir={}", base.join("temp").display()))
            .arg("-classpath")
            .arg(format!(
                "{h}/bin/bootstrap.jar:{h}/bin/tomcat-juli.jar",
                h = CATALINA_HOME
            ))
            .args(["org.apache.catalina.startup.Bootstrap", "start"])
            .stdin(Stdio::null())
            .stdout(out.try_clone().expect("tomcat.out"))
            .stderr(out);
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let child = cmd.spawn().expect("start java (Tomcat)");
        Tomcat { child, port }
    }

    /// Polls until Tomcat answers (two minutes only guard against a hang).
    fn wait_ready(&mut self, base: &Path) {
        let deadline = Instant::now() + Duration::from_secs(120);
        while get(self.port, "/index.html").ok() != Some(200) {
            let out = || std::fs::read_to_string(base.join("tomcat.out")).unwrap_or_default();
            assert!(
                self.child.try_wait().expect("wait").is_none(),
                "Tomcat exited\n{}",
                out()
            );
            assert!(Instant::now() < deadline, "Tomcat not up\n{}", out());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tomcat {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A minimal CATALINA_BASE: Debian's defaults for what matters here (the
/// Host's `AccessLogValve` with its default buffering and pattern, JULI's
/// `AsyncFileHandler`s for catalina and localhost), an HTTP connector on
/// loopback, no shutdown port, and a ROOT webapp with a page and a JSP.
fn write_base(base: &Path, port: u16) {
    for d in ["conf", "logs", "webapps/ROOT", "work", "temp"] {
        std::fs::create_dir_all(base.join(d)).expect("base dir");
    }
    let server = format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<Server port="-1" shutdown="SHUTDOWN">
  <Service name="Catalina">
    <Connector port="{port}" address="127.0.0.1" protocol="HTTP/1.1" connectionTimeout="20000"/>
    <Engine name="Catalina" defaultHost="localhost">
      <Host name="localhost" appBase="webapps" unpackWARs="false" autoDeploy="false">
        <Valve className="org.apache.catalina.valves.AccessLogValve" directory="logs"
               prefix="localhost_access_log" suffix=".txt"
               pattern="%h %l %u %t &quot;%r&quot; %s %b" />
      </Host>
    </Engine>
  </Service>
</Server>
"#
    );
    let logging = "\
handlers = 1catalina.org.apache.juli.AsyncFileHandler, 2localhost.org.apache.juli.AsyncFileHandler
.handlers = 1catalina.org.apache.juli.AsyncFileHandler
1catalina.org.apache.juli.AsyncFileHandler.level = FINE
1catalina.org.apache.juli.AsyncFileHandler.directory = ${catalina.base}/logs
1catalina.org.apache.juli.AsyncFileHandler.prefix = catalina.
2localhost.org.apache.juli.AsyncFileHandler.level = FINE
2localhost.org.apache.juli.AsyncFileHandler.directory = ${catalina.base}/logs
2localhost.org.apache.juli.AsyncFileHandler.prefix = localhost.
org.apache.catalina.core.ContainerBase.[Catalina].[localhost].level = INFO
org.apache.catalina.core.ContainerBase.[Catalina].[localhost].handlers = 2localhost.org.apache.juli.AsyncFileHandler
";
    let web = r#"<?xml version="1.0" encoding="UTF-8"?>
<web-app xmlns="https://jakarta.ee/xml/ns/jakartaee" version="6.0">
  <servlet><servlet-name>default</servlet-name>
    <servlet-class>org.apache.catalina.servlets.DefaultServlet</servlet-class>
    <load-on-startup>1</load-on-startup></servlet>
  <servlet><servlet-name>jsp</servlet-name>
    <servlet-class>org.apache.jasper.servlet.JspServlet</servlet-class>
    <load-on-startup>3</load-on-startup></servlet>
  <servlet-mapping><servlet-name>default</servlet-name><url-pattern>/</url-pattern></servlet-mapping>
  <servlet-mapping><servlet-name>jsp</servlet-name><url-pattern>*.jsp</url-pattern></servlet-mapping>
</web-app>
"#;
    // No jar scanning for TLDs: it only slows the start.
    let context = r#"<?xml version="1.0" encoding="UTF-8"?>
<Context><JarScanner scanClassPath="false" scanManifest="false"/></Context>
"#;
    let jsp = r#"<% if (request.getParameter("fail") != null) { throw new IllegalStateException("boom " + request.getParameter("n")); } %>ok
"#;
    let files = [
        ("conf/server.xml", server.as_str()),
        ("conf/logging.properties", logging),
        ("conf/web.xml", web),
        ("conf/context.xml", context),
        ("webapps/ROOT/index.html", "hello\n"),
        ("webapps/ROOT/boom.jsp", jsp),
    ];
    for (name, text) in files {
        std::fs::write(base.join(name), text).expect("write conf");
    }
}

/// The access log's name, once Tomcat has opened it.
fn access_log(dir: &Path) -> Option<PathBuf> {
    std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("localhost_access_log."))
        })
        .max()
}

/// Whether the access log holds request `i`'s whole line (its newline written).
fn logged(dir: &Path, i: usize) -> bool {
    let Some(path) = access_log(dir) else {
        return false;
    };
    let bytes = std::fs::read(path).unwrap_or_default();
    let tail = &bytes[bytes.len().saturating_sub(64 << 10)..];
    let marker = format!("n={i:06}&");
    let text = String::from_utf8_lossy(tail);
    text.find(&marker)
        .is_some_and(|at| text[at..].contains('\n'))
}

/// Watches the access log: how often and how long it ended inside a line.
struct MidLine {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Duration>>,
}

impl MidLine {
    fn watch(dir: PathBuf) -> MidLine {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || {
            let mut spans = Vec::new();
            let (mut len, mut since) = (0u64, None::<Instant>);
            while !flag.load(Ordering::Relaxed) {
                if let Some(path) = access_log(&dir)
                    && let Ok(mut f) = std::fs::File::open(&path)
                {
                    let now = f.metadata().map(|m| m.len()).unwrap_or(0);
                    if now != len && now > 0 {
                        len = now;
                        let mut last = [0u8];
                        use std::io::Seek;
                        let ok = f.seek(std::io::SeekFrom::Start(now - 1)).is_ok()
                            && f.read_exact(&mut last).is_ok();
                        match (ok && last[0] != b'\n', since) {
                            (true, None) => since = Some(Instant::now()),
                            (false, Some(t)) => {
                                spans.push(t.elapsed());
                                since = None;
                            }
                            _ => {}
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            spans
        });
        MidLine { stop, thread }
    }

    fn finish(self) -> Vec<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("watcher")
    }
}

fn kill_and_restart(s: &SidecarRig, sidecar: &mut Running) {
    signal(sidecar, libc::SIGKILL);
    let status = wait_exit(sidecar, Duration::from_secs(30)).expect("killed");
    // It was still running: it had not failed on its own.
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(libc::SIGKILL),
        "{status}\n{}",
        s.log()
    );
    *sidecar = s.spawn();
}

/// Per file: where parts end inside a line (a line split in two) and inside
/// an event (a forced cut), from the uploaded parts alone.
struct Cuts {
    parts: usize,
    inside_line: usize,
    inside_event: usize,
}

fn cuts(file: &str, content: &[u8], chunks: &Chunks) -> Cuts {
    let starts: BTreeSet<u64> = event_starts(file, content)
        .into_iter()
        .map(|x| x as u64)
        .collect();
    let len = content.len() as u64;
    let inner: Vec<u64> = chunks
        .keys()
        .map(|&(_, e)| e)
        .filter(|&e| e < len)
        .collect();
    Cuts {
        parts: chunks.len(),
        inside_line: inner
            .iter()
            .filter(|&&e| e == 0 || content[e as usize - 1] != b'\n')
            .count(),
        inside_event: inner.iter().filter(|e| !starts.contains(e)).count(),
    }
}

/// How many of `want` are in `got` (as multisets): the events that arrived exactly.
fn exact(got: &[(i64, String)], want: &[(i64, String)]) -> usize {
    let mut left: BTreeMap<&(i64, String), usize> = BTreeMap::new();
    for e in got {
        *left.entry(e).or_default() += 1;
    }
    want.iter()
        .filter(|e| match left.get_mut(e) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        })
        .count()
}

async fn segment_keys(rig: &Rig) -> Vec<String> {
    let mut keys = Vec::new();
    let mut token = None;
    loop {
        let page = rig
            .s3
            .client()
            .list_objects_v2()
            .bucket(&rig.bucket)
            .prefix("logs/")
            .set_continuation_token(token)
            .send()
            .await
            .expect("list");
        keys.extend(
            page.contents()
                .iter()
                .filter_map(|o| o.key().map(String::from)),
        );
        token = page.next_continuation_token().map(String::from);
        if token.is_none() {
            return keys;
        }
    }
}

#[tokio::test]
async fn real_tomcat_buffered_access_log_ships_whole_lines_exactly_once() {
    let began = Instant::now();
    let mut s = SidecarRig::new("tomcat").await;
    s.enable_versioning().await;
    // The issue's settings, where a mid-line tail was cut: flush 5 s, hold 5 s.
    s.extra_env = vec![
        ("LOGDROP_FLUSH_INTERVAL".into(), "5s".into()),
        ("LOGDROP_HOLD_TIMEOUT".into(), "5s".into()),
        ("LOGDROP_POLL_INTERVAL".into(), "100ms".into()),
        ("LOGDROP_CHUNK_BYTES".into(), "262144".into()),
    ];
    let base = s.dir.path().to_path_buf();
    let logs = s.log_dir();
    let mut sidecar = s.spawn();
    let mut tomcat = Tomcat::start(&base);
    tomcat.wait_ready(&base);
    let watch = MidLine::watch(logs.clone());
    let started = began.elapsed();

    let mut rng = fastrand::Rng::with_seed(12);
    let mut kills = 0;
    let mut round_waits = Vec::new();
    for round in 0..ROUNDS {
        let first = round * PER_ROUND;
        for i in first..first + PER_ROUND {
            let (path, status) = request(i, &mut rng);
            let got = get(tomcat.port, &path).expect("request");
            assert_eq!(got, status, "{path}");
            if KILL_AFTER_REQUEST.contains(&i) {
                kill_and_restart(&s, &mut sidecar);
                kills += 1;
            }
        }
        let last = first + PER_ROUND - 1;
        if KILL_AFTER_ROUND.contains(&round) {
            kill_and_restart(&s, &mut sidecar);
            kills += 1;
        }
        // The burst's last line is finished only by the background flush (or
        // a later buffer fill): wait for it, so the next burst starts just
        // after a flush and this round's tail sits unfinished meanwhile.
        let waited = Instant::now();
        let deadline = waited + Duration::from_secs(60);
        while !logged(&logs, last) {
            assert!(Instant::now() < deadline, "request {last} not logged");
            std::thread::sleep(Duration::from_millis(20));
        }
        round_waits.push(waited.elapsed());
    }
    let load = began.elapsed() - started;

    // Tomcat's shutdown hook stops the valve, which flushes its buffer.
    signal(&tomcat.child, libc::SIGTERM);
    wait_exit(&mut tomcat.child, Duration::from_secs(60)).expect("Tomcat stops");
    let midline = watch.finish();
    signal(&sidecar, libc::SIGTERM);
    let status = wait_exit(&mut sidecar, Duration::from_secs(60)).expect("sidecar stops");
    assert!(status.success(), "{}", s.log());

    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&logs)
        .expect("logs")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .map(|n| {
            let content = std::fs::read(logs.join(&n)).expect("read log");
            (n, content)
        })
        .collect();
    files.sort();
    let chunks = s.chunks().await;
    let none = Chunks::new();
    let of = |name: &str| chunks.get(&(name.to_string(), 0)).unwrap_or(&none);

    // Through the shipper, in-process, every segment in one invocation.
    let keys = segment_keys(&s.rig).await;
    let shipped = s
        .rig
        .shipper()
        .handle(&s.rig.s3_event(&keys), &inv("tomcat"))
        .await;

    let access = files
        .iter()
        .find(|(n, _)| n.starts_with("localhost_access_log."))
        .expect("an access log");
    let lines = access.1.iter().filter(|&&b| b == b'\n').count();
    // The sidecar's own account of its forced cuts (older builds log none).
    let forced_logged = s
        .log()
        .lines()
        .filter(|l| l.contains("cut inside a line"))
        .count();
    let bin = std::env::var("LOGDROP_TEST_SIDECAR")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_sidecar").to_string());
    eprintln!(
        "tomcat: sidecar {bin}; {} requests, {kills} sidecar kills; started in {:.1?}, load {:.1?}; \
         rounds waited for the background flush {:.1?}; {} segments",
        ROUNDS * PER_ROUND,
        started,
        load,
        round_waits,
        keys.len()
    );
    eprintln!(
        "tomcat: the access log ended inside a line {} times, longest {:.1?}, all {:.1?}",
        midline.len(),
        midline.iter().max().copied().unwrap_or_default(),
        midline
    );
    let mut want_all = Vec::new();
    for (name, content) in &files {
        let stem = name.split('.').next().expect("stem");
        let c = cuts(name, content, of(name));
        let got = s.rig.events(&s.rig.stream(stem)).await;
        let want = expected_events(name, content);
        eprintln!(
            "tomcat: {name}: {} bytes, {} lines, {} parts; parts ending inside a line {}, \
             inside an event {}; events exact {} of {} ({} in the stream)",
            content.len(),
            content.iter().filter(|&&b| b == b'\n').count(),
            c.parts,
            c.inside_line,
            c.inside_event,
            exact(&got, &want),
            want.len(),
            got.len()
        );
        want_all.push((name.clone(), got, want));
    }
    eprintln!(
        "tomcat: {} access lines; forced cuts the sidecar logged: {forced_logged}; \
         test time {:.1?}",
        lines,
        began.elapsed()
    );

    // Only Tomcat's files, each as one generation (no rotation here).
    for (file, generation) in chunks.keys() {
        assert!(
            *generation == 0 && files.iter().any(|(n, _)| n == file),
            "unexpected {file} gen {generation}"
        );
    }
    assert!(lines >= ROUNDS * PER_ROUND, "{lines} access lines");
    // The case under test happened: the valve's buffer left the file ending
    // inside a line (each round's tail waits for the background flush).
    assert!(
        !midline.is_empty(),
        "the access log never ended inside a line"
    );
    for (name, content) in &files {
        let c = of(name);
        if content.is_empty() {
            assert!(c.is_empty(), "{name}: parts of an empty file");
            continue;
        }
        assert_tiles(c, content, name);
        // The sidecar never cuts a line Tomcat has not finished.
        for &(start, end) in c.keys() {
            assert!(
                end == content.len() as u64 || content[end as usize - 1] == b'\n',
                "{name}: part {start}-{end} ends inside a line"
            );
        }
    }
    // The suite's own build also says so: no cut it made was forced (an
    // `Everything` cut that happened to land on a newline would pass the above).
    if std::env::var_os("LOGDROP_TEST_SIDECAR").is_none() {
        assert_eq!(forced_logged, 0, "forced cuts logged by the sidecar");
    }
    let report = shipped.expect("the shipper ships every segment").to_json();
    for (name, got, want) in &want_all {
        assert_eq!(got.len(), want.len(), "{name}: event count\n{report}");
        assert!(got == want, "{name}: events differ");
    }
}
