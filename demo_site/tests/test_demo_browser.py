"""The demos in a real browser: Playwright driving Debian's chromium against runserver.

Each test also takes a screenshot of its demo, saved into docs/images/ (which
docs/topics/demo-site.md shows) only with DO_SCREENSHOTS=1.
"""

import time

import pytest

from demo_site.tests.demo_server import demo_server_fixture, shared_demo_server_fixture  # noqa: F401
from tests.support.browser import save_screenshot

VIEWPORT = {"width": 1100, "height": 800}


def open_page(browser_context, url, viewport=VIEWPORT):
    page = browser_context(viewport=viewport).new_page()
    page.goto(url)
    return page


def connected(page):
    page.wait_for_selector("#connection.ok")


def screenshot(page, name):
    save_screenshot(page, f"demo-{name}.png")


def script_errors(page):
    """The page's console errors, less chromium's line for each HTTP 4xx answer.

    A refused booking (409) or request (429) is an answer the page shows, not an error
    of its script; chromium logs it as "Failed to load resource" all the same.
    """
    return [e for e in page.js_errors if "the server responded with a status of 4" not in e]


def say(page, text):
    page.fill("#text", text)
    page.press("#text", "Enter")


def chat_lines(page):
    return [
        f"{item.locator('.user').text_content()}: {item.locator('.text').text_content()}"
        for item in page.locator("#log li").all()
    ]


def test_chat_two_browsers_see_each_other_and_the_history_outlives_a_restart(
    demo_server, browser_context
):
    url = demo_server.url + "/chat/lobby/"
    ann, bob = open_page(browser_context, url), open_page(browser_context, url)
    for page, user in ((ann, "ann"), (bob, "bob")):
        connected(page)
        page.fill("#user", user)
        page.press("#user", "Tab")  # the change reconnects under the new name
        connected(page)
    say(ann, "Hello from Ann")
    bob.locator("#log li", has_text="Hello from Ann").wait_for()
    hostile = '<img src=x onerror="window.pwned = 1"><script>window.pwned = 2</script>'
    say(bob, hostile)
    ann.locator("#log li").nth(1).wait_for()
    assert chat_lines(ann) == chat_lines(bob) == ["ann: Hello from Ann", f"bob: {hostile}"]
    assert ann.evaluate("window.pwned") is None  # shown as text, never run
    assert ann.locator("#log img").count() == 0
    ann.evaluate("window.notReloaded = true")
    screenshot(ann, "chat")

    # A crash, not a clean stop: what the pages were shown was on disk before they saw it.
    demo_server.restart(crash=True)
    # The open page reconnects by itself and gets the history from the room's SQLite.
    ann.wait_for_function("document.querySelectorAll('#log li').length === 2", timeout=30_000)
    assert ann.evaluate("window.notReloaded") is True
    newcomer = open_page(browser_context, url)
    connected(newcomer)
    newcomer.locator("#log li").nth(1).wait_for()
    assert chat_lines(newcomer) == ["ann: Hello from Ann", f"bob: {hostile}"]
    say(newcomer, "after the restart")
    ann.locator("#log li", has_text="after the restart").wait_for()
    assert newcomer.js_errors == []


PAINTED = """() => {
  const canvas = document.getElementById("board");
  const image = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height);
  let painted = 0;
  for (let i = 3; i < image.data.length; i += 4) if (image.data[i] > 0) painted++;
  return painted;
}"""


COUNT_SENT_STROKES = """
window.sentStrokes = 0;
const send = WebSocket.prototype.send;
WebSocket.prototype.send = function (data) {
  if (JSON.parse(data).type === "stroke") window.sentStrokes += 1;
  return send.call(this, data);
};
"""


def painted_pixels(page):
    """How many of the board's canvas pixels are painted."""
    return page.evaluate(PAINTED)


