"""The web pages in a real browser: Playwright drives Debian's Chromium (headless, /usr/bin/chromium)
against a real `trilla serve` on a loopback port. Each test saves a screenshot of its page into
docs/screenshots/, which the README shows."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from conftest import make_image_folder, make_instrument_folder, make_melody_folder, make_tone_folder, serving, trilla
from trilla import load_config, train
from trilla.data.affect import QUADRANT_SIGNS
from trilla.label import Project
from trilla.runs import Run

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--autoplay-policy=no-user-gesture-required"]
SHOTS = Path(__file__).resolve().parents[1] / "docs" / "screenshots"
EVIL = "<script>window.pwned=1</script>"


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    assert CHROMIUM.exists(), "Chromium is missing: make test installs Debian's chromium (apt-get install chromium)"
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=FLAGS)
        yield launched
        launched.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("pages")
    data = make_instrument_folder(root / "instruments", {"guitar": 16, "bass": 16})
    run = train(load_config(data=data, overrides=["data.image_size=32", "train.epochs=6", "train.progress=false", f"run.dir={root / 'runs'}"]))
    tolabel = make_instrument_folder(root / "tolabel", {"guitar": 6, "bass": 6}, seed=5)
    Project.create(root / "shop", tolabel, "classes", ["guitar", "bass"])
    Project.create(root / "feelings", make_melody_folder(root / "tunes", {"happy": 2, "sad": 2}), "plane", ["valence", "arousal"])
    Project.create(root / "evil", tolabel, "classes", [EVIL, "beta"])
    Project.create(root / "three", make_image_folder(root / "few", {"alpha": 2, "beta": 1}, size=32, seed=7), "classes", ["alpha", "beta"])
    with serving(run.path, "-q", "--label", root / "shop", "--label", root / "feelings", "--label", root / "evil", "--label", root / "three",
                 env={"TRILLA_CACHE": str(root / "cache")}) as (base, _, _):
        yield base, run, data, root


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1000, "height": 760}, bypass_csp=True)  # lets the test evaluate its checks; escaping is tested without the CSP
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda err: errors.append(str(err)))
    # a request the page itself abandoned (it navigated away, or the test ended) is not a failure of the server
    opened.on("requestfailed", lambda request: request.failure == "net::ERR_ABORTED" or errors.append(f"failed: {request.url} ({request.failure})"))
    yield opened
    seen = list(errors)  # what failed while the test ran: closing the context aborts requests still in flight
    context.close()
    assert not seen, seen


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_upload_and_predict_shows_each_files_top1_and_a_gradcam_overlay(site, page):
    base, run, data, _ = site
    files = [data / "guitar" / "guitar_003.png", data / "bass" / "bass_004.png", data / "bass" / "bass_011.png"]
    expected = [r["predictions"][0]["label"] for r in run.predict(files, top_k=2)]
    page.goto(base + "/")
    assert page.title() == "predict · trilla" and httpx.get(base + "/").json()["versions"][0]["id"] == "v2"  # a program still gets JSON
    page.set_input_files("#files", [str(f) for f in files])
    page.wait_for_function("document.querySelectorAll('.result .bar-row').length >= 6")
    cards = page.query_selector_all(".result")  # in the order the files were chosen
    assert [card.query_selector(".name").inner_text() for card in cards] == [f.name for f in files]
    assert [card.query_selector(".bar-row span").inner_text() for card in cards] == expected
    assert not any(card.query_selector(".heat").is_visible() for card in cards)  # no broken overlay before it is asked for
    assert all(card.query_selector(".thumb").is_visible() for card in cards)
    cards[0].query_selector(".cam").click()
    page.wait_for_function("(() => { const i = document.querySelector('.result .heat'); return i && !i.hidden && i.naturalWidth > 0; })()")
    shot(page, "predict")


def test_large_photos_get_one_request_each_and_a_sound_for_a_picture_model_is_refused_on_the_page(site, page, tmp_path):
    """Five 4.8 MB photos chosen at once exceed the 20 MB upload limit together, not one by one."""
    import numpy as np
    from PIL import Image

    base, run, _, _ = site
    rng = np.random.default_rng(0)
    photos = []
    for n in range(5):
        photos.append(tmp_path / f"photo_{n}.png")
        Image.fromarray(rng.integers(0, 256, (1270, 1270, 3), dtype=np.uint8)).save(photos[-1], compress_level=0)
    assert all(4.5e6 < p.stat().st_size < 5.1e6 for p in photos) and sum(p.stat().st_size for p in photos) > 20 * 2**20
    tone = make_tone_folder(tmp_path / "tones", {"low": 1}) / "low"
    sound = next(tone.iterdir())
    page.goto(base + "/")
    sizes = []
    page.on("request", lambda request: request.url.startswith(base + "/predict") and sizes.append(len(request.post_data_buffer or b"")))
    page.set_input_files("#files", [str(p) for p in photos] + [str(sound)])
    page.wait_for_function("document.querySelectorAll('.result').length === 6 && !document.querySelector('.result.waiting')", timeout=60000)
    assert all(len(card.query_selector_all(".bar-row")) == 2 for card in page.query_selector_all(".result")[:5])
    cards = page.query_selector_all(".result")
    assert [c.query_selector(".name").inner_text() for c in cards] == [p.name for p in photos] + [sound.name]
    assert cards[-1].query_selector(".bars").inner_text() == f"this is a sound; the model {page.input_value('#model')} takes pictures"
    assert len(sizes) == 5 and max(sizes) < 20 * 2**20  # one request per photo, none for the sound


def test_a_five_round_quiz_ends_with_both_scores_and_a_high_score(site, page):
    base, _, _, _ = site
    page.goto(base + "/quiz")
    page.fill("#player-name", "Ada")
    assert page.query_selector("#player-name").bounding_box()["width"] < 400  # a name field, not a banner
    page.fill("#rounds", "5")
    with page.expect_response("**/quiz/api/start") as started:
        page.click("#start")
    assert "truth" not in json.dumps(started.value.json())  # the answer never leaves before the player's
    for n in range(5):
        page.wait_for_function(f"document.getElementById('counter').textContent === 'round {n + 1} of 5'")
        page.keyboard.press("1")
        page.wait_for_function("document.getElementById('verdict').textContent.includes('The model said')")
        verdict = page.query_selector("#verdict")
        right = verdict.inner_text().startswith("Right")
        assert verdict.get_attribute("class") == ("right" if right else "wrong")
        assert verdict.evaluate("e => getComputedStyle(e).color") == ("rgb(27, 122, 58)" if right else "rgb(176, 0, 32)")
        if n == 4:
            shot(page, "quiz")
        page.keyboard.press("Enter")
    final = page.wait_for_selector("#final").inner_text()
    assert final.startswith("You ") and "of 5, the model" in final
    page.wait_for_function("document.querySelectorAll('#scores tr').length >= 1")
    assert page.inner_text("#scores tr td") == "Ada"
    for part, items in (("#you-missed-part", "#you-missed li"), ("#model-missed-part", "#model-missed li")):
        assert page.query_selector(part).is_visible() == bool(page.query_selector_all(items)), part  # no heading over an empty list


def start_labelling(page, base: str, project: str, annotator: str) -> int:
    """Open a project's page as `annotator`; the id of the first item shown."""
    page.goto(f"{base}/label/{project}")
    page.fill("#annotator", annotator)
    page.click("#start")
    page.wait_for_function("document.getElementById('counter').textContent.startsWith('0 of')")
    return shown_item(page)


