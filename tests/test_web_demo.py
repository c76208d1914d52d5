"""`ella-v demo`: the Gradio app through gradio_client and in a real headless browser."""

from __future__ import annotations

import os
import shutil
import time

import numpy as np
import pytest
from conftest import free_port

gr = pytest.importorskip("gradio", reason="the [demo] extra (in [dev]) installs gradio")


@pytest.fixture(scope="module")
def served(tts_dir, tmp_path_factory):
    from ella_v_hf import EllaVForTextToSpeech, EllaVProcessor
    from ella_v_hf.web_demo import build_app, launch

    # The tiny checkpoint as if its GAR had been trained with text dropout: the page offers guidance.
    model = EllaVForTextToSpeech.from_pretrained(tts_dir)
    model.config.gar_config.text_dropout = 0.1
    model.generation_config.guidance_scale = 2.0
    guided = tmp_path_factory.mktemp("guided")
    model.save_pretrained(guided)
    EllaVProcessor.from_pretrained(tts_dir).save_pretrained(guided)
    app = build_app(guided, threads=1)
    port = free_port()
    launch(app, port=port, block=False)
    yield f"http://127.0.0.1:{port}/"
    app.close()


def test_synthesize_endpoint_through_gradio_client(served):
    import soundfile as sf
    from gradio_client import Client

    client = Client(served, verbose=False)
    path = client.predict("Hello.", api_name="/synthesize")
    audio, rate = sf.read(path)
    assert rate == 16000 and audio.size > 0
    names = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert "/synthesize" in names and "/synthesize_stream" in names
    labels = [p["label"] for p in names["/synthesize_stream"]["parameters"]]
    assert any(label.startswith("guidance on the text") for label in labels)  # offered: this GAR was trained for it
    # The page's own handler streams and then returns the full recording, the plot and a status line.
    streamed, full, plot, status = client.predict("The birch canoe slid.", None, "", True, 0, 0.9, 1.0, None, 0.5, 3.0,
                                                  api_name="/synthesize_stream")
    assert sf.read(full)[0].size > 0 and os.path.getsize(plot) > 0 and "s of speech, first audio after" in status


def test_page_in_a_headless_browser(served, tmp_path):
    webdriver = pytest.importorskip("selenium.webdriver", reason="CI installs selenium")
    chromium = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    driver_path = shutil.which("chromedriver")
    if not chromium or not driver_path:
        pytest.skip("needs Debian's chromium and chromium-driver (CI installs them)")
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        browser.get(served)
        wait = WebDriverWait(browser, 240)
        box = wait.until(ec.element_to_be_clickable((By.CSS_SELECTOR, "#text textarea")))
        box.send_keys("Glue the sheet to the dark blue background.")
        browser.find_element(By.CSS_SELECTOR, "#synthesize").click()

        def streamed_audio_seconds(driver):  # the streamed <audio> element, once generation has finished
            if "first audio after" not in driver.find_element(By.CSS_SELECTOR, "#status").text:
                return False
            seconds = driver.execute_script(
                "return Math.max(0, ...Array.from(document.querySelectorAll('audio'))"
                ".map(a => isFinite(a.duration) ? a.duration : 0));"
            )
            return seconds if seconds and seconds > 0 else False

        seconds = wait.until(streamed_audio_seconds)
        assert seconds > 0
        # The full recording's player shows its length (Gradio draws it with its own waveform player).
        wait.until(lambda d: any(t.text.strip() not in ("", "0:00") for t in d.find_elements(By.CSS_SELECTOR, "#full time")))
        time.sleep(1)
        shot = os.environ.get("ELLA_V_SCREENSHOT") or str(tmp_path / "demo.png")
        browser.save_screenshot(shot)
        assert os.path.getsize(shot) > 0
    finally:
        browser.quit()


@pytest.mark.parametrize("fmt", ["FLAC", "OGG", "MP3"])
def test_voice_prompts_in_flac_ogg_and_mp3_are_accepted(served, prompt, tmp_path, fmt):
    import soundfile as sf
    from gradio_client import Client, handle_file

    waveform, rate, text = prompt
    path = tmp_path / f"prompt.{fmt.lower()}"
    sf.write(path, waveform, rate, format=fmt)
    client = Client(served, verbose=False)
    _, full, _, status = client.predict("Hi there.", handle_file(str(path)), text, True, 0, 0.9, 1.0, None, 0.5, 1.0,
                                        api_name="/synthesize_stream")
    assert sf.read(full)[0].size > 0 and "s of speech" in status


def test_each_bad_voice_prompt_gets_its_own_message(tmp_path):
    import soundfile as sf

    from ella_v_hf.web_demo import read_prompt

    (tmp_path / "empty.wav").write_bytes(b"")
    (tmp_path / "notes.wav").write_text("these are my notes")
    (tmp_path / "corrupt.flac").write_bytes(b"fLaC" + bytes(200))
    sf.write(tmp_path / "nan.wav", np.full(1600, np.nan, dtype=np.float32), 16000, subtype="FLOAT")
    messages = {}
    for name in ("empty.wav", "notes.wav", "corrupt.flac", "nan.wav"):
        with pytest.raises(ValueError) as error:
            read_prompt(str(tmp_path / name))
        messages[name] = str(error.value)
    assert "empty file (0 bytes)" in messages["empty.wav"]
    assert "cannot be read as audio" in messages["notes.wav"] and "cannot be read as audio" in messages["corrupt.flac"]
    assert "non-finite" in messages["nan.wav"]
    assert len(set(messages.values())) == 4


def test_a_cancelled_long_request_frees_the_model_for_the_next_one(served):
    """One client cannot stall the demo: text beyond the limit is refused at once, and a long request
    that its client cancels stops generating, so the next short request waits for a step, not for it."""
    from gradio_client import Client

    from ella_v_hf.web_demo import MAX_TEXT_CHARACTERS

    client = Client(served, verbose=False)
    sentence = "The birch canoe slid on the smooth planks and glue was put on the sheet. "
    with pytest.raises(Exception, match=f"at most {MAX_TEXT_CHARACTERS}"):
        client.predict(sentence * 25, api_name="/synthesize")  # 1,800 characters
    long_text = (sentence * 4)[:MAX_TEXT_CHARACTERS]  # about 300 characters: long enough to measure
    started = time.perf_counter()
    client.predict(long_text, None, "", True, 0, 0.9, 1.0, None, 0.5, 1.0, api_name="/synthesize_stream")
    uncancelled = time.perf_counter() - started
    job = client.submit(long_text, None, "", True, 0, 0.9, 1.0, None, 0.5, 1.0, api_name="/synthesize_stream")
    time.sleep(min(1.0, uncancelled / 4))
    job.cancel()
    started = time.perf_counter()
    client.predict("Hi.", api_name="/synthesize")
    waited = time.perf_counter() - started
    print(f"long request alone {uncancelled:.2f} s, short one after cancelling {waited:.2f} s")
    assert waited < uncancelled / 2, f"the short request took {waited:.1f} s; the long one alone takes {uncancelled:.1f} s"