def draw(page, points):
    box = page.locator("#board").bounding_box()
    x0, y0 = box["x"] + box["width"] * points[0][0], box["y"] + box["height"] * points[0][1]
    page.mouse.move(x0, y0)
    page.mouse.down()
    for fx, fy in points[1:]:
        page.mouse.move(box["x"] + box["width"] * fx, box["y"] + box["height"] * fy, steps=8)
    page.mouse.up()


def test_board_a_stroke_drawn_in_one_browser_appears_in_the_other(
    shared_demo_server, browser_context
):
    url = shared_demo_server.url + "/board/wall/"
    # The whole canvas in view, for the mouse; the artist's page counts the strokes it sends.
    artist = browser_context(viewport={"width": 1100, "height": 1200}).new_page()
    artist.add_init_script(COUNT_SENT_STROKES)
    artist.goto(url)
    viewer = open_page(browser_context, url)
    connected(artist)
    connected(viewer)
    assert painted_pixels(viewer) == 0
    draw(artist, [(0.1, 0.2), (0.3, 0.6), (0.5, 0.3)])
    # The line arrives in pieces as it is drawn; all of it paints well over 500 pixels.
    viewer.wait_for_function(f"({PAINTED})() > 500")
    assert int(viewer.text_content("#stroke-count")) > 0
    artist.click("#palette button:nth-child(3)")
    draw(artist, [(0.6, 0.7), (0.75, 0.2), (0.9, 0.75)])
    artist.click("#palette button:nth-child(2)")
    draw(artist, [(0.2, 0.85), (0.45, 0.8), (0.7, 0.9)])
    # Every stroke sent has come back to the artist: the board holds them all.
    artist.wait_for_function(
        "String(window.sentStrokes) === document.getElementById('stroke-count').textContent"
    )
    count = artist.locator("#stroke-count")
    viewer.wait_for_function(
        f"document.getElementById('stroke-count').textContent === {count.text_content()!r}"
    )
    # A newcomer gets the kept strokes replayed.
    newcomer = open_page(browser_context, url)
    newcomer.wait_for_function(
        f"document.getElementById('stroke-count').textContent === {count.text_content()!r}"
    )
    assert painted_pixels(newcomer) > 1500
    screenshot(newcomer, "board")
    artist.click("#clear")
    for page in (artist, viewer, newcomer):
        page.wait_for_function("document.getElementById('stroke-count').textContent === '0'")
        assert painted_pixels(page) == 0
        assert page.js_errors == []


def test_flight_ten_parallel_bookings_of_one_seat_book_it_once(
    shared_demo_server, browser_context
):
    url = shared_demo_server.url + "/flights/DO-202/"
    pages = [open_page(browser_context, url) for _ in range(10)]
    for number, page in enumerate(pages):
        connected(page)
        page.fill("#passenger", f"Passenger {number}")
        page.click('button[data-seat="7C"]')
    # Every page clicks "Book" at the same moment, by its own timer.
    at = pages[0].evaluate("Date.now()") + 1000
    for page in pages:
        page.evaluate(
            "at => setTimeout(() => document.getElementById('book').click(), at - Date.now())",
            at,
        )
    notices = []
    for page in pages:
        page.wait_for_selector("#notice:not([hidden])")
        notices.append((page.get_attribute("#notice", "class"), page.text_content("#notice")))
    winners = [text for kind, text in notices if kind == "success"]
    losers = [text for kind, text in notices if kind == "error"]
    assert len(winners) == 1, notices
    assert winners[0].startswith("Booked: seat 7C is yours")
    assert losers == ["Sorry, seat 7C has just been booked by someone else."] * 9
    # Every seat map shows it taken, the winner's as its own.
    for page in pages:
        page.wait_for_selector('button[data-seat="7C"].taken, button[data-seat="7C"].mine')
    assert sum(page.locator('button[data-seat="7C"].mine').count() for page in pages) == 1
    winner = pages[[kind for kind, _ in notices].index("success")]
    winner.click('button[data-seat="3A"]')
    winner.click("#book")
    loser = pages[[kind for kind, _ in notices].index("error")]
    loser.wait_for_selector('button[data-seat="3A"].taken')
    screenshot(loser, "flights")
    assert [script_errors(page) for page in pages] == [[]] * 10