def shown_item(page) -> int:
    return int(page.inner_text("#counter").split("item ")[1].split(" ")[0])


def label_with_keys(page, base: str, project: Project, annotator: str, count: int) -> None:
    """`annotator` answers `count` items of the shop project with the number keys, each with its true class."""
    page.goto(f"{base}/label/{project.name}")
    page.fill("#annotator", annotator)
    page.keyboard.press("Enter")
    given = project.items().set_index("item")["given"]
    for n in range(count):
        page.wait_for_function(f"document.getElementById('counter').textContent.startsWith('{n} of')")
        page.keyboard.press(str(project.classes.index(given[shown_item(page)]) + 1))
    page.wait_for_selector("#done", state="visible")


def test_two_annotators_label_twelve_pictures_with_the_keyboard_and_the_export_trains(site, browser):
    base, _, _, root = site
    project = Project(root / "shop")
    for annotator in ("ann", "bob"):
        context = browser.new_context(bypass_csp=True)
        page = context.new_page()
        label_with_keys(page, base, project, annotator, 12)
        if annotator == "bob":
            shot(page, "label_done")
        context.close()
    standing = project.standing()
    assert len(standing) == 24 and set(standing["annotator"]) == {"ann", "bob"}
    exported = trilla("label", "export", root / "shop", "--out", root / "shop.csv")
    table = __import__("pandas").read_csv(root / "shop.csv")
    assert str(root / "shop.csv") in exported.stdout and (table["annotators"] == 2).all() and (table["agreement"] == 1).all()
    trained = trilla("train", "--data", root / "shop.csv", "--set", "train.epochs=1", "--set", "data.image_size=16",
                     "--set", f"run.dir={root / 'runs2'}", "--set", "train.progress=false", "-q")
    assert Run(trained.stdout.strip().splitlines()[-1]).classes == ["bass", "guitar"]


