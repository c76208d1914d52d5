"""``ella-v demo``: a Gradio page to try a checkpoint (offline with the bundled demo).

Text box, optional voice prompt (upload or record, with its transcript), sampling controls,
streamed audio out (chunks arrive while the GAR is still generating), the full recording, the
phone-alignment plot, and examples. API endpoint ``/synthesize`` takes the text and returns the
audio::

    from gradio_client import Client
    Client("http://127.0.0.1:7860/").predict("Hello.", api_name="/synthesize")   # -> path of a WAV

As a Hugging Face Space: an ``app.py`` with ``from ella_v_hf.web_demo import build_app;
build_app("YOUR/MODEL").launch()`` and ``ella-v-hf[demo]`` in ``requirements.txt``.
"""

from __future__ import annotations

import atexit
import os
import queue
import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from ._optional import require
from .modeling.decoding_options import DECODING_OPTIONS
from .processing.demo_corpus import FALLBACK_SENTENCES

#: The first Harvard sentences (public domain), as the page's examples.
EXAMPLES = FALLBACK_SENTENCES[:4]
#: The longest text one request may ask for (about 30 s of speech): a longer one would hold the
#: model for minutes while every other visitor waits.
MAX_TEXT_CHARACTERS = 500
#: The queue both endpoints share, one generation at a time, first come first served.
QUEUE = "tts"
#: No web fonts: the page must work offline.
FONTS = dict(font=["ui-sans-serif", "system-ui", "sans-serif"], font_mono=["ui-monospace", "monospace"])


def check_text(text: str | None) -> str:
    """The request's text, or a ``ValueError`` saying why it is refused (empty, too long)."""
    if not text or not text.strip():
        raise ValueError("Type a sentence first.")
    if len(text) > MAX_TEXT_CHARACTERS:
        raise ValueError(f"The text has {len(text)} characters; this demo takes at most {MAX_TEXT_CHARACTERS} per request.")
    return text


def read_prompt(path: str | None) -> tuple[np.ndarray | None, int | None]:
    """An uploaded or recorded voice prompt (a file path: WAV, FLAC, OGG, MP3 …) -> ``(float32 [S], rate)``.

    Raises:
        ValueError: The file is empty, not audio, unreadable, or holds no finite samples (each said so).
    """
    if path is None:
        return None, None
    from .processing import AudioError, load_audio

    name = Path(path).name
    if os.path.getsize(path) == 0:
        raise ValueError(f"The voice prompt {name} is an empty file (0 bytes).")
    try:
        waveform, rate = load_audio(path)
    except AudioError as error:
        raise ValueError(f"The voice prompt {name} cannot be read as audio: {error}") from None
    if waveform.size == 0:
        raise ValueError(f"The voice prompt {name} holds no samples.")
    if not np.isfinite(waveform).all():
        raise ValueError(f"The voice prompt {name} holds non-finite samples (NaN or infinity).")
    return waveform, rate