def test_trial_with_a_three_second_period_shows_expired_without_a_reload(
    shared_demo_server, browser_context
):
    page = open_page(browser_context, shared_demo_server.url + "/trial/acme/")
    connected(page)
    assert page.text_content("#plan") == "none"
    page.evaluate("window.notReloaded = true")
    page.fill("#seconds", "3")
    started = time.monotonic()
    page.click("#start")
    page.wait_for_function("document.getElementById('plan').textContent === 'trial'")
    page.wait_for_function(
        "document.getElementById('plan').textContent === 'expired'", timeout=15_000
    )
    assert time.monotonic() - started < 5  # the bound: expired within 5 s of the start
    assert page.evaluate("window.notReloaded") is True
    page.locator("#events li", has_text="The alarm fired").wait_for()
    screenshot(page, "trial")
    assert page.js_errors == []


def test_poll_counts_update_in_every_tab(shared_demo_server, browser_context):
    url = shared_demo_server.url + "/poll/coffee/"
    ann, bob = open_page(browser_context, url), open_page(browser_context, url)
    connected(ann)
    connected(bob)
    ann.click('button.vote[data-choice="flat-white"]')
    bob.wait_for_function(
        "document.querySelector('.count[data-choice=\"flat-white\"]').textContent === '1'"
    )
    bob.click('button.vote[data-choice="espresso"]')
    ann.wait_for_function("document.getElementById('total').textContent === '2'")
    ann.click('button.vote[data-choice="espresso"]')  # a changed vote moves the count
    bob.wait_for_function(
        "document.querySelector('.count[data-choice=\"espresso\"]').textContent === '2'"
    )
    assert bob.text_content('.count[data-choice="flat-white"]') == "0"
    # "yours" is a second broadcast after the counts: wait for it rather than race it
    ann.wait_for_function(
        "document.getElementById('yours').textContent === 'Your vote: Espresso.'"
    )
    screenshot(ann, "poll")
    assert ann.js_errors == bob.js_errors == []


def test_rate_limiter_page_shows_requests_allowed_and_refused(shared_demo_server, browser_context):
    page = open_page(browser_context, shared_demo_server.url + "/ratelimit/")
    page.click("#ten")
    page.wait_for_function("document.querySelectorAll('#log li').length === 10")
    allowed = page.locator("#log li.allowed").count()
    refused = page.locator("#log li.refused").count()
    assert allowed >= 5  # the burst, and a refill if the ten took over a second
    assert refused >= 1
    page.wait_for_function(
        f"document.getElementById('allowed').textContent === '{allowed}'"
        f" && document.getElementById('refused').textContent === '{refused}'"
    )
    assert "Too many requests" in page.locator("#log li.refused").first.text_content()
    screenshot(page, "ratelimit")
    assert script_errors(page) == []


PAGES = {
    "index": "/",
    "chat": "/chat/lobby/",
    "board": "/board/wall/",
    "poll": "/poll/coffee/",
    "flights": "/flights/DO-101/",
    "trial": "/trial/acme/",
    "ratelimit": "/ratelimit/",
    "counter": "/counter/home/",
}


@pytest.mark.parametrize("name", PAGES)
def test_every_demo_page_loads_without_a_javascript_error(
    name, shared_demo_server, browser_context
):
    page = open_page(browser_context, shared_demo_server.url + PAGES[name])
    if page.locator("#connection").count():
        connected(page)
    if page.locator("#object-panel").count():
        assert page.text_content("#object-state") in ("active", "asleep")
        assert page.get_attribute("#object-admin", "href").startswith("/admin/")
        # The panel's state is refreshed by the page without waking the object.
        page.wait_for_timeout(1500)
    if name in ("index", "counter"):
        screenshot(page, name)
    assert page.js_errors == []
