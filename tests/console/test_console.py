"""The web console in a real headless Chromium (Debian's chromium + chromium-driver, driven by
Selenium) against real gateways: `magent2 up` with the scripted model and a bearer token, a Redis
gateway that is killed and restarted mid-reply, and a gateway behind a path prefix. Screenshots go
to .artifacts/console/ (or $MAGENT2_ARTIFACTS/console/) for a reviewer."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import WebDriverWait

from tests.support import (
    DEV_AND_OPERATOR,
    ROOT,
    free_port,
    local_mode,
    restartable_gateway,
    running,
    spawn,
    wait_http,
)

pytestmark = pytest.mark.e2e

TOKEN = "console-test-token"
ARTIFACTS = Path(os.environ.get("MAGENT2_ARTIFACTS", ROOT / ".artifacts")) / "console"


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu"):
        options.add_argument(flag)
    options.add_argument("--window-size=1280,860")
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver") or ""))
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def local(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    manifest = tmp_path_factory.mktemp("console") / "agents.yaml"
    manifest.write_text(DEV_AND_OPERATOR)
    with local_mode(manifest, GATEWAY_API_TOKENS=TOKEN) as url:
        yield url


def until(driver: WebDriver, condition: Callable[[WebDriver], Any], timeout: float = 20) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(condition)


def load(driver: WebDriver, url: str, *, token: str | None = TOKEN) -> None:
    """Open the console; enter the token when it asks for one (it asks once per browser tab)."""
    driver.get(url)
    if token:
        until(
            driver,
            lambda d: (
                d.execute_script("return document.getElementById('token-dialog').open")
                or "gateway ok" in d.find_element(By.ID, "health").text
            ),
        )
        if driver.execute_script("return document.getElementById('token-dialog').open"):
            driver.find_element(By.ID, "token").send_keys(token, Keys.ENTER)
    until(driver, lambda d: "gateway ok" in d.find_element(By.ID, "health").text)


def talk_to(driver: WebDriver, agent: str) -> None:
    until(driver, lambda d: d.find_elements(By.CSS_SELECTOR, f'#agents li[data-agent="{agent}"] button'))
    driver.find_element(By.CSS_SELECTOR, f'#agents li[data-agent="{agent}"] button').click()
    until(
        driver, lambda d: f"talking to {agent}" in d.find_element(By.ID, "where").get_attribute("textContent")
    )


def say(driver: WebDriver, text: str) -> None:
    box = driver.find_element(By.ID, "input")
    box.send_keys(text)
    box.send_keys(Keys.ENTER)


def replies(driver: WebDriver) -> list[str]:
    return [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#messages .message.agent .body")]


def shot(driver: WebDriver, name: str) -> None:
    driver.save_screenshot(str(ARTIFACTS / f"{name}.png"))


def test_a_message_streams_its_reply_rendered_as_markdown(browser: WebDriver, local: str) -> None:
    load(browser, f"{local}/ui")  # redirects to /ui/; asks for the token
    assert browser.current_url.endswith("/ui/")
    talk_to(browser, "DevAgent")
    say(browser, "slow 40")
    partial = until(browser, lambda d: (r := replies(d)) and "w3" in r[-1] and "w39" not in r[-1] and r[-1])
    assert partial.startswith("w0 w1")  # seen while it streamed
    until(browser, lambda d: replies(d) and replies(d)[-1].endswith("w39"))
    say(browser, "**bold** and `code`")
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "#messages .message.agent strong"))
    assert browser.find_elements(By.CSS_SELECTOR, "#messages .message.agent strong")[-1].text == "bold"
    assert browser.find_elements(By.CSS_SELECTOR, "#messages .message.agent code")[-1].text == "code"
    shot(browser, "01-streamed-markdown")


def test_markup_in_a_reply_is_shown_as_text_never_run(browser: WebDriver, local: str) -> None:
    load(browser, f"{local}/ui/")
    talk_to(browser, "DevAgent")
    say(browser, '<img src=x onerror="document.title=`pwned`">')
    until(browser, lambda d: replies(d) and "<img" in replies(d)[-1])
    assert browser.title == "magent2 console"
    assert not browser.find_elements(By.CSS_SELECTOR, "#messages img")


def test_a_tool_call_is_approved_and_shown_as_a_card(browser: WebDriver, local: str) -> None:
    load(browser, f"{local}/ui/")
    talk_to(browser, "Operator")
    say(browser, 'call terminal {"command": "echo approved in the browser"}')
    approve = until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, ".approval button.approve"))[0]
    assert "echo approved in the browser" in browser.find_element(By.CSS_SELECTOR, ".approval pre").text
    shot(browser, "02-approval-requested")
    approve.click()
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, "details.tool.ok"))
    until(browser, lambda d: replies(d) and "approved in the browser" in replies(d)[-1])
    assert "approved by user" in browser.find_element(By.CSS_SELECTOR, ".approval .outcome").text
    browser.find_element(By.CSS_SELECTOR, "details.tool.ok summary").click()  # expand the card
    assert "approved in the browser" in browser.find_element(By.CSS_SELECTOR, "details.tool.ok .result").text
    shot(browser, "03-approved-tool-card")


def test_stop_cancels_the_running_reply_from_button_or_keyboard(browser: WebDriver, local: str) -> None:
    load(browser, f"{local}/ui/")
    talk_to(browser, "DevAgent")
    say(browser, "slow 400")
    until(browser, lambda d: replies(d) and "w2" in replies(d)[-1])
    browser.find_element(By.ID, "input").send_keys(Keys.ESCAPE)  # Esc stops, as the Stop button does
    until(browser, lambda d: any("stopped" in n.text for n in d.find_elements(By.CSS_SELECTOR, ".notice")))
    assert not browser.find_element(By.ID, "stop").is_enabled()
    say(browser, "slow 400")
    until(browser, lambda d: d.find_element(By.ID, "stop").is_enabled() and "w2" in replies(d)[-1])
    browser.find_element(By.ID, "stop").click()
    until(
        browser,
        lambda d: len([n for n in d.find_elements(By.CSS_SELECTOR, ".notice") if "stopped" in n.text]) == 2,
    )
    shot(browser, "04-stopped")


def test_a_conversation_reopens_from_the_list_with_its_graph(browser: WebDriver, local: str) -> None:
    load(browser, f"{local}/ui/")
    talk_to(browser, "DevAgent")
    conversation = browser.find_element(By.ID, "title").text
    say(browser, "remember this")
    until(browser, lambda d: replies(d) and replies(d)[-1] == "you said: remember this")
    browser.refresh()  # a new page: the conversation is only in the list now
    load(browser, f"{local}/ui/")
    item = f'#conversations li[data-conversation="{conversation}"] button'
    until(browser, lambda d: d.find_elements(By.CSS_SELECTOR, item))
    browser.find_element(By.CSS_SELECTOR, item).click()
    until(browser, lambda d: replies(d) == ["you said: remember this"])
    browser.find_element(By.ID, "graph-toggle").click()
    until(browser, lambda d: "user:console → agent:DevAgent" in d.find_element(By.ID, "graph-body").text)
    shot(browser, "05-reopened-with-graph")


def test_readable_at_phone_width(browser: WebDriver, local: str) -> None:
    browser.set_window_size(390, 844)
    try:
        load(browser, f"{local}/ui/")
        overflow = browser.execute_script("return document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        assert browser.find_element(By.ID, "input").is_displayed()
        assert not browser.find_element(By.ID, "sidebar").is_displayed()
        browser.find_element(By.ID, "menu").click()
        until(browser, lambda d: d.find_element(By.ID, "sidebar").is_displayed())
        shot(browser, "06-phone-menu")
        talk_to(browser, "DevAgent")  # picking an agent closes the menu
        until(browser, lambda d: not d.find_element(By.ID, "sidebar").is_displayed())
        say(browser, "hello from a phone")
        until(browser, lambda d: replies(d) and replies(d)[-1] == "you said: hello from a phone")
        shot(browser, "07-phone-chat")
    finally:
        browser.set_window_size(1280, 860)


def test_a_reply_continues_after_a_gateway_restart_without_lost_or_doubled_text(
    browser: WebDriver, redis_url: str
) -> None:
    words = " ".join(f"w{i}" for i in range(80))
    with restartable_gateway(redis_url) as gateway:
        load(browser, f"{gateway.url}/ui/", token=None)
        talk_to(browser, "DevAgent")
        say(browser, words)
        until(browser, lambda d: replies(d) and "w5" in replies(d)[-1])
        gateway.kill()
        until(browser, lambda d: "reconnecting" in d.find_element(By.ID, "stream-state").text)
        shot(browser, "08-reconnecting")
        gateway.start()
        until(browser, lambda d: replies(d) == [f"echo: {words}"], timeout=40)
        assert browser.find_element(By.ID, "stream-state").text == ""
        shot(browser, "09-resumed")


def test_works_behind_a_path_prefix(browser: WebDriver) -> None:
    port = free_port()
    with running(spawn(["tests.console.prefixed_gateway", str(port)])):
        wait_http(f"http://127.0.0.1:{port}/magent2/health")
        load(browser, f"http://127.0.0.1:{port}/magent2/ui", token=None)
        assert browser.current_url == f"http://127.0.0.1:{port}/magent2/ui/"
        talk_to(browser, "DevAgent")
        say(browser, "through the prefix")
        until(browser, lambda d: replies(d) == ["echo: through the prefix"])