def test_undo_restores_the_previous_answer(site, page):
    base, _, _, root = site
    project = Project(root / "shop")
    first = start_labelling(page, base, "shop", "cid")
    page.keyboard.press("1")  # guitar
    page.wait_for_function("document.getElementById('counter').textContent.startsWith('1 of')")
    page.keyboard.press("b")  # back to the first item, answered guitar
    page.wait_for_function(f"document.getElementById('counter').textContent.includes('item {first} ')")
    page.keyboard.press("2")  # a second thought: bass; the page moves on to another item
    page.wait_for_function(f"!document.getElementById('counter').textContent.includes('item {first} ')")
    assert project.show(first, "cid").answer == "bass"
    page.keyboard.press("u")
    page.wait_for_function(f"document.getElementById('counter').textContent.includes('item {first} ')")
    assert 'your answer: "guitar"' in page.inner_text("#counter") and project.show(first, "cid").answer == "guitar"
    assert page.get_attribute(".choice[data-value='guitar']", "aria-pressed") == "true"


def test_a_click_on_the_plane_is_stored_where_it_was_clicked_and_the_sound_plays(site, page):
    base, _, _, root = site
    project = Project(root / "feelings")
    item = start_labelling(page, base, "feelings", "dee")
    page.wait_for_function("(() => { const a = document.getElementById('player'); return a.currentTime > 0.2 && !a.paused; })()", timeout=15000)
    box = page.query_selector("#plane").bounding_box()
    middle = (box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    for name, (valence, arousal) in QUADRANT_SIGNS.items():  # each quadrant's name is drawn in its own quadrant
        label = page.query_selector(f"#plane .quadrant:text-is('{name}')").bounding_box()
        assert (label["x"] + label["width"] / 2 - middle[0]) * valence > 0 and (label["y"] + label["height"] / 2 - middle[1]) * arousal < 0, name
    assert not page.query_selector("#point").is_visible() and page.inner_text("#coords") == "valence –, arousal –"  # no point before a click
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('message').textContent.startsWith('click the plane first')")
    target = (0.3, -0.6)  # valence, arousal; the plane spans -1.1..1.1 on both axes, arousal upwards
    page.mouse.click(box["x"] + (target[0] + 1.1) / 2.2 * box["width"], box["y"] + (1.1 - target[1]) / 2.2 * box["height"])
    assert page.query_selector("#point").is_visible()
    shown = [float(part.split()[1]) for part in page.inner_text("#coords").split(", ")]
    assert shown == pytest.approx(target, abs=0.02)
    assert page.query_selector("#plane .quadrant").evaluate("e => getComputedStyle(e).fill") == "rgb(68, 68, 68)"  # legible, not light grey
    shot(page, "label_plane")
    page.keyboard.press("Enter")
    page.wait_for_function("document.getElementById('counter').textContent.startsWith('1 of')")
    stored = project.show(item, "dee").answer
    assert abs(stored[0] - target[0]) <= 0.02 and abs(stored[1] - target[1]) <= 0.02, stored
    page.keyboard.press("b")
    page.wait_for_function(f"document.getElementById('counter').textContent.includes('item {item} ')")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("ArrowUp")
    page.keyboard.press("Enter")  # still "1 of" done afterwards (a second answer to the same item): wait for the page to move on
    page.wait_for_function(f"!document.getElementById('counter').textContent.includes('item {item} ')")
    assert project.show(item, "dee").answer[1] == pytest.approx(stored[1] + 0.04, abs=1e-6)


def test_skipped_items_come_back_and_after_the_last_answer_back_and_undo_still_work(site, page):
    base, _, _, root = site
    project = Project(root / "three")
    names = set(Path(p).name for p in project.items()["path"])
    first = start_labelling(page, base, "three", "fay")
    assert page.inner_text("#filename") in names and page.query_selector("#picture").bounding_box()["width"] >= 400
    page.keyboard.press("s")
    for n in (1, 2):
        page.wait_for_function(f"document.getElementById('counter').textContent.startsWith('{n} of')")
        page.keyboard.press("1")
    page.wait_for_selector("#done", state="visible")
    assert "1 item you skipped is still without your answer" in page.inner_text("#done-text")
    assert page.query_selector("#back").is_visible() and page.query_selector("#undo").is_visible()
    assert page.inner_text("#stats").startswith("2 of 3 items answered by 1 annotator")  # one annotator, not "1 annotators"
    page.keyboard.press("u")  # the last answer is taken back, and its item shown again
    page.wait_for_selector("#work", state="visible")
    last = shown_item(page)
    assert project.show(last, "fay").answer is None
    page.keyboard.press("2")
    page.wait_for_selector("#done", state="visible")
    page.keyboard.press("b")
    page.wait_for_function(f"document.getElementById('counter').textContent.includes('item {last} ')")
    assert 'your answer: "beta"' in page.inner_text("#counter")
    page.keyboard.press("2")  # the same answer again: back to the end
    page.wait_for_selector("#done", state="visible")
    page.keyboard.press("Enter")  # go over the skipped item
    page.wait_for_function(f"document.getElementById('counter').textContent.includes('item {first} ')")
    assert "you skipped it" in page.inner_text("#counter")
    page.keyboard.press("1")
    page.wait_for_selector("#done", state="visible")
    assert page.inner_text("#done-text") == "Every item has your answer. Thank you." and not page.query_selector("#revisit").is_visible()
    assert project.show(first, "fay").answer == "alpha"


def test_names_from_users_and_files_are_shown_as_text_never_run(site, page, tmp_path):
    base, _, _, _ = site
    page.goto(f"{base}/label/evil")
    page.fill("#annotator", '<img src=x onerror="window.pwned=2">')
    page.click("#start")
    page.wait_for_selector(".choice")
    assert page.inner_text(".choice") == f"1 {EVIL}"
    strange = tmp_path / "<img src=x onerror=window.pwned=3>.png"
    strange.write_bytes((site[2] / "guitar" / "guitar_001.png").read_bytes())
    page.goto(base + "/")
    page.set_input_files("#files", [str(strange)])
    page.wait_for_selector(".result .bar-row")
    assert page.inner_text(".result .name") == strange.name
    assert page.evaluate("window.pwned") is None
    refused = httpx.post(f"{base}/label/evil/api/answer", json={"annotator": "x", "item": 1, "value": "beta"})
    assert refused.status_code == 403 and "CSRF" in refused.json()["message"]


def test_suspected_mislabels_are_relabelled_in_the_browser_and_written_back_with_history(site, page):
    """review --label puts the examples the run disagrees with into a project; the page shows each with
    its current label and, on request, the votes; the answers go back into the manifest."""
    import pandas as pd

    base, run, data, root = site
    files = sorted(data.rglob("*.png"))
    rows = pd.DataFrame({"path": [str(f.relative_to(data)) for f in files], "label": [f.parent.name for f in files]})
    flipped = [0, len(files) - 1]
    rows.loc[flipped, "label"] = ["guitar", "bass"]  # files[0] is a bass, files[-1] a guitar
    rows.to_csv(data / "shapes.csv", index=False)
    trilla("review", run.path, "--data", data / "shapes.csv", "--min-votes", "1", "--label", root / "recheck", "-q")
    project = Project(root / "recheck")
    suspects = set(project.items()["path"])
    assert {str(files[i]) for i in flipped} <= suspects
    with serving("-q", "--label", root / "recheck", env={"TRILLA_CACHE": str(root / "cache")}) as (recheck, _, _):
        start_labelling(page, recheck, "recheck", "eve")
        for n in range(len(suspects)):
            page.wait_for_function(f"document.getElementById('counter').textContent.startsWith('{n} of')")
            path = Path(project.item(shown_item(page)).path)
            assert page.inner_text("#given") == rows.set_index("path").at[str(path.relative_to(data)), "label"]
            page.keyboard.press("g")
            page.wait_for_function("document.getElementById('guessed').textContent.startsWith(\"the models' votes: \")")
            assert page.inner_text("#guessed").endswith(" 1 of 1")
            if n == 0:
                shot(page, "relabel")
            page.keyboard.press(str(project.classes.index(path.parent.name) + 1))  # the true class: its folder
        page.wait_for_selector("#done", state="visible")
    trilla("relabel", "--from-project", root / "recheck", "--apply", "-q")
    fixed = pd.read_csv(data / "shapes.csv", keep_default_na=False)
    assert (fixed["label"] == [f.parent.name for f in files]).all()
    assert "label: guitar -> bass (project recheck, 1 annotator, agreement 1.00: eve: bass (" in fixed.loc[0, "label_history"]
    assert fixed.loc[1, "label_history"] == ""  # a label the run agreed with has no history
    assert len(list(data.glob("shapes.csv.*.bak"))) == 1


def test_a_sound_quiz_draws_the_waveform_and_r_plays_it_again(browser, tmp_path):
    tunes = make_melody_folder(tmp_path / "tunes", {"happy": 10, "sad": 10})
    run = train(load_config(data=tunes, overrides=["train.epochs=1", "train.progress=false", f"run.dir={tmp_path / 'runs'}"]))
    context = browser.new_context(bypass_csp=True)
    page = context.new_page()
    with serving(run.path, "-q", env={"TRILLA_CACHE": str(tmp_path / "cache")}) as (base, _, _):
        page.goto(base + "/quiz")
        page.fill("#player-name", "Ada")
        page.fill("#rounds", "2")
        page.click("#start")
        page.wait_for_selector("#wave", state="visible")
        assert not page.query_selector("#picture").is_visible()
        page.wait_for_function("""(() => { const c = document.getElementById('wave');
            const pixels = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            for (let i = 3; i < pixels.length; i += 4) if (pixels[i]) return true; return false; })()""")  # the waveform is drawn
        page.wait_for_function("document.getElementById('player-audio').currentTime > 0.5", timeout=15000)
        page.keyboard.press("r")
        assert page.evaluate("document.getElementById('player-audio').currentTime") < 0.5  # R started it over
    context.close()
