"""In a real browser (Debian's Chromium driven by Playwright) against the real stack — Rasa, the action server and
the web server started by the same Stack as `make run`: chat, rate 👎, find the conversation in the console, retrain
from the console and see the new version live.

Screenshots go to a temporary folder; set RSFT_SCREENSHOT_DIR=docs to refresh the ones the README shows.
Chromium comes from apt (`make test` installs it); Playwright never downloads a browser here.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect, sync_playwright

from rsft_plugin.log import open_sqlite
from rsft_plugin.models.registry import Registry
from rsft_plugin.secrets import OPERATOR_TOKEN, get_secret

from .conftest import LENIENT_GATE, REPO, SHORT_FINETUNE, feed_traffic, start_stack

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWPORT = {"width": 1280, "height": 820}
WAIT_MS = 60_000  # how long a step may take on a busy 2-core machine (Playwright's default is 5 s)
expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pretrained):
    # earlier customers: golden train questions asked through the real Assistant, rated from their labels
    stack = start_stack(tmp_path_factory.mktemp("browser"), pretrained,
                        before_start=lambda config: feed_traffic(config, n=150, noise=0.2, seed=7),
                        server={"reload_poll_seconds": 0.2}, gate=LENIENT_GATE, finetune=SHORT_FINETUNE)
    yield stack
    stack.stop()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make test` installs it (apt-get install chromium)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    chosen = os.environ.get("RSFT_SCREENSHOT_DIR")
    directory = (REPO / chosen) if chosen and not Path(chosen).is_absolute() else Path(chosen or
                                                                                        tmp_path_factory.mktemp("shots"))
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def _page(browser, errors: list[str]) -> Page:
    context = browser.new_context(viewport=VIEWPORT, device_scale_factor=1)
    context.set_default_timeout(WAIT_MS)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    return page


def _screenshot(page: Page, path: Path) -> None:
    page.screenshot(path=str(path))
    assert path.stat().st_size > 10_000  # a rendered page, not a blank one


def test_the_chat_page_recovers_from_an_outage_rates_by_keyboard_and_survives_a_reload(stack, browser):
    errors: list[str] = []
    page = _page(browser, errors)
    page.goto(stack.web_url)
    expect(page.locator("#text")).to_be_focused()
    page.route(f"{stack.rasa_url}/**", lambda route: route.abort())  # the server is unreachable
    page.keyboard.type("where is my parcel?")
    page.keyboard.press("Enter")
    expect(page.locator("#status")).to_contain_text("reach the assistant")
    expect(page.locator(".msg.user.failed")).to_be_visible()
    page.unroute(f"{stack.rasa_url}/**")  # back: the page notices by itself and sends the waiting message
    answer = page.locator(".msg.bot[data-turn-id]")
    expect(answer).to_have_count(1, timeout=60_000)
    expect(page.locator(".msg.user.failed")).to_have_count(0)
    # the model is unsure of this one (top two close): its next-best answers come with it, captioned
    expect(answer.locator(".quick-replies-caption")).to_have_text("Not what you asked? Maybe one of these:")
    expect(answer.locator("button.quick-reply")).to_have_count(3)
    page.locator(".msg.bot[data-turn-id] button.rate-up").focus()
    page.keyboard.press("Enter")
    expect(page.locator(".msg.bot.rated-up .rated-label")).to_have_text("Rated 👍")
    sender = page.evaluate("localStorage.getItem('rsft.sender')")
    turn_id = answer.get_attribute("data-turn-id")
    page.reload()
    expect(page.locator(f'.msg.bot.rated-up[data-turn-id="{turn_id}"]')).to_be_visible()
    expect(page.locator(".msg.bot.rated-up button.rate-down")).to_be_disabled()
    assert page.evaluate("localStorage.getItem('rsft.sender')") == sender
    store = open_sqlite(stack.config.paths.db)
    try:
        turn = store.turn(turn_id)
    finally:
        store.close()
    assert (turn["sender_id"], turn["user_text"], turn["rating"]) == (sender, "where is my parcel?", 1)
    assert not errors, errors


def test_from_a_thumbs_down_in_the_chat_to_a_promoted_model_in_the_console(stack, browser, shots):
    errors: list[str] = []
    page = _page(browser, errors)
    web = stack.web_url

    # -- the customer asks, gets an answer, rates it 👎 and is thanked
    page.goto(web)
    question = "I was charged twice for the same order"
    page.fill("#text", question)
    page.keyboard.press("Enter")
    answer = page.locator(".msg.bot[data-turn-id]").last
    expect(answer).to_be_visible(timeout=60_000)
    turn_id = answer.get_attribute("data-turn-id")
    answer.locator("button.rate-down").click()
    rated = page.locator(f'.msg.bot.rated-down[data-turn-id="{turn_id}"]')
    expect(rated.locator(".rated-label")).to_have_text("Rated 👎")
    asked = page.locator(".msg.bot").last
    expect(asked).to_contain_text("Thanks")
    expect(asked).to_contain_text("Was it one of these?")
    sender = page.evaluate("localStorage.getItem('rsft.sender')")
    _screenshot(page, shots / "chat.png")

    # -- ... clicks one of the next-best answers offered and gets it (issue 11, item 1)
    choice = asked.locator("button.quick-reply").first
    title = choice.inner_text()
    choice.click()
    expect(page.locator(".msg.user .bubble").last).to_have_text(title)
    expect(page.locator(".msg.bot").last).not_to_contain_text("Was it one of these?")
    expect(page.locator(".msg.bot").last).not_to_contain_text("couldn't record")
    with open_sqlite(stack.config.paths.db) as store:
        assert [s.kind for s in store.signals(sender_id=sender)] == ["choice"]

    # -- ... asks for a person: the bot records it, asks for an email, and only then promises a reply
    page.fill("#text", "I want to talk to a person")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.bot").last).to_contain_text("Which email address", timeout=60_000)
    page.fill("#text", "jane@example.com")
    page.keyboard.press("Enter")
    expect(page.locator(".msg.bot").last).to_contain_text("will reply to jane@example.com", timeout=60_000)

    # -- the operator logs in (the console sends a stranger to the login form first)
    page.goto(f"{web}/console/inbox")
    expect(page).to_have_url(re.compile(r"/console/login\?next="))
    page.fill("#token", "not the token")
    page.click("button[type=submit]")
    expect(page.locator(".notice.error")).to_contain_text("not the operator token")
    page.fill("#token", get_secret(stack.config.paths.run_dir, OPERATOR_TOKEN))
    page.click("button[type=submit]")
    expect(page).to_have_url(re.compile(r"/console/inbox$"))
    expect(page.locator("table.inbox")).to_be_visible()

    # -- ... finds the conversation through the 👎 filter, and every detail of the turn
    page.select_option("#filter-rating", "down")
    expect(page).to_have_url(re.compile(r"rating=down"))
    first = page.locator("a.conversation-link").first
    expect(first).to_have_attribute("data-sender", sender)
    expect(page.locator("table.inbox tbody tr").first).to_contain_text(question)
    _screenshot(page, shots / "console-inbox.png")
    first.click()
    turn = page.locator(f'article.turn[data-turn-id="{turn_id}"]')
    expect(turn).to_be_visible()
    expect(turn.locator(".turn-question")).to_have_text(question)
    expect(turn.locator(".rating-mark")).to_have_text("👎")
    expect(turn.locator(".badge.version")).to_have_text("v0001")
    expect(turn.locator(".score")).to_contain_text(re.compile(r"score \d\.\d\d"))
    expect(turn.locator(".alternatives tbody tr")).to_have_count(stack.config.model.top_k)
    expect(page.locator("article.handoff-note")).to_contain_text("reply to jane@example.com")

    # -- the hand-off queue: the open count in the header, the email, Take, the conversation one click away
    expect(page.locator("#open-handoffs")).to_have_text("1")
    page.click("nav[aria-label=Console] >> text=Hand-offs")
    queued = page.locator("tr[data-handoff-id]").first
    expect(queued).to_contain_text("jane@example.com")
    expect(queued).to_contain_text("asked for a person")
    _screenshot(page, shots / "console-handoffs.png")
    queued.locator("button.take").click()
    expect(page.locator("tr[data-handoff-id] .badge").first).to_have_text("taken")
    expect(page.locator("#open-handoffs")).to_have_count(0)
    page.locator("tr[data-handoff-id] a.conversation-link").first.click()
    expect(page.locator(f'article.turn[data-turn-id="{turn_id}"]')).to_be_visible()
    # ... and labels the turn's right answer, which the next round learns for its question
    page.locator(f'article.turn[data-turn-id="{turn_id}"] .label-form select').select_option("double_charge")
    page.locator(f'article.turn[data-turn-id="{turn_id}"] .label-form button[type=submit]').click()
    expect(page.locator(f'article.turn[data-turn-id="{turn_id}"] .turn-signals')).to_contain_text(
        "Labelled by an operator: “double_charge” was the right answer")
    _screenshot(page, shots / "console-conversation.png")

    # -- the answer bank: add an answer (it waits, unpublished, as "new")
    page.goto(f"{web}/console/answers")
    expect(page.locator("table.answers tbody tr")).to_have_count(36)
    _screenshot(page, shots / "console-answers.png")
    page.click("details.add-answer summary")
    page.fill("#add-answer input[name=id]", "gift_wrapping")
    page.fill("#add-answer input[name=category]", "orders")
    page.fill("#add-answer textarea[name=text]", "We gift-wrap any order for 3 euros: tick 'gift wrap' at checkout.")
    page.click("#add-answer button[type=submit]")
    expect(page.locator('tr[data-answer="gift_wrapping"] .badge')).to_have_text("new")
    expect(page.locator("#publish")).to_be_enabled()

    # -- Retrain now (after confirming), follow the round, see it promoted
    page.goto(f"{web}/console/models")
    expect(page.locator('tr[data-version="v0001"].live')).to_be_visible()
    expect(page.locator("#rollback")).to_be_disabled()  # nothing was live before v0001
    page.click("#retrain")
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm button[value=cancel]")  # cancelling starts nothing
    expect(page.locator("#confirm")).to_be_hidden()
    assert _rounds(stack) == 0
    page.click("#retrain")
    page.click("#confirm-ok")
    expect(page.locator("#notice")).to_contain_text("Round started")
    page.goto(f"{web}/console/rounds")
    row = page.locator("tr[data-round]").first
    expect(row).to_be_visible(timeout=60_000)
    expect(row.locator(".badge")).to_have_text("promoted", timeout=420_000)
    expect(row).to_contain_text("v0001 → v0002")
    _screenshot(page, shots / "console-rounds.png")
    row.locator("a").first.click()
    expect(page.locator("#verdict")).to_contain_text("Promoted v0002")
    expect(page.locator("#accepted tbody tr").first).to_be_visible()
    expect(page.locator(".plots img")).to_have_count(3)
    page.wait_for_function("Array.from(document.querySelectorAll('.plots img'))"
                           ".every(i => i.complete && i.naturalWidth > 100)")  # served to the session, and PNGs
    _screenshot(page, shots / "console-round.png")

    # -- the new version is listed, live, with its lineage; Rollback asks first
    page.goto(f"{web}/console/models")
    new = page.locator('tr[data-version="v0002"]')
    expect(new).to_have_class(re.compile(r"\blive\b"))
    expect(new).to_contain_text("v0001")  # its parent
    expect(new).to_contain_text("Round 1")
    page.click("#rollback")
    expect(page.locator("#confirm-text")).to_contain_text("v0001 becomes live again")
    page.click("#confirm button[value=cancel]")
    _screenshot(page, shots / "console-models.png")
    assert Registry(stack.config.paths.models_dir).live_name() == "v0002"
    assert not errors, errors


def _rounds(stack) -> int:
    store = open_sqlite(stack.config.paths.db)
    try:
        return store.count("rounds")
    finally:
        store.close()
