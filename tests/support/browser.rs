//! Headless Chromium for the browser tests: starts `chromedriver` on a free loopback port and
//! drives one Chromium session through the W3C WebDriver protocol (plain HTTP on loopback, so
//! the blocking `reqwest` client the other helpers use is enough: no async runtime, no extra
//! crates). Waits poll the page; when one times out, the page's URL and text and a screenshot
//! in the temp directory go into the panic message. Dropping a [`Chrome`] ends the session and
//! the driver.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::server::free_port;

/// The W3C key under which WebDriver returns an element reference.
const ELEMENT_KEY: &str = "element-6066-11e4-a52e-4f735466cecf";
const POLL: Duration = Duration::from_millis(100);
/// How long a wait lasts unless the caller says otherwise.
pub const WAIT: Duration = Duration::from_secs(30);

/// A found element (its WebDriver id).
#[derive(Debug, Clone)]
pub struct Element {
    id: String,
}

/// One Chromium session under a private `chromedriver`.
pub struct Chrome {
    http: reqwest::blocking::Client,
    /// `http://127.0.0.1:<port>/session/<id>`
    session: String,
    driver: Child,
    driver_log: PathBuf,
    name: String,
}

fn find_tool(env: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os(env) {
        return Some(PathBuf::from(p));
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let dirs: Vec<PathBuf> = std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/bin")])
        .collect();
    names
        .iter()
        .flat_map(|n| dirs.iter().map(move |d| d.join(n)))
        .find(|p| p.is_file())
}

impl Chrome {
    /// Starts Chromium headless with `lang` as its UI and `Accept-Language` language
    /// (e.g. "en-US", "ja"). `name` labels screenshots and messages.
    ///
    /// Fails (never skips) when Chromium or ChromeDriver is missing.
    pub fn start(name: &str, lang: &str) -> Chrome {
        let missing =
            "run scripts/test, which installs them (apt-get install chromium chromium-driver); \
                       or set KURA_CHROMIUM / KURA_CHROMEDRIVER";
        let chromium = find_tool(
            "KURA_CHROMIUM",
            &["chromium", "chromium-browser", "google-chrome"],
        )
        .unwrap_or_else(|| panic!("Chromium is not installed: {missing}"));
        let chromedriver = find_tool("KURA_CHROMEDRIVER", &["chromedriver"])
            .unwrap_or_else(|| panic!("ChromeDriver is not installed: {missing}"));

        let port = free_port();
        let driver_log = std::env::temp_dir().join(format!("kura-chromedriver-{name}-{port}.log"));
        let log = std::fs::File::create(&driver_log).unwrap();
        let driver = Command::new(&chromedriver)
            .arg(format!("--port={port}"))
            // Chromium on Linux also takes its UI language from the environment.
            .env("LANGUAGE", lang)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| {
                let _ = std::fs::remove_file(&driver_log);
                panic!("cannot run {}: {e}; {missing}", chromedriver.display())
            });
        let http = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let mut chrome = Chrome {
            http,
            session: String::new(),
            driver,
            driver_log,
            name: name.to_string(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let ready = chrome
                .http
                .get(format!("{base}/status"))
                .send()
                .ok()
                .and_then(|r| r.json::<Value>().ok())
                .is_some_and(|v| v["value"]["ready"] == true);
            if ready {
                break;
            }
            if let Ok(Some(status)) = chrome.driver.try_wait() {
                panic!(
                    "chromedriver exited ({status}): {}",
                    chrome.driver_log_text()
                );
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready in 30 s: {}",
                chrome.driver_log_text()
            );
            std::thread::sleep(POLL);
        }
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            // Kura's certificate is self-signed for the test.
            "acceptInsecureCerts": true,
            "goog:loggingPrefs": {"browser": "ALL"},
            "goog:chromeOptions": {
                "binary": chromium,
                "args": [
                    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                    "--disable-background-networking", "--no-first-run",
                    "--ignore-certificate-errors", "--window-size=1280,800",
                    format!("--lang={lang}"), format!("--accept-lang={lang}"),
                ],
                "prefs": {"intl.accept_languages": lang},
            },
        }}});
        let r = chrome
            .http
            .post(format!("{base}/session"))
            .json(&caps)
            .send()
            .unwrap();
        let status = r.status();
        let body: Value = r.json().unwrap_or(Value::Null);
        let Some(id) = body["value"]["sessionId"].as_str() else {
            panic!(
                "chromedriver refused a session ({status}): {body}\n{}",
                chrome.driver_log_text()
            );
        };
        chrome.session = format!("{base}/session/{id}");
        chrome
    }

    fn driver_log_text(&self) -> String {
        std::fs::read_to_string(&self.driver_log).unwrap_or_default()
    }

    /// One WebDriver command; Err(value) carries the driver's error object.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, Value> {
        let url = format!("{}{path}", self.session);
        let rb = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let r = rb
            .send()
            .unwrap_or_else(|e| panic!("[{}] WebDriver {method} {path}: {e}", self.name));
        let ok = r.status().is_success();
        let v: Value = r.json().unwrap_or(Value::Null);
        if ok {
            Ok(v["value"].clone())
        } else {
            Err(v["value"].clone())
        }
    }

    fn must(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.command(method, path, body)
            .unwrap_or_else(|e| self.fail(&format!("WebDriver {method} {path} failed: {e}")))
    }

    /// Panics with `msg`, the current URL, the page's visible text and a screenshot path.
    pub fn fail(&self, msg: &str) -> ! {
        let url = self.command("GET", "/url", None).unwrap_or_default();
        let text = self
            .command("POST", "/execute/sync", Some(json!({"script": "return document.body ? document.body.innerText : ''", "args": []})))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default();
        let shot = std::env::temp_dir().join(format!(
            "kura-browser-{}-{}.png",
            self.name,
            std::process::id()
        ));
        let saved = match self.screenshot(&shot) {
            Ok(()) => format!("screenshot: {}", shot.display()),
            Err(e) => format!("no screenshot: {e}"),
        };
        let text: String = text.chars().take(3000).collect();
        panic!(
            "[{}] {msg}\nURL: {url}\n{saved}\nchromedriver log: {}\npage text:\n{text}",
            self.name,
            self.driver_log.display()
        );
    }

    /// Saves a PNG of the viewport.
    pub fn screenshot(&self, path: &Path) -> Result<(), String> {
        let v = self
            .command("GET", "/screenshot", None)
            .map_err(|e| e.to_string())?;
        let png =
            decode_base64(v.as_str().unwrap_or_default()).ok_or("the screenshot is not base64")?;
        let mut f = std::fs::File::create(path).map_err(|e| e.to_string())?;
        f.write_all(&png).map_err(|e| e.to_string())
    }

    pub fn goto(&self, url: &str) {
        self.must("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn refresh(&self) {
        self.must("POST", "/refresh", None);
    }

    pub fn url(&self) -> String {
        self.must("GET", "/url", None)
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Runs `script` (a function body; `arguments[i]` are `args`) in the page and returns its value.
    pub fn js(&self, script: &str, args: Vec<Value>) -> Value {
        self.must(
            "POST",
            "/execute/sync",
            Some(json!({ "script": script, "args": args })),
        )
    }

    /// Signs in with a local account through Kura's sign-in form at `origin` and waits until the
    /// header names `user`.
    pub fn sign_in(&self, origin: &str, user: &str, password: &str) {
        self.goto(&format!("{origin}/"));
        self.type_into(&self.wait_for("#login-username"), user);
        self.type_into(&self.wait_for("#login-password"), password);
        self.click(&self.wait_for("#login-submit"));
        self.wait_for(&format!("#current-user[data-user-id=\"{user}\"]"));
    }

    /// Waits until the element matching `css` is displayed with exactly `text` (trimmed).
    pub fn wait_text(&self, css: &str, text: &str) -> Element {
        let deadline = Instant::now() + WAIT;
        loop {
            // Read without panicking: the page may re-render the element meanwhile.
            let shown = self.find_all(css).into_iter().find(|e| self.displayed(e));
            let now = shown.as_ref().and_then(|e| {
                self.command("GET", &format!("/element/{}/text", e.id), None)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_string))
            });
            if let (Some(e), Some(now)) = (&shown, &now) {
                if now.trim() == text {
                    return e.clone();
                }
            }
            if Instant::now() > deadline {
                self.fail(&format!("{css:?} does not say {text:?} (it says {now:?})"));
            }
            std::thread::sleep(POLL);
        }
    }

    /// The elements matching a CSS selector now (possibly none).
    pub fn find_all(&self, css: &str) -> Vec<Element> {
        let v = self.must(
            "POST",
            "/elements",
            Some(json!({"using": "css selector", "value": css})),
        );
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|e| e[ELEMENT_KEY].as_str())
                    .map(|id| Element { id: id.to_string() })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Whether an element is rendered (not `hidden`, not inside a hidden view).
    pub fn displayed(&self, e: &Element) -> bool {
        self.command("GET", &format!("/element/{}/displayed", e.id), None)
            .map(|v| v == true)
            .unwrap_or(false)
    }

    /// Waits until an element matching `css` is displayed, and returns it.
    pub fn wait_for(&self, css: &str) -> Element {
        self.wait_for_within(css, WAIT)
    }

    pub fn wait_for_within(&self, css: &str, timeout: Duration) -> Element {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(e) = self.find_all(css).into_iter().find(|e| self.displayed(e)) {
                return e;
            }
            if Instant::now() > deadline {
                self.fail(&format!(
                    "no displayed element {css:?} within {} s",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until no element matching `css` is displayed.
    pub fn wait_gone(&self, css: &str) {
        let deadline = Instant::now() + WAIT;
        while self.find_all(css).iter().any(|e| self.displayed(e)) {
            if Instant::now() > deadline {
                self.fail(&format!(
                    "{css:?} is still displayed after {} s",
                    WAIT.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    /// Waits until the JavaScript expression `expr` is truthy in the page.
    pub fn wait_js(&self, what: &str, expr: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let script = format!("return !!({expr});");
        // A navigation in progress can make a script fail; that counts as "not yet".
        while self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        ) != Ok(json!(true))
        {
            if Instant::now() > deadline {
                self.fail(&format!(
                    "timed out after {} s waiting for {what} ({expr})",
                    timeout.as_secs()
                ));
            }
            std::thread::sleep(POLL);
        }
    }

    pub fn click(&self, e: &Element) {
        self.must("POST", &format!("/element/{}/click", e.id), None);
    }

    /// Clears a field and types `text` into it as key presses.
    pub fn type_into(&self, e: &Element, text: &str) {
        self.must("POST", &format!("/element/{}/clear", e.id), None);
        self.must(
            "POST",
            &format!("/element/{}/value", e.id),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of an element.
    pub fn text(&self, e: &Element) -> String {
        let v = self.must("GET", &format!("/element/{}/text", e.id), None);
        v.as_str().unwrap_or_default().to_string()
    }

    /// The trimmed text of the first element matching `css`, once it exists.
    pub fn text_of(&self, css: &str) -> String {
        self.text(&self.wait_for(css)).trim().to_string()
    }

    /// How many elements match `css` now.
    pub fn count(&self, css: &str) -> u64 {
        self.js(
            "return document.querySelectorAll(arguments[0]).length",
            vec![json!(css)],
        )
        .as_u64()
        .unwrap_or_else(|| panic!("counting {css} gave no number"))
    }

    /// The UI's text for `key` in the page's language (`globalThis.KURA_I18N`).
    pub fn ui_text(&self, key: &str) -> String {
        self.js(
            "return globalThis.KURA_I18N[document.documentElement.lang][arguments[0]]",
            vec![json!(key)],
        )
        .as_str()
        .unwrap_or_else(|| panic!("no UI text for {key}"))
        .to_string()
    }

    /// A DOM property of an element (`value`, `disabled`, `dataset`, ...).
    pub fn property(&self, e: &Element, name: &str) -> Value {
        self.must("GET", &format!("/element/{}/property/{name}", e.id), None)
    }

    /// An attribute, or None when absent.
    pub fn attribute(&self, e: &Element, name: &str) -> Option<String> {
        let v = self.must("GET", &format!("/element/{}/attribute/{name}", e.id), None);
        v.as_str().map(str::to_string)
    }

    /// Every cookie the browser holds for the current page, HttpOnly ones included (WebDriver
    /// sees them; page scripts must not).
    pub fn cookies(&self) -> Vec<Value> {
        self.must("GET", "/cookie", None)
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The browser's console and security messages since the last call
    /// (`{"level","message","source","timestamp"}`; CSP violations have source "security").
    pub fn take_log(&self) -> Vec<Value> {
        self.must("POST", "/se/log", Some(json!({"type": "browser"})))
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for Chrome {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.http.delete(&self.session).send();
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
        // A failed test keeps the driver's log for the post-mortem.
        if !std::thread::panicking() {
            let _ = std::fs::remove_file(&self.driver_log);
        }
    }
}

/// Standard base64 (with padding), enough for WebDriver screenshots.
fn decode_base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=') {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = ((acc << 6) | u32::from(v)) & 0xffff;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Browser-log entries that mean the page broke its own rules: CSP violations (source
/// "security") and uncaught script errors.
pub fn problems(log: &[Value]) -> Vec<String> {
    log.iter()
        .filter(|e| {
            e["source"] == "security"
                || e["source"] == "javascript"
                || e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("Content Security Policy"))
        })
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn base64_decodes_padded_and_unpadded_input() {
        assert_eq!(
            super::decode_base64("iVBORw0KGgo=").unwrap(),
            b"\x89PNG\r\n\x1a\n"
        );
        assert_eq!(super::decode_base64("TWFu").unwrap(), b"Man");
        assert_eq!(super::decode_base64("TWE=").unwrap(), b"Ma");
        assert!(super::decode_base64("T*E=").is_none());
    }
}
