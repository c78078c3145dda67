"""``nslab browse``: a headless Chromium inside a target's network namespace, driven over CDP.

The browser is the distribution's ``chromium`` package (``./dev/setup.sh`` installs it), started like any
``nslab exec`` command (:func:`nslab.ns.nsenter.spawn_in_target`: the target's network namespace, its
/etc/netns files bound over /etc, or ``--mount-from``'s filesystem), as root hence ``--no-sandbox``, with a
throwaway profile directory and HOME. It is driven with the Chrome DevTools Protocol over
``--remote-debugging-pipe`` (fds 3 and 4, NUL-terminated JSON): no websocket client, no debugging port
opened inside the namespace, and no other Python package needed. Playwright's own browser download is not
needed either.

It loads the URL, collects every request the page makes from the ``Network`` domain's events and their
outcome (loaded with the HTTP status, or failed with Chromium's reason: DNS, refused, timeout...), takes a
screenshot, then closes the browser and kills whatever of its process group is still there, so nothing is
left running. Replaces ``ip netns exec NS chromium --headless --screenshot`` plus reading its logs.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import time
from typing import Any

from ..errors import BrowserError, EnvironmentProblem

BROWSERS = ("chromium", "chromium-browser")
FLAGS = ("--headless=new", "--no-sandbox", "--disable-gpu", "--remote-debugging-pipe", "--no-first-run",
         "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", "--disable-dev-shm-usage", "--mute-audio", "--hide-scrollbars",
         "--window-size=1280,800")
REASONS = {
    "ERR_NAME_NOT_RESOLVED": "DNS: the name does not resolve",
    "ERR_NAME_RESOLUTION_FAILED": "DNS: no resolver answered",
    "ERR_CONNECTION_REFUSED": "refused",
    "ERR_CONNECTION_TIMED_OUT": "timeout",
    "ERR_TIMED_OUT": "timeout",
    "ERR_ADDRESS_UNREACHABLE": "unreachable: no route",
    "ERR_NETWORK_UNREACHABLE": "unreachable: no route",
    "ERR_INTERNET_DISCONNECTED": "unreachable: no route",
    "ERR_CONNECTION_RESET": "reset",
    "ERR_BLOCKED_BY_CLIENT": "blocked",
}


def reason(error_text: str) -> str:
    """Chromium's ``net::ERR_...`` -> what it means here."""
    code = error_text.removeprefix("net::")
    return f"{REASONS[code]} ({error_text})" if code in REASONS else error_text


class Cdp:
    """The DevTools protocol over a pipe pair: ``call`` waits for one answer, events pile up in ``events``."""

    def __init__(self, to_browser: int, from_browser: int) -> None:
        self.to_browser, self.from_browser = to_browser, from_browser
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> int:
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.to_browser, json.dumps(message).encode() + b"\0")
        return self.next_id

    def _read(self, timeout: float) -> dict[str, Any] | None:
        while b"\0" not in self.buffer:
            if not select.select([self.from_browser], [], [], max(timeout, 0))[0]:
                return None
            chunk = os.read(self.from_browser, 1 << 20)
            if not chunk:
                raise BrowserError("the browser exited")
            self.buffer += chunk
        raw, _, self.buffer = self.buffer.partition(b"\0")
        decoded: dict[str, Any] = json.loads(raw)
        return decoded

    def pump(self, seconds: float) -> None:
        """Read events for up to ``seconds`` (returns early when nothing arrives)."""
        deadline = time.monotonic() + seconds
        while (message := self._read(deadline - time.monotonic())) is not None:
            if "method" in message:
                self.events.append(message)

    def call(self, method: str, params: dict[str, Any] | None = None, session: str | None = None,
             timeout: float = 15.0) -> dict[str, Any]:
        wanted = self.send(method, params, session)
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(deadline - time.monotonic())
            if message is None:
                raise BrowserError(f"the browser did not answer {method} within {timeout:g} s")
            if message.get("id") == wanted:
                if "error" in message:
                    raise BrowserError(f"{method}: {message['error'].get('message')}")
                result: dict[str, Any] = message.get("result", {})
                return result
            if "method" in message:
                self.events.append(message)


def _executable() -> str:
    for name in BROWSERS:
        found = shutil.which(name)
        if found:
            return found
    raise EnvironmentProblem("nslab browse needs Chromium: apt-get install chromium (./dev/setup.sh does)")


