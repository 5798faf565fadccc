"""A small driver of Debian's headless Chromium over the DevTools protocol
(a websocket, websocket-client): start the browser, load pages, fill and
submit forms the way a user's clicks do (DOM events in the page), read the
rendered text, save screenshots.

Every wait is for a condition in the page (a new document loaded and
complete, a selector present) with a generous deadline; nothing assumes
how long a step takes.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import tempfile
import time
import urllib.request

__all__ = ["Browser", "chromium_path"]


def chromium_path() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


class Browser:
    def __init__(self, artifacts: str, timeout: float = 60.0):
        import websocket
        self.artifacts = artifacts
        self.timeout = timeout
        self._dir = tempfile.mkdtemp(prefix="pylog-chromium-")
        self._log = open(os.path.join(self._dir, "chromium.log"), "wb")
        exe = chromium_path()
        if exe is None:
            raise RuntimeError("no chromium on PATH")
        # --no-sandbox: the tests run as root, where Chromium's sandbox refuses to start.
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
             "--no-first-run", "--no-default-browser-check", "--disable-extensions",
             "--remote-debugging-port=0", "--remote-allow-origins=*", f"--user-data-dir={self._dir}/profile",
             "--window-size=1280,900", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT)
        try:
            port = self._devtools_port()
            target = self._page_target(port)
            self.ws = websocket.create_connection(target, timeout=timeout, suppress_origin=True)
        except BaseException:
            self.close()
            raise
        self._id = 0
        self.call("Page.enable")
        self.call("Runtime.enable")
        self.call("Emulation.setDeviceMetricsOverride", width=1280, height=900, deviceScaleFactor=1,
                  mobile=False)

    # --- start-up ---

    def _devtools_port(self) -> int:
        """The port Chromium picked, from the DevToolsActivePort file it writes."""
        path = os.path.join(self._dir, "profile", "DevToolsActivePort")
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"chromium exited with {self.proc.returncode}: {self.log_text()[-2000:]}")
            try:
                with open(path) as f:
                    first = f.readline().strip()
                if first.isdigit():
                    return int(first)
            except FileNotFoundError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"chromium wrote no DevToolsActivePort: {self.log_text()[-2000:]}")

    def _page_target(self, port: int) -> str:
        deadline = time.monotonic() + self.timeout
        while True:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=self.timeout) as r:
                pages = [t for t in json.load(r) if t.get("type") == "page"]
            if pages:
                return pages[0]["webSocketDebuggerUrl"]
            if time.monotonic() >= deadline:
                raise RuntimeError("chromium has no page target")
            time.sleep(0.1)

    def log_text(self) -> str:
        self._log.flush()
        with open(self._log.name, "rb") as f:
            return f.read().decode(errors="replace")

    def close(self) -> None:
        ws = getattr(self, "ws", None)
        if ws is not None:
            ws.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    # --- protocol ---

    def call(self, method: str, **params):
        self._id += 1
        cid = self._id
        self.ws.send(json.dumps({"id": cid, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get("id") == cid:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})
            # Events are not needed: waits poll the page itself.

    def eval(self, expression: str):
        r = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise RuntimeError(f"{expression}: {r['exceptionDetails'].get('exception', r['exceptionDetails'])}")
        return r["result"].get("value")

    def wait_for(self, expression: str, what: str | None = None):
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                value = self.eval(expression)
            except RuntimeError:
                value = None  # the document is being replaced
            if value:
                return value
            if time.monotonic() >= deadline:
                raise AssertionError(f"waited {self.timeout:g} s for {what or expression} on "
                                     f"{self.eval('location.href')}: {self.text('body')[:1500]}")
            time.sleep(0.05)

    # --- what a user does ---

    def _leaving(self, action) -> None:
        """Run action (which loads a new document) and wait until the new
        document is complete: the old one carries a mark the new one lacks."""
        self.eval("window.__pylogOld = true")
        action()
        self.wait_for("!window.__pylogOld && document.readyState === 'complete'", "the next page")

    def goto(self, url: str) -> None:
        self._leaving(lambda: self.call("Page.navigate", url=url))

    def fill(self, selector: str, value: str) -> None:
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})", selector)
        self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.focus(); e.value = {json.dumps(value)};
            e.dispatchEvent(new Event('input', {{bubbles: true}}));
            e.dispatchEvent(new Event('change', {{bubbles: true}})); }})()""")

    def click(self, selector: str) -> None:
        """A mouse click at the element's centre (Input.dispatchMouseEvent):
        the browser itself decides what it hits and what follows."""
        self.wait_for(f"!!document.querySelector({json.dumps(selector)})", selector)
        box = self.eval(f"""(() => {{ const e = document.querySelector({json.dumps(selector)});
            e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect();
            return [r.left + r.width / 2, r.top + r.height / 2]; }})()""")
        for kind in ("mousePressed", "mouseReleased"):
            self.call("Input.dispatchMouseEvent", type=kind, x=box[0], y=box[1], button="left", clickCount=1)

    def submit(self, button_selector: str) -> None:
        """Click a submit button and wait for the page the form leads to."""
        self._leaving(lambda: self.click(button_selector))

    def text(self, selector: str) -> str:
        return self.eval(f"(document.querySelector({json.dumps(selector)}) || {{}}).innerText || ''")

    def texts(self, selector: str) -> list[str]:
        return self.eval(f"Array.from(document.querySelectorAll({json.dumps(selector)})).map(e => e.innerText)")

    @property
    def url(self) -> str:
        return self.eval("location.href")

    def screenshot(self, name: str) -> str:
        os.makedirs(self.artifacts, exist_ok=True)
        size = self.call("Page.getLayoutMetrics")["cssContentSize"]
        clip = {"x": 0, "y": 0, "width": max(1280, size["width"]), "height": size["height"], "scale": 1}
        data = self.call("Page.captureScreenshot", format="png", captureBeyondViewport=True, clip=clip)["data"]
        path = os.path.join(self.artifacts, f"{name}.png")
        with open(path, "wb") as f:
            f.write(base64.b64decode(data))
        return path