class Cancelled(StoppingCriteria):
    """A stock stopping criterion that ends generation once ``event`` is set (the client cancelled
    or went away), so the model is free for the next request within a step."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs) -> torch.BoolTensor:
        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


def ensure_ffmpeg() -> str:
    """Gradio's streamed audio output needs an ``ffmpeg`` executable on PATH: use the system's, else
    the static build of the ``imageio-ffmpeg`` wheel (linked as ``ffmpeg`` in a private folder).

    Raises:
        RuntimeError: Neither is available.
    """
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg
    except ImportError as error:
        raise RuntimeError(
            "The streamed audio of ella-v demo needs ffmpeg: apt-get install ffmpeg, or pip install 'ella-v-hf[demo]' (imageio-ffmpeg)"
        ) from error
    folder = Path(tempfile.gettempdir()) / f"ella-v-ffmpeg-{os.getuid() if hasattr(os, 'getuid') else 0}"
    folder.mkdir(exist_ok=True)
    link = folder / "ffmpeg"
    if not link.exists():
        link.symlink_to(imageio_ffmpeg.get_ffmpeg_exe())
    os.environ["PATH"] = f"{folder}{os.pathsep}{os.environ.get('PATH', '')}"
    return str(link)


def _pcm16(audio: np.ndarray) -> np.ndarray:
    """float [-1, 1] -> int16 (what Gradio sends to the browser)."""
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def build_app(model: str | os.PathLike | None = None, threads: int | None = None):
    """The Gradio ``Blocks`` app for a checkpoint (``None``: the bundled ELLA-V demo).

    Args:
        model: An EllaVForTextToSpeech directory or Hub id.
        threads: Torch CPU threads (default: :func:`~ella_v_hf.synthesis.default_threads`).
    """
    gr = require("gradio", "demo", "ella-v demo")
    ensure_ffmpeg()
    from .synthesis import check_seed, default_threads, load_checkpoint, synthesize, synthesize_stream

    torch.set_num_threads(threads or default_threads())
    tts, processor = load_checkpoint(model)
    rate = tts.config.sampling_rate
    lock = threading.Lock()  # one generation at a time: the model is shared
    out_dir = Path(tempfile.mkdtemp(prefix="ella-v-demo-"))  # the plots; removed when the server exits
    atexit.register(shutil.rmtree, out_dir, ignore_errors=True)

    guided = bool(tts.config.gar_config.text_dropout)  # a GAR trained for classifier-free guidance

    demo_options = [option for option in DECODING_OPTIONS if option.demo]  # the table's rows with a control

    def options(greedy: bool, values: tuple) -> dict:
        """``generate()`` options from the page's controls (in :data:`demo_options` order)."""
        chosen = dict(do_sample=not greedy)
        for option, value in zip(demo_options, values):
            spec = option.demo
            if value is None or (spec.get("guided_only") and not guided):
                continue
            if "number" in spec:
                if not value:  # 0 or empty: the model's own
                    continue
                value = int(value)
            else:
                value = float(value)
                if "off_at" in spec and value == spec["off_at"]:
                    value = None
            if option.check is not None:
                option.check(value)
            chosen[option.name] = value
        return chosen

    def stream(text, prompt_audio, prompt_text, greedy, seed, *values) -> Iterator:
        """Yields (streamed chunk, full recording, plot, status) while generating."""
        try:
            check_text(text)
            wav, prompt_rate = read_prompt(prompt_audio)
            if wav is not None and not (prompt_text or "").strip():
                raise ValueError("A voice prompt needs its transcript.")
            seed = check_seed(int(seed or 0))
            chosen = options(greedy, values)
        except (ValueError, OverflowError) as error:
            raise gr.Error(str(error)) from None
        chunks: queue.Queue = queue.Queue()
        outcome: dict = {}
        cancel = threading.Event()

        def run() -> None:
            try:
                with lock:
                    if cancel.is_set():
                        return
                    outcome["result"], outcome["first"] = synthesize_stream(
                        tts, processor, text, chunks.put, prompt_audio=wav, prompt_text=prompt_text or None,
                        prompt_sampling_rate=prompt_rate, seed=seed, stopping_criteria=StoppingCriteriaList([Cancelled(cancel)]),
                        **chosen,
                    )
            except Exception as error:  # shown in the page, not lost in the server log
                outcome["error"] = error
            finally:
                chunks.put(None)

        threading.Thread(target=run, daemon=True).start()
        try:
            while (chunk := chunks.get()) is not None:
                yield (rate, _pcm16(chunk)), None, None, "generating…"
        finally:  # the client cancelled or went away (the generator is closed): stop generating
            cancel.set()
        if "error" in outcome:
            raise gr.Error(str(outcome["error"]))
        result = outcome["result"]
        from .processing.plot import plot_speech

        name = f"speech-{threading.get_ident()}-{abs(hash(text)) % 10**8}"
        plot = out_dir / f"{name}.png"
        plot_speech(result.audio, rate, plot, text, result.segments, frame_rate=float(tts.config.codec_config.frame_rate))
        status = (f"{len(result.audio) / rate:.2f} s of speech, first audio after {outcome['first']:.2f} s, "
                  f"{result.cuts} forced EOPs, {len(result.sentences)} sentence(s)")
        yield None, (rate, _pcm16(result.audio)), str(plot), status

    def synthesize_api(text: str) -> tuple[int, np.ndarray]:
        """Text -> ``(rate, waveform)`` (top-p 0.9, seed 0): the ``/synthesize`` endpoint (clients get a WAV file)."""
        try:
            check_text(text)
        except ValueError as error:
            raise gr.Error(str(error)) from None
        with lock:
            result = synthesize(tts, processor, text, seed=0, progress=False)
        return rate, _pcm16(result.audio)

    name = Path(str(model)).name if model else "bundled ELLA-V demo"
    with gr.Blocks(title="ELLA-V text-to-speech", analytics_enabled=False) as app:
        gr.Markdown(f"# ELLA-V text-to-speech\nModel: `{name}` ({tts.config.gar_config.layout} layout, {rate} Hz). "
                    "Audio streams while the model is still generating; the full recording and the phone alignment follow.")
        with gr.Row():
            with gr.Column():
                text = gr.Textbox(label="Text", lines=3, placeholder="Type a sentence…", elem_id="text",
                                  max_length=MAX_TEXT_CHARACTERS)
                with gr.Accordion("Voice prompt (optional)", open=False):
                    prompt_audio = gr.Audio(label="Prompt audio", sources=["upload", "microphone"], type="filepath")
                    prompt_text = gr.Textbox(label="Its transcript")
                with gr.Accordion("Sampling", open=False):
                    greedy = gr.Checkbox(label="Greedy (no sampling)", value=False)
                    seed = gr.Number(value=0, precision=0, label="seed")
                    controls = []
                    for option in demo_options:  # generated from modeling/decoding_options.py
                        spec, default = option.demo, getattr(tts.generation_config, option.name, None)
                        visible = guided or not spec.get("guided_only")
                        if "number" in spec:
                            controls.append(gr.Number(value=default, precision=0, label=spec["label"], elem_id=option.name))
                        else:
                            low, high, step = spec["slider"]
                            value = default if default is not None else spec.get("unset", low)
                            controls.append(gr.Slider(low, high, value=value, step=step, label=spec["label"],
                                                      visible=visible, elem_id=option.name))
                button = gr.Button("Synthesize", variant="primary", elem_id="synthesize")
                gr.Examples(EXAMPLES, inputs=[text])
            with gr.Column():
                streamed = gr.Audio(label="Streamed", streaming=True, autoplay=True, elem_id="streamed")
                full = gr.Audio(label="Full recording", type="numpy", format="wav", elem_id="full")
                plot = gr.Image(label="Waveform, spectrogram and generated phones", type="filepath")
                status = gr.Markdown(elem_id="status")
        button.click(stream, [text, prompt_audio, prompt_text, greedy, seed, *controls],
                     [streamed, full, plot, status], api_name="synthesize_stream", concurrency_id=QUEUE, concurrency_limit=1)
        api_text, api_audio = gr.Textbox(visible=False), gr.Audio(visible=False, type="numpy", format="wav")
        gr.Button(visible=False).click(synthesize_api, [api_text], [api_audio], api_name="synthesize", concurrency_id=QUEUE,
                                       concurrency_limit=1)
    return app


def launch(app, port: int = 7860, host: str = "127.0.0.1", block: bool = True):
    """Serve ``app`` offline (system fonts, no analytics); ``block=False`` returns at once (tests)."""
    gr = require("gradio", "demo", "ella-v demo")
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    return app.queue().launch(server_name=host, server_port=port, show_error=True, theme=gr.themes.Default(**FONTS),
                              prevent_thread_lock=not block, quiet=not block)


def main(model: str | None = None, port: int = 7860, host: str = "127.0.0.1", threads: int | None = None) -> None:
    """Serve the app for a checkpoint (blocks until interrupted)."""
    launch(build_app(model, threads), port, host)


__all__ = ["EXAMPLES", "MAX_TEXT_CHARACTERS", "build_app", "check_text", "launch", "main", "read_prompt"]