class Browser:
    """A running headless Chromium in a target; use as a context manager (it always cleans up)."""

    def __init__(self, target: str, mount_from: str | None = None) -> None:
        self.target, self.mount_from = target, mount_from
        self.profile = ""
        self.process: subprocess.Popen[bytes] | None = None
        self.cdp: Cdp | None = None
        self.session = ""

    def __enter__(self) -> Browser:
        from ..ns import nsenter, targets

        target = targets.resolve(self.target)
        options = nsenter.ExecOptions(mount_from=targets.resolve(self.mount_from) if self.mount_from else None)
        executable = "chromium" if self.mount_from else _executable()
        self.profile = tempfile.mkdtemp(prefix="nslab-browse-")
        profile = f"/tmp/{os.path.basename(self.profile)}" if self.mount_from else self.profile
        to_browser_r, to_browser_w = os.pipe()
        from_browser_r, from_browser_w = os.pipe()

        def plumb() -> None:
            # In the child: the pipes on fds 3 and 4, where --remote-debugging-pipe wants them. dup2 makes them
            # inheritable; every other fd of nslab is close-on-exec (PEP 446), hence close_fds=False below
            # (close_fds would run after this function and close 3 and 4 again).
            high = [os.dup(fd) for fd in (to_browser_r, from_browser_w)]
            os.dup2(high[0], 3)
            os.dup2(high[1], 4)

        argv = [executable, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        if self.mount_from:  # their filesystem: the profile is made and removed there
            argv = ["sh", "-c", '"$@"; rc=$?; rm -rf "$D"; exit $rc', "sh", *argv]
        env = {**os.environ, "HOME": profile, "XDG_CONFIG_HOME": profile, "XDG_CACHE_HOME": profile, "D": profile}
        try:
            self.process = nsenter.spawn_in_target(
                target, argv, options, env=env, preexec_fn=plumb, close_fds=False, start_new_session=True,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        except FileNotFoundError:
            self._cleanup()
            raise EnvironmentProblem(f"{executable} not found in the filesystem it runs from") from None
        finally:
            os.close(to_browser_r)
            os.close(from_browser_w)
        self.cdp = Cdp(to_browser_w, from_browser_r)
        try:
            self._attach()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _attach(self) -> None:
        assert self.cdp is not None
        pages = [t for t in self.cdp.call("Target.getTargets")["targetInfos"] if t["type"] == "page"]
        target_id = pages[0]["targetId"] if pages else self.cdp.call("Target.createTarget",
                                                                     {"url": "about:blank"})["targetId"]
        self.session = self.cdp.call("Target.attachToTarget", {"targetId": target_id, "flatten": True})["sessionId"]
        for domain in ("Network.enable", "Page.enable", "Runtime.enable"):
            self.cdp.call(domain, session=self.session)

    def call(self, method: str, params: dict[str, Any] | None = None, timeout: float = 15.0) -> dict[str, Any]:
        assert self.cdp is not None
        return self.cdp.call(method, params, self.session, timeout)

    def evaluate(self, expression: str) -> Any:
        """The value of a JavaScript expression in the page (awaited when it is a promise)."""
        result = self.call("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                "awaitPromise": True})
        return result.get("result", {}).get("value")

    def __exit__(self, *exc: object) -> None:
        if self.cdp is not None:
            try:
                self.cdp.send("Browser.close")
            except OSError:
                pass
        if self.process is not None:
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                pass
            try:
                os.killpg(self.process.pid, signal.SIGKILL)  # renderers and helpers too
            except ProcessLookupError:
                pass
            if self.process.poll() is None:
                self.process.wait()
        if self.cdp is not None:
            os.close(self.cdp.to_browser)
            os.close(self.cdp.from_browser)
            self.cdp = None
        self._cleanup()

    def _cleanup(self) -> None:
        if self.profile:
            shutil.rmtree(self.profile, ignore_errors=True)
            self.profile = ""


def _requests(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each request of the page (in order) with its outcome, from the Network domain's events."""
    found: dict[str, dict[str, Any]] = {}
    for event in events:
        method, p = event["method"], event.get("params", {})
        rid = p.get("requestId")
        if method == "Network.requestWillBeSent":
            entry = found.setdefault(rid, {"url": p["request"]["url"], "type": p.get("type", ""),
                                           "outcome": "pending", "status": None, "reason": ""})
            entry["url"] = p["request"]["url"]  # a redirect keeps the id: the last URL counts
        elif rid in found and method == "Network.responseReceived":
            found[rid]["status"] = p["response"]["status"]
            found[rid]["type"] = p.get("type", found[rid]["type"])
        elif rid in found and method == "Network.loadingFinished":
            status = found[rid]["status"]
            ok = status is None or status < 400
            found[rid].update(outcome="loaded" if ok else "failed", reason="" if ok else f"HTTP {status}")
        elif rid in found and method == "Network.loadingFailed":
            found[rid].update(outcome="failed", reason=reason(p.get("errorText", "")))
    return list(found.values())


def _settled(events: list[dict[str, Any]]) -> bool:
    loaded = any(e["method"] == "Page.loadEventFired" for e in events)
    return loaded and all(r["outcome"] != "pending" for r in _requests(events))


def browse(target: str, url: str, screenshot: str | None = None, wait: float = 3.0,
           mount_from: str | None = None) -> dict[str, Any]:
    """Load ``url`` in ``target``; the page's outcome and every request it made (``browse --json``)."""
    with Browser(target, mount_from) as browser:
        assert browser.cdp is not None
        answer = browser.call("Page.navigate", {"url": url})
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and not _settled(browser.cdp.events):
            browser.cdp.pump(min(0.2, max(deadline - time.monotonic(), 0)))
        requests = _requests(browser.cdp.events)
        for r in requests:
            if r["outcome"] == "pending":
                r.update(outcome="failed", reason=f"timeout (no answer within --wait {wait:g} s)")
        if screenshot:
            data = base64.b64decode(browser.call("Page.captureScreenshot", {"format": "png"})["data"])
            with open(screenshot, "wb") as f:
                f.write(data)
    page = requests[0] if requests else {"outcome": "failed", "reason": answer.get("errorText", "not loaded")}
    if answer.get("errorText"):
        page = {**page, "outcome": "failed", "reason": reason(answer["errorText"])}
    return {"target": target, "url": url, "outcome": page["outcome"], "reason": page.get("reason", ""),
            "requests": requests, "screenshot": screenshot}
