#!/usr/bin/env python3
"""The operator console (SPEC B90, B91, B16) in real headless Chromium.

Starts scripts/dev on free ports with a temporary DEV_DATA_DIR, opens the
console link scripts/dev prints, and works it as an operator would: block a
contact from the form, find it by search, read its history, unblock it with
a reason, keep a block that is due for review, import a CSV file (a bad row
among good ones), bulk block a pasted list, read the chart, add a rule, read
consent and settings; an API error shown in plain words; an expired token
that asks to log in again and loses nothing typed; arrow keys between tabs;
phone width. Each step is checked through the API as well as on the page.

Screenshots of each page land in <target>/console-screenshots/.

    python3 tests/console.py [--keep] [--headed]

Needs chromium and chromedriver (Debian's chromium and chromium-driver) and
selenium; scripts/test installs them. Exit status 0 when every check holds.
"""

import argparse
import base64
import datetime
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts" / "lib"))
import devstack  # noqa: E402

from selenium import webdriver  # noqa: E402
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

SHOTS = devstack.TARGET / "console-screenshots"
WAIT = 20


def log(message):
    print(f"==> console: {message}", file=sys.stderr, flush=True)


class Failed(AssertionError):
    pass


def check(condition, message):
    if not condition:
        raise Failed(message)


class Console:
    """The browser on the console, with the waits a person does by eye."""

    def __init__(self, driver, stack):
        self.d = driver
        self.stack = stack
        self.shots = []

    def wait(self, condition, what, timeout=WAIT):
        try:
            # A list redrawn while it is read: read it again.
            return WebDriverWait(self.d, timeout, ignored_exceptions=[StaleElementReferenceException]).until(condition)
        except TimeoutException:
            raise Failed(f"timed out waiting for {what}; page says: {self.visible_text()[:1500]}")

    def visible_text(self):
        return self.d.find_element(By.TAG_NAME, "body").text

    def el(self, css):
        return self.d.find_element(By.CSS_SELECTOR, css)

    def tab(self, view):
        self.el(f'[role=tab][data-view="{view}"]').click()
        self.wait(lambda d: self.el(f'section[data-view="{view}"]').is_displayed(), f"the {view} view")

    def fill(self, form, values):
        for name, value in values.items():
            field = self.el(f'#{form} [name="{name}"]')
            field.clear()
            field.send_keys(value)

    def submit(self, form):
        self.el(f"#{form} button[type=submit]").click()

    def notice(self, contains):
        self.wait(
            lambda d: contains in self.el("#notice").text and self.el("#notice").is_displayed(),
            f"the notice {contains!r}",
        )

    def error_for(self, form):
        return self.el(f'[data-error-for="{form}"]').text

    def answer_dialog(self, values, submit=True):
        self.wait(EC.visibility_of_element_located((By.ID, "ask")), "the dialog")
        for name, value in values.items():
            field = self.el(f'#ask [name="{name}"]')
            field.clear()
            field.send_keys(value)
        if submit:
            self.el("#ask-ok").click()
            self.wait(EC.invisibility_of_element_located((By.ID, "ask")), "the dialog to close")

    def row_with(self, table, text):
        for row in self.d.find_elements(By.CSS_SELECTOR, f"#{table} tbody tr"):
            try:
                if text in row.text:
                    return row
            except StaleElementReferenceException:
                continue
        return None

    def press(self, table, text, label):
        """Presses the button `label` of the row of `table` showing `text`
        (found again if the list is redrawn meanwhile)."""

        def pressed(d):
            row = self.row_with(table, text)
            if row is None:
                return False
            [b for b in row.find_elements(By.TAG_NAME, "button") if b.text == label][0].click()
            return True

        self.wait(pressed, f"the {label} button of {text} in {table}")

    def shot(self, name):
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / f"{len(self.shots) + 1:02d}-{name}.png"
        self.d.save_screenshot(str(path))
        self.shots.append(path)


def api(stack, method, path, token, body=None, content_type="application/json"):
    headers = {"Authorization": f"Bearer {token}"}
    data = None
    if body is not None:
        headers["Content-Type"] = content_type
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
    status, raw = devstack.request(method, stack.base + path, data, headers)
    return status, devstack.json_or_none(raw)


