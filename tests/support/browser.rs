//! A real headless browser for page tests: Debian's `chromium` (installed by
//! `scripts/install-deps`), driven over the DevTools protocol on a pipe
//! (`--remote-debugging-pipe`: NUL-terminated JSON on fds 3 and 4, wired by `sh`), so no
//! WebSocket client or driver binary is needed.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// The browser binary (`CLUSTERREBOOTD_TEST_CHROMIUM` overrides).
pub fn binary() -> String {
    std::env::var("CLUSTERREBOOTD_TEST_CHROMIUM").unwrap_or_else(|_| "chromium".into())
}

/// Flags every run needs: headless, no sandbox (tests run as root), no GPU, a throwaway profile.
fn base_args(profile: &std::path::Path) -> Vec<String> {
    vec![
        "--headless".into(),
        "--no-sandbox".into(),
        "--disable-gpu".into(),
        "--no-first-run".into(),
        "--disable-extensions".into(),
        "--hide-scrollbars".into(),
        format!("--user-data-dir={}", profile.display()),
    ]
}

/// One browser with one page attached.
pub struct Browser {
    child: Child,
    stdin: ChildStdin,
    rx: mpsc::Receiver<Value>,
    next: u64,
    session: Option<String>,
    _profile: tempfile::TempDir,
}

impl Browser {
    /// Starts chromium and opens `url` in a `width`×`height` viewport.
    pub fn open(url: &str, width: u32, height: u32) -> Browser {
        Browser::open_with(url, width, height, true)
    }

    /// The page's final DOM with the page's own JavaScript switched off (what a browser without
    /// scripts shows), once the document has loaded.
    pub fn dom_without_js(url: &str) -> String {
        let mut b = Browser::open_with(url, 1280, 1000, false);
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.eval("document.readyState") != "complete" || b.eval("location.href") != url {
            assert!(Instant::now() < deadline, "the page did not load: {url}");
            std::thread::sleep(Duration::from_millis(50));
        }
        // DevTools still evaluates with page scripts disabled; prove they are.
        b.eval("document.documentElement.outerHTML")
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    fn open_with(url: &str, width: u32, height: u32, js: bool) -> Browser {
        let profile = tempfile::tempdir().expect("profile dir");
        let mut args = base_args(profile.path());
        args.push("--remote-debugging-pipe".into());
        args.push("about:blank".into());
        let quoted: Vec<String> = args.iter().map(|a| format!("'{a}'")).collect();
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "exec '{}' {} 3<&0 4>&1 </dev/null >/dev/null 2>/dev/null",
                binary(),
                quoted.join(" ")
            ))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", binary()));
        let stdin = child.stdin.take().expect("stdin");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            let mut buf = Vec::new();
            while r.read_until(0, &mut buf).is_ok_and(|n| n > 0) {
                buf.pop_if(|b| *b == 0);
                if let Ok(v) = serde_json::from_slice::<Value>(&buf)
                    && tx.send(v).is_err()
                {
                    return;
                }
                buf.clear();
            }
        });
        let mut b = Browser {
            child,
            stdin,
            rx,
            next: 0,
            session: None,
            _profile: profile,
        };
        let target = b.call("Target.createTarget", json!({"url": "about:blank"}));
        let id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = b.call(
            "Target.attachToTarget",
            json!({"targetId": id, "flatten": true}),
        );
        b.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        );
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        if !js {
            b.call(
                "Emulation.setScriptExecutionDisabled",
                json!({"value": true}),
            );
        }
        b.call("Page.navigate", json!({"url": url}));
        b
    }

    /// Sends one command and waits (at most 30 s) for its answer; panics on a protocol error.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.next += 1;
        let id = self.next;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = &self.session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).expect("encode");
        bytes.push(0);
        self.stdin.write_all(&bytes).expect("write to chromium");
        self.stdin.flush().expect("flush");
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let m = self
                .rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("chromium did not answer {method}"));
            if m["id"] == id {
                assert!(m["error"].is_null(), "{method}: {m}");
                return m["result"].clone();
            }
        }
    }

    /// The value of a JavaScript expression in the page (`null` when it threw).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// `document.querySelector(sel).innerText` (`textContent` for SVG elements; empty when absent).
    pub fn text(&mut self, sel: &str) -> String {
        let expr = format!(
            "(function(){{const e=document.querySelector({}); return e ? (e.innerText !== undefined ? e.innerText : e.textContent) : '';}})()",
            serde_json::to_string(sel).expect("selector")
        );
        self.eval(&expr).as_str().unwrap_or_default().to_string()
    }

    /// Waits until `cond` holds for the text of `sel`, polling every 100 ms; panics with the
    /// last text after `secs`.
    pub fn wait_text(&mut self, what: &str, sel: &str, secs: u64, cond: impl Fn(&str) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(secs);
        let mut last = String::new();
        while Instant::now() < deadline {
            last = self.text(sel);
            if cond(&last) {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("timed out waiting for {what}; {sel} shows:\n{last}");
    }

    /// A PNG of the viewport.
    pub fn screenshot(&mut self) -> Vec<u8> {
        let r = self.call(
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64_decode(r["data"].as_str().expect("png data"))
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Standard base64 (the protocol's binary encoding), ignoring padding.
pub fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {c}"),
        }
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| *c != b'=').collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            n |= value(*c) << (18 - 6 * i);
        }
        out.push((n >> 16) as u8);
        if chunk.len() > 2 {
            out.push((n >> 8) as u8);
        }
        if chunk.len() > 3 {
            out.push(n as u8);
        }
    }
    out
}