def make_due(stack, number):
    """The block of `number` in `all`, as it is 90 days on: due for review.
    (The review rules themselves are tested against the API with a test
    clock; here only the date the block's due-index entry holds moves.)"""
    table = {"TableName": "Blocklist", "Key": {"pk": {"S": f"N#{number}"}, "sk": {"S": "B#all"}}}
    item = devstack.dynamodb(stack.ddb_port, "GetItem", {**table, "ConsistentRead": True})["Item"]
    past = (datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    rest = item["gsi3sk"]["S"].split("#", 1)[1]
    devstack.dynamodb(
        stack.ddb_port,
        "UpdateItem",
        {
            **table,
            "UpdateExpression": "SET review_due_at = :due, gsi3sk = :sk",
            "ExpressionAttributeValues": {":due": {"S": past}, ":sk": {"S": f"{past}#{rest}"}},
        },
    )


class FakeIssuer:
    """An OAuth 2.0 provider as the console's login meets it: `/authorize`
    sends the browser straight back with a code (the person "logs in"), and
    `/token` gives a token only for that code, the same redirect URI and
    client, and a verifier whose S256 digest is the challenge (RFC 7636)."""

    CLIENT_ID = "console-client"

    def __init__(self):
        self.codes = {}
        self.exchanged = []
        self.logged_out = False
        self.access_token = None
        self.server = devstack.fake_server(self.token, self.authorize)
        devstack.serve(self.server)
        self.base = f"http://127.0.0.1:{self.server.server_port}"

    def authorize(self, handler):
        url = urllib.parse.urlparse(handler.path)
        q = dict(urllib.parse.parse_qsl(url.query))
        if url.path == "/logout" and q.get("client_id") == self.CLIENT_ID and q.get("logout_uri"):
            self.logged_out = True
            handler.send_response(302)
            handler.send_header("location", q["logout_uri"])
            handler.send_header("content-length", "0")
            handler.end_headers()
            return
        if url.path != "/authorize" or q.get("client_id") != self.CLIENT_ID or q.get("code_challenge_method") != "S256":
            return handler.answer(400, {"error": "invalid_request", "got": q})
        code = f"code-{len(self.codes) + 1}"
        self.codes[code] = (q["code_challenge"], q["redirect_uri"], q.get("scope", ""))
        handler.send_response(302)
        location = f"{q['redirect_uri']}?{urllib.parse.urlencode({'code': code, 'state': q['state']})}"
        handler.send_header("location", location)
        handler.send_header("content-length", "0")
        handler.end_headers()

    def token(self, handler):
        form = dict(urllib.parse.parse_qsl(handler.body().decode()))
        challenge, redirect, _ = self.codes.pop(form.get("code"), (None, None, None))
        digest = base64.urlsafe_b64encode(hashlib.sha256(form.get("code_verifier", "").encode()).digest()).rstrip(b"=").decode()
        ok = (
            challenge is not None
            and digest == challenge
            and form.get("grant_type") == "authorization_code"
            and form.get("client_id") == self.CLIENT_ID
            and form.get("redirect_uri") == redirect
        )
        self.exchanged.append(ok)
        data = json.dumps({"access_token": self.access_token, "token_type": "Bearer", "expires_in": 3600} if ok
                          else {"error": "invalid_grant"}).encode()
        handler.send_response(200 if ok else 400)
        handler.send_header("content-type", "application/json")
        # The console calls the token endpoint from the browser.
        handler.send_header("access-control-allow-origin", "*")
        handler.send_header("content-length", str(len(data)))
        handler.end_headers()
        handler.wfile.write(data)


def browser(headed):
    options = webdriver.ChromeOptions()
    if not headed:
        options.add_argument("--headless=new")
    for arg in ("--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=en-US"):
        options.add_argument(arg)
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    downloads = tempfile.mkdtemp(prefix="console-downloads-")
    options.add_experimental_option("prefs", {"download.default_directory": downloads})
    service = Service(shutil.which("chromedriver") or "/usr/bin/chromedriver")
    return webdriver.Chrome(service=service, options=options), Path(downloads)


def run(c, stack, work, downloads):
    token = stack.token("console-test", "all")
    log_text = stack.log_path.read_text(errors="replace")
    found = re.search(r"Console \(admin, 24 h\): (\S+#token=\S+)", log_text)
    check(found, "scripts/dev prints a console link with a token")
    link = found.group(1)

    # Log in with the link: the token leaves the address bar at once.
    c.d.get(link)
    c.wait(lambda d: "local-admin" in c.el("#who").text, "the operator's name")
    check("token" not in c.d.current_url, f"the token left the address bar: {c.d.current_url}")
    c.wait(lambda d: c.el("#blocks-empty").is_displayed(), "the empty list")
    c.shot("blocked-list-empty")

    # Add a contact as blocked, from the form.
    c.tab("add")
    c.fill("add", {"number": "+1 650 555 1234", "reason": "abusive messages", "name": "Ana Souza",
                   "email": "ana@example.com", "category": "vip", "groups": "retail, north"})
    c.shot("add-blocked-contact")
    c.submit("add")
    c.notice("+16505551234 is blocked in all")
    status, view = api(stack, "GET", "/v1/blocks/+16505551234", token)
    check(status == 200 and len(view["blocks"]) == 1, f"the block is stored: {view}")
    check(view["contact"]["name"] == "Ana Souza" and view["contact"]["groups"] == ["retail", "north"],
          f"with its contact: {view['contact']}")

    # An API error, in the API's words, beside the form.
    c.fill("add", {"number": "12", "reason": "typo"})
    c.submit("add")
    c.wait(lambda d: "invalid_number" in c.error_for("add"), "the invalid number error")
    check("number" in c.error_for("add"), c.error_for("add"))

    # Find the number by search: by name and by its last four digits.
    for q in ("ana", "1234"):
        c.tab("blocked")
        c.fill("filters", {"q": q})
        c.submit("filters")
        c.wait(lambda d: c.row_with("blocks", "+16505551234") is not None, f"the row found by {q!r}")
    def shows_contact(d):
        row = c.row_with("blocks", "+16505551234")
        return row is not None and all(t in row.text for t in ("Ana Souza", "ana@example.com", "retail"))

    c.wait(shows_contact, "the row with the contact's name, email and groups")
    c.shot("blocked-list-search")

    # Add to a group, from the row.
    c.press("blocks", "+16505551234", "Add to group")
    c.answer_dialog({"group": "escalated"})
    c.notice("is in the group")
    status, contact = api(stack, "GET", "/v1/contacts/+16505551234", token)
    check("escalated" in contact["groups"], f"group added: {contact}")

    # Edit the contact, from the row: the dialog holds what is stored.
    c.press("blocks", "+16505551234", "Edit contact")
    c.wait(lambda d: c.el('#ask [name="name"]').get_attribute("value") == "Ana Souza", "the stored name in the dialog")
    c.answer_dialog({"category": "fraud", "secondary_numbers": "+16505550199"})
    c.notice("The contact of +16505551234 is saved")
    status, contact = api(stack, "GET", "/v1/contacts/+16505551234", token)
    check(contact["category"] == "fraud" and contact["secondary_numbers"] == ["+16505550199"]
          and contact["name"] == "Ana Souza" and "escalated" in contact["groups"], f"contact edited: {contact}")

    # Its history, as a timeline.
    c.press("blocks", "+16505551234", "History")
    c.wait(lambda d: "blocked" in c.el("#timeline").text, "the timeline")
    check("abusive messages" in c.el("#timeline").text, c.el("#timeline").text)
    c.shot("history-timeline")

    # Unblock with a reason: the dialog will not go without one.
    c.tab("blocked")
    c.press("blocks", "+16505551234", "Unblock")
    c.answer_dialog({}, submit=False)
    c.el("#ask-ok").click()
    time.sleep(0.3)
    check(c.el("#ask").is_displayed(), "the unblock dialog stays open without a reason")
    c.answer_dialog({"reason": "resolved with the customer"})
    c.notice("+16505551234 is unblocked in all")
    c.wait(lambda d: c.row_with("blocks", "+16505551234") is None, "the row to go")
    status, view = api(stack, "GET", "/v1/blocks/+16505551234", token)
    check(view["blocks"] == [], f"unblocked: {view}")
    status, history = api(stack, "GET", "/v1/numbers/+16505551234/history", token)
    check(any(e["action"] == "unblocked" and e["reason"] == "resolved with the customer" for e in history["items"]),
          f"the unblock and its reason are audited: {history}")

    # Review a due block: keep it.
    status, _ = api(stack, "PUT", "/v1/blocks/+447700900123", token, {"reason": "fraud attempts"})
    check(status == 201, "setup block")
    make_due(stack, "+447700900123")
    c.tab("review")
    c.wait(lambda d: c.row_with("review", "+447700900123"), "the due block")
    c.shot("review-queue")
    c.press("review", "+447700900123", "Keep")
    c.answer_dialog({"reason": "still sending fraud links"})
    c.notice("kept until its next review")
    c.wait(lambda d: c.row_with("review", "+447700900123") is None, "the reviewed block to leave the queue")
    status, view = api(stack, "GET", "/v1/blocks/+447700900123", token)
    due = view["blocks"][0]["review_due_at"]
    check(due > datetime.datetime.now(datetime.UTC).isoformat(), f"due again later: {due}")

    # Import a CSV file: a BOM, CRLF, a quoted comma, and a bad number in row 7.
    rows = ["+16505550001,spam,all,\"Lee, Sam\",sam@example.org,vip,a;b"]
    rows += [f"+1650555000{i},spam,all,,,," for i in range(2, 7)]
    rows += ["not a number,spam,all,,,,", "+16505550008,spam,all,,,,"]
    csv_path = work / "blocked.csv"
    csv_path.write_bytes(("\ufeffnumber,reason,scope,name,email,category,groups\r\n" + "\r\n".join(rows) + "\r\n").encode())
    c.tab("bulk")
    # Refused files, in plain words: a wrong header, and 20 MB.
    wrong = work / "wrong-header.csv"
    wrong.write_text("phone,why\n+16505550001,spam\n")
    c.el('#import [name="file"]').send_keys(str(wrong))
    c.submit("import")
    c.wait(lambda d: "invalid_header" in c.error_for("import"), "the wrong header refused")
    check('unknown column "phone"' in c.error_for("import"), c.error_for("import"))
    huge = work / "huge.csv"
    huge.write_text("number,reason\n" + "+16505550001,spam\n" * (20 * 1024 * 1024 // 18))
    c.el('#import [name="file"]').send_keys(str(huge))
    c.submit("import")
    c.wait(lambda d: "at most 4 MB" in c.error_for("import"), "the 20 MB file refused")
    c.el('#import [name="file"]').send_keys(str(csv_path))
    c.submit("import")
    c.wait(lambda d: "Imported blocked.csv: 8 rows" in c.el("#bulk-progress").text, "the import to finish", 60)
    check("7 blocked" in c.el("#bulk-progress").text and "1 invalid" in c.el("#bulk-progress").text,
          c.el("#bulk-progress").text)
    failed = c.row_with("bulk-results", "not a number")
    check(failed is not None and failed.text.startswith("7 "), f"row 7 is reported: {c.el('#bulk-results').text}")
    check(c.el("#import-results").is_displayed(), "the per-row results can be downloaded")
    c.el("#import-results").click()
    c.wait(lambda d: any(downloads.glob("import-results*.csv")), "the results download")
    results = next(downloads.glob("import-results*.csv")).read_text()
    check(results.startswith("row,line,number,status") and results.count("\n") == 9, results)
    c.shot("bulk-import")
    status, view = api(stack, "GET", "/v1/blocks/+16505550001", token)
    check(view["blocks"][0]["source"] == "import" and view["contact"]["name"] == "Lee, Sam", f"imported: {view}")

    # Bulk block from a pasted list.
    c.fill("bulk", {"numbers": "+16505550101\n+16505550102\n12\n", "reason": "spam wave"})
    c.submit("bulk")
    c.wait(lambda d: "Done: 3 numbers" in c.el("#bulk-progress").text, "the bulk result")
    check("2 blocked" in c.el("#bulk-progress").text and "1 invalid number" in c.el("#bulk-progress").text,
          c.el("#bulk-progress").text)

    # The chart of the daily counters, with the unblock rate.
    c.tab("chart")
    c.wait(lambda d: "blocked now" in c.el("#chart-summary").text, "the chart")
    check(len(c.d.find_elements(By.CSS_SELECTOR, "#chart svg polyline")) == 5, "five series")
    check(len(c.d.find_elements(By.CSS_SELECTOR, "#chart-table tbody tr")) == 30, "30 days")
    summary = c.el("#chart-summary").text
    check("11 blocked, 1 unblocked (unblock rate 9%)" in summary, summary)
    c.shot("chart")

    # A rule, consent and settings.
    c.tab("rules")
    c.fill("rule", {"id": "premium-range", "prefix": "+4490", "reason": "premium-rate range"})
    c.submit("rule")
    c.notice("Rule premium-range is saved")
    c.wait(lambda d: c.row_with("rules", "+4490") is not None, "the rule in the list")
    c.shot("rules")
    c.tab("consent")
    c.fill("consent-lookup", {"number": "+16505550001"})
    c.submit("consent-lookup")
    c.wait(lambda d: c.el("#consents").is_displayed(), "the consent table")
    c.el('#consent [name="marketing"]').send_keys("opted_out")
    c.submit("consent")
    c.notice("Consent of +16505550001 is saved")
    c.wait(lambda d: "opted_out" in c.el("#consents").text, "the opt-out listed")
    c.tab("settings")
    c.wait(lambda d: c.el("#settings").is_displayed(), "the settings form")
    check(c.el('#settings [name="review_after_days"]').get_attribute("value") == "90", "the default review period")
    c.shot("settings")

    # Keyboard: arrow keys move between tabs.
    c.el('[role=tab][data-view="blocked"]').click()
    c.el('[role=tab][data-view="blocked"]').send_keys(Keys.ARROW_RIGHT)
    c.wait(lambda d: c.el('[role=tab][data-view="add"]').get_attribute("aria-selected") == "true", "the next tab")

    # An expired token: the console asks to log in again and keeps what was typed.
    short = subprocess.run(
        [str(devstack.TARGET / "debug" / "wa-cli"), "token", "--scope", "all", "--sub", "short-lived", "--ttl", "2"],
        env=stack.env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    c.d.get(f"{stack.base}/console#token={short}")
    c.wait(lambda d: "short-lived" in c.el("#who").text, "the short-lived login")
    c.tab("add")
    c.fill("add", {"number": "+16505559876", "reason": "typed before the token expired", "name": "Kept Name"})
    # Past its end and the API's 5 s of leeway for clock skew.
    time.sleep(8)
    c.submit("add")
    c.wait(EC.visibility_of_element_located((By.ID, "login")), "the login dialog")
    check("session has ended" in c.el("#login-why").text, c.el("#login-why").text)
    check(c.el('#add [name="reason"]').get_attribute("value") == "typed before the token expired", "the typed reason is kept")
    c.shot("login-again")
    c.el('#login-form [name="token"]').send_keys(token)
    c.el('#login-form button[type=submit]').click()
    c.notice("+16505559876 is blocked in all")
    status, view = api(stack, "GET", "/v1/blocks/+16505559876", token)
    check(view["blocks"][0]["reason"] == "typed before the token expired" and view["contact"]["name"] == "Kept Name",
          f"the typed block went through after the login: {view}")

    # Phone width: no sideways scrolling, rows as cards.
    c.d.set_window_size(390, 844)
    c.tab("blocked")
    c.fill("filters", {"q": "9876"})
    c.submit("filters")
    c.wait(lambda d: c.row_with("blocks", "+16505559876") is not None, "the list at phone width")
    overflow = c.d.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
    check(overflow <= 0, f"the page scrolls sideways by {overflow}px at phone width")
    c.d.execute_script("arguments[0].scrollIntoView()", c.el("#blocks"))
    c.shot("phone-width")
    c.d.set_window_size(1400, 1000)


def run_oauth(c, stack, issuer):
    """The stack restarted with an OAuth login configured."""
    token = stack.token("console-test", "all")
    issuer.access_token = stack.token("oauth-operator", "all")
    # A new session (the earlier one's token is forgotten).
    c.d.get(f"{stack.base}/console")
    c.d.execute_script("sessionStorage.clear()")
    c.d.get("about:blank")
    # A token link is not taken where the login is the provider's.
    c.d.get(f"{stack.base}/console#token={token}")
    c.wait(EC.visibility_of_element_located((By.ID, "login")), "the login dialog")
    check("token" not in c.d.current_url, c.d.current_url)
    check(c.el("#who").text == "Not logged in", c.el("#who").text)
    check(c.el("#login-oauth").is_displayed(), "the login offers the organisation's login")
    # A login answer this page did not ask for is refused.
    c.d.get(f"{stack.base}/console?code=stolen&state=forged")
    c.wait(lambda d: "does not match" in c.el("#notice").text, "the forged answer refused")
    check(issuer.exchanged == [], f"no code was exchanged: {issuer.exchanged}")
    # Log in with the organisation's OAuth provider (authorization code +
    # PKCE): what was typed before is there after.
    c.wait(EC.visibility_of_element_located((By.ID, "login")), "the login dialog")
    c.d.execute_script("document.getElementById('login').close()")
    c.tab("add")
    c.fill("add", {"number": "+16505554321", "reason": "typed before logging in"})
    c.d.execute_script("document.getElementById('login').showModal()")
    c.el("#login-oauth-go").click()
    c.wait(lambda d: "oauth-operator" in c.el("#who").text, "the OAuth login", 30)
    check(issuer.exchanged == [True], f"one code exchanged, with a verifier matching its challenge: {issuer.exchanged}")
    check("code=" not in c.d.current_url and "state=" not in c.d.current_url, c.d.current_url)
    check(c.el('#add [name="reason"]').get_attribute("value") == "typed before logging in",
          "the draft survived the login's round trip")
    c.submit("add")
    c.notice("+16505554321 is blocked in all")
    # Log out ends the provider's session too, and comes back logged out.
    c.el("#logout").click()
    c.wait(lambda d: issuer.logged_out, "the provider's logout")
    c.wait(EC.visibility_of_element_located((By.ID, "login")), "the login dialog after logging out")
    check(c.el("#who").text == "Not logged in", c.el("#who").text)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep the stack's data directory and log")
    parser.add_argument("--headed", action="store_true", help="show the browser")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="console-"))
    crm = devstack.fake_server(lambda h: h.answer(200, {}))
    devstack.serve(crm)
    issuer = FakeIssuer()
    stack = devstack.Stack(work, f"http://127.0.0.1:{crm.server_port}/crm", "")
    # Sends and platform blocks go to the stack's own Graph sandbox.
    stack.env["GRAPH_API_BASE_URL"] = f"{stack.base}/sandbox/graph"
    driver = None
    try:
        log(f"starting the local stack on {stack.base}")
        stack.start()
        if SHOTS.exists():
            shutil.rmtree(SHOTS)
        driver, downloads = browser(args.headed)
        console = Console(driver, stack)
        try:
            run(console, stack, work, downloads)
            log("restarting the stack with an OAuth login")
            stack.stop()
            stack.env.update({
                "CONSOLE_OAUTH_AUTHORIZE_URL": f"{issuer.base}/authorize",
                "CONSOLE_OAUTH_TOKEN_URL": f"{issuer.base}/token",
                "CONSOLE_OAUTH_CLIENT_ID": FakeIssuer.CLIENT_ID,
                "CONSOLE_OAUTH_LOGOUT_URL": f"{issuer.base}/logout",
            })
            stack.start()
            run_oauth(console, stack, issuer)
        except Exception:
            console.shot("failure")
            raise
        log(f"ok: every check held; {len(console.shots)} screenshots in {SHOTS}")
        for path in console.shots:
            print(f"  {path.relative_to(devstack.ROOT) if path.is_relative_to(devstack.ROOT) else path}")
        return 0
    except Failed as failure:
        log(f"FAIL {failure}")
        log(f"the stack's log ends:\n{stack.tail()}")
        return 1
    finally:
        if driver is not None:
            driver.quit()
        stack.stop()
        crm.shutdown()
        issuer.server.shutdown()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
